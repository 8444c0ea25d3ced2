"""Pooled PostgreSQL connections: a connection the server dropped while it sat in the pool
is replaced before anyone uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

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


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    engine: Engine, postgresql_url: str
) -> None:
    first = _backend(engine)
    _drop(postgresql_url, first)

    second = _backend(engine)  # no error: the ping found it dead, the pool reconnected

    assert second != first


def test_a_connection_dropped_a_moment_after_use_is_replaced_unseen(
    engine: Engine, postgresql_url: str
) -> None:
    first = _backend(engine)
    _drop(postgresql_url, first)
    _backend(engine)  # a click right after the drop: no error either

    assert _backend(engine) != first
