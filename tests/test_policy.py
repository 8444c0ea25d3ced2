"""The lifetime policy (issue 21, item 2) through the services and the CLI: a cap for every
scope, per scope, or none; the refusal naming the limit and the latest date; an admin's
exception and its audit; tokens over a cap set after they got their expiry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from bot.config import Settings, load_settings
from bot.db import Database
from bot.errors import ConfigurationError, PermissionDeniedError, ValidationError
from bot.models import AuditEvent, Token
from bot.services import listing
from bot.services import tokens
from bot.services.policy import PolicyError, policy_of
from tests.test_cli import Cli
from tests.support.policy import NO_POLICY

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
TEAM = "T1"
OWNER = tokens.Actor(team_id=TEAM, user_id="U1")
ADMIN = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
SCOPES = ["read", "write", "admin"]


def _days(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


def _create(db: Database, settings: Settings, *, scope: str = "write",
            expires_on: dt.date | None, actor: tokens.Actor = OWNER,
            exception: str | None = None, now: dt.datetime = NOW) -> Token:
    with db.sessions.begin() as session:
        return tokens.create_token(session, box=db.box, actor=actor, label="ci", scope=scope,
                                   scopes=SCOPES, now=now, expires_on=expires_on,
                                   policy=policy_of(settings), exception=exception,
                                   owner="U1").token


def _count(db: Database) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(Token)) or 0


@pytest.mark.parametrize(
    ("cap", "scope", "allowed_days"),
    [("90", "write", 90), ("90", "read", 90),
     ("admin=30,write=90,read=365", "admin", 30),
     ("admin=30,write=90,read=365", "read", 365),
     ("admin=30,write=90", "read", None),  # read is not capped: anything, even never
     ("90,admin=30", "admin", 30), ("90,admin=30", "read", 90),  # a default, overridden
     ("admin=30, 365", "write", 365)],
)
def test_each_form_of_the_cap_bounds_the_expiry_at_create(
    make_settings: Callable[..., Settings], cap: str, scope: str, allowed_days: int | None,
) -> None:
    settings = make_settings(TOKENBOT_MAX_LIFETIME_DAYS=cap)
    db = Database(settings, auto_upgrade=False)
    try:
        if allowed_days is None:
            assert _create(db, settings, scope=scope, expires_on=None).expires_at is None
            assert _create(db, settings, scope=scope, expires_on=_days(5000)) is not None
            return
        actor = ADMIN if scope == "admin" else OWNER  # (without a reason, admins too)
        token = _create(db, settings, scope=scope, actor=actor, expires_on=_days(allowed_days))
        assert token.expires_on == _days(allowed_days)
        latest = _days(allowed_days).isoformat()
        for beyond in (_days(allowed_days + 1), None):
            with pytest.raises(PolicyError) as refused:
                _create(db, settings, scope=scope, actor=actor, expires_on=beyond)
            assert str(refused.value) == (
                f"{scope} tokens must expire within {allowed_days} days: on or before {latest}")
            assert refused.value.field == "expires"  # inline on the form's date
        assert _count(db) == 1
    finally:
        db.dispose()


def test_without_a_cap_anything_goes_as_before(db: Database, settings: Settings) -> None:
    assert settings.tokenbot_max_lifetime_days == {}
    assert _create(db, settings, scope="admin", actor=ADMIN, expires_on=None).expires_at is None
    assert _create(db, settings, expires_on=_days(9000)).expires_on == _days(9000)


@pytest.mark.parametrize("raw", ["ninety", "0", "write=", "write=-1", "deploy=30",
                                 "write=30,write=40", "=30", "30,admin=7,40"])
def test_a_bad_cap_is_a_clear_start_up_error(raw: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(_env_file=None, TOKENBOT_MAX_LIFETIME_DAYS=raw)
    assert "TOKENBOT_MAX_LIFETIME_DAYS" in str(error.value)
    assert "Traceback" not in str(error.value)


def test_edit_and_extend_are_held_to_the_cap(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    db = Database(settings, auto_upgrade=False)
    policy = policy_of(settings)
    try:
        token = _create(db, settings, expires_on=_days(80))
        # An edit beyond the cap, or one removing the expiry, is refused; nothing changes.
        for expires_on in (_days(91), None):
            with pytest.raises(PolicyError, match="on or before 2027-02-25"), \
                    db.sessions.begin() as session:
                tokens.edit_token(session, actor=OWNER, public_id=token.public_id,
                                  expected_version=token.version, scopes=SCOPES, now=NOW,
                                  expires_on=expires_on, policy=policy)
        # Moving a long-lived read token to a capped scope is held to that scope's cap.
        with db.sessions.begin() as session:
            tokens.edit_token(session, actor=OWNER, public_id=token.public_id,
                              expected_version=token.version, scopes=SCOPES, now=NOW,
                              expires_on=_days(90), policy=policy)
            version = tokens.get_token(session, team_id=TEAM, public_id=token.public_id).version
        # Extending by 30 days from day 90 would reach day 120: refused, same words.
        with pytest.raises(PolicyError) as refused, db.sessions.begin() as session:
            tokens.extend_token(session, actor=OWNER, public_id=token.public_id,
                                expected_version=version, now=NOW, policy=policy)
        assert str(refused.value) == "write tokens must expire within 90 days: on or before 2027-02-25"
        # 60 days later the same extension fits.
        later = NOW + dt.timedelta(days=60)
        with db.sessions.begin() as session:
            result = tokens.extend_token(session, actor=OWNER, public_id=token.public_id,
                                         expected_version=version, now=later, policy=policy)
        assert result.token.expires_on == _days(120)
        read = _create(db, settings, scope="read", expires_on=None)
        with pytest.raises(PolicyError, match="write tokens must expire within 90 days"), \
                db.sessions.begin() as session:
            tokens.edit_token(session, actor=OWNER, public_id=read.public_id,
                              expected_version=read.version, scopes=SCOPES, now=NOW,
                              scope="write", policy=policy)
    finally:
        db.dispose()


def test_an_admin_goes_beyond_the_cap_with_a_reason_that_is_kept_and_audited(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(TOKENBOT_MAX_LIFETIME_DAYS="90")
    db = Database(settings, auto_upgrade=False)
    policy = policy_of(settings)
    try:
        # A non-admin cannot make an exception, whatever reason they give.
        with pytest.raises(PermissionDeniedError) as refused:
            _create(db, settings, expires_on=_days(400), exception="vendor needs it")
        assert refused.value.field == "exception"
        token = _create(db, settings, actor=ADMIN, expires_on=_days(400),
                        exception="  vendor   contract until 2028 ")
        assert token.policy_exception == "vendor contract until 2028"
        with db.sessions() as session:
            event = session.scalars(select(AuditEvent).where(
                AuditEvent.token_public_id == token.public_id)).one()
        assert event.details["policy_exception"] == "vendor contract until 2028"
        # The owner's own edit of the label keeps it; their attempt to push the date is
        # refused with the limit (the exception is the admin's, not theirs).
        with db.sessions.begin() as session:
            edited = tokens.edit_token(session, actor=OWNER, public_id=token.public_id,
                                       expected_version=token.version, scopes=SCOPES, now=NOW,
                                       label="ci vendor", policy=policy)
            version = edited.token.version
        assert edited.token.policy_exception == "vendor contract until 2028"
        with pytest.raises(PolicyError), db.sessions.begin() as session:
            tokens.extend_token(session, actor=OWNER, public_id=token.public_id,
                                expected_version=version, now=NOW, policy=policy)
        # An admin extends it under the same exception; bringing it within the cap ends it.
        with db.sessions.begin() as session:
            tokens.extend_token(session, actor=ADMIN, public_id=token.public_id,
                                expected_version=version, now=NOW, policy=policy)
            token = tokens.get_token(session, team_id=TEAM, public_id=token.public_id)
            assert token.policy_exception == "vendor contract until 2028"
            result = tokens.edit_token(session, actor=ADMIN, public_id=token.public_id,
                                       expected_version=token.version, scopes=SCOPES, now=NOW,
                                       expires_on=_days(60), policy=policy)
        assert result.token.policy_exception is None
        assert result.changes["policy_exception"] == ("vendor contract until 2028", None)
        with pytest.raises(ValidationError, match="500 or fewer"):
            _create(db, settings, actor=ADMIN, expires_on=None, exception="x" * 501)
    finally:
        db.dispose()


def test_tokens_made_before_a_cap_are_kept_and_flagged_over_policy(
    make_settings: Callable[..., Settings],
) -> None:
    loose = make_settings()
    db = Database(loose, auto_upgrade=False)
    try:
        forever = _create(db, loose, expires_on=None)
        long = _create(db, loose, expires_on=_days(200))
        short = _create(db, loose, expires_on=_days(20))
        unscoped = _create(db, loose, scope="read", expires_on=None)
        excepted = _create(db, loose, actor=ADMIN, expires_on=None)
        capped = make_settings(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
        with db.sessions.begin() as session:  # the admin's exception, recorded under the cap
            tokens.edit_token(session, actor=ADMIN, public_id=excepted.public_id,
                              expected_version=excepted.version, scopes=SCOPES, now=NOW,
                              exception="audited elsewhere", policy=policy_of(capped))
        with db.sessions() as session:
            page = listing.list_tokens(session, team_id=TEAM, now=NOW,
                                       policy=policy_of(capped), per_page=50)
            unflagged = listing.list_tokens(session, team_id=TEAM, now=NOW, per_page=50,
                policy=NO_POLICY)
            expiries = {t.public_id: t.expires_at for t in session.scalars(select(Token))}
        assert page.over_policy == {forever.public_id, long.public_id}
        assert unflagged.over_policy == frozenset()
        # nothing about the tokens changed
        assert expiries[forever.public_id] is None and expiries[unscoped.public_id] is None
        assert expiries[long.public_id] == long.expires_at
        assert short.public_id not in page.over_policy
    finally:
        db.dispose()


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    from tests.conftest import TEST_KEY

    for name, value in {"DATABASE_URL": database_url, "TOKENBOT_SECRET_KEYS": TEST_KEY,
                        "TOKENBOT_TEAM_ID": TEAM,
                        "TOKENBOT_MAX_LIFETIME_DAYS": "admin=30,write=90"}.items():
        monkeypatch.setenv(name, value)
    return Cli(capsys, monkeypatch)


def _later(days: int) -> str:
    return (dt.datetime.now(UTC).date() + dt.timedelta(days=days)).isoformat()


def test_the_cli_refuses_in_one_line_and_takes_an_exception(cli: Cli) -> None:
    refused = cli("tokens", "create", "--label", "deploy", "--scope", "write", "--owner", "U1",
                  "--expires", _later(91), "--new-team")
    assert refused.code == 1
    assert refused.err.strip().splitlines() == [
        f"tokenbot: write tokens must expire within 90 days: on or before {_later(90)}"]
    refused = cli("tokens", "create", "--label", "deploy", "--scope", "write", "--owner", "U1",
                  "--new-team")  # no expiry at all, under a cap
    assert refused.code == 1 and f"on or before {_later(90)}" in refused.err
    assert cli.ok("tokens", "list", "--json").json()["tokens"] == []  # type: ignore[index]

    created = cli.ok("tokens", "create", "--label", "vendor", "--scope", "write", "--owner",
                     "U1", "--expires", _later(400), "--exception", "vendor contract",
                     "--new-team", "--json").json()
    assert created["policy_exception"] == "vendor contract"  # type: ignore[index]
    shown = cli.ok("tokens", "show", created["id"]).out  # type: ignore[index]
    assert "Policy:    exception: vendor contract" in shown
    audit = cli.ok("audit", "--json").json()
    assert audit[0]["details"]["policy_exception"] == "vendor contract"  # type: ignore[index]

    # Edit: beyond the cap without a reason is refused; --no-expiry on a capped scope too.
    plain = cli.ok("tokens", "create", "--label", "plain", "--scope", "write", "--owner", "U1",
                   "--expires", _later(30), "--json").json()
    refused = cli("tokens", "edit", plain["id"], "--expires", _later(100))  # type: ignore[index]
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert f"on or before {_later(90)}" in refused.err
    refused = cli("tokens", "edit", plain["id"], "--no-expiry")  # type: ignore[index]
    assert refused.code == 1 and "write tokens must expire within 90 days" in refused.err


def test_the_cli_list_flags_tokens_over_a_cap_set_later(
    cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKENBOT_MAX_LIFETIME_DAYS")
    forever = cli.ok("tokens", "create", "--label", "forever", "--scope", "write", "--owner",
                     "U1", "--new-team", "--json").json()
    cli.ok("tokens", "create", "--label", "short", "--scope", "write", "--owner", "U1",
           "--expires", _later(10))
    assert "over policy" not in cli.ok("tokens", "list").out
    monkeypatch.setenv("TOKENBOT_MAX_LIFETIME_DAYS", "write=90")
    listed = cli.ok("tokens", "list").out
    line = next(row for row in listed.splitlines() if "forever" in row)
    assert "active, over policy" in line
    assert "over policy" not in next(row for row in listed.splitlines() if "short" in row)
    rows = cli.ok("tokens", "list", "--json").json()["tokens"]  # type: ignore[index]
    assert {r["label"]: r["over_policy"] for r in rows} == {"forever": True, "short": False}
    shown = cli.ok("tokens", "show", forever["id"], "--json").json()  # type: ignore[index]
    assert shown["over_policy"] is True and shown["expires_on"] is None  # type: ignore[index]


def test_the_cli_json_says_over_policy_after_create_edit_and_reassign(
    cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKENBOT_MAX_LIFETIME_DAYS")
    forever = cli.ok("tokens", "create", "--label", "forever", "--scope", "write", "--owner",
                     "U1", "--new-team", "--json").json()
    assert forever["over_policy"] is False  # type: ignore[index]
    monkeypatch.setenv("TOKENBOT_MAX_LIFETIME_DAYS", "write=90")
    edited = cli.ok("tokens", "edit", forever["id"], "--label", "renamed",  # type: ignore[index]
                    "--json").json()
    assert edited["label"] == "renamed" and edited["over_policy"] is True  # type: ignore[index]
    moved = cli.ok("tokens", "reassign", forever["id"], "--owner", "U2",  # type: ignore[index]
                   "--yes", "--json").json()
    assert moved["owner"] == "U2" and moved["over_policy"] is True  # type: ignore[index]
    # a new token beyond the cap by an exception is not over policy; one with no cap
    # left on its scope neither
    vendor = cli.ok("tokens", "create", "--label", "vendor", "--scope", "write", "--owner",
                    "U1", "--expires", _later(200), "--exception", "contract",
                    "--json").json()
    assert vendor["over_policy"] is False  # type: ignore[index]
    within = cli.ok("tokens", "edit", forever["id"], "--expires", _later(30),  # type: ignore[index]
                    "--json").json()
    assert within["over_policy"] is False  # type: ignore[index]


def test_a_reason_given_where_no_exception_is_needed_is_refused_in_one_line(cli: Cli) -> None:
    refused = cli("tokens", "create", "--label", "deploy", "--scope", "write", "--owner", "U1",
                  "--expires", _later(30), "--exception", "just in case", "--new-team")
    assert refused.code == 1
    assert refused.err.strip().splitlines() == [
        f"tokenbot: No exception is needed: write tokens may expire on or before {_later(90)} "
        "without one. Leave the reason empty."]
    assert cli.ok("tokens", "list", "--json").json()["tokens"] == []  # type: ignore[index]
    made = cli.ok("tokens", "create", "--label", "deploy", "--scope", "write", "--owner", "U1",
                  "--expires", _later(30), "--json").json()
    refused = cli("tokens", "edit", made["id"], "--exception", "why not")  # type: ignore[index]
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "No exception is needed" in refused.err
    shown = cli.ok("tokens", "show", made["id"], "--json").json()  # type: ignore[index]
    assert shown["policy_exception"] is None  # type: ignore[index]
