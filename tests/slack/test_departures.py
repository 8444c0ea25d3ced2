"""Owners who leave, through Bolt's real pipeline: what the reassign modal and a departure
post refuse (a bot, a deactivated account, a non-admin, a stale drawing), who is told, a
post per departure that keeps working past the outbox's purge, a redraw that shows each
token as it now is, and profile edits that cost nothing."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.config import Settings
from bot.db import Database
from bot.models import MessageKind, OutboxMessage, TokenStatus, utcnow
from bot.services import outbox
from bot.services import tokens
from bot.services.owners import is_departed
from bot.slack.ids import ActionId
from tests.alerts_support import ALERTS, alert_settings
from tests.slack.conftest import (
    ADMIN,
    OTHER_USER,
    OWNER,
    TEAM,
    SlackBot,
    choose,
    load,
    mrkdwn_texts,
    running_bot,
    seed,
)
from tests.slack.test_owners import (
    NEW,
    _actions,
    _click_post,
    _dms,
    _pick,
    _picked,
    _reassign_events,
    _table,
    _user_change,
)
from tests.support.slack_standin import SlackStandIn

ADMIN2 = "UADMIN2"


@pytest.fixture
def bot(make_settings: Any, standin: SlackStandIn) -> Iterator[tuple[SlackBot, Database]]:
    from tests.slack.conftest import SIGNING_SECRET

    settings: Settings = alert_settings(make_settings, standin,
                                        SLACK_SIGNING_SECRET=SIGNING_SECRET,
                                        TOKENBOT_ADMINS=f"{ADMIN},{ADMIN2}")
    database = Database(settings, auto_upgrade=False)
    try:
        with running_bot(settings, database, standin) as harness:
            yield harness, database
    finally:
        database.dispose()


def _posts(adb: Database) -> list[tuple[str, str | None]]:
    """The departure posts: (its user, where Slack shows it), oldest first."""
    with adb.sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == MessageKind.DEPARTED_OWNER).order_by(OutboxMessage.id))
        return [(str(row.payload["user"]), row.message_ts) for row in rows]


def _sent(adb: Database, count: int) -> list[str]:
    """The ts of the first ``count`` departure posts, once the drain marked them sent."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sent = [ts for _, ts in _posts(adb) if ts]
        if len(sent) >= count:
            return sent
        time.sleep(0.02)
    raise AssertionError("the posts were not marked sent")


def _alert_posts(standin: SlackStandIn) -> list[dict[str, Any]]:
    return [c.body for c in standin.calls_to("chat.postMessage") if c.body["channel"] == ALERTS]


def _last_update(standin: SlackStandIn) -> list[dict[str, Any]]:
    return standin.calls_to("chat.update")[-1].body["blocks"]


# -- 1. the modal: a bot or a deactivated account, asked after the acknowledgement ----------


@pytest.mark.parametrize("picked, known, said", [
    ("UBOTTY", {"is_bot": True}, "is a bot"),
    ("UGONE", {"deleted": True}, "is deactivated"),
])
def test_the_reassign_modal_refuses_a_bot_or_an_unrecorded_deactivated_account(
    bot: tuple[SlackBot, Database], standin: SlackStandIn, picked: str,
    known: dict[str, Any], said: str
):
    harness, adb = bot
    public_id = seed(adb, label="deploy", owner=OWNER).token.public_id
    standin.users[picked] = known
    choose(harness, _table(harness, standin, ADMIN), public_id, ActionId.REASSIGN, user=ADMIN)
    modal = standin.wait_for("views.open")[-1].body["view"]
    answered = harness.submit(modal, _picked(picked), user=ADMIN)
    assert answered.status == 200 and not answered.body  # the modal closes at once
    assert load(adb, public_id).owner == OWNER and _reassign_events(adb, public_id) == []
    told = "\n".join(mrkdwn_texts(standin.calls_to("response_url")[-1].body["blocks"]))
    assert f"<@{picked}> {said}" in told and "Nothing changed." in told
    assert "Reassigned" not in told
    # A person is reassigned as before.
    harness.submit(modal, _picked(NEW), user=ADMIN)
    assert load(adb, public_id).owner == NEW


# -- 2 and 3. the post: rights first, then the pick; the version the post showed ----------


def _departed_post(harness: SlackBot, adb: Database, standin: SlackStandIn,
                   event_id: str = "Ev1") -> tuple[list[dict[str, Any]], str]:
    _user_change(harness, OWNER, deleted=True, event_id=event_id)
    (ts,) = _sent(adb, 1)
    return _alert_posts(standin)[-1]["blocks"], ts


def test_a_non_admin_picking_a_bot_on_the_post_is_told_only_admins_and_slack_is_not_asked(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    token = seed(adb, owner=OWNER).token
    blocks, ts = _departed_post(harness, adb, standin)
    standin.users["UBOTTY"] = {"is_bot": True}
    _click_post(harness, _pick(blocks, token.public_id, "UBOTTY"), ts=ts, user=OTHER_USER)
    (told,) = [c.body for c in standin.wait_for("chat.postEphemeral", 1)]
    assert "Only a workspace admin can reassign" in told["text"]
    assert "bot" not in told["text"]
    assert standin.calls_to("users.info") == []
    assert load(adb, token.public_id).owner == OWNER


def test_a_pick_on_a_post_drawn_before_another_admins_change_is_refused_as_stale(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    token = seed(adb, label="deploy", owner=OWNER).token
    blocks, ts = _departed_post(harness, adb, standin)
    # The second admin gives the token to NEW from the table, while the post still shows
    # it unassigned; then the first admin picks OTHER_USER on the post.
    choose(harness, _table(harness, standin, ADMIN2), token.public_id, ActionId.REASSIGN,
           user=ADMIN2)
    harness.submit(standin.wait_for("views.open")[-1].body["view"], _picked(NEW), user=ADMIN2)
    assert load(adb, token.public_id).owner == NEW
    _click_post(harness, _pick(blocks, token.public_id, OTHER_USER), ts=ts, user=ADMIN)
    assert load(adb, token.public_id).owner == NEW  # not overwritten
    assert len(_reassign_events(adb, token.public_id)) == 1
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body
    assert told["user"] == ADMIN and "changed" in told["text"].lower()
    redrawn = "\n".join(mrkdwn_texts(_last_update(standin)))
    assert f"Reassigned to <@{NEW}>" in redrawn


# -- 4. one post per departure, kept while the departure is ---------------------------------


def _purge_long_after(adb: Database) -> None:
    with adb.sessions.begin() as session:
        outbox.purge(session, now=utcnow() + outbox.KEEP + dt.timedelta(days=10))


def test_the_post_outlives_the_outbox_purge_while_the_owner_is_gone(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    token = seed(adb, label="deploy", owner=OWNER).token
    blocks, ts = _departed_post(harness, adb, standin)
    _purge_long_after(adb)
    # A later user_change of the same departure posts nothing more ...
    _user_change(harness, OWNER, deleted=True, event_id="Ev2")
    assert len(_alert_posts(standin)) == 1 and len(_posts(adb)) == 1
    # ... and the post's Disable still works, redrawing it.
    disable = _actions(blocks, token.public_id)[ActionId.DEPARTED_DISABLE]
    _click_post(harness, {"type": "button", "action_id": disable["action_id"], "block_id": "b",
                          "value": disable["value"], "text": disable["text"]},
                ts=ts, user=ADMIN)
    assert load(adb, token.public_id).status == TokenStatus.DISABLED
    assert f"*Disabled* by <@{ADMIN}>" in "\n".join(mrkdwn_texts(_last_update(standin)))
    # Once the owner is back, the post is history: the purge takes it.
    _user_change(harness, OWNER, deleted=False, event_id="Ev3")
    _purge_long_after(adb)
    assert _posts(adb) == []


def test_a_user_who_returns_and_leaves_again_is_posted_again(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    seed(adb, label="deploy", owner=OWNER)
    _departed_post(harness, adb, standin)
    _user_change(harness, OWNER, deleted=False, event_id="Ev2")  # reactivated
    _user_change(harness, OWNER, deleted=True, event_id="Ev3")  # and gone again
    _sent(adb, 2)
    assert [p["text"] for p in _alert_posts(standin)] == [
        f"<@{OWNER}> was deactivated; they own 1 token"] * 2


# -- 5. nobody who has left is told ---------------------------------------------------------


def test_reassigning_from_the_post_tells_only_the_new_owner(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    token = seed(adb, label="deploy", owner=OWNER).token
    blocks, ts = _departed_post(harness, adb, standin)
    _click_post(harness, _pick(blocks, token.public_id, NEW), ts=ts, user=ADMIN)
    assert load(adb, token.public_id).owner == NEW
    told = standin.wait_for("chat.postEphemeral", 1)[-1].body["text"]
    assert f"<@{NEW}> was told." in told and "Both" not in told
    dms = _dms(standin, 2)  # the post, then the one DM
    assert set(dms) == {ALERTS, NEW}
    with adb.sessions() as session:
        notices = session.scalars(select(OutboxMessage.destination).where(
            OutboxMessage.kind == MessageKind.REASSIGN_NOTICE)).all()
    assert notices == [NEW]


# -- 6. the redraw shows each token as it now is --------------------------------------------


def test_a_token_disabled_from_the_post_and_enabled_since_is_offered_again(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    first = seed(adb, label="first", owner=OWNER).token
    second = seed(adb, label="second", owner=OWNER).token
    blocks, ts = _departed_post(harness, adb, standin)
    disable = _actions(blocks, first.public_id)[ActionId.DEPARTED_DISABLE]
    _click_post(harness, {"type": "button", "action_id": disable["action_id"], "block_id": "b",
                          "value": disable["value"], "text": disable["text"]},
                ts=ts, user=ADMIN)
    assert not _actions(_last_update(standin), first.public_id)
    with adb.sessions.begin() as session:  # enabled again, from the table
        tokens.enable_token(session,
                            actor=tokens.Actor(team_id=TEAM, user_id=ADMIN2, is_admin=True),
                            public_id=first.public_id, now=utcnow(),
                            expected_version=load(adb, first.public_id).version)
    # The next redraw of the post (after an action on the other token) shows it as it is.
    _click_post(harness, _pick(_last_update(standin), second.public_id, NEW), ts=ts,
                user=ADMIN)
    redrawn = _last_update(standin)
    assert _actions(redrawn, first.public_id)  # actionable again
    assert "Disabled" not in "\n".join(mrkdwn_texts(redrawn))
    assert f"Reassigned to <@{NEW}> by <@{ADMIN}>" in "\n".join(mrkdwn_texts(redrawn))


# -- 7. a profile edit costs nothing ------------------------------------------------------


def test_profile_edits_of_ordinary_users_are_done_in_the_acknowledgement(
    bot: tuple[SlackBot, Database], standin: SlackStandIn
):
    harness, adb = bot
    seed(adb, owner=OWNER)
    _user_change(harness, OTHER_USER, deleted=False, event_id="Ev0")  # a first edit
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(adb.engine, "before_cursor_execute", count)
    try:
        for number in range(10):
            _user_change(harness, f"UEDIT{number}", deleted=False, event_id=f"Ev{number + 1}")
    finally:
        event.remove(adb.engine, "before_cursor_execute", count)
    assert statements == []
    # A departure and a return are still noted.
    _user_change(harness, OWNER, deleted=True, event_id="Ev20")
    assert len(_sent(adb, 1)) == 1
    _user_change(harness, OWNER, deleted=False, event_id="Ev21")
    with adb.sessions.begin() as session:
        assert not is_departed(session, team_id=TEAM, user_id=OWNER)
