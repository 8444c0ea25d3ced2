"""Owner separate from creator (issue 21): the migration's backfill, reassigning (service
and CLI, both owners told), and owners who leave (recorded once, posted once, the weekly
users.info check catching a missed event). Slack's side: tests/slack/test_owners.py."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from sqlalchemy import select, text

from bot.alerts.scheduler import run_pass
from bot.config import Settings
from bot.db import Database, alembic_config, upgrade
from bot.errors import NotFoundError, NotOwnerError, PermissionDeniedError, StaleTokenError
from bot.errors import ValidationError
from bot.models import AuditAction, AuditEvent, DepartedOwner, MessageKind, OutboxMessage, utcnow
from bot.services import departed, listing, owners
from bot.services import tokens
from bot.slack.client import make_web_client
from tests.alerts_support import ALERTS
from tests.support.slack_standin import SlackStandIn
from tests.test_cli import Cli, TTYInput
from tests.test_migrations import empty_url, engine  # noqa: F401 - fixtures
from tests.support.policy import NO_POLICY

TEAM = "T1"
ADMIN = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
OLD, NEW = "U1", "U2"


def _create(db: Database, now: dt.datetime, *, owner: str = OLD, label: str = "ci",
            team: str = TEAM) -> tokens.Token:
    with db.sessions.begin() as session:  # by its owner: nobody else acted, nobody told
        return tokens.create_token(session, box=db.box, actor=tokens.Actor(team_id=team,
                                                                     user_id=owner),
                                   label=label, scope="read", scopes=["read"], now=now,
                                   policy=NO_POLICY).token


def _outbox(db: Database, kind: MessageKind) -> list[tuple[str, dict]]:
    with db.sessions.begin() as session:
        return [(m.destination, dict(m.payload or {})) for m in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id))]


# -- the migration -------------------------------------------------------------------------


def test_upgrading_makes_every_creator_the_owner(engine):  # noqa: F811
    """0006 → 0007: an existing token's owner is its creator; the owner filter finds it."""
    command.upgrade(alembic_config(engine), "0006")
    with engine.begin() as connection:
        for public_id, creator, digest in (("tok_1", "U1", "d1"), ("tok_2", "U2", "d2")):
            connection.execute(text(
                "INSERT INTO tokens (public_id, team_id, label, label_search, scope, status, "
                "secret_digest, secret_masked, secret_encrypted, created_at, created_by, "
                "updated_at, version) VALUES (:id, 'T1', 'ci', 'ci', 'read', 'active', "
                ":digest, 'tkb_ab12cd…', :blob, '2026-12-01 08:00:00', :creator, "
                "'2026-12-01 08:00:00', 1)"),
                {"id": public_id, "creator": creator, "digest": digest, "blob": b"x"})
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT public_id, owner, created_by FROM tokens ORDER BY public_id")).all()
    assert [tuple(r) for r in rows] == [("tok_1", "U1", "U1"), ("tok_2", "U2", "U2")]
    from bot.db import make_session_factory
    with make_session_factory(engine).begin() as session:
        page = listing.list_tokens(session, team_id="T1", now=utcnow(),
                                   filters=listing.TokenFilter(owner="U2"), policy=NO_POLICY)
    assert [t.public_id for t in page.items] == ["tok_2"]


# -- reassigning -----------------------------------------------------------------------------


def test_reassign_moves_rights_and_notices_and_tells_both_owners(db, now):
    token = _create(db, now)
    with db.sessions.begin() as session:
        result = owners.reassign(session, actor=ADMIN, public_id=token.public_id,
                                 new_owner=NEW, now=now, expected_version=token.version)
        assert (result.before, result.after) == (OLD, NEW)
    with db.sessions.begin() as session:
        stored = tokens.get_token(session, team_id=TEAM, public_id=token.public_id)
        assert (stored.owner, stored.created_by) == (NEW, OLD)  # the creator stays
        (event,) = session.scalars(select(AuditEvent).where(
            AuditEvent.action == AuditAction.REASSIGN)).all()
        assert (event.actor, event.details["before"], event.details["after"]) == (
            "UADMIN", {"owner": OLD}, {"owner": NEW})
    told = _outbox(db, MessageKind.REASSIGN_NOTICE)
    assert sorted(dest for dest, _ in told) == [OLD, NEW]
    assert all(p["before"] == OLD and p["after"] == NEW for _, p in told)
    assert _outbox(db, MessageKind.OWNER_NOTICE) == []  # not told twice
    # Rights follow the owner: the old one may no longer act, the new one may.
    with db.sessions.begin() as session, pytest.raises(NotOwnerError):
        tokens.disable_token(session, actor=tokens.Actor(team_id=TEAM, user_id=OLD),
                             public_id=token.public_id, expected_version=stored.version, now=now)
    with db.sessions.begin() as session:
        tokens.disable_token(session, actor=tokens.Actor(team_id=TEAM, user_id=NEW),
                             public_id=token.public_id, expected_version=stored.version, now=now)
        mine = listing.list_tokens(session, team_id=TEAM, now=now,
                                   filters=listing.TokenFilter(owner=NEW), policy=NO_POLICY)
        assert [t.public_id for t in mine.items] == [token.public_id]


@pytest.mark.parametrize("case", ["not admin", "same owner", "unknown", "departed", "stale",
                                  "other team"])
def test_reassign_refusals_change_nothing(db, now, case):
    token = _create(db, now)
    actor, public_id, new_owner, version = ADMIN, token.public_id, NEW, token.version
    expected: type[Exception] = ValidationError
    if case == "not admin":  # not even the owner
        actor, expected = tokens.Actor(team_id=TEAM, user_id=OLD), PermissionDeniedError
    elif case == "same owner":
        new_owner = OLD
    elif case == "unknown":
        public_id, expected = "tok_nosuchtoken", NotFoundError
    elif case == "departed":
        with db.sessions.begin() as session:
            departed.note_departure(session, team_id=TEAM, user_id=NEW, now=now, channel=None)
    elif case == "stale":
        version, expected = version + 1, StaleTokenError
    elif case == "other team":
        actor = tokens.Actor(team_id="T2", user_id="UADMIN", is_admin=True)
        expected = NotFoundError
    with db.sessions.begin() as session, pytest.raises(expected) as refused:
        owners.reassign(session, actor=actor, public_id=public_id, new_owner=new_owner,
                        now=now, expected_version=version)
    if expected is ValidationError:
        assert refused.value.field == "new_owner"  # type: ignore[attr-defined]
    with db.sessions.begin() as session:
        assert tokens.get_token(session, team_id=TEAM, public_id=token.public_id).owner == OLD
    assert _outbox(db, MessageKind.REASSIGN_NOTICE) == []


# -- owners who leave ----------------------------------------------------------------------


def test_a_departure_is_recorded_and_posted_once_with_the_active_tokens(db, now):
    first, second = _create(db, now, label="one"), _create(db, now, label="two")
    _create(db, now, owner=NEW, label="someone else's")
    with db.sessions.begin() as session:
        tokens.disable_token(session, actor=tokens.Actor(team_id=TEAM, user_id=OLD),
                             public_id=second.public_id, expected_version=1, now=now)
    for _ in range(2):  # a redelivered event
        with db.sessions.begin() as session:
            departed.note_departure(session, team_id=TEAM, user_id=OLD, now=now,
                                    channel=ALERTS)
    ((channel, payload),) = _outbox(db, MessageKind.DEPARTED_OWNER)
    assert channel == ALERTS and payload["user"] == OLD and payload["total"] == 1
    assert [t["id"] for t in payload["tokens"]] == [first.public_id]  # active ones only
    assert _departed(db) == [OLD]
    with db.sessions.begin() as session:
        departed.note_return(session, team_id=TEAM, user_id=OLD)  # reactivated
    assert _departed(db) == []


def _departed(db):
    with db.sessions() as session:
        return list(session.scalars(select(DepartedOwner.user_id)
                                    .where(DepartedOwner.team_id == TEAM)))


def test_check_owners_asks_about_each_owner_once_and_treats_a_deactivated_one_as_the_event(
    db, now
):
    mine = _create(db, now)
    _create(db, now, owner=NEW)
    _create(db, now, owner="U3", team="T2")
    asked: list[str] = []

    def lookup(user: str) -> bool:
        asked.append(user)
        return user == OLD

    with db.sessions.begin() as session:
        gone = departed.check_owners(session, team_id=TEAM, lookup=lookup, now=now,
                                     channel=ALERTS)
    assert gone == [OLD] and sorted(asked) == [OLD, NEW]
    ((_, payload),) = _outbox(db, MessageKind.DEPARTED_OWNER)
    assert [t["id"] for t in payload["tokens"]] == [mine.public_id]
    asked.clear()
    with db.sessions.begin() as session:  # the departed one is not asked again
        assert departed.check_owners(session, team_id=TEAM, lookup=lookup, now=now,
                                     channel=ALERTS) == []
    assert asked == [NEW] and len(_outbox(db, MessageKind.DEPARTED_OWNER)) == 1


def test_the_owner_check_is_claimed_once_per_seven_days(db, now):
    claims = []
    for later in (0, 1, 6, 7, 8):
        with db.sessions.begin() as session:
            claims.append(departed.claim_check(session, team_id=TEAM,
                                               now=now + dt.timedelta(days=later)))
    assert claims == [True, False, False, True, False]


# -- the weekly check in the scheduled pass, with Slack's users.info ------------------------


@pytest.fixture
def wsettings(make_settings, standin: SlackStandIn) -> Settings:
    return make_settings(SLACK_API_URL=standin.api_url, SLACK_BOT_TOKEN="xoxb-test",
                         TOKENBOT_ALERT_CHANNEL=ALERTS)


def test_the_weekly_check_catches_a_missed_deactivation_and_posts_it_once(
    wsettings, db, standin: SlackStandIn
):
    """No user_change event arrived; the pass asks users.info about each owner and posts
    the departed owner's tokens to the alert channel once, however often it runs."""
    now = utcnow()
    token = _create(db, now, label="deploy bot")
    _create(db, now, owner=NEW)
    standin.users[OLD] = {"deleted": True}
    client = make_web_client(wsettings)
    report = run_pass(settings=wsettings, database=db, client=client, now=now)
    assert report.departed == 1
    assert sorted(c.body["user"] for c in standin.calls_to("users.info")) == [OLD, NEW]
    (post,) = standin.calls_to("chat.postMessage")
    assert post.body["channel"] == ALERTS
    assert post.body["text"] == f"<@{OLD}> was deactivated; they own 1 token"
    assert token.public_id in str(post.body["blocks"])
    standin.clear()
    again = run_pass(settings=wsettings, database=db, client=client,
                     now=now + dt.timedelta(minutes=15))
    assert again.departed == 0 and standin.calls_to("users.info") == []  # once a week
    assert standin.calls_to("chat.postMessage") == []


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(database_url, monkeypatch, capsys, standin: SlackStandIn) -> Cli:
    from bot.crypto import generate_key
    for name, value in {"DATABASE_URL": database_url, "TOKENBOT_SECRET_KEYS": generate_key(),
                        "TOKENBOT_TEAM_ID": TEAM, "SLACK_API_URL": standin.api_url,
                        "SLACK_BOT_TOKEN": "xoxb-test"}.items():
        monkeypatch.setenv(name, value)
    return Cli(capsys, monkeypatch)


def test_cli_reassign_asks_names_both_and_tells_both_owners(cli: Cli, standin: SlackStandIn):
    created = cli.create("nightly", owner=OLD)
    tid = created["id"]
    shown = cli.ok("tokens", "show", tid).out
    assert f"Owner:     {OLD}" in shown and "UTC by operator" in shown  # creator: operator
    refused = cli("tokens", "reassign", tid, "--owner", NEW)  # nobody at a terminal
    assert refused.code == 1 and "--yes" in refused.err
    aborted = cli("tokens", "reassign", tid, "--owner", NEW, stdin=TTYInput("n\n"))
    assert aborted.code == 1 and f"from {OLD} to {NEW}" in aborted.err
    assert cli.show(tid)["owner"] == OLD
    same = cli("tokens", "reassign", tid, "--owner", OLD, "--yes")
    assert same.code == 1 and same.err.count("\n") == 1 and "already owns" in same.err

    done = cli.ok("tokens", "reassign", tid, "--owner", NEW, stdin=TTYInput("y\n"))
    assert f"from {OLD} to {NEW}" in done.out and f"told: {OLD} and {NEW}." in done.out
    after = cli.show(tid)
    assert (after["owner"], after["created_by"]) == (NEW, "operator")
    listed = cli.ok("tokens", "list", "--owner", NEW).out
    assert tid in listed and "OWNER" in listed
    assert "No tokens match." in cli.ok("tokens", "list", "--owner", OLD).out
    (event,) = [e for e in cli.ok("audit", "--json").json() if e["action"] == "reassign"]
    assert event["details"]["before"] == {"owner": OLD}
    assert event["details"]["after"] == {"owner": NEW}

    cli.ok("alerts", "run")
    dms = {c.body["channel"]: c.body for c in standin.calls_to("chat.postMessage")}
    assert set(dms) == {OLD, NEW}
    assert f"to <@{NEW}>" in str(dms[OLD]["blocks"]) and "an operator (CLI)" in str(
        dms[OLD]["blocks"])
    assert "to you" in str(dms[NEW]["blocks"])
    cli.ok("alerts", "run")
    assert len(standin.calls_to("chat.postMessage")) == 2  # once each


def test_alerts_run_reports_the_departure_it_found_and_posted(
    cli: Cli, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TOKENBOT_ALERT_CHANNEL", ALERTS)
    cli.create("nightly", owner=OLD)
    cli.create("other", owner=NEW)
    standin.users[OLD] = {"deleted": True}
    shown = cli.ok("alerts", "run").out
    assert "Owners: 1 found deactivated" in shown
    assert f"#{ALERTS}: posted 1 message(s)" in shown and f"1 token(s) of {OLD}" in shown
    again = cli.ok("alerts", "run", "--json").json()  # the same week: not asked again
    assert again["departed"] == 0
    assert [c.body["user"] for c in standin.calls_to("users.info")].count(OLD) == 1
    posts = [c.body for c in standin.calls_to("chat.postMessage")]
    assert [p["text"] for p in posts] == [f"<@{OLD}> was deactivated; they own 1 token"]


def test_cli_reassign_of_a_departed_owners_token_tells_only_the_new_owner(
    cli: Cli, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TOKENBOT_ALERT_CHANNEL", ALERTS)
    tid = cli.create("nightly", owner=OLD)["id"]
    standin.users[OLD] = {"deleted": True}
    cli.ok("alerts", "run")  # the weekly check records OLD as departed, and posts it
    done = cli.ok("tokens", "reassign", tid, "--owner", NEW, "--yes")
    assert f"told: {NEW}." in done.out
    cli.ok("alerts", "run")
    channels = [c.body["channel"] for c in standin.calls_to("chat.postMessage")]
    assert channels == [ALERTS, NEW]  # the departure post, then the new owner's DM only
