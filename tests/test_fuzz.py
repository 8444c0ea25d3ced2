"""Fuzzing the doors that need no Slack signature: 1,000 generated requests each to
`POST /slack/events` unsigned (and badly signed), to `POST /introspect`, and 1,000 command
lines to the CLI. None may answer with a 5xx or a traceback, and none may change anything
(the CLI only where it succeeded)."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot import cli
from bot.config import Settings
from bot.db import Database, make_engine
from bot.http.server import TokenbotASGI, build_asgi_app
from bot.models import AuditEvent, Token
from tests.conftest import TEST_KEY
from tests.test_server import SIGNING_SECRET, probe_app

pytestmark = pytest.mark.slow  # thousands of requests

EXAMPLES = settings(max_examples=1000, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
INTROSPECTION_SECRET = "fuzz-introspection-secret"

header_values = st.binary(max_size=60).filter(lambda v: b"\r" not in v and b"\n" not in v)
bodies = (
    st.binary(max_size=600)
    | st.text(max_size=300).map(str.encode)
    | st.sampled_from([b"{", b"[1]", b"null", b"[" * 10_000, b"payload=%7B", b"token=",
                       b"token=a&token=b", b"\xff\xfe"])
)


def _post(app: TokenbotASGI, path: str, body: bytes,
          headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One request through the ASGI application, as uvicorn would hand it over."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "headers": headers,
             "query_string": b"", "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _counts(db: Database) -> tuple[int, int]:
    with db.sessions() as session:
        return (session.scalar(select(func.count()).select_from(Token)) or 0,
                session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.fixture
def fuzz_app(make_settings: Callable[..., Settings], standin: Any) -> Iterator[
        tuple[TokenbotASGI, Database, list[str]]]:
    config = make_settings(SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_BOT_TOKEN="xoxb-fuzz",
                           SLACK_API_URL=standin.api_url,
                           TOKENBOT_INTROSPECTION_SECRETS=INTROSPECTION_SECRET)
    database = Database(config, auto_upgrade=False)
    ran: list[str] = []
    app = build_asgi_app(settings=config, database=database, bolt_app=probe_app(config, ran))
    try:
        yield app, database, ran
    finally:
        app.close()
        database.dispose()


@EXAMPLES
@given(body=bodies, timestamp=header_values, signature=header_values,
       content_type=st.sampled_from([b"application/x-www-form-urlencoded",
                                     b"application/json", b"text/plain"]) | header_values)
def test_unsigned_requests_to_slack_events_are_401(fuzz_app, body, timestamp, signature,
                                                   content_type):
    app, database, ran = fuzz_app
    before = _counts(database)
    status, _ = _post(app, "/slack/events", body, [
        (b"content-type", content_type), (b"x-slack-request-timestamp", timestamp),
        (b"x-slack-signature", signature)])
    assert status == 401
    assert ran == [] and _counts(database) == before


@EXAMPLES
@given(
    body=bodies | st.text(max_size=80).map(lambda t: b"token=" + t.encode()),
    auth=st.sampled_from([b"Bearer " + INTROSPECTION_SECRET.encode(), b"Basic Og=="])
    | header_values,
    content_type=st.sampled_from([b"application/x-www-form-urlencoded"]) | header_values,
    length=st.none() | header_values,
)
def test_introspection_requests_are_answered_without_5xx(fuzz_app, body, auth,
                                                         content_type, length):
    app, database, _ = fuzz_app
    before = _counts(database)
    headers = [(b"authorization", auth), (b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", length))
    status, answer = _post(app, "/introspect", body, headers)
    assert status in (200, 400, 401, 413)
    if status == 200:
        assert answer == b'{"active":false}'  # no generated token is a real one
    assert _counts(database) == before


WORDS = ["tokens", "audit", "keys", "db", "list", "show", "edit", "disable", "enable",
         "delete", "rotate", "reveal", "create", "generate", "upgrade", "--page", "--per-page",
         "--label", "--scope", "--expires", "--owner", "--team", "--as", "--json", "--status",
         "--search", "--yes", "--no-expiry", "--limit", "--token", "-v", "read", "T1", "U1",
         "2027-01-31", "0", "-1", "100000000000000000000"]


@EXAMPLES
@given(argv=st.lists(st.sampled_from(WORDS) | st.text(max_size=12).filter(
    lambda t: "\x00" not in t), max_size=7))
def test_command_lines_never_end_in_a_traceback(database_url, monkeypatch, capsys, argv):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", TEST_KEY)
    monkeypatch.setenv("TOKENBOT_TEAM_ID", "T1")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    engine = make_engine(database_url)
    before = _rows(engine)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert code in (0, 1, 2)
    assert "Traceback" not in err
    if code != 0:  # a refused command line changed nothing
        assert _rows(engine) == before
    engine.dispose()


def _rows(engine: Any) -> tuple[int, int]:
    with engine.connect() as connection:
        return (connection.scalar(select(func.count()).select_from(Token)) or 0,
                connection.scalar(select(func.count()).select_from(AuditEvent)) or 0)
