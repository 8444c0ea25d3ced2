"""Owners in Slack through Bolt's real pipeline: the admin's "Reassign…" modal (both
owners told), a deactivated user's tokens posted once to the alert channel, and that
post's Reassign and Disable redrawing it in place."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import Database
from bot.models import AuditAction, AuditEvent, OutboxMessage, TokenStatus
from bot.slack.ids import ActionId
from bot.slack.state import MenuChoice, RowRef
from tests.alerts_support import ALERTS
from tests.slack.conftest import (
    ADMIN,
    OTHER_USER,
    OWNER,
    TEAM,
    SlackBot,
    choose,
    load,
    mrkdwn_texts,
    row_menu,
    running_bot,
    seed,
)
from tests.support.signing import interactive_body
from tests.support.slack_standin import SlackStandIn

NEW = "U3"


@pytest.fixture
def bot(asettings: Settings, adb: Database, standin: SlackStandIn) -> Iterator[SlackBot]:
    with running_bot(asettings, adb, standin) as harness:
        yield harness


def _table(bot: SlackBot, standin: SlackStandIn, user: str) -> list[dict[str, Any]]:
    before = len(standin.calls_to("response_url"))
    bot.command("", user=user)
    return standin.wait_for("response_url", before + 1)[-1].body["blocks"]


def _picked(user: str | None) -> dict[str, Any]:
    return {"new_owner": {ActionId.NEW_OWNER_SELECT.value: {"type": "users_select",
                                                            "selected_user": user}}}


def _dms(standin: SlackStandIn, count: int) -> dict[str, dict[str, Any]]:
    calls = standin.wait_for("chat.postMessage", count)
    return {c.body["channel"]: c.body for c in calls}


def _reassign_events(adb: Database, public_id: str) -> list[AuditEvent]:
    with adb.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.token_public_id == public_id, AuditEvent.action == AuditAction.REASSIGN)))


# -- Reassign… from the table ------------------------------------------------------------


def test_an_admin_reassigns_from_the_row_menu_and_both_owners_are_told(
    bot: SlackBot, adb: Database, standin: SlackStandIn
):
    created = seed(adb, label="deploy <prod>", owner=OWNER)
    public_id = created.token.public_id
    blocks = _table(bot, standin, ADMIN)
    choose(bot, blocks, public_id, ActionId.REASSIGN, user=ADMIN)
    modal = standin.wait_for("views.open")[-1].body["view"]
    assert modal["callback_id"] == "token_reassign_modal"
    assert f"<@{OWNER}>" in str(mrkdwn_texts(modal["blocks"]))
    (picker,) = [b for b in modal["blocks"] if b.get("block_id") == "new_owner"]
    assert picker["element"]["type"] == "users_select"

    # The same owner again: refused on the picker, nothing changes.
    refused = bot.submit(modal, _picked(OWNER), user=ADMIN)
    assert "already owns" in json.loads(refused.body)["errors"]["new_owner"]
    assert load(adb, public_id).owner == OWNER

    bot.submit(modal, _picked(NEW), user=ADMIN)
    token = load(adb, public_id)
    assert token is not None and (token.owner, token.created_by) == (NEW, ADMIN)
    (event,) = _reassign_events(adb, public_id)
    assert (event.actor, event.details["before"], event.details["after"]) == (
        ADMIN, {"owner": OWNER}, {"owner": NEW})
    redrawn = standin.calls_to("response_url")[-1].body
    shown = "\n".join(mrkdwn_texts(redrawn["blocks"]))
    assert f"Reassigned *deploy &lt;prod&gt;* from <@{OWNER}> to <@{NEW}>" in shown
    assert f"Owner: <@{NEW}>" in shown
    dms = _dms(standin, 2)  # the drain after the commit
    assert set(dms) == {OWNER, NEW}
    assert f"to <@{NEW}>" in str(dms[OWNER]["blocks"])
    assert f"to you (from <@{OWNER}>)" in str(dms[NEW]["blocks"])
    # The new owner now has the row's actions; the old one has none.
    assert f"row_actions:{public_id}" in str(_table(bot, standin, NEW))
    assert f"row_actions:{public_id}" not in str(_table(bot, standin, OWNER))


def test_a_non_admin_is_not_offered_reassign_and_is_refused_when_crafting_it(
    bot: SlackBot, adb: Database, standin: SlackStandIn
):
    created = seed(adb, owner=OWNER)
    public_id = created.token.public_id
    blocks = _table(bot, standin, OWNER)
    assert ActionId.REASSIGN not in row_menu(blocks, public_id)
    # A crafted choice (the owner's own row): refused on the table, no modal.
    choice = MenuChoice(action=ActionId.REASSIGN.value,
                        ref=RowRef(public_id=public_id, version=created.token.version))
    bot.click({"action_id": ActionId.ROW_MORE, "type": "overflow"},
              selected_option={"value": choice.encode()}, user=OWNER)
    assert standin.calls_to("views.open") == []
    told = "\n".join(mrkdwn_texts(standin.calls_to("response_url")[-1].body["blocks"]))
    assert "Only a workspace admin can reassign a token." in told
    assert load(adb, public_id).owner == OWNER and _reassign_events(adb, public_id) == []


# -- owners who leave ------------------------------------------------------------------------


def _user_change(bot: SlackBot, user: str, *, deleted: bool, event_id: str) -> None:
    body = json.dumps({
        "token": "legacy-verification-token", "team_id": TEAM, "api_app_id": "A1",
        "event": {"type": "user_change", "event_ts": f"{time.time():.6f}",
                  "cache_ts": int(time.time()),
                  "user": {"id": user, "team_id": TEAM, "name": user.lower(),
                           "deleted": deleted, "is_bot": False}},
        "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "UBOT",
                            "is_bot": True, "is_enterprise_install": False}],
    })
    assert bot.send(body, content_type="application/json").status == 200
    bot.settle()


def _click_post(bot: SlackBot, action: dict[str, Any], *, ts: str, user: str) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "api_app_id": "A1", "token": "legacy-verification-token",
        "trigger_id": "42.1.trigger", "team": {"id": TEAM, "domain": "acme"},
        "enterprise": None, "is_enterprise_install": False,
        "container": {"type": "message", "message_ts": ts, "channel_id": ALERTS,
                      "is_ephemeral": False},
        "channel": {"id": ALERTS, "name": "alerts"},
        "message": {"type": "message", "ts": ts, "text": "x", "blocks": []},
        "response_url": bot.next_response_url(),
        "actions": [{"action_ts": "1.1", **action}],
        "state": {"values": {}},
    }
    bot.send(interactive_body(payload))
    bot.settle()


def _drained(adb: Database, standin: SlackStandIn) -> tuple[dict[str, Any], str]:
    """The departure post, once the drain after the event's commit posted it."""
    (call,) = [c for c in standin.wait_for("chat.postMessage") if c.body["channel"] == ALERTS]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with adb.sessions() as session:
            ts = session.scalar(select(OutboxMessage.message_ts).where(
                OutboxMessage.message_channel == ALERTS))
        if ts:
            return call.body, ts
        time.sleep(0.02)
    raise AssertionError("the post was not marked sent")


def _actions_block(blocks: list[dict[str, Any]], public_id: str) -> dict[str, Any] | None:
    for block in blocks:
        block_id = block.get("block_id", "")
        if block_id.partition(":")[2].split(":")[0] == public_id and block_id.startswith(
                "departed_actions:"):
            return block
    return None


def _actions(blocks: list[dict[str, Any]], public_id: str) -> dict[str, dict[str, Any]]:
    block = _actions_block(blocks, public_id)
    return {e["action_id"]: e for e in block["elements"]} if block else {}


def _pick(blocks: list[dict[str, Any]], public_id: str, user: str) -> dict[str, Any]:
    """Choosing ``user`` in the post's picker of that token, as drawn in ``blocks``."""
    block = _actions_block(blocks, public_id)
    assert block is not None
    return {"type": "users_select", "action_id": ActionId.DEPARTED_REASSIGN.value,
            "block_id": block["block_id"], "selected_user": user}


def test_a_deactivated_owner_is_posted_once_then_reassign_and_disable_redraw_the_post(
    bot: SlackBot, adb: Database, standin: SlackStandIn
):
    keep = seed(adb, label="deploy bot", owner=OWNER).token
    stop = seed(adb, label="old <cron>", owner=OWNER).token
    seed(adb, label="already off", owner=OWNER, disabled=True)
    seed(adb, label="someone else's", owner=OTHER_USER)
    _user_change(bot, OWNER, deleted=True, event_id="Ev1")
    body, ts = _drained(adb, standin)
    assert body["text"] == f"<@{OWNER}> was deactivated; they own 2 tokens"
    shown = "\n".join(mrkdwn_texts(body["blocks"]))
    assert "deploy bot" in shown and "old &lt;cron&gt;" in shown
    assert "already off" not in shown and "someone else" not in shown
    _user_change(bot, OWNER, deleted=True, event_id="Ev2")  # redelivered, or a later edit
    with adb.sessions() as session:  # nothing more queued, so nothing more to post
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert len(standin.calls_to("chat.postMessage")) == 1  # still one post

    # Reassign through the post's picker (an admin), then Disable the other token.
    picker = _actions(body["blocks"], keep.public_id)[ActionId.DEPARTED_REASSIGN]
    assert picker["type"] == "users_select"
    _click_post(bot, _pick(body["blocks"], keep.public_id, NEW), ts=ts, user=ADMIN)
    assert load(adb, keep.public_id).owner == NEW
    update = standin.wait_for("chat.update", 1)[-1].body
    assert (update["channel"], update["ts"]) == (ALERTS, ts)
    redrawn = "\n".join(mrkdwn_texts(update["blocks"]))
    assert f"Reassigned to <@{NEW}> by <@{ADMIN}>" in redrawn
    assert _actions(update["blocks"], keep.public_id) == {}  # done: no actions
    assert _actions(update["blocks"], stop.public_id)
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body
    assert told["user"] == ADMIN and "Reassigned" in told["text"]

    disable = _actions(update["blocks"], stop.public_id)[ActionId.DEPARTED_DISABLE]
    assert disable["confirm"]["confirm"]["text"] == "Disable Token"
    _click_post(bot, {"type": "button", "action_id": disable["action_id"],
                      "block_id": "b", "value": disable["value"],
                      "text": disable["text"]}, ts=ts, user=ADMIN)
    assert load(adb, stop.public_id).status == TokenStatus.DISABLED
    final = standin.wait_for("chat.update", 2)[-1].body
    redrawn = "\n".join(mrkdwn_texts(final["blocks"]))
    assert f"*Disabled* by <@{ADMIN}>" in redrawn and "2 dealt with" in redrawn
    assert not any(b["block_id"].startswith("departed_actions:") for b in final["blocks"])


def test_the_post_refuses_a_bot_or_a_non_admin_and_changes_nothing(
    bot: SlackBot, adb: Database, standin: SlackStandIn
):
    token = seed(adb, label="deploy bot", owner=OWNER).token
    _user_change(bot, OWNER, deleted=True, event_id="Ev1")
    body, ts = _drained(adb, standin)
    standin.users["UBOTTY"] = {"is_bot": True}
    _click_post(bot, _pick(body["blocks"], token.public_id, "UBOTTY"), ts=ts, user=ADMIN)
    _click_post(bot, _pick(body["blocks"], token.public_id, NEW), ts=ts, user=OTHER_USER)
    told = [c.body for c in standin.wait_for("chat.postEphemeral", 2)]
    assert "is a bot" in told[0]["text"] and told[0]["user"] == ADMIN
    assert "Only a workspace admin can reassign" in told[1]["text"]
    assert load(adb, token.public_id).owner == OWNER
    assert _reassign_events(adb, token.public_id) == []
    # The refusals redraw the post as it is: still actionable.
    assert _actions(standin.calls_to("chat.update")[-1].body["blocks"], token.public_id)


def test_a_deactivated_user_cannot_be_given_tokens_until_reactivated(
    bot: SlackBot, adb: Database, standin: SlackStandIn
):
    from bot.errors import ValidationError
    from bot.services import owners
    from bot.services.actor import Actor

    token = seed(adb, owner=OTHER_USER).token
    admin = Actor(team_id=TEAM, user_id=ADMIN, is_admin=True)

    def give_to_owner() -> None:
        with adb.sessions.begin() as session:
            owners.reassign(session, actor=admin, public_id=token.public_id,
                            new_owner=OWNER, now=token.created_at)

    _user_change(bot, OWNER, deleted=True, event_id="Ev1")
    with pytest.raises(ValidationError, match="deactivated"):
        give_to_owner()
    _user_change(bot, OWNER, deleted=False, event_id="Ev2")  # reactivated
    give_to_owner()
    assert load(adb, token.public_id).owner == OWNER
