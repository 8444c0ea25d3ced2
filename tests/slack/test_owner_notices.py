"""Owners are told: when someone else (an admin) disables, enables, deletes, rotates,
edits or copies a token, its owner gets one DM from the app naming who and what, with a
button to open the table at that token; none when owners act on their own tokens; never
the secret."""

from __future__ import annotations

import pytest

from bot.slack.ids import ActionId
from tests.slack.conftest import (
    ADMIN,
    OWNER,
    choose_and_confirm,
    form_values,
    rotate_by_modal,
    row_buttons,
    seed,
    texts,
)


def _dms(standin) -> list[dict]:
    return [c.body for c in standin.calls_to("chat.postMessage")]


def _act(bot, standin, table, db, action: str, user: str):
    """Do ``action`` as ``user`` on a token of OWNER's; returns the token made."""
    created = seed(db, label="owned <x>", owner=OWNER, disabled=action == "enable")
    public_id = created.token.public_id
    blocks = table(user=user)
    if action == "rotate":
        choose_and_confirm(bot, standin, blocks, public_id, ActionId.ROTATE, user=user)
    elif action == "edit":
        bot.click(row_buttons(blocks, public_id)[ActionId.EDIT], user=user)
        view = standin.wait_for("views.open")[-1].body["view"]
        bot.submit(view, form_values(label="renamed", scope="read"), user=user)
    else:
        bot.click(row_buttons(blocks, public_id)[ActionId(f"token_{action}")], user=user)
    bot.settle()
    return created


@pytest.mark.parametrize(
    ("action", "verb"),
    [("disable", "disabled"), ("enable", "enabled"), ("delete", "deleted"),
     ("rotate", "rotated"), ("edit", "edited"), ("copy", "copied")],
)
def test_the_owner_gets_one_dm_after_an_admins_action(bot, db, standin, table, action, verb):
    created = _act(bot, standin, table, db, action, ADMIN)
    (dm,) = _dms(standin)
    assert dm["channel"] == OWNER  # a DM from the app: its Messages tab
    said = texts(dm["blocks"])
    label = "renamed" if action == "edit" else "owned &lt;x&gt;"
    assert f"<@{ADMIN}> {verb} your token *{label}*" in said
    if action != "rotate":  # a rotation names the new masked form
        assert created.token.secret_masked in said
    if action == "edit":  # what it changed
        assert "label “owned &lt;x&gt;” → “renamed”" in said
    assert f"<@{ADMIN}> {verb} your token {label}." == dm["text"]
    # never the secret (the old one, or a new one from a rotation)
    assert "tkb_" not in dm["text"] and created.secret not in str(dm)
    assert str(dm).count("tkb_") == 1  # the masked form only
    buttons = [e for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]]
    if action == "delete":
        assert buttons == []  # nothing left to open
    else:
        assert [b["text"]["text"] for b in buttons] == ["Open in the table"]


@pytest.mark.parametrize("action", ["disable", "enable", "delete", "rotate", "edit", "copy"])
def test_no_dm_when_owners_act_on_their_own_tokens(bot, db, standin, table, action):
    _act(bot, standin, table, db, action, OWNER)
    assert _dms(standin) == []


def _dm_button(standin) -> dict:
    (dm,) = _dms(standin)
    (button,) = [e for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return button


def _open(bot, standin, button) -> list[dict]:
    """The owner clicks the DM's button; the table it opens (under the DM)."""
    before = len(standin.calls_to("response_url"))
    bot.click(button, user=OWNER)
    answer = standin.wait_for("response_url", before + 1)[-1].body
    assert answer["replace_original"] is False  # the DM stays; the table comes under it
    assert answer["response_type"] == "ephemeral"
    return answer["blocks"]


def _rows(blocks: list[dict]) -> list[str]:
    return [b["block_id"].split(":", 1)[1] for b in blocks
            if b.get("block_id", "").startswith("row:")]


def _header(blocks: list[dict]) -> dict:
    (header,) = [b for b in blocks if b.get("block_id") == "table_header"]
    return header


def test_the_dms_button_opens_the_table_at_that_token(bot, db, standin, table):
    created = seed(db, label="payments", owner=OWNER)
    look_alike = seed(db, label="payments v2", owner=OWNER)  # same owner, label contains it
    seed(db, label="unrelated", owner=OWNER)
    bot.click(row_buttons(table(user=ADMIN), created.token.public_id)[ActionId.DISABLE],
              user=ADMIN)
    blocks = _open(bot, standin, _dm_button(standin))
    assert _rows(blocks) == [created.token.public_id]  # that token, and only it
    shown = texts(blocks)
    assert "*payments*" in shown and "v2" not in shown and "unrelated" not in shown
    assert "Disabled" in shown and "Page 1 of 1, 1 token" in shown
    assert _header(blocks)["text"]["text"] == "*Access tokens*: one token"
    clear = _header(blocks)["accessory"]
    assert clear["text"]["text"] == "Clear filter"
    # The owner acts there; the redrawn table stays at that token.
    before = len(standin.calls_to("response_url"))
    bot.click(row_buttons(blocks, created.token.public_id)[ActionId.ENABLE], user=OWNER)
    redrawn = standin.wait_for("response_url", before + 1)[-1].body["blocks"]
    assert "Enabled *payments*" in texts(redrawn)
    assert _rows(redrawn) == [created.token.public_id]
    assert _header(redrawn)["text"]["text"] == "*Access tokens*: one token"
    # "Clear filter" shows them all again.
    before = len(standin.calls_to("response_url"))
    bot.click(clear, user=OWNER)
    everything = standin.wait_for("response_url", before + 1)[-1].body["blocks"]
    assert look_alike.token.public_id in _rows(everything) and len(_rows(everything)) == 3
    assert _header(everything)["text"]["text"] == "*Access tokens*"


def test_the_dms_button_finds_the_token_after_a_rename(bot, db, standin, table):
    created = seed(db, label="payments", owner=OWNER)
    seed(db, label="payments v2", owner=OWNER)
    public_id = created.token.public_id
    bot.click(row_buttons(table(user=ADMIN), public_id)[ActionId.DISABLE], user=ADMIN)
    button = _dm_button(standin)
    # Then the owner renames it (their own edit: no second DM), and opens the first DM's button.
    bot.click(row_buttons(table(user=OWNER), public_id)[ActionId.ENABLE], user=OWNER)
    bot.click(row_buttons(table(user=OWNER), public_id)[ActionId.EDIT], user=OWNER)
    view = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(view, form_values(label="billing", scope="read"), user=OWNER)
    bot.settle()
    blocks = _open(bot, standin, button)
    assert _rows(blocks) == [public_id]
    assert "*billing*" in texts(blocks) and "payments" not in texts(blocks)


def test_the_dms_button_after_the_token_was_deleted_says_so_in_one_line(bot, db, standin,
                                                                       table):
    created = seed(db, label="payments", owner=OWNER)
    seed(db, label="payments v2", owner=OWNER)
    public_id = created.token.public_id
    bot.click(row_buttons(table(user=ADMIN), public_id)[ActionId.COPY], user=ADMIN)
    button = _dm_button(standin)
    bot.click(row_buttons(table(user=OWNER), public_id)[ActionId.DELETE], user=OWNER)
    blocks = _open(bot, standin, button)
    assert _rows(blocks) == []
    (empty,) = [b for b in blocks if b.get("block_id") == "table_empty"]
    assert empty["text"]["text"] == "This token was not found: it may have been deleted."
    assert _header(blocks)["accessory"]["text"]["text"] == "Clear filter"


@pytest.mark.parametrize("value", [f'[1,"payments","","{OWNER}"]', "garbage", '{"i":"<!here>"}'])
def test_a_button_of_a_dm_older_than_its_codec_opens_the_whole_table(bot, db, standin, value):
    """DMs already sent carry an older value (a list: label text and owner): the button
    still opens the table, all of it, under the DM, as a value it cannot read."""
    tokens = [seed(db, label=label, owner=owner).token.public_id
              for label, owner in (("payments", OWNER), ("payments", ADMIN), ("unrelated", OWNER))]
    older = {"type": "button", "action_id": ActionId.OPEN_TABLE.value,
             "text": {"type": "plain_text", "text": "Open in the table"}, "value": value}
    blocks = _open(bot, standin, older)
    assert sorted(_rows(blocks)) == sorted(tokens)
    assert _header(blocks)["text"]["text"] == "*Access tokens*"


def test_a_failed_dm_does_not_undo_or_hide_the_action(bot, db, standin, table):
    from tests.support.slack_standin import Failure

    created = seed(db, label="quiet", owner=OWNER)
    standin.fail_next("chat.postMessage", Failure(status=200, body={"ok": False,
                                                                     "error": "channel_not_found"}))
    bot.click(row_buttons(table(user=ADMIN), created.token.public_id)[ActionId.DISABLE],
              user=ADMIN)
    redrawn = [c for c in standin.calls_to("response_url") if c.body.get("replace_original")]
    assert "Disabled *quiet*" in texts(redrawn[-1].body["blocks"])


@pytest.mark.parametrize(
    ("action", "verb"),
    [(ActionId.ROTATION_RETIRE, "retired the old secret of"),
     (ActionId.ROTATION_CANCEL, "cancelled the rotation of")],
)
def test_the_owner_is_told_when_an_admin_ends_their_rotation(bot, db, standin, table,
                                                             action, verb):
    created = seed(db, label="ci deploy", owner=OWNER)
    public_id = created.token.public_id
    rotate_by_modal(bot, standin, table(user=OWNER), public_id, overlap="24h", user=OWNER)
    choose_and_confirm(bot, standin, table(user=ADMIN), public_id, action, user=ADMIN)
    bot.settle()
    (dm,) = _dms(standin)  # the owner's own rotation told nobody
    assert dm["channel"] == OWNER
    assert f"<@{ADMIN}> {verb} your token *ci deploy*" in texts(dm["blocks"])
