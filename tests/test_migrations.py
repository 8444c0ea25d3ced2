"""Migrations: from an empty database to the schema the models describe, idempotently, on
SQLite and PostgreSQL; and the embedded default that sets itself up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot.config import load_settings
from bot.crypto import SecretBox, generate_key
from bot.db import Database, alembic_config, is_up_to_date, make_engine, make_session_factory, upgrade
from bot.models import Base
from bot.services import tokens
from bot.services.verification import verify
from bot.services import listing
from tests.conftest import BACKENDS, PG_ADMIN_URL
from tests.support.databases import throwaway_postgresql
from tests.support.policy import NO_POLICY

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)
OWNER = tokens.Actor(team_id="T1", user_id="UOWNER")
APP_TABLES = {"tokens", "audit_events", "retired_secrets", "dead_secret_uses", "outbox",
              "hygiene_scans"}

# Search indexes that live outside the ORM metadata on purpose.
OUTSIDE_METADATA = ("tokens_label_fts", "ix_tokens_label_trgm")


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path) -> Iterator[str]:
    """A brand-new database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgresql_url")  # skips (or fails under CI) if unreachable
    with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_mig") as url:
        yield url


@pytest.fixture
def engine(empty_url):
    engine = make_engine(empty_url)
    try:
        yield engine
    finally:
        engine.dispose()


def schema(engine) -> dict:
    inspector = inspect(engine)
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                   for i in inspector.get_indexes(table)),
            sorted(str(u["column_names"]) for u in inspector.get_unique_constraints(table)),
        )
        for table in APP_TABLES | {"alembic_version"}
    }


def use(engine) -> str:
    """Create a token through the services; proves the schema is usable."""
    box = SecretBox([generate_key()])
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        created = tokens.create_token(session, box=box, actor=OWNER, label="after upgrade",
                                      scope="read", scopes=["read"], now=NOW, policy=NO_POLICY)
    with sessions.begin() as session:
        assert verify(session, secret=created.secret, now=NOW) is not None
        assert listing.list_tokens(session, team_id="T1", now=NOW,
                                   filters=listing.TokenFilter(search="upgrade"),
                                   policy=NO_POLICY).total == 1
    return created.token.public_id


def test_upgrade_creates_the_schema_on_an_empty_database(engine):
    assert not APP_TABLES & set(inspect(engine).get_table_names())
    assert not is_up_to_date(engine)

    upgrade(engine)

    assert APP_TABLES <= set(inspect(engine).get_table_names())
    assert is_up_to_date(engine)
    with engine.connect() as connection:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert set(current) == set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    use(engine)


def test_upgrade_twice_is_a_no_op_and_keeps_data(engine):
    upgrade(engine)
    public_id = use(engine)
    before = schema(engine)

    upgrade(engine)

    assert schema(engine) == before
    assert is_up_to_date(engine)
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT public_id FROM tokens")).scalars().all()
        versions = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
    assert ids == [public_id] and versions == 1


def test_models_match_the_migration(engine):
    upgrade(engine)

    def include(obj, name, type_, reflected, compare_to):
        return not (name or "").startswith(OUTSIDE_METADATA)

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_downgrade_to_base_and_up_again(engine):
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert not APP_TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    use(engine)


# -- the embedded default ------------------------------------------------------------------


def test_default_database_is_created_in_wal_mode_with_foreign_keys(tmp_path):
    config = load_settings(_env_file=None)
    assert config.database_url == "sqlite:///tokenbot.db"
    db = Database(config)
    try:
        assert (tmp_path / "tokenbot.db").exists()
        assert APP_TABLES <= set(inspect(db.engine).get_table_names())
        assert is_up_to_date(db.engine)
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        with db.sessions.begin() as session:
            created = tokens.create_token(session, box=db.box, actor=OWNER, label="embedded",
                                          scope="read", scopes=config.tokenbot_scopes, now=NOW,
                                          policy=NO_POLICY)
        assert (tmp_path / "tokenbot.db-wal").exists()
    finally:
        db.dispose()

    # A second start finds everything in place.
    again = Database(load_settings(_env_file=None))
    try:
        with again.sessions() as session:
            assert tokens.get_token(session, team_id="T1",
                                    public_id=created.token.public_id).label == "embedded"
    finally:
        again.dispose()


def test_upgrading_to_the_outbox_keeps_what_was_waiting_to_be_posted(engine):
    """0005 → 0006: a pending (perhaps attempted) reminder keeps its state, an unsent
    rotation notice is still to be posted, and today's dead-secret alarm is not posted
    again; what was sent stays sent."""
    command.upgrade(alembic_config(engine), "0005")
    at = "2026-12-07 08:00:00"
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO tokens (public_id, team_id, label, label_search, scope, status, "
            "secret_digest, secret_masked, secret_encrypted, created_at, created_by, "
            "updated_at, expires_at, version) VALUES ('tok_1', 'T1', 'ci', 'ci', 'read', "
            "'active', 'd1', 'tkb_ab12cd…', :blob, :at, 'U1', :at, '2026-12-10 00:00:00', 1)"),
            {"blob": b"x", "at": at})
        token_id = connection.execute(text("SELECT id FROM tokens")).scalar()
        for kind, status, attempted in (("channel", "pending", at), ("owner", "sent", None)):
            connection.execute(text(
                "INSERT INTO alerts (token_id, team_id, threshold_days, expires_at, kind, "
                "destination, status, attempts, next_attempt_at, created_at, "
                "post_attempted_at) VALUES (:token, 'T1', 7, '2026-12-10 00:00:00', :kind, "
                "'C1', :status, 1, :at, :at, :attempted)"),
                {"token": token_id, "kind": kind, "status": status, "at": at,
                 "attempted": attempted})
        connection.execute(text(
            "INSERT INTO lifecycle_notices (team_id, token_public_id, owner, label, kind, "
            "caller, at) VALUES ('T1', 'tok_1', 'U1', 'ci', 'rotation_switched', 'ci-runner', "
            ":at)"), {"at": at})
        connection.execute(text(
            "INSERT INTO dead_secret_alarms (team_id, token_public_id, day, claimed_by, "
            "claimed_at, presented) VALUES ('T1', 'tok_1', '2026-12-07', 'w', :at, 3)"),
            {"at": at})
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT kind, audience, status, post_attempted_at IS NOT NULL, payload, key "
            "FROM outbox ORDER BY id")).all()
    expiry = [(r[1], r[2], r[3]) for r in rows if r[0] == "expiry"]
    assert expiry == [("channel", "pending", True), ("owner", "sent", False)]
    (notice,) = [r for r in rows if r[0] == "rotation_notice"]
    assert notice[2] == "pending" and "ci-runner" in str(notice[4])
    alarms = sorted((r[1], r[2], r[5]) for r in rows if r[0] == "dead_secret_alarm")
    assert alarms == [
        ("channel", "sent", "dead_secret_alarm:T1:tok_1:2026-12-07:channel"),
        ("owner", "sent", "dead_secret_alarm:T1:tok_1:2026-12-07:owner")]
