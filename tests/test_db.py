"""Pooled PostgreSQL connections: a connection the server dropped while it sat in the pool
is replaced before anyone uses it, without a ping on every checkout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError

from bot import db as dbmod
from bot.db import make_engine


@pytest.fixture
def engine(postgresql_url: str) -> Iterator[Engine]:
    engine = make_engine(postgresql_url, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _drop(postgresql_url: str, pid: int) -> None:
    """What a server restart or an idle timeout does to a pooled connection."""
    other = make_engine(postgresql_url)
    try:
        with other.begin() as connection:
            assert connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
            ).scalar_one()
    finally:
        other.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(statement))
    return seen


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    engine: Engine, postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(engine)
    _drop(postgresql_url, first)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has idled long enough

    second = _backend(engine)  # no error: the ping found it dead, the pool reconnected

    assert second != first


def test_a_connection_used_a_moment_ago_goes_out_without_a_ping(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backend(engine)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 60.0)
    pings: list[object] = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(connection))
    statements = _statements(engine)

    _backend(engine)

    assert pings == []
    assert statements == ["SELECT pg_backend_pid()"]


def test_a_connection_dropped_within_the_window_fails_once_then_the_pool_recovers(
    engine: Engine, postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 60.0)
    first = _backend(engine)
    _drop(postgresql_url, first)

    with pytest.raises(DBAPIError) as failure:
        _backend(engine)
    assert failure.value.connection_invalidated

    assert _backend(engine) != first
