"""The digest's buttons through Bolt's real pipeline: signed block_actions into
``app.dispatch``, the same services and rules as the table, and the digest message
redrawn in place (``chat.update`` with the clicked message's channel and ts)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.alerts.scheduler import run_pass
from bot.config import Settings
from bot.db import Database
from bot.models import OutboxMessage, AuditAction, AuditEvent, Token, TokenStatus
from bot.slack.client import make_web_client
from bot.slack.state import RowRef
from tests.alerts_support import ALERTS, seed_token
from tests.slack.conftest import SlackBot, form_values, mrkdwn_texts, running_bot, texts
from tests.support.signing import interactive_body
from tests.support.slack_standin import SlackStandIn

UTC = dt.timezone.utc


@pytest.fixture
def bot(asettings: Settings, adb: Database, standin: SlackStandIn) -> Iterator[SlackBot]:
    with running_bot(asettings, adb, standin) as harness:
        yield harness


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _posted(adb: Database, asettings: Settings, standin: SlackStandIn,
            channel: str = ALERTS) -> tuple[dict[str, Any], str]:
    """Run a pass; the digest posted to ``channel`` and its ts (as Slack answered)."""
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=_now(), post_interval=0.0)
    assert report.failed == 0
    body = next(c.body for c in standin.calls_to("chat.postMessage")
                if c.body["channel"] == channel)
    with adb.sessions() as session:
        ts = session.scalar(select(OutboxMessage.message_ts).where(OutboxMessage.message_channel == channel))
    assert ts
    return body, ts


def _element(blocks: list[dict[str, Any]], public_id: str, action_id: str) -> dict[str, Any]:
    for block in blocks:
        if block.get("block_id") == f"alert_item_actions:{public_id}":
            return next(e for e in block["elements"] if e["action_id"] == action_id)
    raise AssertionError(f"no buttons for {public_id}")


def _click(bot: SlackBot, element: dict[str, Any], *, ts: str, user: str,
           channel: str = ALERTS, team: str = "T1", option: dict[str, Any] | None = None,
           block_id: str = "b") -> None:
    action: dict[str, Any] = {
        "type": element["type"],
        "action_id": element["action_id"],
        "block_id": block_id,
        "action_ts": "1.1",
    }
    if option is None:
        action["value"] = element["value"]
        action["text"] = element["text"]
    else:
        action["selected_option"] = option
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": "42.1.trigger",
        "team": {"id": team, "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "container": {"type": "message", "message_ts": ts, "channel_id": channel,
                      "is_ephemeral": False},
        "channel": {"id": channel, "name": "alerts"},
        "message": {"type": "message", "ts": ts, "text": "x", "blocks": []},
        "response_url": bot.next_response_url(),
        "actions": [action],
        "state": {"values": {}},
    }
    bot.send(interactive_body(payload))
    bot.settle()


def _token(adb: Database, public_id: str) -> Token:
    with adb.sessions() as session:
        token = session.scalars(select(Token).where(Token.public_id == public_id)).one()
        session.expunge(token)
        return token


def test_extend_and_disable_from_the_digest_update_it_in_place(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    soon = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=3)).date(),
                      label="deploy <prod>", owner="U1").token
    later = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=5)).date(),
                       label="metrics", owner="U1").token
    body, ts = _posted(adb, asettings, standin)

    # The owner extends the first token (the button carries a confirm dialog).
    extend = _element(body["blocks"], soon.public_id, "alert_extend")
    assert extend["confirm"]["confirm"]["text"] == "Extend 30 days"
    _click(bot, extend, ts=ts, user="U1")
    extended = _token(adb, soon.public_id)
    assert soon.expires_at is not None
    assert extended.expires_at == soon.expires_at + dt.timedelta(days=30)
    update = standin.wait_for("chat.update", 1)[-1].body
    assert (update["channel"], update["ts"]) == (ALERTS, ts)
    shown = "\n".join(mrkdwn_texts(update["blocks"]))
    new_date = extended.expires_at.date().isoformat()  # the calendar date, as picked
    assert f"Extended to {new_date} by <@U1>" in shown and "<!date^" not in shown
    assert "deploy &lt;prod&gt;" in shown
    block_ids = [b["block_id"] for b in update["blocks"]]
    assert f"alert_item_actions:{soon.public_id}" not in block_ids  # done: no buttons
    assert f"alert_item_actions:{later.public_id}" in block_ids
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body
    assert told["user"] == "U1" and "Extended" in told["text"]
    with adb.sessions() as session:
        audit = session.scalars(select(AuditEvent).where(
            AuditEvent.token_public_id == soon.public_id,
            AuditEvent.action == AuditAction.EDIT)).one()
    assert audit.actor == "U1"

    # Someone else may not act on it: refused, nothing changes.
    disable = _element(update["blocks"], later.public_id, "alert_disable")
    assert disable["confirm"]["confirm"]["text"] == "Disable Token"
    _click(bot, disable, ts=ts, user="U2")
    assert _token(adb, later.public_id).status == TokenStatus.ACTIVE
    refusal = standin.wait_for("chat.postEphemeral", 2)[-1].body
    assert refusal["user"] == "U2" and "owner" in refusal["text"]

    # The version the user saw: the first drawing's buttons for the extended token are stale.
    stale = _element(body["blocks"], soon.public_id, "alert_disable")
    _click(bot, stale, ts=ts, user="U1")
    assert _token(adb, soon.public_id).status == TokenStatus.ACTIVE
    assert "changed since you looked" in standin.wait_for("chat.postEphemeral", 3)[-1].body["text"]

    # An admin disables the other one; the digest says so, and by whom.
    _click(bot, disable, ts=ts, user="UADMIN")
    assert _token(adb, later.public_id).status == TokenStatus.DISABLED
    final = standin.calls_to("chat.update")[-1].body
    shown = texts(final["blocks"])
    assert "Disabled* by <@UADMIN>" in shown and "Extended to" in shown
    assert not [b for b in final["blocks"] if b["type"] == "actions"]

    # Another workspace's user cannot reach the token at all.
    _click(bot, _element(update["blocks"], later.public_id, "alert_extend"), ts=ts,
           user="U9", team="T2")
    assert "not found" in standin.calls_to("chat.postEphemeral")[-1].body["text"]


def test_edit_from_the_digest_opens_the_edit_modal_and_redraws_the_digest(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    token = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2)).date(),
                       owner="U1", label="nightly backup").token
    body, ts = _posted(adb, asettings, standin, channel="U1")  # the owner's DM
    _click(bot, _element(body["blocks"], token.public_id, "alert_edit"), ts=ts, user="U1",
           channel="U1")
    view = standin.wait_for("views.open", 1)[-1].body["view"]
    assert view["title"]["text"] == "Edit Access Token"
    assert view["submit"]["text"] == "Update Access Token"
    assert token.public_id in view["private_metadata"]

    new_date = (now + dt.timedelta(days=90)).date()
    response = bot.submit(view, form_values(label="nightly backup", scope=token.scope,
                                            expires=new_date.isoformat()), user="U1")
    assert response.status == 200 and "errors" not in (response.body or "")

    assert _token(adb, token.public_id).expires_at == dt.datetime.combine(
        new_date, dt.time(0, 0), tzinfo=UTC)
    update = standin.wait_for("chat.update", 1)[-1].body
    assert (update["channel"], update["ts"]) == ("U1", ts)  # the digest itself, in place
    assert ":pencil2: Edited by <@U1>." in texts(update["blocks"])
    assert f"alert_item_actions:{token.public_id}" not in [
        b.get("block_id") for b in update["blocks"]
    ]
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body
    assert (told["channel"], told["user"]) == ("U1", "U1")
    assert "Updated *nightly backup*" in told["text"]
    assert not standin.calls_to("views.publish")  # no token table drawn anywhere


def test_an_edit_from_the_digest_that_went_stale_redraws_the_digest(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    token = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2)).date(),
                       owner="U1").token
    body, ts = _posted(adb, asettings, standin)
    _click(bot, _element(body["blocks"], token.public_id, "alert_edit"), ts=ts, user="U1")
    view = standin.wait_for("views.open", 1)[-1].body["view"]
    # Meanwhile an admin disables it from the digest.
    _click(bot, _element(body["blocks"], token.public_id, "alert_disable"), ts=ts,
           user="UADMIN")
    before = len(standin.calls_to("chat.update"))

    response = bot.submit(view, form_values(label="renamed", scope=token.scope), user="U1")

    assert "changed since you looked" in json.dumps(response.body)  # told in the modal
    assert _token(adb, token.public_id).label != "renamed"
    updates = standin.calls_to("chat.update")
    assert len(updates) == before + 1 and updates[-1].body["ts"] == ts
    assert "Disabled* by <@UADMIN>" in texts(updates[-1].body["blocks"])
    assert not standin.calls_to("views.publish")


def test_large_digests_act_through_menus(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    tokens = [
        seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2 + n % 4)).date(),
                   label=f"job {n}", owner="U1").token
        for n in range(30)
    ]
    body, ts = _posted(adb, asettings, standin)
    menus = [b for b in body["blocks"] if b["type"] == "actions"]
    assert len(menus) == 3 and len(body["blocks"]) == 7  # header + 3 × (fields + menus)
    extend_menu = next(e for e in menus[0]["elements"] if e["action_id"] == "alert_extend")
    assert extend_menu["type"] == "static_select" and "confirm" in extend_menu
    disable_menu = next(e for e in menus[0]["elements"] if e["action_id"] == "alert_disable")
    assert disable_menu["confirm"]["title"]["text"] == "Disable token?"  # not "the chosen token"
    assert "chosen" not in str(disable_menu["confirm"])
    option = extend_menu["options"][0]
    chosen = RowRef.decode(option["value"]).public_id
    _click(bot, extend_menu, ts=ts, user="U1", option=option)
    before = next(t for t in tokens if t.public_id == chosen)
    assert before.expires_at is not None
    assert _token(adb, chosen).expires_at == before.expires_at + dt.timedelta(days=30)
    update = standin.wait_for("chat.update", 1)[-1].body
    assert "Extended to" in texts(update["blocks"])
    options = [
        o["value"] for b in update["blocks"] if b["type"] == "actions"
        for e in b["elements"] if e["action_id"] == "alert_extend" for o in e["options"]
    ]
    assert len(options) == 29 and all(chosen not in value for value in options)


def test_a_forged_or_broken_value_is_refused_without_touching_the_digest_for_others(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    token = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2)).date(),
                       owner="U1").token
    body, ts = _posted(adb, asettings, standin)
    button = dict(_element(body["blocks"], token.public_id, "alert_disable"))
    button["value"] = "not ours"
    _click(bot, button, ts=ts, user="U1")
    assert "not found" in standin.wait_for("chat.postEphemeral", 1)[-1].body["text"]
    assert standin.calls_to("response_url") == []  # no token table drawn over the digest
    assert _token(adb, token.public_id).status == TokenStatus.ACTIVE


def test_extending_an_expired_token_from_its_notice_restores_it_for_30_days(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    token = seed_token(adb, now=now - dt.timedelta(days=10),
                       expires_on=(now - dt.timedelta(days=1)).date(), owner="U1").token
    body, ts = _posted(adb, asettings, standin)
    assert "this token no longer works" in texts(body["blocks"])
    _click(bot, _element(body["blocks"], token.public_id, "alert_extend"), ts=ts, user="U1")
    today = now.date()
    assert _token(adb, token.public_id).expires_at == dt.datetime.combine(
        today + dt.timedelta(days=30), dt.time(0), tzinfo=UTC)
    assert "Extended to" in texts(standin.wait_for("chat.update", 1)[-1].body["blocks"])


def _headline(blocks: list[dict[str, Any]]) -> str:
    return next(b["text"]["text"] for b in blocks if b["block_id"] == "alert_header")


def test_expiring_soon_in_a_digest_is_the_badges_seven_days(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    """3 days is "expiring soon" (the table's badge); 8 and 12 days are within the 30-day
    reminder, and the headline says so."""
    now = _now()
    for n in (3, 8, 12):
        seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=n)).date(),
                   label=f"in {n}", owner="U1")
    seed_token(adb, now=now - dt.timedelta(days=9),
               expires_on=(now - dt.timedelta(days=1)).date(), owner="U1")
    body, _ = _posted(adb, asettings, standin)
    expected = ("Access tokens: 1 expiring soon, 2 expiring within 30 days, "
                "1 expired and no longer working")
    assert body["text"] == expected
    assert _headline(body["blocks"]).startswith(f":alarm_clock: *{expected}*")


def test_a_digests_headline_is_redrawn_with_its_rows(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    """Extend and Disable from the digest: the headline counts what is left to do, and
    what was dealt with."""
    now = _now()
    first, second = (seed_token(adb, now=now, label=f"t{n}", owner="U1",
                                expires_on=(now + dt.timedelta(days=n)).date()).token
                     for n in (3, 5))
    body, ts = _posted(adb, asettings, standin)
    assert body["text"] == "Access tokens: 2 expiring soon"

    _click(bot, _element(body["blocks"], first.public_id, "alert_extend"), ts=ts, user="U1")
    update = standin.wait_for("chat.update", 1)[-1].body
    assert update["text"] == "Access tokens: 1 expiring soon, 1 dealt with"
    assert update["text"] in _headline(update["blocks"])

    _click(bot, _element(body["blocks"], second.public_id, "alert_disable"), ts=ts, user="U1")
    update = standin.wait_for("chat.update", 2)[-1].body
    assert update["text"] == "Access tokens: 2 dealt with"
    assert update["text"] in _headline(update["blocks"])


def test_extend_says_from_which_date_to_which(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    old = (now + dt.timedelta(days=3)).date()
    token = seed_token(adb, now=now, expires_on=old, owner="U1").token
    new = old + dt.timedelta(days=30)
    body, ts = _posted(adb, asettings, standin)
    extend = _element(body["blocks"], token.public_id, "alert_extend")
    moved = f"moved from {old.isoformat()} to {new.isoformat()} (30 days after the old date)"
    assert moved in extend["confirm"]["text"]["text"]
    _click(bot, extend, ts=ts, user="U1")
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body
    assert told["user"] == "U1" and moved in told["text"]


def test_extending_an_expired_token_says_thirty_days_from_today(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    old = (now - dt.timedelta(days=2)).date()
    token = seed_token(adb, now=now - dt.timedelta(days=10), expires_on=old, owner="U1").token
    body, ts = _posted(adb, asettings, standin)
    extend = _element(body["blocks"], token.public_id, "alert_extend")
    new = now.date() + dt.timedelta(days=30)
    moved = f"moved from {old.isoformat()} to {new.isoformat()} (30 days from today)"
    assert moved in extend["confirm"]["text"]["text"]
    _click(bot, extend, ts=ts, user="U1")
    assert moved in standin.wait_for("chat.postEphemeral", 1)[-1].body["text"]


def test_extend_refused_to_someone_else_names_extending(
    bot: SlackBot, adb: Database, asettings: Settings, standin: SlackStandIn
) -> None:
    now = _now()
    token = seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=3)).date(),
                       owner="U1").token
    body, ts = _posted(adb, asettings, standin)
    _click(bot, _element(body["blocks"], token.public_id, "alert_extend"), ts=ts, user="U2")
    refusal = standin.wait_for("chat.postEphemeral", 1)[-1].body["text"]
    assert "Only the token's owner (<@U1>) or a workspace admin can extend it." in refusal
    assert _token(adb, token.public_id).expires_at == token.expires_at
