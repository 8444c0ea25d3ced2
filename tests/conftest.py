"""Shared fixtures: the same suite runs against SQLite and PostgreSQL.

PostgreSQL: ``TOKENBOT_TEST_POSTGRES_URL`` (default: the local server's ``test`` database)
is used to create a throw-away database for this test run, dropped at the end. Unreachable
PostgreSQL skips those tests locally and fails them under ``CI=true``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, text

from bot.config import Settings, load_settings
from bot.crypto import generate_key
from bot.db import Database, make_engine, upgrade
from bot.http.server import build_asgi_app
from bot.models import Base
from tests.lifecycle_support import SECRETS, TEAM, Cli, Server
from tests.support.databases import throwaway_postgresql
from tests.support.serving import serving
from tests.support.slack_standin import SlackStandIn

PG_ADMIN_URL = os.environ.get(
    "TOKENBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_KEY = generate_key()

# The fast loop (`-m "not slow"`) runs on SQLite; the full run (CI) runs every test on both.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]

pytest_plugins = ("tests.alerts_support",)  # the expiry-alert tests' asettings / adb


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated to head; dropped afterwards."""
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "tokenbot-test.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated, empty database: one test per backend."""
    url = request.getfixturevalue(f"{request.param}_url")
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    engine.dispose()
    return url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for the test database; keyword overrides use the environment names."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "DATABASE_URL": database_url,
            "TOKENBOT_SECRET_KEYS": TEST_KEY,
            "TOKENBOT_ADMINS": "UADMIN",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
        }
        values.update(overrides)
        return load_settings(_env_file=None, **values)  # type: ignore[arg-type]

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def _standin_server() -> Iterator[SlackStandIn]:
    server = SlackStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standin(_standin_server: SlackStandIn) -> Iterator[SlackStandIn]:
    """A local stand-in for Slack's Web API and response_urls, as fresh for each test: one
    server for the run (stopping one takes 0.5 s), reset before and after every test. A
    failure queued with ``fail_next`` that no call used fails the test."""
    _standin_server.reset()
    yield _standin_server
    unused = _standin_server.unused_failures()
    _standin_server.reset()
    assert not unused, f"queued failures were not used: {unused}"


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's .env or writes a tokenbot.db into the checkout."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("SLACK_", "TOKENBOT_")) and name != "TOKENBOT_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)


# -- the slow marker -----------------------------------------------------------------------
#
# ``@pytest.mark.slow``: the test starts a process (the installed CLI, ``tokenbot serve`` /
# ``socket``, pg_dump, a fresh interpreter) or waits on real time (retries, backoff).
# ``pytest -m "not slow"`` is the fast inner loop; CI runs everything. A test that starts a
# process without the mark fails, so the fast loop stays fast.

_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork",
     "os.forkpty"}
)
_started_by_test: list[list[str]] = []  # while a test not marked slow runs: what it started


def _note_processes(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook (PEP 578): every process this interpreter starts raises one of these."""
    if _started_by_test and event in _PROCESS_EVENTS:
        command = args[1] if event == "subprocess.Popen" else ""  # never the environment
        _started_by_test[-1].append(f"{event} {command!r}"[:200])


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_note_processes)


@pytest.fixture(autouse=True)
def _processes_are_marked_slow(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts a process must be marked ``slow``, or ``-m "not slow"`` runs it."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []
    _started_by_test.append(started)
    try:
        yield
    finally:
        _started_by_test.remove(started)
    if started:
        pytest.fail(
            f"{request.node.nodeid} starts processes but is not marked slow: "
            f"{started[:3]}. Add @pytest.mark.slow."
        )


# -- the usage-lifecycle tests (issue 12; their helpers: tests/lifecycle_support.py) -------


@pytest.fixture
def lc_settings(make_settings: Callable[..., Settings], standin: SlackStandIn) -> Settings:
    return make_settings(
        SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="lifecycle-signing-secret",
        SLACK_API_URL=standin.api_url, TOKENBOT_SCHEDULER="off",
        TOKENBOT_INTROSPECTION_SECRETS=SECRETS, TOKENBOT_ALERT_CHANNEL="CALERTS",
    )


@pytest.fixture
def lc_db(lc_settings: Settings) -> Iterator[Database]:
    database = Database(lc_settings, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def server(lc_settings: Settings, lc_db: Database) -> Iterator[Any]:
    app = build_asgi_app(settings=lc_settings, database=lc_db)
    with serving(app) as address:
        yield Server(address, app)


@pytest.fixture
def run(lc_settings: Settings, lc_db: Database, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name, value in {
        "DATABASE_URL": lc_settings.database_url, "TOKENBOT_SECRET_KEYS": TEST_KEY,
        "TOKENBOT_TEAM_ID": TEAM, "SLACK_API_URL": lc_settings.slack_api_url,
        "SLACK_BOT_TOKEN": "xoxb-test", "TOKENBOT_ALERT_CHANNEL": "CALERTS",
    }.items():
        monkeypatch.setenv(name, value)
    return Cli(capsys, monkeypatch)
