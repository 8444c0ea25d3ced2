"""Signed payloads of a shape Slack never sends (or that someone crafted with our signing
secret's help) are answered, never with a 500 or "something went wrong", and change
nothing."""

from __future__ import annotations

import json

from bot.slack.ids import ActionId
from bot.slack.state import TableState
from tests.slack.conftest import (
    audit_actions,
    form_values,
    last_response,
    row_buttons,
    seed,
    texts,
)

GENERIC = "Something went wrong"


def test_a_table_page_past_the_last_draws_the_last_page(bot, db, standin, table):
    seed(db, label="ci")
    drawn = table()
    pager = [el for block in drawn if block.get("type") == "actions"
             for el in block["elements"] if el["action_id"] == ActionId.REFRESH.value][0]
    bot.click({**pager, "value": TableState(page=999).encode()})
    redrawn = texts(last_response(standin).body["blocks"])
    assert "ci" in redrawn and "Page 1 of 1" in redrawn and GENERIC not in redrawn


def test_a_page_past_any_number_is_not_found_with_the_current_table(bot, db, standin, table):
    seed(db, label="ci")
    drawn = table()
    pager = [el for block in drawn if block.get("type") == "actions"
             for el in block["elements"] if el["action_id"] == ActionId.REFRESH.value][0]
    for page in (2**63, 10**30, -1, 0, "2", None):
        bot.click({**pager, "value": json.dumps({"p": page})})
        redrawn = texts(last_response(standin).body["blocks"])
        assert "not found" in redrawn and "ci" in redrawn and GENERIC not in redrawn


def test_a_nul_byte_in_the_command_text_is_a_filter_that_matches_nothing_odd(bot, db, standin):
    seed(db, label="deploy")
    bot.command("dep\x00loy")
    shown = texts(last_response(standin).body["blocks"])
    assert GENERIC not in shown
    bot.command("\x00")
    assert "deploy" in texts(last_response(standin).body["blocks"])


def test_a_modal_whose_metadata_is_nested_past_any_depth_is_answered(bot, db, standin, table):
    created = seed(db, label="ops")
    bot.click(row_buttons(table(), created.token.public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    view = {**view, "private_metadata": "[" * 50_000}
    answer = bot.submit(view, form_values(label="renamed"))
    assert answer.status == 200
    assert GENERIC not in (answer.body or "")
    assert audit_actions(db, created.token.public_id) == ["create"]


def test_a_command_that_says_payload_is_still_a_command(bot, db, standin):
    seed(db, label="payload signer")
    bot.command("payload")
    shown = texts(last_response(standin).body["blocks"])
    assert "payload signer" in shown and GENERIC not in shown


def test_a_filter_keeps_the_joiners_labels_may_hold(bot, db, standin):
    seed(db, label="ci deploy 👩\u200d💻")
    bot.command("deploy 👩\u200d💻")
    assert "ci deploy" in texts(last_response(standin).body["blocks"])
