"""Hypothesis against the validation rules: labels, expiry dates, scopes.

Each test function gets one database (per backend) and reuses it for all its examples; the
checks compare counts before and after, so earlier examples never disturb later ones.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st
from sqlalchemy import func, select

from bot.errors import PermissionDeniedError, ValidationError
from bot.models import AuditEvent, DisplayStatus, Token
from bot.services import tokens
from bot.services.verification import verify
from bot.services import listing
from tests.support.policy import NO_POLICY

TEAM = "T1"
OWNER = tokens.Actor(team_id=TEAM, user_id="UOWNER")
ADMIN = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
UTC = dt.timezone.utc

fast = hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters a label may never contain: C0/C1 controls, surrogates, line/paragraph breaks.
FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}


def expected_label(text: str) -> str | None:
    """The rule, written independently of the code: trimmed, 1-100 chars, no controls."""
    trimmed = text.strip()
    if not 1 <= len(trimmed) <= 100:
        return None
    if any(unicodedata.category(ch) in FORBIDDEN_CATEGORIES for ch in trimmed):
        return None
    return trimmed


def counts(db) -> tuple[int, int]:
    with db.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Token)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )


def create(db, settings, now, actor=OWNER, **kwargs):
    kwargs.setdefault("label", "label")
    kwargs.setdefault("scope", "read")
    with db.sessions.begin() as session:
        return tokens.create_token(session, box=db.box, actor=actor,
                                   scopes=settings.tokenbot_scopes, now=now, **kwargs,
                                   policy=NO_POLICY)


labels = st.one_of(
    st.text(max_size=120),
    # Mostly-valid labels near the length limit, padded with whitespace.
    st.builds(
        lambda pad_l, body, pad_r: pad_l + body + pad_r,
        st.sampled_from(["", " ", "\t", "  \n", "\u3000"]),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                min_size=95, max_size=105),
        st.sampled_from(["", " ", "\r\n", "\u2003"]),
    ),
)


# -- labels ------------------------------------------------------------------------


@fast
@given(text=labels)
@example(text="İ" * 100)  # lower-cases to 200 characters
@example(text=" " * 5 + "x" * 100 + " " * 5)
@example(text="x" * 101)
@example(text="a\u2028b")
@example(text="bell\x07")
@example(text="nul\x00byte")
@example(text="tab\tinside")
@example(text="<!channel> & co")
@example(text="emoji 🔑 key")
def test_label_rule_on_create(db, settings, now, text):
    want = expected_label(text)
    before = counts(db)
    if want is None:
        with pytest.raises(ValidationError) as err:
            create(db, settings, now, label=text)
        assert err.value.field == "label"
        assert "label" in str(err.value).lower() or "character" in str(err.value)
        assert counts(db) == before
        return
    created = create(db, settings, now, label=text)
    assert created.token.label == want
    assert counts(db) == (before[0] + 1, before[1] + 1)
    with db.sessions() as session:
        stored = tokens.get_token(session, team_id=TEAM, public_id=created.token.public_id)
        assert stored.label == want
        # Searching for the label finds it.
        found = listing.list_tokens(session, team_id=TEAM, now=now,
                                    filters=listing.TokenFilter(search=want), per_page=100,
                                    policy=NO_POLICY)
        assert created.token.public_id in {t.public_id for t in found.items}


@fast
@given(text=labels)
@example(text="İ" * 100)
@example(text="")
@example(text="x" * 101)
def test_label_rule_on_edit(db, settings, now, text):
    token = create(db, settings, now, label="start").token
    want = expected_label(text)
    with db.sessions.begin() as session:
        if want is None:
            with pytest.raises(ValidationError) as err:
                tokens.edit_token(session, actor=OWNER, public_id=token.public_id,
                                  expected_version=1, scopes=settings.tokenbot_scopes,
                                  now=now, label=text, policy=NO_POLICY)
            assert err.value.field == "label"
        else:
            tokens.edit_token(session, actor=OWNER, public_id=token.public_id,
                              expected_version=1, scopes=settings.tokenbot_scopes,
                              now=now, label=text, policy=NO_POLICY)
    with db.sessions() as session:
        stored = tokens.get_token(session, team_id=TEAM, public_id=token.public_id)
        assert stored.label == (want or "start")
        assert stored.version == (1 if want in (None, "start") else 2)


# -- expiry dates ----------------------------------------------------------------------

zones = st.sampled_from([
    UTC,
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=9)),
    dt.timezone(dt.timedelta(hours=14)),
    dt.timezone(dt.timedelta(hours=-12)),
])
instants = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=zones
)


@fast
@given(now=instants, offset=st.integers(min_value=-400, max_value=400))
@example(now=dt.datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC), offset=1)
@example(now=dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
         offset=1)  # 04:30 UTC on the 28th: the 28th is today in UTC, so refused
@example(now=dt.datetime(2026, 11, 28, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=9))),
         offset=0)  # 15:30 UTC on the 27th: the 28th is tomorrow in UTC, so accepted
def test_expiry_must_be_later_than_today_utc(db, settings, now, offset):
    date = now.date() + dt.timedelta(days=offset)
    today_utc = now.astimezone(UTC).date()
    before = counts(db)
    if date <= today_utc:
        with pytest.raises(ValidationError, match="future") as err:
            create(db, settings, now, expires_on=date)
        assert err.value.field == "expires"
        assert counts(db) == before
        return

    created = create(db, settings, now, expires_on=date)
    midnight = dt.datetime.combine(date, dt.time(0, 0), tzinfo=UTC)
    assert created.token.expires_at == midnight
    with db.sessions() as session:
        stored = tokens.get_token(session, team_id=TEAM, public_id=created.token.public_id)
        assert stored.expires_on == date
    # Works up to the last second of the day before, not from 00:00 UTC of the date.
    last_second = midnight - dt.timedelta(seconds=1)
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=last_second) is not None
        assert verify(session, secret=created.secret, now=midnight) is None
        assert verify(session, secret=created.secret, now=now) is not None
        token = tokens.get_token(session, team_id=TEAM, public_id=created.token.public_id)
        assert token.display_status(last_second) == DisplayStatus.ACTIVE
        assert token.display_status(midnight) == DisplayStatus.EXPIRED
        for at, status in ((last_second, DisplayStatus.ACTIVE), (midnight, DisplayStatus.EXPIRED)):
            page = listing.list_tokens(session, team_id=TEAM, now=at, per_page=1000,
                                       filters=listing.TokenFilter(status=status),
                                       policy=NO_POLICY)
            assert created.token.public_id in {t.public_id for t in page.items}


@fast
@given(offset=st.integers(min_value=-30, max_value=30), clear_first=st.booleans())
def test_expiry_rule_on_edit_and_clearing(db, settings, now, offset, clear_first):
    created = create(db, settings, now, expires_on=now.date() + dt.timedelta(days=3))
    pid = created.token.public_id
    new_date = now.date() + dt.timedelta(days=offset)
    with db.sessions.begin() as session:
        if clear_first:
            result = tokens.edit_token(session, actor=OWNER, public_id=pid, expected_version=1,
                                       scopes=settings.tokenbot_scopes, now=now, expires_on=None,
                                       policy=NO_POLICY)
            assert result.token.expires_at is None
            assert verify(session, secret=created.secret, now=now + dt.timedelta(days=9999))
            return
    if offset == 3:  # unchanged: nothing to validate, nothing changes
        expected = now.date() + dt.timedelta(days=3)
    elif offset <= 0:
        with db.sessions.begin() as session, pytest.raises(ValidationError, match="future"):
            tokens.edit_token(session, actor=OWNER, public_id=pid, expected_version=1,
                              scopes=settings.tokenbot_scopes, now=now, expires_on=new_date,
                              policy=NO_POLICY)
        expected = now.date() + dt.timedelta(days=3)
    else:
        expected = new_date
        with db.sessions.begin() as session:
            tokens.edit_token(session, actor=OWNER, public_id=pid, expected_version=1,
                              scopes=settings.tokenbot_scopes, now=now, expires_on=new_date,
                              policy=NO_POLICY)
    with db.sessions() as session:
        assert tokens.get_token(session, team_id=TEAM, public_id=pid).expires_on == expected


def test_expired_token_is_refused_at_midnight_and_not_before(db, settings, now):
    created = create(db, settings, now, expires_on=dt.date(2026, 12, 1))
    with db.sessions.begin() as session:
        at = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
        assert verify(session, secret=created.secret, now=at) is not None
        assert verify(session, secret=created.secret, now=at + dt.timedelta(seconds=1)) is None
        assert verify(session, secret=created.secret, now=at + dt.timedelta(days=30)) is None


# -- scopes --------------------------------------------------------------------------------

ROLES = ["deploy", "read-only", "admin"]


@fast
@given(
    scope=st.one_of(st.sampled_from(ROLES + ["", "read", "Deploy", "ADMIN", " deploy"]),
                    st.text(max_size=10)),
    is_admin=st.booleans(),
)
def test_scope_comes_from_configured_roles(scope, is_admin):
    from bot.config import load_settings

    config = load_settings(_env_file=None, TOKENBOT_SCOPES="deploy, read-only ,admin")
    assert config.tokenbot_scopes == ROLES
    actor = ADMIN if is_admin else OWNER
    if scope not in ROLES:
        with pytest.raises(ValidationError) as err:
            tokens.clean_scope(scope, scopes=config.tokenbot_scopes, actor=actor)
        assert err.value.field == "scope"
        if scope:
            assert "deploy, read-only, admin" in str(err.value)
    elif scope == "admin" and not is_admin:
        with pytest.raises(PermissionDeniedError, match="admin"):
            tokens.clean_scope(scope, scopes=config.tokenbot_scopes, actor=actor)
    else:
        assert tokens.clean_scope(scope, scopes=config.tokenbot_scopes, actor=actor) == scope


def test_configured_roles_apply_to_create(make_settings, now):
    from bot.db import Database

    config = make_settings(TOKENBOT_SCOPES="deploy,read-only,admin")
    db = Database(config, auto_upgrade=False)
    try:
        created = create(db, config, now, scope="deploy")
        assert created.token.scope == "deploy"
        with pytest.raises(ValidationError, match="deploy, read-only, admin"):
            create(db, config, now, scope="read")  # a default role, not configured here
        with pytest.raises(PermissionDeniedError):
            create(db, config, now, scope="admin")
        assert create(db, config, now, actor=ADMIN, scope="admin").token.scope == "admin"
        assert counts(db)[0] == 2
    finally:
        db.dispose()


# -- label search ------------------------------------------------------------------------

# A small alphabet so that searches hit often; the LIKE wildcards and the escape character
# are in it, and so are non-ASCII letters with case.
SEARCH_ALPHABET = "abcAB%_\\ -.éÉ\"'"


@fast
@given(
    names=st.lists(st.text(SEARCH_ALPHABET, min_size=1, max_size=12), min_size=1, max_size=5),
    search=st.text(SEARCH_ALPHABET, max_size=5),
)
@example(names=["100%", "1000"], search="0%")
@example(names=["a_c", "abc"], search="a_c")
@example(names=["a\\b", "ab"], search="a\\b")
@example(names=["ÉCOLE é", "ecole"], search="éco")
def test_search_matches_label_text_literally(db, settings, now, names, search):
    import uuid

    team = f"T{uuid.uuid4().hex[:8]}"
    actor = tokens.Actor(team_id=team, user_id="U1")
    made = {}
    for name in names:
        if expected_label(name) is not None:
            made[create(db, settings, now, actor=actor, label=name).token.public_id] = name
    needle = search.strip().lower()
    expected = {pid for pid, name in made.items() if needle in name.strip().lower()}
    with db.sessions() as session:
        page = listing.list_tokens(session, team_id=team, now=now, per_page=50,
                                   filters=listing.TokenFilter(search=search), policy=NO_POLICY)
    assert {t.public_id for t in page.items} == expected
    assert page.total == len(expected)
