"""RFC 7662 introspection (``POST /introspect``) on SQLite and PostgreSQL.

The ASGI handler is called in-process (a scope, and receive/send coroutines, on an asyncio
loop), exactly as uvicorn calls it; a few cases go over real HTTP through the product's
router (``bot.http.server``) under uvicorn. Time is controlled with time-machine.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st
from hypothesis import event as hyp_event
from sqlalchemy import event, select, text

from bot import crypto, metrics
from bot.config import Settings
from bot.db import Database
from bot.http.introspection import IntrospectionHandler
from bot.models import AuditSource, Token
from bot.services import tokens
from bot.services.usage import UsageMemo, Use, record_uses
from bot.services.verification import verify
from tests.conftest import TEST_KEY
from tests.support.scrape import moved, parse
from tests.support.serving import serving
from tests.support.policy import NO_POLICY

SECRET_A = "introspect-secret-a"
SECRET_B = "introspect-secret-b (rotated in)"
FORM = b"application/x-www-form-urlencoded"
TEAM = "T1"
OWNER = "U123"
INACTIVE = {"active": False}
ONE_MIB = 1024 * 1024


# -- plumbing ------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


async def acall(
    handler: IntrospectionHandler,
    body: bytes | list[bytes] = b"",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    auth: bytes | None = b"Bearer " + SECRET_A.encode(),
    content_type: bytes | None = FORM,
    content_length: bool = True,
) -> tuple[Answer, int]:
    """One request through the ASGI handler, on the running loop; returns the answer and
    how many body messages the handler asked for."""
    chunks = body if isinstance(body, list) else [body]
    header_list = list(headers or [])
    if auth is not None:
        header_list.append((b"authorization", auth))
    if content_type is not None:
        header_list.append((b"content-type", content_type))
    if content_length:
        header_list.append((b"content-length", str(sum(map(len, chunks))).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/introspect",
        "raw_path": b"/introspect",
        "query_string": b"",
        "headers": header_list,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
    }
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads <= len(chunks):
            return {
                "type": "http.request",
                "body": chunks[reads - 1],
                "more_body": reads < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    out: dict[str, list[str]] = {}
    for name, value in sent[0]["headers"]:
        out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    answer = Answer(sent[0]["status"], out, sent[1]["body"])
    assert int(answer.header("content-length") or -1) == len(answer.body)
    return answer, reads


def call(
    handler: IntrospectionHandler, body: bytes | list[bytes] = b"", **kwargs: Any
) -> tuple[Answer, int]:
    """One request on a fresh event loop; queued last-used writes are done on return."""

    async def run() -> tuple[Answer, int]:
        result = await acall(handler, body, **kwargs)
        await handler.writes.drain()
        return result

    return asyncio.run(run())


def token_body(token: str) -> bytes:
    return b"token=" + quote(token, safe="").encode()


def introspect(handler: IntrospectionHandler, token: str, **kwargs: Any) -> Answer:
    return call(handler, token_body(token), **kwargs)[0]


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def assert_no_store(answer: Answer) -> None:
    assert answer.header("cache-control") == "no-store"
    assert answer.header("pragma") == "no-cache"
    assert answer.header("content-type") == "application/json"


def assert_inactive(answer: Answer) -> None:
    assert answer.status == 200
    assert answer.json == INACTIVE
    assert answer.body == b'{"active":false}'
    assert_no_store(answer)


@pytest.fixture
def intro_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(TOKENBOT_INTROSPECTION_SECRETS=f"{SECRET_A},{SECRET_B}")


@pytest.fixture
def intro_db(intro_settings: Settings) -> Iterator[Database]:
    database = Database(intro_settings, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def handler(intro_settings: Settings, intro_db: Database) -> Iterator[IntrospectionHandler]:
    h = IntrospectionHandler(settings=intro_settings, database=intro_db)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def clock(now: dt.datetime) -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(now, tick=False) as traveller:
        yield traveller


OWNER_ACTOR = tokens.Actor(team_id=TEAM, user_id=OWNER, source=AuditSource.CLI)


def create(
    database: Database, now: dt.datetime, *, scope: str = "write",
    expires_on: dt.date | None = None, team: str = TEAM,
) -> tokens.CreatedToken:
    with database.sessions.begin() as session:
        return tokens.create_token(
            session, box=database.box, actor=tokens.Actor(team_id=team, user_id=OWNER),
            label="ci deploy", scope=scope, scopes=["read", "write", "admin"], now=now,
            expires_on=expires_on, policy=NO_POLICY,
        )


def stored(database: Database, public_id: str) -> Token:
    with database.sessions.begin() as session:
        token = session.scalars(select(Token).where(Token.public_id == public_id)).one()
        session.expunge(token)
        return token


@contextmanager
def counting_token_updates(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TOKENS"):
            statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", before)


# -- active tokens ---------------------------------------------------------------------------


def test_active_token_answers_its_claims(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now, expires_on=dt.date(2027, 1, 15))
    answer = introspect(handler, created.secret)
    assert answer.status == 200
    assert_no_store(answer)
    assert answer.json == {
        "active": True,
        "scope": "write",
        "exp": int(dt.datetime(2027, 1, 15, tzinfo=dt.timezone.utc).timestamp()),
        "iat": int(now.timestamp()),
        "token_type": "access_token",
        "sub": OWNER,
        "client_id": created.token.public_id,
        "team_id": TEAM,
    }


def test_token_without_expiry_has_no_exp(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now, scope="read")
    claims = introspect(handler, created.secret).json
    assert claims["active"] is True and claims["scope"] == "read"
    assert "exp" not in claims


@pytest.mark.parametrize(
    "auth",
    [
        b"Bearer " + SECRET_A.encode(),
        b"Bearer " + SECRET_B.encode(),  # the second configured secret: rotation
        b"bearer  " + SECRET_A.encode(),  # scheme is case-insensitive
        basic("billing-service", SECRET_A),
        basic("", SECRET_B),
        basic("svc", SECRET_B),
        basic("svc", quote_plus(SECRET_B)),  # form-urlencoded first (RFC 6749 §2.3.1)
    ],
)
def test_every_configured_secret_authenticates(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any,
    auth: bytes,
) -> None:
    created = create(intro_db, now)
    answer = introspect(handler, created.secret, auth=auth)
    assert answer.status == 200 and answer.json["active"] is True


def test_token_type_hint_is_ignored(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now)
    for hint in (b"access_token", b"refresh_token", b"nonsense"):
        body = b"token_type_hint=" + hint + b"&token=" + created.secret.encode()
        answer, _ = call(handler, body)
        assert answer.json["active"] is True


# -- inactive: exactly {"active": false} ------------------------------------------------------


def test_disabled_deleted_and_rotated_tokens_are_inactive_at_once(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    disabled = create(intro_db, now)
    deleted = create(intro_db, now)
    rotated = create(intro_db, now)
    for created in (disabled, deleted, rotated):
        assert introspect(handler, created.secret).json["active"] is True

    with intro_db.sessions.begin() as session:
        tokens.disable_token(session, actor=OWNER_ACTOR, public_id=disabled.token.public_id,
                             expected_version=1, now=now)
        tokens.delete_token(session, actor=OWNER_ACTOR, public_id=deleted.token.public_id,
                            expected_version=1, now=now)
        fresh = tokens.rotate_token(session, box=intro_db.box, actor=OWNER_ACTOR,
                                    public_id=rotated.token.public_id, expected_version=1, now=now)

    assert_inactive(introspect(handler, disabled.secret))
    assert_inactive(introspect(handler, deleted.secret))
    assert_inactive(introspect(handler, rotated.secret))
    assert introspect(handler, fresh.secret).json["client_id"] == rotated.token.public_id

    with intro_db.sessions.begin() as session:
        tokens.enable_token(session, actor=OWNER_ACTOR, public_id=disabled.token.public_id,
                            expected_version=2, now=now)
    assert introspect(handler, disabled.secret).json["active"] is True


def test_token_expires_at_midnight_utc_of_its_date(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime
) -> None:
    with time_machine.travel(now, tick=False):
        created = create(intro_db, now, expires_on=dt.date(2026, 12, 1))
    midnight = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    with time_machine.travel(midnight - dt.timedelta(seconds=1), tick=False):
        assert introspect(handler, created.secret).json["active"] is True
    with time_machine.travel(midnight, tick=False):
        assert_inactive(introspect(handler, created.secret))
    with time_machine.travel(midnight + dt.timedelta(days=40), tick=False):
        assert_inactive(introspect(handler, created.secret))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "tkb_",
        "not-a-token",
        "xoxb-1234-5678-abcdefghijklmnop",
        "ghp_" + "a" * 36,
        "tkb_" + "A" * 40,  # right shape, wrong checksum
        "TKB_" + "A" * 40,
        "tkb_" + "é" * 40,
        " tkb_" + "A" * 39,
    ],
)
def test_tokens_of_other_formats_are_inactive(
    handler: IntrospectionHandler, token: str, clock: Any
) -> None:
    assert_inactive(introspect(handler, token))


def test_unknown_token_with_valid_checksum_is_inactive(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    create(intro_db, now)
    assert_inactive(introspect(handler, crypto.generate_secret()))


def test_near_misses_of_a_real_secret_are_inactive(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    secret = create(intro_db, now).secret
    near = [
        secret[:-1],
        secret + "0",
        secret.upper(),
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # checksum digit changed
        secret[:10] + ("x" if secret[10] != "x" else "y") + secret[11:],  # body changed
        secret + " ",
        " " + secret,
        secret.replace("tkb_", "tkb-"),
    ]
    for candidate in near:
        assert_inactive(introspect(handler, candidate))
    assert introspect(handler, secret).json["active"] is True


def test_answers_agree_with_the_service_verify(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime
) -> None:
    """The batched read answers exactly as :func:`bot.services.verification.verify`, on a
    Session as on a Connection."""
    with time_machine.travel(now, tick=False):
        active = create(intro_db, now)
        expiring = create(intro_db, now, expires_on=(now + dt.timedelta(days=2)).date())
        disabled = create(intro_db, now)
        with intro_db.sessions.begin() as session:
            tokens.disable_token(session, actor=OWNER_ACTOR, public_id=disabled.token.public_id,
                                 expected_version=1, now=now)
    candidates = [active.secret, expiring.secret, disabled.secret, crypto.generate_secret(),
                  "tkb_" + "B" * 40, "junk"]
    working = {
        now: {active.token.public_id, expiring.token.public_id},
        now + dt.timedelta(days=3): {active.token.public_id},
    }
    for when, expected_working in working.items():
        answered: set[str] = set()
        for secret in candidates:
            with intro_db.sessions.begin() as session:
                by_session = verify(session, secret=secret, now=when)
            with intro_db.engine.connect() as connection:
                by_connection = verify(connection, secret=secret, now=when)
            with time_machine.travel(when, tick=False):
                answer = introspect(handler, secret)
            expected = by_session.public_id if by_session else None
            assert (by_connection.public_id if by_connection else None) == expected
            assert answer.json.get("client_id") == expected, (secret[:10], when)
            if expected is not None:
                answered.add(expected)
        assert answered == expected_working


# -- caller authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer wrong",
        b"Bearer " + SECRET_A.encode() + b"x",
        b"Bearer " + SECRET_A[:-1].encode(),
        b"Token " + SECRET_A.encode(),
        SECRET_A.encode(),
        basic("svc", "wrong"),
        basic(SECRET_A, ""),  # the secret as the user name does not count
        basic(SECRET_A, "x"),
        b"Basic " + base64.b64encode(SECRET_A.encode()),  # no colon
        b"Basic !!!not-base64!!!",
        b"Basic " + SECRET_A.encode(),
        "Bearer é".encode("utf-8"),
    ],
)
def test_wrong_or_missing_credentials_get_401_and_nothing_is_looked_up(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any,
    auth: bytes | None,
) -> None:
    created = create(intro_db, now)
    with counting_token_updates(intro_db) as updates:
        answer = introspect(handler, created.secret, auth=auth)
    assert answer.status == 401
    assert_no_store(answer)
    assert answer.json["error"] == "invalid_client"
    challenges = answer.headers["www-authenticate"]
    assert any(c.startswith("Basic ") for c in challenges)
    assert any(c.startswith("Bearer ") for c in challenges)
    assert handler.batcher.lookups == 0
    assert updates == []
    assert stored(intro_db, created.token.public_id).last_used_at is None


def test_two_authorization_headers_are_refused(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now)
    answer = introspect(
        handler, created.secret, headers=[(b"authorization", b"Bearer wrong")]
    )
    assert answer.status == 401


def test_unauthenticated_request_is_refused_before_its_body_is_read(
    handler: IntrospectionHandler,
) -> None:
    answer, reads = call(handler, b"token=x" * 10, auth=b"Bearer nope")
    assert answer.status == 401
    assert reads == 0


def test_the_log_names_the_caller_never_a_secret(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = create(intro_db, now)
    with caplog.at_level(logging.DEBUG, logger="bot"):
        for _ in range(3):
            introspect(handler, created.secret, auth=basic("billing-service", SECRET_A))
        introspect(handler, created.secret, auth=basic("intruder", "guess-" + SECRET_B))
    text = caplog.text
    # The caller is the credential's name (a bare entry: client-N by position); the Basic
    # user name is not trusted for anything.
    assert "client-1" in text and created.token.public_id in text
    assert "billing-service" not in text
    first_sight = [r for r in caplog.records
                   if r.levelno == logging.INFO and "client-1" in r.getMessage()]
    assert len(first_sight) == 1
    assert "refused" in text
    for secret in (created.secret, SECRET_A, SECRET_B):
        assert secret not in text


def test_refused_callers_are_logged_at_most_once_a_minute_per_source(
    handler: IntrospectionHandler, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="bot"):
        for _ in range(50):
            assert call(handler, b"token=x", auth=b"Bearer nope")[0].status == 401
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1


def test_without_configured_secrets_every_request_is_refused(
    make_settings: Callable[..., Settings], intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now)
    for value in ("", " , "):
        bare = make_settings(TOKENBOT_INTROSPECTION_SECRETS=value)
        h = IntrospectionHandler(settings=bare, database=intro_db)
        try:
            for auth in (None, b"Bearer ", b"Bearer " + SECRET_A.encode(), basic("a", "")):
                answer = introspect(h, created.secret, auth=auth)
                assert answer.status == 401
            assert h.batcher.lookups == 0
        finally:
            h.close()


# -- last used ----------------------------------------------------------------------------------


def test_last_used_is_written_at_most_once_a_minute(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime
) -> None:
    with time_machine.travel(now, tick=False):
        created = create(intro_db, now)
    public_id = created.token.public_id
    assert stored(intro_db, public_id).last_used_at is None

    with counting_token_updates(intro_db) as updates:
        with time_machine.travel(now, tick=False):
            for _ in range(20):
                assert introspect(handler, created.secret).json["active"] is True
        assert len(updates) == 1
        assert stored(intro_db, public_id).last_used_at == now

        with time_machine.travel(now + dt.timedelta(seconds=59), tick=False):
            for _ in range(5):
                introspect(handler, created.secret)
        assert len(updates) == 1
        assert stored(intro_db, public_id).last_used_at == now

        later = now + dt.timedelta(seconds=61)
        with time_machine.travel(later, tick=False):
            for _ in range(5):
                introspect(handler, created.secret)
        assert len(updates) == 2
        assert stored(intro_db, public_id).last_used_at == later

    # "Last used" is not an edit: the version a user's open view holds is still current.
    token = stored(intro_db, public_id)
    assert token.version == 1
    assert token.updated_at == now
    with intro_db.sessions.begin() as session:
        tokens.edit_token(session, actor=OWNER_ACTOR, public_id=public_id, expected_version=1,
                          scopes=["read", "write", "admin"], now=later, label="renamed",
                          policy=NO_POLICY)


def test_a_second_process_sees_a_fresh_last_used_and_does_not_write(
    intro_settings: Settings, handler: IntrospectionHandler, intro_db: Database,
    now: dt.datetime, clock: Any,
) -> None:
    created = create(intro_db, now)
    introspect(handler, created.secret)
    other = IntrospectionHandler(settings=intro_settings, database=intro_db)
    try:
        with counting_token_updates(intro_db) as updates:
            for _ in range(3):
                assert introspect(other, created.secret).json["active"] is True
        assert updates == []
    finally:
        other.close()


def test_the_cli_shows_when_a_token_was_last_used(
    handler: IntrospectionHandler, intro_db: Database, intro_settings: Settings,
    now: dt.datetime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from bot import cli

    with time_machine.travel(now, tick=False):
        used = create(intro_db, now)
        unused = create(intro_db, now)
        assert introspect(handler, used.secret).json["active"] is True
    monkeypatch.setenv("DATABASE_URL", intro_settings.database_url)
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", TEST_KEY)
    monkeypatch.setenv("TOKENBOT_TEAM_ID", TEAM)
    with time_machine.travel(now + dt.timedelta(days=3, hours=2), tick=False):
        capsys.readouterr()
        assert cli.main(["tokens", "show", used.token.public_id]) == 0
        shown = capsys.readouterr().out
        assert cli.main(["tokens", "show", unused.token.public_id]) == 0
        never = capsys.readouterr().out
        assert cli.main(["tokens", "list"]) == 0
        listed = capsys.readouterr().out
    assert "Last used: 3 days ago (2026-11-27 12:00 UTC) by client-1" in shown
    assert "Last used: never" in never
    row = next(line for line in listed.splitlines() if used.token.public_id in line)
    assert row.endswith("3 days ago by client-1")
    row = next(line for line in listed.splitlines() if unused.token.public_id in line)
    assert row.endswith("never")


def test_failed_and_inactive_checks_do_not_touch_last_used(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now)
    with intro_db.sessions.begin() as session:
        tokens.disable_token(session, actor=OWNER_ACTOR, public_id=created.token.public_id,
                             expected_version=1, now=now)
    assert_inactive(introspect(handler, created.secret))
    assert stored(intro_db, created.token.public_id).last_used_at is None


def test_record_uses_is_conditional_and_keeps_each_use(intro_db: Database,
                                                       now: dt.datetime) -> None:
    first = create(intro_db, now)
    second = create(intro_db, now)
    a, b = (stored(intro_db, c.token.public_id).id for c in (first, second))
    later = now + dt.timedelta(seconds=5)
    with intro_db.engine.begin() as connection:
        assert record_uses(connection, uses=[Use(a, now, "ci"), Use(b, later, "deploy")]) == 2
    with intro_db.engine.begin() as connection:  # within the minute: nothing changes
        assert record_uses(connection, uses=[Use(a, now + dt.timedelta(seconds=30), "x"),
                                             Use(b, now + dt.timedelta(seconds=30), "x")]) == 0
    with intro_db.engine.begin() as connection:
        assert record_uses(connection, uses=[Use(a, now + dt.timedelta(minutes=1), "ci"),
                                             Use(b, now + dt.timedelta(minutes=1), "x")]) == 1
    assert (stored(intro_db, first.token.public_id).last_used_at,
            stored(intro_db, first.token.public_id).last_used_by) == (
        now + dt.timedelta(minutes=1), "ci")
    assert (stored(intro_db, second.token.public_id).last_used_at,
            stored(intro_db, second.token.public_id).last_used_by) == (later, "deploy")
    for created in (first, second):  # a use is no change a person's open view must see
        row = stored(intro_db, created.token.public_id)
        assert (row.version, row.updated_at) == (1, created.token.updated_at)


def test_usage_memo() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    memo = UsageMemo(max_entries=2)
    assert memo.claim(1, now=t0, stored=None)
    assert not memo.claim(1, now=t0 + dt.timedelta(seconds=30), stored=None)
    assert memo.claim(1, now=t0 + dt.timedelta(seconds=60), stored=None)
    # another process wrote it 10 s ago: nothing to do here
    assert not memo.claim(2, now=t0, stored=t0 - dt.timedelta(seconds=10))
    memo.claim(3, now=t0, stored=None)
    memo.claim(4, now=t0, stored=None)  # full: forgets, at worst one more conditional write
    memo.forget(4)
    assert memo.claim(4, now=t0, stored=None)


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, b"application/json", b"text/plain", b"multipart/form-data; boundary=x",
     b"application/x-www-form-urlencodedx"],
)
def test_wrong_content_type_is_400(
    handler: IntrospectionHandler, content_type: bytes | None
) -> None:
    answer, _ = call(handler, b"token=tkb_x", content_type=content_type)
    assert answer.status == 400
    assert answer.json["error"] == "invalid_request"
    assert_no_store(answer)


def test_content_type_parameters_and_case_are_accepted(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    created = create(intro_db, now)
    body = b"token=" + created.secret.encode()
    for ctype in (b"application/x-www-form-urlencoded; charset=UTF-8",
                  b"Application/X-WWW-Form-Urlencoded"):
        answer, _ = call(handler, body, content_type=ctype)
        assert answer.json["active"] is True


@pytest.mark.parametrize(
    "body",
    [b"", b"&&", b"tokens=x", b"toke=x", b"token_type_hint=access_token", b"=x"],
)
def test_missing_token_is_400(handler: IntrospectionHandler, body: bytes) -> None:
    answer, _ = call(handler, body)
    assert answer.status == 400
    assert answer.json["error"] == "invalid_request"


def test_repeated_fields_are_400(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    secret = create(intro_db, now).secret.encode()
    for body in (
        b"token=" + secret + b"&token=" + secret,
        b"token=junk&token=" + secret,
        b"token=" + secret + b"&tok%65n=junk",  # the same name, percent-encoded
        b"token=" + secret + b"&token_type_hint=a&token_type_hint=b",
    ):
        answer, _ = call(handler, body)
        assert answer.status == 400, body
        assert answer.json["error"] == "invalid_request"


def test_percent_and_plus_encoding_is_decoded(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any
) -> None:
    secret = create(intro_db, now).secret
    encoded = "".join(f"%{ord(ch):02X}" for ch in secret).encode()
    assert call(handler, b"token=" + encoded)[0].json["active"] is True
    assert_inactive(call(handler, b"token=+" + secret.encode())[0])  # "+" is a space


def test_non_utf8_bytes_are_inactive(handler: IntrospectionHandler) -> None:
    for body in (b"token=\xff\xfe\x00", b"token=%FF%FE", b"token=tkb_%C3%A9" + b"A" * 39,
                 b"token=abc&junk=\xff"):
        assert_inactive(call(handler, body)[0])


def test_body_over_one_mib_is_refused_from_content_length_before_reading(
    handler: IntrospectionHandler,
) -> None:
    answer, reads = call(
        handler, b"", headers=[(b"content-length", str(ONE_MIB + 1).encode())],
        content_length=False,
    )
    assert answer.status == 413
    assert_no_store(answer)
    assert reads == 0


def test_body_over_one_mib_is_refused_while_reading(handler: IntrospectionHandler) -> None:
    """No Content-Length (chunked): the handler counts and stops at the limit."""
    chunks = [b"token=" + b"a" * (256 * 1024)] + [b"a" * (256 * 1024)] * 8
    answer, reads = call(handler, chunks, content_length=False)
    assert answer.status == 413
    assert reads < len(chunks)


def test_body_of_exactly_one_mib_is_parsed(handler: IntrospectionHandler) -> None:
    body = b"token=" + b"a" * (ONE_MIB - len(b"token="))
    assert_inactive(call(handler, body)[0])


def test_malformed_content_length_is_400(handler: IntrospectionHandler) -> None:
    for value in (b"abc", b"-1", b""):
        answer, _ = call(handler, b"token=x", headers=[(b"content-length", value)],
                         content_length=False)
        assert answer.status == 400


# -- fuzzing --------------------------------------------------------------------------------

_ALPHABET = crypto.ALPHABET
valid_format_tokens = st.text(alphabet=_ALPHABET, min_size=34, max_size=34).map(
    lambda body: crypto.PREFIX + body + crypto._checksum(body)  # noqa: SLF001
)
near_miss_tokens = st.text(alphabet=_ALPHABET, min_size=40, max_size=40).map(
    lambda rest: crypto.PREFIX + rest
)
other_tokens = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=_ALPHABET + "_-.~ %+&=", max_size=60),
    st.from_regex(r"(tkb|TKB|ghp|xoxb)[_-][0-9A-Za-z]{0,60}", fullmatch=True),
)
field_names = st.sampled_from([b"token", b"token_type_hint", b"tok%65n", b"TOKEN", b"x", b""])
raw_bytes = st.binary(max_size=300)


def _encode(token: str) -> bytes:
    return quote(token, safe="").encode()


@st.composite
def bodies(draw: st.DrawFn, real: str) -> bytes:
    kind = draw(st.sampled_from(["token", "fields", "binary"]))
    if kind == "binary":
        return draw(raw_bytes)
    if kind == "token":
        token = draw(st.one_of(valid_format_tokens, near_miss_tokens, other_tokens,
                               st.just(real), st.just(real[:-1]), st.just(real + "x")))
        return b"token=" + _encode(token)
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(field_names)
        value = draw(st.one_of(raw_bytes, st.just(_encode(real)),
                               valid_format_tokens.map(_encode)))
        parts.append(name + b"=" + value)
    return b"&".join(parts)


def mostly(usual: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else something drawn from ``other``."""
    return st.integers(0, 4).flatmap(lambda n: other if n == 0 else st.just(usual))


content_types = mostly(FORM, st.one_of(
    st.just(FORM + b"; charset=utf-8"), st.none(),
    st.sampled_from([b"application/json", b"text/plain", b"multipart/form-data"]),
    st.binary(max_size=40),
))


@pytest.fixture
def real_secret(intro_db: Database, now: dt.datetime) -> str:
    with time_machine.travel(now, tick=False):
        return create(intro_db, now).secret


@hyp_settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), content_type=content_types,
       auth=mostly(b"Bearer " + SECRET_A.encode(), st.binary(max_size=30)))
def test_fuzz_never_500_never_active_but_for_the_real_token(
    handler: IntrospectionHandler, intro_db: Database, real_secret: str, now: dt.datetime,
    data: st.DataObject, content_type: bytes | None, auth: bytes,
) -> None:
    body = data.draw(bodies(real_secret), label="body")
    with time_machine.travel(now, tick=False):
        answer, _ = call(handler, body, content_type=content_type, auth=auth)
    assert answer.status in (200, 400, 401, 413)
    assert_no_store(answer)
    payload = answer.json
    hyp_event(f"{answer.status} active={payload.get('active')}")
    if answer.status != 200:
        assert "active" not in payload
        return
    if payload != INACTIVE:
        assert payload["active"] is True
        assert payload["client_id"] == stored(intro_db, payload["client_id"]).public_id
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        assert fields.get("token") == [real_secret]


def test_fuzz_huge_bodies_are_413(handler: IntrospectionHandler) -> None:
    @hyp_settings(max_examples=15, deadline=None)
    @given(extra=st.integers(1, 4096), chunk=st.integers(1024, 512 * 1024),
           announce=st.booleans())
    def check(extra: int, chunk: int, announce: bool) -> None:
        total = ONE_MIB + extra
        data = b"token=" + b"A" * (total - 6)
        chunks = [data[i : i + chunk] for i in range(0, total, chunk)]
        answer, _ = call(handler, chunks, content_length=announce)
        assert answer.status == 413

    check()


# -- concurrent requests: coalesced reads ------------------------------------------------------


@pytest.mark.parametrize("lookup", ["loop", "thread"])
def test_concurrent_requests_each_get_their_own_answer(
    intro_settings: Settings, intro_db: Database, now: dt.datetime, clock: Any, lookup: str
) -> None:
    """Fifty requests at once (active, disabled, deleted, unknown, malformed, repeated):
    read together in a few batches, each answered for its own token."""
    active = [create(intro_db, now, scope=scope) for scope in ("read", "write", "read")]
    disabled = create(intro_db, now)
    deleted = create(intro_db, now)
    with intro_db.sessions.begin() as session:
        tokens.disable_token(session, actor=OWNER_ACTOR, public_id=disabled.token.public_id,
                             expected_version=1, now=now)
        tokens.delete_token(session, actor=OWNER_ACTOR, public_id=deleted.token.public_id,
                            expected_version=1, now=now)
    expected: list[tuple[str, str | None]] = []
    for n in range(50):
        kind = n % 6
        if kind < 3:
            expected.append((active[kind].secret, active[kind].token.public_id))
        elif kind == 3:
            expected.append((disabled.secret, None))
        elif kind == 4:
            expected.append((deleted.secret if n % 2 else crypto.generate_secret(), None))
        else:
            expected.append(("tkb_" + "Z" * 40, None))

    h = IntrospectionHandler(settings=intro_settings, database=intro_db,
                                   lookup=lookup)  # type: ignore[arg-type]

    async def run() -> list[tuple[Answer, int]]:
        answers = await asyncio.gather(*(acall(h, token_body(s)) for s, _ in expected))
        await h.writes.drain()
        return answers

    try:
        answers = asyncio.run(run())
        for (secret, public_id), (answer, _) in zip(expected, answers, strict=True):
            if public_id is None:
                assert_inactive(answer)
            else:
                assert answer.json["client_id"] == public_id
        assert h.batcher.batches < h.batcher.lookups  # coalesced, not one read each
    finally:
        h.close()


def test_a_request_never_joins_a_read_already_in_flight(
    intro_settings: Settings, intro_db: Database, now: dt.datetime, clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that finished before a disable answers the requests that arrived before it;
    a request arriving after the disable was committed waits for a read of its own. (With
    the read in the event loop no request can arrive during a read at all.)"""
    created = create(intro_db, now)
    h = IntrospectionHandler(settings=intro_settings, database=intro_db,
                                   lookup="thread")
    read_done, release = threading.Event(), threading.Event()
    real_run = h.batcher._run  # noqa: SLF001 - slow the first read down

    def first_read_held(digests: list[str]) -> Any:
        rows = real_run(digests)
        if not read_done.is_set():
            read_done.set()
            assert release.wait(10)
        return rows

    monkeypatch.setattr(h.batcher, "_run", first_read_held)

    async def run() -> tuple[Answer, Answer]:
        loop = asyncio.get_running_loop()
        early = asyncio.ensure_future(acall(h, token_body(created.secret)))
        assert await loop.run_in_executor(None, read_done.wait, 10)
        with intro_db.sessions.begin() as session:  # committed while that read is held
            tokens.disable_token(session, actor=OWNER_ACTOR, public_id=created.token.public_id,
                                 expected_version=1, now=now)
        late = asyncio.ensure_future(acall(h, token_body(created.secret)))
        await asyncio.sleep(0.05)
        assert not late.done()
        release.set()
        return (await early)[0], (await late)[0]

    try:
        early, late = asyncio.run(run())
        assert early.json["active"] is True  # read before the change it never saw
        assert_inactive(late)
        assert h.batcher.batches == 2
    finally:
        release.set()
        h.close()


# -- the database going away ----------------------------------------------------------------


def test_a_dropped_database_connection_is_replaced(
    handler: IntrospectionHandler, intro_db: Database, now: dt.datetime, clock: Any,
    database_url: str,
) -> None:
    """PostgreSQL restarted or failed over: the held read connection is dead; the next
    request reconnects and answers (no 5xx, no false negative)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("server-side connection termination is a PostgreSQL scenario")
    created = create(intro_db, now)
    assert introspect(handler, created.secret).json["active"] is True
    with intro_db.engine.connect() as connection:
        killed = connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).scalar()
    assert killed >= 1
    assert introspect(handler, created.secret).json["active"] is True


def test_an_unreachable_database_answers_503_never_active(
    make_settings: Callable[..., Settings], now: dt.datetime, clock: Any, database_url: str,
    tmp_path: Path,
) -> None:
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}"  # a folder: SQLite cannot open it
    else:
        url = "postgresql+psycopg://postgres@127.0.0.1:9/nothing?connect_timeout=2"
    broken = make_settings(DATABASE_URL=url, TOKENBOT_INTROSPECTION_SECRETS=SECRET_A)
    database = Database(broken, auto_upgrade=False)
    h = IntrospectionHandler(settings=broken, database=database)
    try:
        before = parse(metrics.exposition()[0].decode())
        answer = introspect(h, crypto.generate_secret())
        assert answer.status == 503
        after = parse(metrics.exposition()[0].decode())
        assert moved(before, after, "tokenbot_introspection_requests_total") == {("error",): 1}
        assert answer.json["error"] == "temporarily_unavailable"
        assert_no_store(answer)
        assert_inactive(introspect(h, "not-a-token"))  # no read needed: still answered
    finally:
        h.close()
        database.dispose()


def test_a_failure_escaping_the_handler_is_counted_as_an_error(
    handler: IntrospectionHandler,
) -> None:
    """Whatever fails unexpectedly (here the server hands over a message with no type) is
    still counted, as an ``error`` with its duration, and reaches the server (a 500)."""
    scope = {"type": "http", "method": "POST", "path": "/introspect", "query_string": b"",
             "headers": [(b"authorization", b"Bearer " + SECRET_A.encode()),
                         (b"content-type", FORM)], "client": ("127.0.0.1", 50000)}

    async def receive() -> dict[str, Any]:
        return {"body": b"token=x"}  # no "type": no ASGI message

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    before = parse(metrics.exposition()[0].decode())
    with pytest.raises(KeyError):
        asyncio.run(handler(scope, receive, send))
    after = parse(metrics.exposition()[0].decode())
    assert moved(before, after, "tokenbot_introspection_requests_total") == {("error",): 1}
    assert moved(before, after, "tokenbot_introspection_seconds_count") == {(): 1}



# -- over HTTP, through the product's router ------------------------------------------------------


def http_post(address: tuple[str, int], body: bytes, headers: dict[str, str]) -> Answer:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("POST", "/introspect", body=body, headers=headers)
        response = connection.getresponse()
        out: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            out.setdefault(name.lower(), []).append(value)
        return Answer(response.status, out, response.read())
    finally:
        connection.close()


def test_over_http_through_the_server(
    make_settings: Callable[..., Settings], intro_db: Database, now: dt.datetime
) -> None:
    from bot.http.server import build_asgi_app

    server_settings = make_settings(
        TOKENBOT_INTROSPECTION_SECRETS=SECRET_A,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="signing-secret",
    )
    created = create(intro_db, dt.datetime.now(dt.timezone.utc))
    app = build_asgi_app(settings=server_settings, database=intro_db)
    with serving(app) as address:
        good = {"Authorization": f"Bearer {SECRET_A}",
                "Content-Type": "application/x-www-form-urlencoded"}
        answer = http_post(address, f"token={created.secret}".encode(), good)
        assert answer.status == 200 and answer.json["active"] is True
        assert answer.header("cache-control") == "no-store"
        assert_inactive(http_post(address, b"token=tkb_nope", good))
        assert http_post(address, b"token=x", {**good, "Authorization": "Bearer no"}).status == 401
        huge = b"token=" + b"a" * ONE_MIB
        assert http_post(address, huge, good).status == 413
        assert http_post(address, b"{}", {**good, "Content-Type": "application/json"}).status == 400
