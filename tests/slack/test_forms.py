"""Forms keep what was typed: picking a new date while ticking "Remove the expiry date" is
refused on the field; other refusals answer on the form with the typed values (the stale
edit: tests/slack/test_authorization.py)."""

from __future__ import annotations

import datetime as dt

from bot.slack.ids import ActionId
from tests.slack.conftest import (
    audit_actions,
    form_values,
    load,
    row_buttons,
    seed,
    utcnow,
)


def _open_edit(bot, standin, table, public_id):
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    return standin.wait_for("views.open")[-1].body["view"]


def test_a_new_date_and_remove_the_expiry_is_refused_on_the_field(bot, db, standin, table):
    today = utcnow().date()
    created = seed(db, label="dated", expires_on=today + dt.timedelta(days=10))
    view = _open_edit(bot, standin, table, created.token.public_id)
    new = (today + dt.timedelta(days=20)).isoformat()
    response = bot.submit(view, form_values(label="renamed", expires=new, clear_expiry=True))
    assert response.status == 200
    answer = bot.acks[-1]
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"expires"}
    assert "Remove the expiry date" in answer["errors"]["expires"]
    token = load(db, created.token.public_id)
    assert (token.label, token.expires_on) == ("dated", today + dt.timedelta(days=10))
    assert audit_actions(db, created.token.public_id) == ["create"]


def test_ticking_remove_with_the_date_as_drawn_clears_it(bot, db, standin, table):
    """The picker opens with the current date; ticking the box alone is how to clear it."""
    today = utcnow().date()
    created = seed(db, label="dated", expires_on=today + dt.timedelta(days=10))
    view = _open_edit(bot, standin, table, created.token.public_id)
    drawn = next(b for b in view["blocks"] if b.get("block_id") == "expires")
    bot.submit(view, form_values(label="dated", expires=drawn["element"]["initial_date"],
                                 clear_expiry=True))
    assert bot.acks[-1:] == [] or "response_action" not in bot.acks[-1]
    assert load(db, created.token.public_id).expires_on is None


def test_a_refused_scope_is_answered_on_its_field_keeping_the_rest(bot, db, standin, table):
    """A field error leaves the modal open as the user filled it (Slack keeps the values);
    nothing is written."""
    created = seed(db, label="plain")
    view = _open_edit(bot, standin, table, created.token.public_id)
    bot.submit(view, form_values(label="renamed", scope="admin"))  # the owner is no admin
    answer = bot.acks[-1]
    assert answer == {"response_action": "errors",
                      "errors": {"scope": "Only a workspace admin can grant the admin scope."}}
    assert load(db, created.token.public_id).label == "plain"
