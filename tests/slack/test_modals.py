"""Invalid input in the create and edit modals: shown inline on the field
(``response_action: errors``), nothing written, the modal stays open."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.slack.ids import ActionId
from bot.models import AuditEvent, Token
from tests.slack.conftest import (
    ADMIN,
    OWNER,
    audit_actions,
    form_values,
    load,
    row_buttons,
    seed,
    utcnow,
)


def _today() -> str:
    return utcnow().date().isoformat()


def _days(n: int) -> str:
    return (utcnow() + dt.timedelta(days=n)).date().isoformat()


INVALID = [
    pytest.param(dict(label=""), "label", "Give the token a label", id="empty label"),
    pytest.param(dict(label=None), "label", "Give the token a label", id="missing label"),
    pytest.param(dict(label="   "), "label", "Give the token a label", id="blank label"),
    pytest.param(dict(label="x" * 101), "label", "101 characters", id="101 characters"),
    pytest.param(dict(label="two\nlines"), "label", "line breaks", id="line break"),
    pytest.param(dict(expires="2020-01-01"), "expires", "must be in the future", id="past date"),
    pytest.param(dict(expires="today"), "expires", "must be in the future", id="today"),
    pytest.param(dict(expires="31/12/2030"), "expires", "Pick a date", id="not a date"),
    pytest.param(dict(scope="superuser"), "scope", "Unknown scope", id="unknown scope option"),
    pytest.param(dict(scope=None), "scope", "Choose a scope", id="no scope"),
    pytest.param(dict(scope="admin"), "scope", "Only a workspace admin", id="admin by non-admin"),
    pytest.param(dict(channel="C1>|<!channel"), "alert_channel", "Choose a channel",
                 id="forged channel"),
]


def _values(overrides: dict) -> dict:
    values = dict(label="ci", scope="read", expires=None)
    values.update(overrides)
    if values["expires"] == "today":
        values["expires"] = _today()
    return form_values(**values)


def _counts(db) -> tuple[int, int]:
    with db.sessions.begin() as session:
        return (session.scalar(select(func.count()).select_from(Token)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


@pytest.mark.parametrize(("overrides", "block", "message"), INVALID)
def test_edit_with_invalid_input_answers_on_the_field(bot, db, standin, table, overrides,
                                                      block, message):
    created = seed(db, label="original", scope="read", expires_on=utcnow().date()
                   + dt.timedelta(days=20))
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    before = load(db, public_id)
    standin.clear()
    response = bot.submit(view, _values(overrides))
    assert response.status == 200
    answer = bot.acks[-1]
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block]
    assert message in answer["errors"][block]
    after = load(db, public_id)
    assert (after.label, after.scope, after.expires_at, after.version, after.alert_channel) == (
        before.label, before.scope, before.expires_at, before.version, before.alert_channel)
    assert audit_actions(db, public_id) == ["create"]
    assert standin.calls == []  # nothing redrawn, no message: the modal shows the error


@pytest.mark.parametrize(
    ("overrides", "block", "message"),
    [p for p in INVALID if p.id in ("empty label", "101 characters", "today", "admin by non-admin",
                                    "unknown scope option")],
)
def test_create_with_invalid_input_writes_nothing(bot, db, standin, overrides, block, message):
    bot.command("create")
    view = standin.wait_for("views.open")[-1].body["view"]
    before = _counts(db)
    response = bot.submit(view, _values(overrides))
    assert response.status == 200
    assert bot.acks[-1] == {"response_action": "errors",
                            "errors": {block: bot.acks[-1]["errors"][block]}}
    assert message in bot.acks[-1]["errors"][block]
    assert _counts(db) == before
    assert standin.calls_to("response_url") == []


def test_an_admin_may_grant_the_admin_scope(bot, db, standin, table):
    created = seed(db, label="ops")
    bot.click(row_buttons(table(user=ADMIN), created.token.public_id)[ActionId.EDIT], user=ADMIN)
    view = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(view, form_values(label="ops", scope="admin"), user=ADMIN)
    assert load(db, created.token.public_id).scope == "admin"


def test_a_non_admin_owner_may_keep_an_admin_scope_while_renaming(bot, db, standin, table):
    created = seed(db, label="ops", scope="admin")
    bot.click(row_buttons(table(), created.token.public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(view, form_values(label="ops renamed", scope="admin"))
    token = load(db, created.token.public_id)
    assert (token.label, token.scope, token.owner) == ("ops renamed", "admin", OWNER)


def test_labels_of_exactly_100_characters_and_emoji_are_accepted(bot, db, standin):
    for label in ("L" * 100, "🔑 déploiement ✨"):
        bot.command("create")
        view = standin.wait_for("views.open")[-1].body["view"]
        standin.clear()
        response = bot.submit(view, form_values(label=label, scope="read", expires=_days(1)))
        assert not response.body
    with db.sessions.begin() as session:
        labels = set(session.scalars(select(Token.label)))
    assert labels == {"L" * 100, "🔑 déploiement ✨"}


@pytest.mark.parametrize("metadata_extra", [{}, {"s": ["ops", 7, "not a date", {}]}])
def test_an_edit_submission_saves_the_change_whatever_else_its_metadata_carries(
    bot, db, standin, table, metadata_extra
):
    """The edit modal's submission reads the token it names and applies the form; keys it
    does not know in ``private_metadata`` (an older drawing's) change nothing."""
    import json

    created = seed(db, label="ops", scope="read")
    bot.click(row_buttons(table(), created.token.public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    metadata = {**json.loads(view["private_metadata"]), **metadata_extra}
    view = {**view, "private_metadata": json.dumps(metadata)}
    answer = bot.submit(view, form_values(label="ops renamed", scope="write"))
    assert answer.status == 200 and "errors" not in (answer.body or "")
    token = load(db, created.token.public_id)
    assert (token.label, token.scope, token.version) == ("ops renamed", "write", 2)
    assert audit_actions(db, created.token.public_id)[-1] == "edit"
