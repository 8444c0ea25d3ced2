"""The token registry's rules (SPEC "The token", "Lifecycle rules"), on SQLite and PostgreSQL.

Every test runs once per backend through the ``db`` fixture. Refusals are checked for what a
user would notice: the message, and that nothing changed (row and audit log).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from bot import crypto
from bot.errors import (
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    StaleTokenError,
    ValidationError,
)
from bot.models import AuditAction, AuditSource, DisplayStatus, Token, TokenStatus
from bot.services import audit
from bot.services import tokens
from bot.services import listing as listing_service
from bot.services import verification
from tests.support.policy import NO_POLICY

TEAM = "T1"
OWNER = tokens.Actor(team_id=TEAM, user_id="UOWNER")
OTHER = tokens.Actor(team_id=TEAM, user_id="UOTHER")
ADMIN = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
# Same user id, even an admin, but in another workspace.
FOREIGN = tokens.Actor(team_id="T2", user_id="UOWNER", is_admin=True)

DAY = dt.timedelta(days=1)


# -- helpers -------------------------------------------------------------------


def create(db, settings, now, *, actor=OWNER, label="ci deploy", scope="read", **kwargs):
    with db.sessions.begin() as session:
        return tokens.create_token(
            session, box=db.box, actor=actor, label=label, scope=scope,
            scopes=settings.tokenbot_scopes, now=now, **kwargs, policy=NO_POLICY,
        )


def row(db, public_id: str) -> dict[str, Any] | None:
    """The token's stored columns, or None when it is gone."""
    with db.sessions() as session:
        found = session.execute(
            select(Token.__table__).where(Token.__table__.c.public_id == public_id)
        ).mappings().one_or_none()
        return dict(found) if found is not None else None


def events(db, team: str = TEAM, public_id: str | None = None):
    with db.sessions() as session:
        return audit.list_events(session, team_id=team, token_public_id=public_id)


def verify(db, secret: str, now: dt.datetime) -> verification.ActiveToken | None:
    with db.sessions.begin() as session:
        return verification.verify(session, secret=secret, now=now)


def listing(db, now, team=TEAM, *, status=None, owner=None, search="",
            **kwargs) -> listing_service.TokenPage:
    filters = listing_service.TokenFilter(status=status, owner=owner, search=search)
    with db.sessions() as session:
        return listing_service.list_tokens(session, team_id=team, now=now, filters=filters,
                                       **kwargs, policy=NO_POLICY)


def act(db, settings, now, action: str, public_id: str, version: int, actor=OWNER, **kwargs):
    """Run one changing action in its own transaction, as a listener or the CLI would."""
    with db.sessions.begin() as session:
        common = dict(actor=actor, public_id=public_id, now=now)
        if action == "edit":
            kwargs.setdefault("label", "renamed")
            return tokens.edit_token(session, expected_version=version,
                                     scopes=settings.tokenbot_scopes, **common, **kwargs,
                                     policy=NO_POLICY)
        if action == "disable":
            return tokens.disable_token(session, expected_version=version, **common)
        if action == "enable":
            return tokens.enable_token(session, expected_version=version, **common)
        if action == "delete":
            return tokens.delete_token(session, expected_version=version, **common)
        if action == "rotate":
            return tokens.rotate_token(session, box=db.box, expected_version=version, **common)
        if action == "reveal":
            return tokens.reveal_token(session, box=db.box, **common)
        raise AssertionError(action)


# -- create, get ---------------------------------------------------------------


def test_create_stores_token_and_hands_out_secret_once(db, settings, now):
    created = create(db, settings, now, label="  ci deploy  ", scope="write")
    token = created.token

    assert token.public_id.startswith("tok_")
    assert token.label == "ci deploy"  # trimmed
    assert token.scope == "write"
    assert token.status == TokenStatus.ACTIVE
    assert token.created_by == "UOWNER" and token.team_id == TEAM
    assert token.expires_at is None
    assert token.secret_masked == created.secret[:10] + "…"

    stored = row(db, token.public_id)
    assert stored["created_at"] == now
    assert stored["version"] == 1
    # What is stored is a digest and a ciphertext, never the secret.
    assert created.secret not in json.dumps({k: str(v) for k, v in stored.items()})
    assert stored["secret_digest"] == crypto.digest(created.secret)
    assert db.box.decrypt(stored["secret_encrypted"]) == created.secret

    with db.sessions() as session:
        fetched = tokens.get_token(session, team_id=TEAM, public_id=token.public_id)
        assert fetched.label == "ci deploy"
        assert fetched.display_status(now) == DisplayStatus.ACTIVE


def test_create_with_expiry_stops_at_midnight_utc(db, settings, now):
    created = create(db, settings, now, expires_on=dt.date(2026, 12, 24))
    assert created.token.expires_at == dt.datetime(2026, 12, 24, tzinfo=dt.timezone.utc)
    assert created.token.expires_on == dt.date(2026, 12, 24)
    assert row(db, created.token.public_id)["expires_at"] == dt.datetime(
        2026, 12, 24, tzinfo=dt.timezone.utc
    )


def test_public_ids_and_secrets_are_unique(db, settings, now):
    made = [create(db, settings, now, label=f"t{i}") for i in range(20)]
    assert len({c.token.public_id for c in made}) == 20
    assert len({c.secret for c in made}) == 20


def test_get_unknown_token_is_not_found(db, settings, now):
    create(db, settings, now)
    with db.sessions() as session, pytest.raises(NotFoundError, match="not found"):
        tokens.get_token(session, team_id=TEAM, public_id="tok_doesnotexist")


# -- list ------------------------------------------------------------------------


def test_list_newest_first_with_ties_broken_consistently(db, settings, now):
    # Three pairs created at the same instant, then one later.
    labels = []
    for step in range(3):
        for twin in ("a", "b"):
            label = f"{step}{twin}"
            create(db, settings, now + step * dt.timedelta(minutes=1), label=label)
            labels.append(label)
    create(db, settings, now - DAY, label="oldest")

    first = [t.label for t in listing(db, now, per_page=100).items]
    assert first[-1] == "oldest"
    assert [label[0] for label in first[:-1]] == ["2", "2", "1", "1", "0", "0"]
    # Same instant: the later-created comes first, and the order never wobbles.
    assert first[:-1] == ["2b", "2a", "1b", "1a", "0b", "0a"]
    for _ in range(3):
        assert [t.label for t in listing(db, now, per_page=100).items] == first
    # Paging through with page size 1 gives the same order, no duplicates, no gaps.
    paged = [listing(db, now, per_page=1, page=p).items[0].label for p in range(1, 8)]
    assert paged == first


def test_list_pagination_total_and_clamping(db, settings, now):
    for i in range(23):
        create(db, settings, now + i * dt.timedelta(seconds=1), label=f"token {i:02d}")

    page1 = listing(db, now, per_page=10)
    assert (page1.total, page1.pages, page1.page, len(page1.items)) == (23, 3, 1, 10)
    assert page1.items[0].label == "token 22"
    page3 = listing(db, now, per_page=10, page=3)
    assert [t.label for t in page3.items] == ["token 02", "token 01", "token 00"]

    seen = [t.label for p in (1, 2, 3) for t in listing(db, now, per_page=10, page=p).items]
    assert sorted(seen) == sorted(f"token {i:02d}" for i in range(23))
    assert len(set(seen)) == 23

    beyond = listing(db, now, per_page=10, page=99)
    assert beyond.page == 3 and [t.label for t in beyond.items] == [t.label for t in page3.items]
    before = listing(db, now, per_page=10, page=0)
    assert before.page == 1 and before.items[0].label == "token 22"
    negative = listing(db, now, per_page=10, page=-5)
    assert negative.page == 1

    # The total counts the filtered set, not the table.
    filtered = listing(db, now, per_page=10, search="token 1")
    assert filtered.total == 10 and filtered.pages == 1


def test_list_of_empty_team_is_one_empty_page(db, settings, now):
    create(db, settings, now)
    page = listing(db, now, team="TEMPTY", page=4)
    assert (page.items, page.total, page.page, page.pages) == ([], 0, 1, 1)


def test_list_filters_by_status_derived_from_date(db, settings, now):
    active = create(db, settings, now, label="active forever")
    soon = create(db, settings, now, label="expires tomorrow", expires_on=now.date() + DAY)
    disabled = create(db, settings, now, label="disabled", expires_on=now.date() + DAY)
    act(db, settings, now, "disable", disabled.token.public_id, 1)

    def labels(at, status):
        return sorted(t.label for t in listing(db, at, status=status, per_page=50).items)

    assert labels(now, DisplayStatus.ACTIVE) == ["active forever", "expires tomorrow"]
    assert labels(now, DisplayStatus.EXPIRED) == []
    assert labels(now, DisplayStatus.DISABLED) == ["disabled"]

    # The day after: "expires tomorrow" is Expired without anyone touching it; a disabled
    # token that has also expired still shows as Disabled (set by a person).
    later = now + 2 * DAY
    assert labels(later, DisplayStatus.ACTIVE) == ["active forever"]
    assert labels(later, DisplayStatus.EXPIRED) == ["expires tomorrow"]
    assert labels(later, DisplayStatus.DISABLED) == ["disabled"]
    assert labels(later, "expired") == ["expires tomorrow"]  # plain strings work too
    assert listing(db, later, per_page=50).total == 3

    with db.sessions() as session:
        listed = listing_service.list_tokens(session, team_id=TEAM, now=later, policy=NO_POLICY)
        by_label = {t.label: t for t in listed.items}
    assert by_label["active forever"].display_status(later) == DisplayStatus.ACTIVE
    assert by_label["expires tomorrow"].display_status(later) == DisplayStatus.EXPIRED
    assert by_label["disabled"].display_status(later) == DisplayStatus.DISABLED
    assert active.token.public_id and soon.token.public_id


def test_list_filters_by_owner_and_combines_filters(db, settings, now):
    create(db, settings, now, actor=OWNER, label="mine deploy")
    create(db, settings, now, actor=OWNER, label="mine backup")
    create(db, settings, now, actor=OTHER, label="their deploy")

    assert sorted(t.label for t in listing(db, now, owner="UOWNER").items) == [
        "mine backup", "mine deploy",
    ]
    assert [t.label for t in listing(db, now, owner="UOTHER").items] == ["their deploy"]
    assert listing(db, now, owner="UNOBODY").total == 0
    both = listing(db, now, owner="UOWNER", search="deploy")
    assert [t.label for t in both.items] == ["mine deploy"] and both.total == 1


def test_list_filters_to_one_token_by_its_public_id_whatever_its_label(db, settings, now):
    wanted = create(db, settings, now, actor=OWNER, label="payments").token
    create(db, settings, now, actor=OWNER, label="payments v2")
    foreign = create(db, settings, now, actor=FOREIGN, label="payments").token

    def by_id(public_id, team=TEAM, **kwargs):
        filters = listing_service.TokenFilter(public_id=public_id, **kwargs)
        with db.sessions() as session:
            return listing_service.list_tokens(session, team_id=team, now=now, filters=filters,
                policy=NO_POLICY)

    found = by_id(wanted.public_id)
    assert [t.public_id for t in found.items] == [wanted.public_id] and found.total == 1
    act(db, settings, now, "edit", wanted.public_id, wanted.version, label="billing")
    assert [t.label for t in by_id(wanted.public_id).items] == ["billing"]  # renamed
    assert by_id(wanted.public_id, search="payments").total == 0  # combines with the rest
    assert by_id(foreign.public_id).total == 0  # another team's token is not there
    assert by_id("tok_nosuchtoken").total == 0


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("%", ["100% coverage"]),
        ("_", ["ci_bot"]),
        ("ci_bot", ["ci_bot"]),
        ("\\", ["back\\slash"]),
        ("back\\s", ["back\\slash"]),
        ("100%", ["100% coverage"]),
        ("%c", []),
        ("ci", ["ci_bot", "cixbot", "CI Runner"]),
        ("  RUNNER ", ["CI Runner"]),  # trimmed, case-insensitive
        ("no such thing", []),
        ("", None),  # empty search: no filter
        ("   ", None),
    ],
)
def test_list_search_matches_label_text_literally(db, settings, now, search, expected):
    all_labels = ["100% coverage", "100 percent", "ci_bot", "cixbot", "back\\slash",
                  "backslash", "CI Runner"]
    for label in all_labels:
        create(db, settings, now, label=label)
    found = sorted(t.label for t in listing(db, now, search=search, per_page=50).items)
    assert found == sorted(all_labels if expected is None else expected)
    assert listing(db, now, search=search, per_page=50).total == len(found)


def test_list_search_finds_non_ascii_labels(db, settings, now):
    create(db, settings, now, label="Ünïcode Ärger")
    create(db, settings, now, label="İstanbul office")
    create(db, settings, now, label="plain")
    assert [t.label for t in listing(db, now, search="ärger").items] == ["Ünïcode Ärger"]
    assert [t.label for t in listing(db, now, search="İstanbul").items] == ["İstanbul office"]
    assert [t.label for t in listing(db, now, search="office").items] == ["İstanbul office"]


# -- edit ------------------------------------------------------------------------


def test_edit_changes_fields_bumps_version_and_audits_before_after(db, settings, now):
    created = create(db, settings, now, label="old name", scope="read",
                     expires_on=dt.date(2027, 1, 1))
    pid = created.token.public_id
    later = now + dt.timedelta(hours=1)

    result = act(db, settings, later, "edit", pid, 1, label=" new name ", scope="write",
                 expires_on=dt.date(2027, 6, 30))
    assert result.changes == {
        "label": ("old name", "new name"),
        "scope": ("read", "write"),
        "expires_on": ("2027-01-01", "2027-06-30"),
    }
    stored = row(db, pid)
    assert stored["label"] == "new name" and stored["scope"] == "write"
    assert stored["expires_at"] == dt.datetime(2027, 6, 30, tzinfo=dt.timezone.utc)
    assert stored["version"] == 2 and stored["updated_at"] == later
    # The secret is untouched by an edit.
    assert verify(db, created.secret, later).public_id == pid

    latest = events(db, public_id=pid)[0]
    assert latest.action == AuditAction.EDIT
    assert latest.actor == "UOWNER" and latest.at == later and latest.team_id == TEAM
    assert latest.details == {
        "before": {"label": "old name", "scope": "read", "expires_on": "2027-01-01"},
        "after": {"label": "new name", "scope": "write", "expires_on": "2027-06-30"},
    }


def test_edit_records_only_changed_fields(db, settings, now):
    created = create(db, settings, now, label="same", scope="read")
    pid = created.token.public_id
    result = act(db, settings, now, "edit", pid, 1, label="same", scope="write")
    assert result.changes == {"scope": ("read", "write")}
    assert events(db, public_id=pid)[0].details == {
        "before": {"scope": "read"}, "after": {"scope": "write"},
    }


def test_edit_clearing_expiry_removes_it(db, settings, now):
    created = create(db, settings, now, expires_on=now.date() + DAY)
    pid = created.token.public_id
    result = act(db, settings, now, "edit", pid, 1, label=tokens.UNCHANGED, expires_on=None)
    assert result.changes == {"expires_on": ((now.date() + DAY).isoformat(), None)}
    assert row(db, pid)["expires_at"] is None
    # Long after the old date it still works.
    assert verify(db, created.secret, now + 400 * DAY).public_id == pid
    assert listing(db, now + 400 * DAY, status=DisplayStatus.ACTIVE).total == 1



def test_edit_without_changes_changes_nothing(db, settings, now):
    created = create(db, settings, now, label="keep", scope="read")
    pid = created.token.public_id
    result = act(db, settings, now + DAY, "edit", pid, 1, label="keep", scope="read",
                 expires_on=None)
    assert result.changes == {}
    assert row(db, pid)["version"] == 1
    assert [e.action for e in events(db, public_id=pid)] == [AuditAction.CREATE]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"label": "   "}, "label", "label"),
        ({"label": "x" * 101}, "label", "100"),
        ({"label": "two\nlines"}, "label", "line breaks"),
        ({"scope": "superuser"}, "scope", "read, write, admin"),
        ({"scope": ""}, "scope", "scope"),
        ({"expires_on": dt.date(2026, 11, 27)}, "expires", "future"),
        ({"expires_on": dt.date(2020, 1, 1)}, "expires", "future"),
    ],
)
def test_edit_with_invalid_input_is_refused_and_changes_nothing(
    db, settings, now, changes, field, message
):
    created = create(db, settings, now, label="valid", scope="read")
    pid = created.token.public_id
    before = row(db, pid)
    with pytest.raises(ValidationError, match=message) as err:
        act(db, settings, now, "edit", pid, 1, **{"label": "other", **changes})
    assert err.value.field == field
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == 1


def test_an_edit_stores_and_audits_exactly_what_changed(db, settings, now):
    created = create(db, settings, now, label="old name", scope="read",
                     expires_on=dt.date(2027, 1, 1), alert_channel="C0ALERTS")
    pid = created.token.public_id
    result = act(db, settings, now + DAY, "edit", pid, 1, label="new name",
                 scope="read", expires_on=dt.date(2027, 6, 30), alert_channel="C0ALERTS")
    assert result.changes == {"label": ("old name", "new name"),
                              "expires_on": ("2027-01-01", "2027-06-30")}
    assert (result.token.label, result.token.version) == ("new name", 2)
    stored = row(db, pid)
    assert (stored["label"], stored["scope"], stored["alert_channel"]) == (
        "new name", "read", "C0ALERTS")
    assert stored["expires_at"] == dt.datetime(2027, 6, 30, tzinfo=dt.timezone.utc)
    assert events(db, public_id=pid)[0].details == {
        "before": {"label": "old name", "expires_on": "2027-01-01"},
        "after": {"label": "new name", "expires_on": "2027-06-30"},
    }


@pytest.mark.parametrize(
    ("setup", "actor", "error"),
    [
        ("edited meanwhile", OWNER, StaleTokenError),
        ("nothing", OTHER, PermissionDeniedError),
        ("nothing", FOREIGN, NotFoundError),
        ("disabled meanwhile", OWNER, InvalidStateError),
    ],
)
def test_an_edit_applies_every_rule(db, settings, now, setup, actor, error):
    created = create(db, settings, now, label="guarded")
    pid = created.token.public_id
    if setup == "edited meanwhile":
        act(db, settings, now, "edit", pid, 1, label="changed by someone else")
    elif setup == "disabled meanwhile":
        with db.sessions.begin() as session:  # as if the version had not moved on
            session.execute(Token.__table__.update()
                            .where(Token.__table__.c.public_id == pid)
                            .values(status=TokenStatus.DISABLED))
    before, logged = row(db, pid), len(events(db, public_id=pid))
    with pytest.raises(error):
        act(db, settings, now, "edit", pid, 1, actor=actor, label="sneaky")
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == logged


def test_disabled_token_cannot_be_edited(db, settings, now):
    pid = create(db, settings, now).token.public_id
    act(db, settings, now, "disable", pid, 1)
    before = row(db, pid)
    with pytest.raises(InvalidStateError, match="Enable it first"):
        act(db, settings, now, "edit", pid, 2, label="sneaky")
    assert row(db, pid) == before
    assert [e.action for e in events(db, public_id=pid)] == [
        AuditAction.DISABLE, AuditAction.CREATE,
    ]


# -- disable, enable ----------------------------------------------------------------


def test_disable_and_enable_switch_verification_and_are_audited(db, settings, now):
    created = create(db, settings, now)
    pid = created.token.public_id
    t1, t2 = now + dt.timedelta(minutes=1), now + dt.timedelta(minutes=2)

    disabled = act(db, settings, t1, "disable", pid, 1)
    assert disabled.status == TokenStatus.DISABLED and disabled.version == 2
    assert verify(db, created.secret, t1) is None
    assert listing(db, t1, status=DisplayStatus.DISABLED).total == 1

    enabled = act(db, settings, t2, "enable", pid, 2)
    assert enabled.status == TokenStatus.ACTIVE and enabled.version == 3
    assert verify(db, created.secret, t2).public_id == pid

    log = events(db, public_id=pid)
    assert [(e.action, e.at) for e in log] == [
        (AuditAction.ENABLE, t2), (AuditAction.DISABLE, t1), (AuditAction.CREATE, now),
    ]
    assert all(e.details.get("label") == "ci deploy" for e in log)


def test_disable_and_enable_refuse_the_no_op(db, settings, now):
    pid = create(db, settings, now).token.public_id
    with pytest.raises(InvalidStateError, match="already active"):
        act(db, settings, now, "enable", pid, 1)
    assert row(db, pid)["version"] == 1

    act(db, settings, now, "disable", pid, 1)
    before = row(db, pid)
    with pytest.raises(InvalidStateError, match="already disabled"):
        act(db, settings, now, "disable", pid, 2)
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == 2


def test_disable_updates_a_token_already_loaded_in_the_same_transaction(db, settings, now):
    """The change is one UPDATE ... RETURNING: a token read earlier in the transaction (the
    CLI shows it, say) must not keep its old status, version or time."""
    pid = create(db, settings, now).token.public_id
    later = now + DAY
    with db.sessions.begin() as session:
        loaded = tokens.get_token(session, team_id=TEAM, public_id=pid)
        returned = tokens.disable_token(session, actor=OWNER, public_id=pid, expected_version=1,
                                        now=later)
        assert returned is loaded
        assert (loaded.status, loaded.version, loaded.updated_at) == (
            TokenStatus.DISABLED, 2, later,
        )
        page = listing_service.list_tokens(session, team_id=TEAM, now=later, policy=NO_POLICY)
        assert [(t.public_id, t.status) for t in page.items] == [(pid, TokenStatus.DISABLED)]


def test_status_changes_refuse_other_owners_other_teams_and_stale_versions(db, settings, now):
    pid = create(db, settings, now).token.public_id
    with pytest.raises(PermissionDeniedError):
        act(db, settings, now, "disable", pid, 1, actor=OTHER)
    with pytest.raises(NotFoundError):
        act(db, settings, now, "disable", pid, 1, actor=FOREIGN)
    with pytest.raises(StaleTokenError):
        act(db, settings, now, "disable", pid, 7)
    assert row(db, pid)["status"] == TokenStatus.ACTIVE and row(db, pid)["version"] == 1
    assert act(db, settings, now, "disable", pid, 1, actor=ADMIN).status == TokenStatus.DISABLED
    assert len(events(db, public_id=pid)) == 2


# -- delete ------------------------------------------------------------------------


def test_delete_removes_token_for_good_and_keeps_history(db, settings, now):
    created = create(db, settings, now, label="doomed", scope="write")
    keep = create(db, settings, now, label="survivor")
    pid = created.token.public_id
    later = now + DAY

    assert act(db, settings, later, "delete", pid, 1) == "doomed"
    assert row(db, pid) is None
    with db.sessions() as session, pytest.raises(NotFoundError):
        tokens.get_token(session, team_id=TEAM, public_id=pid)
    assert verify(db, created.secret, later) is None
    assert [t.label for t in listing(db, later).items] == ["survivor"]
    assert verify(db, keep.secret, later) is not None

    history = events(db, public_id=pid)
    assert [e.action for e in history] == [AuditAction.DELETE, AuditAction.CREATE]
    assert history[0].details["label"] == "doomed" and history[0].at == later
    # Acting on it again: not found, not a crash.
    with pytest.raises(NotFoundError):
        act(db, settings, later, "delete", pid, 1)


def test_disabled_token_cannot_be_deleted(db, settings, now):
    created = create(db, settings, now)
    pid = created.token.public_id
    act(db, settings, now, "disable", pid, 1)
    before = row(db, pid)
    with pytest.raises(InvalidStateError, match="Enable it first"):
        act(db, settings, now, "delete", pid, 2)
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == 2


# -- rotate, reveal, verify -------------------------------------------------------------


def test_rotate_replaces_the_secret(db, settings, now):
    created = create(db, settings, now)
    pid = created.token.public_id
    later = now + DAY

    rotated = act(db, settings, later, "rotate", pid, 1)
    assert rotated.secret != created.secret
    assert crypto.has_valid_checksum(rotated.secret)
    assert rotated.token.public_id == pid and rotated.token.version == 2
    assert rotated.token.secret_masked == rotated.secret[:10] + "…"
    assert "secret=<hidden>" in repr(rotated)

    assert verify(db, created.secret, later) is None
    assert verify(db, rotated.secret, later).public_id == pid
    token, secret = act(db, settings, later, "reveal", pid, 2)
    assert secret == rotated.secret

    entry = events(db, public_id=pid)[1]  # newest is the reveal
    assert entry.action == AuditAction.ROTATE and entry.at == later
    assert entry.details == {
        "before": {"masked": created.token.secret_masked},
        "after": {"masked": rotated.token.secret_masked},
    }


def test_reveal_returns_secret_to_owner_and_admin_and_is_audited(db, settings, now):
    created = create(db, settings, now)
    pid = created.token.public_id
    cli_admin = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True, source=AuditSource.CLI)

    assert act(db, settings, now, "reveal", pid, 1, actor=OWNER)[1] == created.secret
    assert act(db, settings, now + DAY, "reveal", pid, 1, actor=cli_admin)[1] == created.secret

    reveals = [e for e in events(db, public_id=pid) if e.action == AuditAction.REVEAL]
    assert [(e.actor, e.source, e.at) for e in reveals] == [
        ("UADMIN", AuditSource.CLI, now + DAY), ("UOWNER", AuditSource.SLACK, now),
    ]
    # A reveal changes nothing about the token.
    assert row(db, pid)["version"] == 1


def test_verify_returns_only_active_unexpired_tokens(db, settings, now):
    created = create(db, settings, now, expires_on=dt.date(2026, 11, 29))
    pid = created.token.public_id
    found = verify(db, created.secret, now)
    assert found.public_id == pid and found.team_id == TEAM and found.scope == "read"

    last_second = dt.datetime(2026, 11, 28, 23, 59, 59, tzinfo=dt.timezone.utc)
    midnight = dt.datetime(2026, 11, 29, 0, 0, tzinfo=dt.timezone.utc)
    assert verify(db, created.secret, last_second).public_id == pid
    assert verify(db, created.secret, midnight) is None
    # The same instants expressed in another zone behave the same.
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert verify(db, created.secret, last_second.astimezone(tokyo)) is not None
    assert verify(db, created.secret, midnight.astimezone(tokyo)) is None

    assert verify(db, "", now) is None
    assert verify(db, "not a token", now) is None
    wrong_checksum = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    assert verify(db, wrong_checksum, now) is None
    assert verify(db, crypto.generate_secret(), now) is None  # well-formed, unknown
    assert verify(db, created.secret.upper(), now) is None


def test_verify_is_global_and_reports_the_tokens_team(db, settings, now):
    theirs = create(db, settings, now, actor=FOREIGN, label="other workspace")
    found = verify(db, theirs.secret, now)
    assert found is not None and found.team_id == "T2"
    assert found.public_id == theirs.token.public_id


# -- permissions -------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["edit", "disable", "enable", "delete", "rotate", "reveal"])
def test_only_owner_or_admin_may_change_or_reveal(db, settings, now, action):
    pid = create(db, settings, now).token.public_id
    version = 1
    if action == "enable":
        act(db, settings, now, "disable", pid, 1)
        version = 2
    before = row(db, pid)
    history = len(events(db, public_id=pid))

    with pytest.raises(PermissionDeniedError) as err:
        act(db, settings, now, action, pid, version, actor=OTHER)
    assert "owner" in str(err.value) and "admin" in str(err.value)
    assert "UOWNER" in str(err.value)
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == history

    act(db, settings, now, action, pid, version, actor=ADMIN)
    assert events(db, public_id=pid)[0].actor == "UADMIN"


def test_only_an_admin_may_create_with_admin_scope(db, settings, now):
    with pytest.raises(PermissionDeniedError, match="admin"):
        create(db, settings, now, actor=OWNER, scope="admin")
    assert listing(db, now).total == 0
    assert events(db) == []

    created = create(db, settings, now, actor=ADMIN, scope="admin")
    assert created.token.scope == "admin"


def test_only_an_admin_may_grant_admin_scope_by_edit(db, settings, now):
    pid = create(db, settings, now, actor=OWNER, scope="write").token.public_id
    before = row(db, pid)
    with pytest.raises(PermissionDeniedError, match="admin scope"):
        act(db, settings, now, "edit", pid, 1, label="also renamed", scope="admin")
    assert row(db, pid) == before

    result = act(db, settings, now, "edit", pid, 1, actor=ADMIN, scope="admin")
    assert result.changes["scope"] == ("write", "admin")


def test_owner_keeps_managing_a_token_an_admin_granted_admin_scope(db, settings, now):
    pid = create(db, settings, now, actor=OWNER, scope="write").token.public_id
    act(db, settings, now, "edit", pid, 1, actor=ADMIN, label=tokens.UNCHANGED, scope="admin")
    # The owner may still rename it (scope untouched) ...
    result = act(db, settings, now, "edit", pid, 2, label="renamed by owner", scope="admin")
    assert result.changes == {"label": ("ci deploy", "renamed by owner")}
    # ... and may lower the scope, but not raise it back.
    act(db, settings, now, "edit", pid, 3, label=tokens.UNCHANGED, scope="read")
    with pytest.raises(PermissionDeniedError):
        act(db, settings, now, "edit", pid, 4, label=tokens.UNCHANGED, scope="admin")


# -- optimistic concurrency ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["edit", "disable", "enable", "delete", "rotate"])
@pytest.mark.parametrize("seen", ["older", "newer"])
def test_stale_version_is_refused_and_changes_nothing(db, settings, now, action, seen):
    created = create(db, settings, now)
    pid = created.token.public_id
    # Someone else changes the token after our view was drawn (version 1 -> 2, or 3 for
    # enable, which needs a disabled token).
    act(db, settings, now, "edit", pid, 1, actor=ADMIN, label="edited meanwhile")
    current = 2
    if action == "enable":
        act(db, settings, now, "disable", pid, 2, actor=ADMIN)
        current = 3
    stale = current - 1 if seen == "older" else current + 1
    before = row(db, pid)
    history = len(events(db, public_id=pid))

    with pytest.raises(StaleTokenError) as err:
        act(db, settings, now + DAY, action, pid, stale)
    assert "changed since you looked" in str(err.value)
    assert row(db, pid) == before
    assert len(events(db, public_id=pid)) == history
    if action != "enable":
        assert verify(db, created.secret, now + DAY) is not None

    # With the version actually seen, the same action goes through.
    act(db, settings, now + DAY, action, pid, current)


def test_version_counts_every_change(db, settings, now):
    pid = create(db, settings, now).token.public_id
    steps = [("edit", {"label": "a"}), ("disable", {}), ("enable", {}),
             ("rotate", {}), ("edit", {"label": "b"})]
    for version, (action, kwargs) in enumerate(steps, start=1):
        act(db, settings, now, action, pid, version, **kwargs)
        assert row(db, pid)["version"] == version + 1


# -- workspace isolation ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["edit", "disable", "enable", "delete", "rotate", "reveal"])
def test_another_teams_token_is_not_found_for_every_action(db, settings, now, action):
    created = create(db, settings, now)
    pid = created.token.public_id
    version = 1
    if action == "enable":
        act(db, settings, now, "disable", pid, 1)
        version = 2
    before = row(db, pid)

    with pytest.raises(NotFoundError) as err:
        act(db, settings, now, action, pid, version, actor=FOREIGN)
    # Exactly what an unknown id says: nothing tells the other team the id exists.
    assert str(err.value) == str(NotFoundError())
    assert row(db, pid) == before
    assert len(events(db, team=TEAM, public_id=pid)) == len(events(db, public_id=pid))
    assert events(db, team="T2") == []


def test_another_teams_tokens_are_invisible(db, settings, now):
    mine = create(db, settings, now, label="shared name")
    create(db, settings, now, actor=FOREIGN, label="shared name")
    with db.sessions() as session, pytest.raises(NotFoundError):
        tokens.get_token(session, team_id="T2", public_id=mine.token.public_id)

    for team in (TEAM, "T2"):
        page = listing(db, now, team=team, search="shared")
        assert page.total == 1 and page.items[0].team_id == team
        assert listing(db, now, team=team, owner="UOWNER").total == 1
    assert {e.team_id for e in events(db, team="T2")} == {"T2"}
    assert len(events(db, team=TEAM)) == 1


# -- audit log --------------------------------------------------------------------------------


def test_audit_records_every_action_with_who_what_when_and_never_the_secret(db, settings, now):
    cli = tokens.Actor(team_id=TEAM, user_id="UOWNER", source=AuditSource.CLI)
    api = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True, source=AuditSource.API)
    times = [now + i * dt.timedelta(minutes=5) for i in range(7)]
    created = create(db, settings, times[0], actor=cli, label="audited",
                     expires_on=dt.date(2027, 3, 1))
    pid = created.token.public_id
    secrets = [created.secret]

    act(db, settings, times[1], "edit", pid, 1, actor=cli, label="audited too")
    act(db, settings, times[2], "disable", pid, 2, actor=api)
    act(db, settings, times[3], "enable", pid, 3)
    secrets.append(act(db, settings, times[4], "rotate", pid, 4, actor=api).secret)
    act(db, settings, times[5], "reveal", pid, 5, actor=cli)
    act(db, settings, times[6], "delete", pid, 5, actor=api)

    log = events(db, public_id=pid)
    assert [(e.action, e.actor, e.source, e.at) for e in log] == [
        (AuditAction.DELETE, "UADMIN", AuditSource.API, times[6]),
        (AuditAction.REVEAL, "UOWNER", AuditSource.CLI, times[5]),
        (AuditAction.ROTATE, "UADMIN", AuditSource.API, times[4]),
        (AuditAction.ENABLE, "UOWNER", AuditSource.SLACK, times[3]),
        (AuditAction.DISABLE, "UADMIN", AuditSource.API, times[2]),
        (AuditAction.EDIT, "UOWNER", AuditSource.CLI, times[1]),
        (AuditAction.CREATE, "UOWNER", AuditSource.CLI, times[0]),
    ]
    assert all(e.team_id == TEAM and e.token_public_id == pid for e in log)
    assert log[-1].details == {"label": "audited", "scope": "read", "expires_on": "2027-03-01"}
    assert log[0].details["label"] == "audited too"

    dumped = json.dumps([e.details for e in log])
    for secret in secrets:
        assert secret not in dumped and secret[10:] not in dumped


def test_audit_log_of_a_team_lists_all_its_tokens_newest_first(db, settings, now):
    a = create(db, settings, now, label="a").token.public_id
    b = create(db, settings, now + DAY, label="b").token.public_id
    act(db, settings, now + 2 * DAY, "disable", a, 1)
    log = events(db)
    assert [(e.token_public_id, e.action) for e in log] == [
        (a, AuditAction.DISABLE), (b, AuditAction.CREATE), (a, AuditAction.CREATE),
    ]
    assert [e.token_public_id for e in events(db, public_id=b)] == [b]


# -- large lists: capped counting, next-page flag, search strategies ----------------------


def test_list_has_next_and_previous(db, settings, now):
    for i in range(5):
        create(db, settings, now + i * dt.timedelta(seconds=1), label=f"n{i}")
    first = listing(db, now, per_page=2)
    assert first.has_next and not first.has_previous and first.total_text == "5"
    middle = listing(db, now, per_page=2, page=2)
    assert middle.has_next and middle.has_previous
    last = listing(db, now, per_page=2, page=3)
    assert not last.has_next and last.has_previous and [t.label for t in last.items] == ["n0"]
    exact = listing(db, now, per_page=5)
    assert not exact.has_next and len(exact.items) == 5


def test_list_count_stops_at_the_cap_but_pages_stay_reachable(db, settings, now, monkeypatch):
    monkeypatch.setattr(listing_service, "COUNT_CAP", 5)
    for i in range(8):
        create(db, settings, now + i * dt.timedelta(seconds=1), label=f"capped {i}")

    page = listing(db, now, per_page=3)
    assert (page.total, page.total_exact, page.total_text) == (5, False, "5+")
    assert page.has_next
    # Past the counted pages the list goes on (no clamping to a total we do not know).
    third = listing(db, now, per_page=3, page=3)
    assert third.page == 3 and [t.label for t in third.items] == ["capped 1", "capped 0"]
    assert not third.has_next
    searched = listing(db, now, per_page=3, search="capped")
    assert (searched.total, searched.total_exact) == (5, False)
    # Under the cap the count is exact again.
    few = listing(db, now, per_page=3, search="capped 7")
    assert (few.total, few.total_exact, few.total_text) == (1, True, "1")


@pytest.mark.parametrize("selective", [True, False])
def test_search_gives_the_same_answer_with_and_without_the_index(
    db, settings, now, monkeypatch, selective
):
    # SQLite consults a trigram index only when the text is selective; both paths must
    # find exactly the labels containing the text.
    if not selective:
        monkeypatch.setattr(listing_service, "FTS_SELECTIVE", 0)
    labels = ["deploy prod", "Deploy staging", "redeploy", "dep", "de%ploy", "backup"]
    for label in labels:
        create(db, settings, now, label=label)
    assert sorted(t.label for t in listing(db, now, search="deploy").items) == [
        "Deploy staging", "deploy prod", "redeploy",
    ]
    assert [t.label for t in listing(db, now, search="e%p").items] == ["de%ploy"]
    assert sorted(t.label for t in listing(db, now, search="dep").items) == [
        "Deploy staging", "dep", "deploy prod", "redeploy",
    ]
    assert listing(db, now, search='"quoted"').total == 0


# -- opening an edit form -----------------------------------------------------------------


def test_load_for_edit_applies_the_edit_rules_before_a_form_opens(db, settings, now):
    pid = create(db, settings, now).token.public_id
    with db.sessions() as session:
        assert tokens.load_for_edit(session, actor=OWNER, public_id=pid,
                                    expected_version=1).label == "ci deploy"
        assert tokens.load_for_edit(session, actor=ADMIN, public_id=pid, expected_version=1)
        with pytest.raises(PermissionDeniedError):
            tokens.load_for_edit(session, actor=OTHER, public_id=pid, expected_version=1)
        with pytest.raises(NotFoundError):
            tokens.load_for_edit(session, actor=FOREIGN, public_id=pid, expected_version=1)
        with pytest.raises(StaleTokenError):
            tokens.load_for_edit(session, actor=OWNER, public_id=pid, expected_version=2)
    act(db, settings, now, "disable", pid, 1)
    with db.sessions() as session, pytest.raises(InvalidStateError, match="Enable it first"):
        tokens.load_for_edit(session, actor=OWNER, public_id=pid, expected_version=2)


def test_admin_scope_refusal_names_the_scope_field(db, settings, now):
    with pytest.raises(PermissionDeniedError) as err:
        create(db, settings, now, actor=OWNER, scope="admin")
    assert err.value.field == "scope"


def test_create_on_behalf_of_an_owner_audits_the_actor(db, settings, now):
    cli = tokens.Actor(team_id=TEAM, user_id="UOPERATOR", is_admin=True, source=AuditSource.CLI)
    created = create(db, settings, now, actor=cli, owner="UOWNER")
    # UOWNER owns it (the owner filter finds it); the creator stays the operator.
    assert (created.token.owner, created.token.created_by) == ("UOWNER", "UOPERATOR")
    assert listing(db, now, owner="UOWNER").total == 1
    assert listing(db, now, owner="UOPERATOR").total == 0
    entry = events(db, public_id=created.token.public_id)[0]
    assert (entry.actor, entry.source) == ("UOPERATOR", AuditSource.CLI)
    # The owner may now manage it like any token of theirs.
    act(db, settings, now, "disable", created.token.public_id, 1, actor=OWNER)


def test_status_filter_compares_instants_not_wall_clocks(db, settings, now):
    create(db, settings, now, label="ends on the 29th", expires_on=dt.date(2026, 11, 29))
    tokyo = dt.timezone(dt.timedelta(hours=9))
    # 08:59:59 on the 29th in Tokyo is 23:59:59 UTC on the 28th: still active.
    before = dt.datetime(2026, 11, 29, 8, 59, 59, tzinfo=tokyo)
    at = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=tokyo)
    assert listing(db, before, status=DisplayStatus.ACTIVE).total == 1
    assert listing(db, before, status=DisplayStatus.EXPIRED).total == 0
    assert listing(db, at, status=DisplayStatus.ACTIVE).total == 0
    assert listing(db, at, status=DisplayStatus.EXPIRED).total == 1


def test_search_follows_renames_and_deletes(db, settings, now):
    pid = create(db, settings, now, label="alpha service").token.public_id
    other = create(db, settings, now, label="alphabet soup").token.public_id
    act(db, settings, now, "edit", pid, 1, label="omega service")
    assert [t.public_id for t in listing(db, now, search="omega").items] == [pid]
    assert [t.public_id for t in listing(db, now, search="alpha").items] == [other]
    assert listing(db, now, search="service").total == 1
    act(db, settings, now, "delete", other, 1)
    assert listing(db, now, search="alpha").total == 0
    # A new token may reuse the old words.
    again = create(db, settings, now, label="alpha again").token.public_id
    assert [t.public_id for t in listing(db, now, search="alpha").items] == [again]


def test_alert_channel_override_is_set_changed_cleared_and_audited(db, settings, now):
    created = create(db, settings, now, alert_channel="C111")
    pid = created.token.public_id
    assert row(db, pid)["alert_channel"] == "C111"
    result = act(db, settings, now, "edit", pid, 1, label=tokens.UNCHANGED, alert_channel="C222")
    assert result.changes == {"alert_channel": ("C111", "C222")}
    act(db, settings, now, "edit", pid, 2, label=tokens.UNCHANGED, alert_channel=None)
    assert row(db, pid)["alert_channel"] is None and row(db, pid)["version"] == 3
    assert events(db, public_id=pid)[0].details == {
        "before": {"alert_channel": "C222"}, "after": {"alert_channel": None},
    }


def test_only_an_admin_creates_a_token_for_someone_else(db, settings, now):
    member = tokens.Actor(team_id="T1", user_id="U1")
    with db.sessions.begin() as session:
        with pytest.raises(PermissionDeniedError, match="admin"):
            tokens.create_token(session, box=db.box, actor=member, label="x", scope="read",
                                scopes=settings.tokenbot_scopes, now=now, owner="U2",
                                policy=NO_POLICY)
    with db.sessions.begin() as session:
        assert listing_service.list_tokens(session, team_id="T1", now=now,
                                           policy=NO_POLICY).total == 0
