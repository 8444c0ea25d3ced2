"""No plaintext secret anywhere but in the hands of whoever created, rotated or copied it.

After creating, rotating, revealing, verifying and deleting tokens (with every logger at
DEBUG, SQLAlchemy's statement and row echo included), the raw bytes of the SQLite files, a
dump of the PostgreSQL tables and all log output must not contain any secret; nor may the
reprs and messages of results and errors.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.crypto import SecretBox, generate_key
from bot.errors import TokenbotError
from bot.services import audit
from bot.services import tokens
from bot.services.verification import verify
from tests.support.policy import NO_POLICY

TEAM = "T1"
OWNER = tokens.Actor(team_id=TEAM, user_id="UOWNER")
OTHER = tokens.Actor(team_id=TEAM, user_id="UOTHER")


def fragments(secret: str) -> list[str]:
    """The secret, and the part of it the mask never shows."""
    return [secret, secret[10:]]


def assert_clean(haystack: str | bytes, secrets: list[str], where: str) -> None:
    for secret in secrets:
        for fragment in fragments(secret):
            needle = fragment.encode("ascii") if isinstance(haystack, bytes) else fragment
            assert needle not in haystack, f"a secret leaked into {where}"


def exercise(db, settings, now) -> tuple[list[str], list[object]]:
    """Create, rotate, reveal, verify, delete; return every secret seen and some errors."""
    secrets: list[str] = []
    errors: list[object] = []
    made = []
    for i in range(4):
        with db.sessions.begin() as session:
            created = tokens.create_token(session, box=db.box, actor=OWNER, label=f"leak test {i}",
                                          scope="write", scopes=settings.tokenbot_scopes, now=now,
                                          expires_on=dt.date(2027, 1, 1), policy=NO_POLICY)
        secrets.append(created.secret)
        made.append(created)
        errors.append(created)  # its repr must hide the secret too
    for created in made[:2]:
        with db.sessions.begin() as session:
            rotated = tokens.rotate_token(session, box=db.box, actor=OWNER,
                                          public_id=created.token.public_id,
                                          expected_version=1, now=now)
        secrets.append(rotated.secret)
        errors.append(rotated)
    for created in made:
        with db.sessions.begin() as session:
            _, secret = tokens.reveal_token(session, box=db.box, actor=OWNER,
                                            public_id=created.token.public_id, now=now)
            assert verify(session, secret=secret, now=now) is not None
            assert verify(session, secret=created.secret, now=now) is None or \
                secret == created.secret
    with db.sessions.begin() as session:
        tokens.delete_token(session, actor=OWNER, public_id=made[3].token.public_id,
                            expected_version=1, now=now)

    # Errors along the way: stale, permission, not found, validation, state, wrong key.
    attempts = [
        lambda s: tokens.rotate_token(s, box=db.box, actor=OWNER, now=now,
                                      public_id=made[0].token.public_id, expected_version=1),
        lambda s: tokens.reveal_token(s, box=db.box, actor=OTHER, now=now,
                                      public_id=made[1].token.public_id),
        lambda s: tokens.reveal_token(s, box=db.box, actor=OWNER, now=now,
                                      public_id=made[3].token.public_id),
        lambda s: tokens.edit_token(s, actor=OWNER, public_id=made[2].token.public_id,
                                    expected_version=1, scopes=settings.tokenbot_scopes, now=now,
                                    label="", policy=NO_POLICY),
        lambda s: tokens.enable_token(s, actor=OWNER, public_id=made[2].token.public_id,
                                      expected_version=1, now=now),
        lambda s: tokens.reveal_token(s, box=SecretBox([generate_key()]), actor=OWNER, now=now,
                                      public_id=made[2].token.public_id),
    ]
    for attempt in attempts:
        with pytest.raises(TokenbotError) as err:
            with db.sessions.begin() as session:
                attempt(session)
        errors.append(err.value)
    return secrets, errors


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "alembic", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.slow
def test_no_plaintext_secret_at_rest_in_logs_or_errors(db, settings, now, all_logs):
    secrets, errors = exercise(db, settings, now)
    assert len(secrets) == 6

    # The logs did capture the SQL traffic (else this test proves nothing) ...
    logged = "\n".join(
        record.getMessage() + (record.exc_text or "") for record in all_logs.records
    ) + all_logs.text
    assert "INSERT INTO tokens" in logged and "secret_encrypted" in logged
    # ... but no secret.
    assert_clean(logged, secrets, "the log output")

    for thing in errors:
        assert_clean(repr(thing) + str(thing), secrets, f"the repr/str of {type(thing).__name__}")
        assert "<hidden>" in repr(thing) or isinstance(thing, TokenbotError)

    with db.sessions() as session:
        details = [e.details for e in audit.list_events(session, team_id=TEAM, limit=1000)]
        assert len(details) >= 4 + 2 + 4 + 1
    assert_clean(repr(details), secrets, "the audit log")

    if db.engine.dialect.name == "sqlite":
        path = settings.sqlite_path
        raw = b"".join(
            candidate.read_bytes()
            for candidate in (path, path.with_name(path.name + "-wal"))
            if candidate.exists()
        )
        assert b"leak test 0" in raw  # the file holds the rows we just wrote
        assert_clean(raw, secrets, "the SQLite database file")
    else:
        with db.engine.connect() as connection:
            dump = "\n".join(
                value
                for table in ("tokens", "audit_events")
                for value in connection.execute(text(f"SELECT t::text FROM {table} t")).scalars()
            )
        assert "leak test 0" in dump
        assert_clean(dump, secrets, "the PostgreSQL tables")
        if shutil.which("pg_dump"):
            url = make_url(settings.database_url).set(drivername="postgresql")
            result = subprocess.run(
                ["pg_dump", "--data-only", "--table=tokens", "--table=audit_events",
                 url.render_as_string(hide_password=False)],
                capture_output=True, check=True, timeout=60,
            )
            assert b"leak test 0" in result.stdout
            assert_clean(result.stdout, secrets, "pg_dump of the tables")


def test_reprs_never_show_the_secret(db, settings, now):
    with db.sessions.begin() as session:
        created = tokens.create_token(session, box=db.box, actor=OWNER, label="repr",
                                      scope="read", scopes=settings.tokenbot_scopes, now=now,
                                      policy=NO_POLICY)
    for shown in (repr(created), str(created), repr(created.token), repr([created])):
        assert created.secret not in shown and created.secret[10:] not in shown
    assert "hidden" in repr(created)
