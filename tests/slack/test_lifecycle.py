"""Each lifecycle action end to end from the table: click, the service's effect in the
database, the table redrawn in place with a confirmation, the audit trail."""

from __future__ import annotations

import datetime as dt

from bot.crypto import has_valid_checksum
from bot.slack.ids import ActionId, BlockId
from bot.models import TokenStatus
from bot.services import tokens
from bot.services.verification import verify
from tests.slack.conftest import (
    OWNER,
    audit_actions,
    form_values,
    last_response,
    load,
    rotate_by_modal,
    row_buttons,
    seed,
    texts,
    utcnow,
)
from tests.support.slack_standin import Call
from tests.support.policy import NO_POLICY


def _redrawn(standin) -> Call:
    """The last table redrawn in place (replace_original) through a response_url."""
    calls = [c for c in standin.calls_to("response_url") if c.body.get("replace_original")]
    assert calls, "no table was redrawn"
    assert calls[-1].body["response_type"] == "ephemeral"
    return calls[-1]


def test_disable_then_enable_from_the_table(bot, db, standin, table):
    created = seed(db, label="deploy")
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.DISABLE])
    token = load(db, public_id)
    assert token.status == TokenStatus.DISABLED
    blocks = _redrawn(standin).body["blocks"]
    assert blocks[0]["block_id"] == BlockId.NOTICE
    assert "Disabled *deploy*" in blocks[0]["text"]["text"]
    row = next(b for b in blocks if b.get("block_id") == f"row:{public_id}")
    assert row["type"] == "context" and "Disabled" in row["elements"][0]["text"]
    with db.sessions.begin() as session:  # fails verification at once
        assert verify(session, secret=created.secret, now=utcnow()) is None

    bot.click(row_buttons(blocks, public_id)[ActionId.ENABLE])
    assert load(db, public_id).status == TokenStatus.ACTIVE
    blocks = _redrawn(standin).body["blocks"]
    assert "Enabled *deploy*" in blocks[0]["text"]["text"]
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is not None
    assert audit_actions(db, public_id) == ["create", "disable", "enable"]


def test_toggling_back_and_forth_from_each_redraw_keeps_working(bot, db, standin, table):
    """A row that looks as it did before (active again) is drawn with its new version, so
    the next click is not taken for a stale one; a button from the first table is."""
    created = seed(db, label="flaky job")
    public_id = created.token.public_id
    first = table()
    blocks = first
    for action in (ActionId.DISABLE, ActionId.ENABLE, ActionId.DISABLE, ActionId.ENABLE):
        bot.click(row_buttons(blocks, public_id)[action])
        blocks = _redrawn(standin).body["blocks"]
        assert "changed since you looked" not in texts(blocks)
    assert load(db, public_id).status == TokenStatus.ACTIVE
    assert audit_actions(db, public_id) == ["create", "disable", "enable", "disable", "enable"]

    bot.click(row_buttons(first, public_id)[ActionId.DISABLE])  # drawn four changes ago
    assert "changed since you looked" in texts(_redrawn(standin).body["blocks"])
    assert load(db, public_id).status == TokenStatus.ACTIVE


def test_delete_from_the_table(bot, db, standin, table):
    created = seed(db, label="old key")
    keep = seed(db, label="keeper")
    bot.click(row_buttons(table(), created.token.public_id)[ActionId.DELETE])
    assert load(db, created.token.public_id) is None
    blocks = _redrawn(standin).body["blocks"]
    text = texts(blocks)
    assert "Deleted *old key* for good" in text
    assert f"row:{created.token.public_id}" not in [b.get("block_id") for b in blocks]
    assert "keeper" in text and keep.token.public_id
    assert audit_actions(db, created.token.public_id) == ["create", "delete"]


def test_a_disabled_token_cannot_be_deleted_or_edited(bot, db, standin, table):
    created = seed(db, label="paused", disabled=True)
    public_id = created.token.public_id
    blocks = table()
    row = row_buttons(blocks, public_id)
    assert ActionId.DELETE not in row and ActionId.EDIT not in row
    # a forged click (buttons not offered) is refused by the service anyway
    forged = dict(row[ActionId.COPY], action_id=ActionId.DELETE)
    bot.click(forged)
    assert load(db, public_id) is not None
    assert "Enable it first" in texts(_redrawn(standin).body["blocks"])
    bot.click(dict(row[ActionId.COPY], action_id=ActionId.EDIT))
    assert standin.calls_to("views.open") == []
    assert "cannot be edited. Enable it first" in texts(_redrawn(standin).body["blocks"])


def test_rotate_shows_the_new_secret_once_and_the_old_one_stops_working(bot, db, standin,
                                                                      table):
    created = seed(db, label="rotating")
    public_id = created.token.public_id
    modal = rotate_by_modal(bot, standin, table(), public_id)
    assert modal["submit"]["text"] == "Rotate Token"
    assert "stops working immediately" in texts(modal["blocks"])
    calls = standin.calls_to("response_url")
    secret_call = next(c for c in calls if "secret" in [b.get("block_id") for b in
                                                        c.body.get("blocks", [])])
    assert secret_call.body["replace_original"] is False
    assert secret_call.body["response_type"] == "ephemeral"
    shown = secret_call.body["blocks"][0]["text"]["text"]
    new_secret = shown.split("```")[1]
    assert has_valid_checksum(new_secret) and new_secret != created.secret
    assert new_secret not in secret_call.body["text"]
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is None
        assert verify(session, secret=new_secret, now=utcnow()).public_id == public_id
    table_call = _redrawn(standin)
    assert "Rotated *rotating*" in texts(table_call.body["blocks"])
    assert audit_actions(db, public_id) == ["create", "rotate"]


def test_create_from_the_command_then_copy(bot, db, standin, table):
    bot.command("create")
    modal = standin.wait_for("views.open")[-1].body
    assert modal["trigger_id"].endswith(".trigger")
    view = modal["view"]
    assert view["title"]["text"] == "Create Access Token"
    fields = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert set(fields) == {"label", "scope", "expires", "no_expiry", "alert_channel"}
    assert not fields["label"].get("optional") and not fields["scope"].get("optional")
    assert fields["expires"]["optional"] and fields["alert_channel"]["optional"]
    assert fields["expires"]["element"]["type"] == "datepicker"
    assert fields["alert_channel"]["element"]["type"] == "conversations_select"
    # the owner is no admin: the admin scope is not offered
    assert [o["value"] for o in fields["scope"]["element"]["options"]] == ["read", "write"]
    expires = (utcnow() + dt.timedelta(days=30)).date().isoformat()
    response = bot.submit(view, form_values(label="  CI deploy  ", scope="write",
                                            expires=expires, channel="C0ALERTS"))
    assert response.status == 200 and not response.body  # closes the modal
    secret_call = last_response(standin)
    assert secret_call.body["replace_original"] is False
    assert secret_call.body["response_type"] == "ephemeral"
    text = texts(secret_call.body["blocks"])
    assert "Created *CI deploy*" in text
    secret = secret_call.body["blocks"][0]["text"]["text"].split("```")[1]
    assert "Only copy tokens when necessary, and never share them publicly or commit them to " \
           "version control." in text
    assert [b["text"]["text"] for b in secret_call.body["blocks"][2]["elements"]] == ["Hide"]

    blocks = table()
    row = next(b for b in blocks if b.get("block_id", "").startswith("row:"))
    public_id = row["block_id"].split(":", 1)[1]
    token = load(db, public_id)
    assert (token.label, token.scope, token.expires_on.isoformat(), token.alert_channel,
            token.created_by) == ("CI deploy", "write", expires, "C0ALERTS", OWNER)

    bot.click(row_buttons(blocks, public_id)[ActionId.COPY])
    copy_call = last_response(standin)
    assert copy_call.body["replace_original"] is False
    copied = copy_call.body["blocks"][0]["text"]["text"]
    assert f"```{secret}```" in copied and "only you can see it; select it to copy" in copied
    assert audit_actions(db, public_id) == ["create", "reveal"]

    hide = copy_call.body["blocks"][2]["elements"][0]
    bot.click(hide)
    assert last_response(standin).body["delete_original"] is True


def test_create_from_the_table_redraws_it(bot, db, standin, table):
    blocks = table()
    create = next(b for b in blocks[-1]["elements"] if b["action_id"] == ActionId.CREATE_OPEN)
    bot.click(create)
    view = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(view, form_values(label="from table", scope="read"))
    calls = standin.calls_to("response_url")[-2:]
    assert "Created *from table*" in texts(calls[0].body["blocks"])
    assert calls[0].body["replace_original"] is False  # the secret, a message of its own
    assert calls[1].body["replace_original"] is True  # the table, redrawn in place
    assert "from table" in texts(calls[1].body["blocks"])
    assert "Page 1 of 1, 1 token" in texts(calls[1].body["blocks"])


def test_edit_modal_prefilled_then_updated(bot, db, standin, table):
    expires = (utcnow() + dt.timedelta(days=10)).date()
    created = seed(db, label="ci", scope="read", expires_on=expires)
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    assert view["title"]["text"] == "Edit Access Token"
    assert view["submit"]["text"] == "Update Access Token"
    fields = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert fields["label"]["initial_value"] == "ci"
    assert fields["scope"]["initial_option"]["value"] == "read"
    assert fields["expires"]["initial_date"] == expires.isoformat()

    new_date = (utcnow() + dt.timedelta(days=90)).date().isoformat()
    response = bot.submit(view, form_values(label="ci renamed", scope="write", expires=new_date))
    assert response.status == 200 and not response.body
    token = load(db, public_id)
    assert (token.label, token.scope, token.expires_on.isoformat()) == ("ci renamed", "write",
                                                                        new_date)
    blocks = _redrawn(standin).body["blocks"]
    notice = blocks[0]["text"]["text"]
    assert "Updated *ci renamed*" in notice and "scope “read” → “write”" in notice
    assert audit_actions(db, public_id) == ["create", "edit"]


def test_clearing_the_expiry_removes_it(bot, db, standin, table):
    created = seed(db, label="ci", expires_on=(utcnow() + dt.timedelta(days=10)).date())
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    assert "no_expiry" in [b.get("block_id") for b in view["blocks"]]
    bot.submit(view, form_values(label="ci", scope="read",
                                 expires=view["blocks"][3]["element"].get("initial_date"),
                                 clear_expiry=True))
    assert load(db, public_id).expires_at is None
    assert "Expires: Never" in texts(_redrawn(standin).body["blocks"])

    # an emptied date picker clears it too
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=tokens.Actor(team_id="T1", user_id=OWNER),
                          public_id=public_id, expected_version=load(db, public_id).version,
                          scopes=["read"], now=utcnow(),
                          expires_on=(utcnow() + dt.timedelta(days=5)).date(), policy=NO_POLICY)
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open", 2)[-1].body["view"]
    bot.submit(view, form_values(label="ci", scope="read", expires=None))
    assert load(db, public_id).expires_at is None
