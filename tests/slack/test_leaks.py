"""A live Tokenbot secret pasted into a conversation the bot is in is caught: the poster
gets an ephemeral warning (with Rotate and Disable for the owner or an admin), the owner a
DM and the alert channel a post naming where and who, once per token and message; an
audit event `leak`; in `disable` mode the token is disabled at once. Dead secrets and
look-alikes say nothing; the message text is never logged. Every event goes signed through
Bolt's real pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.crypto import ALPHABET, find_secrets, generate_secret
from bot.db import Database
from bot.models import AuditEvent, OutboxMessage, TokenStatus
from bot.services import tokens
from bot.services.verification import verify
from bot.slack.ids import ActionId
from tests.slack.conftest import (
    ADMIN,
    OTHER_TEAM,
    OTHER_USER,
    OWNER,
    SIGNING_SECRET,
    TEAM,
    SlackBot,
    audit_actions,
    buttons,
    load,
    rotate_values,
    running_bot,
    seed,
    texts,
    utcnow,
)
from tests.support.signing import signed_headers
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

ALERTS = "CALERTS"
CHANNEL = "C1"
_ids = itertools.count(1)


def _ts() -> str:
    return f"{int(time.time())}.{next(_ids):06d}"


def message_body(text: str, *, user: str | None = OTHER_USER, team: str = TEAM,
                 ts: str | None = None, channel: str = CHANNEL, channel_type: str = "channel",
                 edit: bool = False, previous: str = "",
                 extra: dict[str, Any] | None = None) -> str:
    """A `message` event as Slack sends it: a new message, or (``edit``) the
    `message_changed` event of message ``ts`` whose text became ``text``. ``user`` None:
    a bot's without a user (a webhook's), ``extra`` saying which."""
    ts = ts or _ts()
    message = {"type": "message", "text": text, "ts": ts, "team": team,
               **({"user": user} if user else {}), **(extra or {})}
    event: dict[str, Any] = {**message, "channel": channel, "channel_type": channel_type,
                             "event_ts": ts}
    if edit:
        event = {"type": "message", "subtype": "message_changed", "channel": channel,
                 "hidden": True, "ts": _ts(), "event_ts": _ts(), "channel_type": channel_type,
                 "message": {**message, "edited": {"user": user, "ts": _ts()}},
                 "previous_message": {"type": "message", "user": user, "text": previous,
                                      "ts": ts}}
    return json.dumps({
        "token": "legacy-verification-token", "team_id": team, "api_app_id": "A1",
        "event": event, "type": "event_callback", "event_id": f"Ev{next(_ids)}",
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": "UBOT",
                            "is_bot": True, "is_enterprise_install": False}],
    })


def post(bot: SlackBot, body: str, *, retry: int = 0) -> None:
    """Deliver an event (``retry``: Slack's redelivery of the same body) and wait for
    the work after its acknowledgement (the outbox's drain included)."""
    headers = signed_headers(SIGNING_SECRET, body, content_type="application/json")
    if retry:
        headers |= {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"}
    response = bot.send(body, content_type="application/json", headers=headers)
    assert response.status == 200
    bot.settle()


@pytest.fixture
def make_bot(make_settings: Callable[..., Settings], db: Database, standin: SlackStandIn
             ) -> Iterator[Callable[..., SlackBot]]:
    """The app with an alert channel, and TOKENBOT_LEAK_ACTION as asked."""
    opened: list[Any] = []

    def build(**overrides: str) -> SlackBot:
        settings = make_settings(
            SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_ALERT_CHANNEL=ALERTS, **overrides)
        context = running_bot(settings, db, standin)
        opened.append(context)
        return context.__enter__()

    yield build
    for context in reversed(opened):
        context.__exit__(None, None, None)


@pytest.fixture
def bot(make_bot: Callable[..., SlackBot]) -> SlackBot:
    return make_bot()


def ephemerals(standin: SlackStandIn) -> list[dict[str, Any]]:
    return [call.body for call in standin.calls_to("chat.postEphemeral")]


def posts(standin: SlackStandIn, channel: str) -> list[dict[str, Any]]:
    return [call.body for call in standin.calls_to("chat.postMessage")
            if call.body["channel"] == channel]


def nothing_said(standin: SlackStandIn, db: Database) -> None:
    assert ephemerals(standin) == [] and standin.calls_to("chat.postMessage") == []
    with db.sessions.begin() as session:
        assert session.scalars(select(OutboxMessage)).all() == []
        assert "leak" not in session.scalars(select(AuditEvent.action)).all()


def everything_stored(db: Database) -> str:
    with db.sessions.begin() as session:
        rows = [(m.payload, m.key) for m in session.scalars(select(OutboxMessage))]
        rows += [(e.details, e.actor) for e in session.scalars(select(AuditEvent))]
    return json.dumps(rows, default=str)


def leak_buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["action_id"]: b for b in buttons(message["blocks"])}


# -- a live secret -----------------------------------------------------------------------


@pytest.mark.parametrize("form", [
    "here you go: {s}",                       # plain
    "try `{s}` in the header",                # code
    "```export TOKEN={s}\n```",               # a code block
    "see <https://ci.example.com/x|{s}>",     # a link's text
    "<{s}>",                                  # an auto-linked one
    "token:{s}, ok?",                         # glued to punctuation
    "({s}).",
])
def test_a_live_secret_is_told_to_the_poster_the_owner_and_the_channel(bot, db, standin,
                                                                       form):
    created = seed(db, label="CI deploy", owner=OWNER)
    secret, masked = created.secret, created.token.secret_masked
    ts = _ts()
    post(bot, message_body(form.format(s=secret), user=OTHER_USER, ts=ts))

    (warning,) = ephemerals(standin)
    assert (warning["channel"], warning["user"]) == (CHANNEL, OTHER_USER)
    said = texts(warning["blocks"])
    assert (f"This message contains a live token: *CI deploy*, `{masked}`; delete the "
            "message and rotate the token.") in said
    # The poster is neither owner nor admin: no buttons, the owner is named instead.
    assert leak_buttons(warning) == {} and f"<@{OWNER}>" in said

    link = f"https://acme.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}"
    (dm,) = posts(standin, OWNER)
    (alert,) = posts(standin, ALERTS)
    for notice in (dm, alert):
        said = texts(notice["blocks"])
        assert "*CI deploy*" in said and f"`{masked}`" in said
        assert f"<{link}|a message> in <#{CHANNEL}> by <@{OTHER_USER}>" in said
        assert [b["text"]["text"] for b in buttons(notice["blocks"])] == ["Open in the table"]
    assert f"of <@{OWNER}>" in texts(alert["blocks"])  # the channel learns whose it is

    assert audit_actions(db, created.token.public_id) == ["create", "leak"]
    with db.sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "leak")).one()
        assert event.actor == OTHER_USER
        assert event.details["channel"] == CHANNEL and event.details["permalink"] == link
    assert load(db, created.token.public_id).status == TokenStatus.ACTIVE  # notify mode
    # The secret went nowhere: not to Slack, not into a row.
    assert all(secret not in json.dumps(call.body) for call in standin.calls)
    assert secret not in everything_stored(db)


def test_an_edit_that_gains_a_secret_is_caught_once(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    ts = _ts()
    post(bot, message_body("the token is coming", user=OWNER, ts=ts))
    assert ephemerals(standin) == []

    post(bot, message_body(f"the token is {created.secret}", user=OWNER, ts=ts, edit=True,
                           previous="the token is coming"))
    (warning,) = ephemerals(standin)
    assert warning["user"] == OWNER and "live token" in texts(warning["blocks"])
    # Its owner posted it: Rotate and Disable, for this token.
    assert set(leak_buttons(warning)) == {ActionId.ROTATE, ActionId.DISABLE}
    assert len(posts(standin, OWNER)) == 1 and len(posts(standin, ALERTS)) == 1

    # Edited again, keeping the secret: nothing new.
    post(bot, message_body(f"the token is {created.secret} (oops)", user=OWNER, ts=ts,
                           edit=True, previous=f"the token is {created.secret}"))
    assert len(ephemerals(standin)) == 1 and len(standin.calls_to("chat.postMessage")) == 2
    assert audit_actions(db, created.token.public_id) == ["create", "leak"]


def test_two_secrets_in_one_message_make_two_notices(bot, db, standin):
    first = seed(db, label="CI deploy", owner=OWNER)
    second = seed(db, label="nightly", owner=OTHER_USER)
    post(bot, message_body(f"{first.secret}\n{second.secret}\n{first.secret}", user=ADMIN))

    warnings = ephemerals(standin)
    assert sorted(texts(w["blocks"]).split("*")[1] for w in warnings) == ["CI deploy",
                                                                          "nightly"]
    # An admin posted them: the buttons are theirs to use.
    assert all(set(leak_buttons(w)) == {ActionId.ROTATE, ActionId.DISABLE} for w in warnings)
    assert len(posts(standin, OWNER)) == 1 and len(posts(standin, OTHER_USER)) == 1
    assert len(posts(standin, ALERTS)) == 2
    assert audit_actions(db, first.token.public_id)[-1] == "leak"
    assert audit_actions(db, second.token.public_id)[-1] == "leak"


def test_a_redelivered_event_is_told_once(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    body = message_body(f"token {created.secret}")
    post(bot, body)
    post(bot, body, retry=1)
    post(bot, body, retry=2)
    assert len(ephemerals(standin)) == 1
    assert len(posts(standin, OWNER)) == 1 and len(posts(standin, ALERTS)) == 1
    assert audit_actions(db, created.token.public_id) == ["create", "leak"]


def test_the_token_s_own_alert_channel_is_told(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    with db.sessions.begin() as session:
        tokens.edit_token(session,
                          actor=tokens.Actor(TEAM, OWNER), public_id=created.token.public_id,
                          expected_version=created.token.version, now=utcnow(),
                          label="CI deploy", scope="read", expires_on=None,
                          alert_channel="COWN", scopes=["read", "write", "admin"], policy=NO_POLICY)
    post(bot, message_body(created.secret))
    assert len(posts(standin, "COWN")) == 1 and posts(standin, ALERTS) == []


def test_a_reply_in_a_thread_is_warned_in_that_thread(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(created.secret, extra={"thread_ts": "1700000000.000100"}))
    (warning,) = ephemerals(standin)
    assert warning["thread_ts"] == "1700000000.000100"


def test_without_a_permalink_the_notices_name_the_conversation(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    standin.fail_next("chat.getPermalink", Failure(200, {"ok": False,
                                                         "error": "channel_not_found"}))
    post(bot, message_body(created.secret))
    (dm,) = posts(standin, OWNER)
    assert f"a message in <#{CHANNEL}> by <@{OTHER_USER}>" in texts(dm["blocks"])
    assert len(ephemerals(standin)) == 1 and len(posts(standin, ALERTS)) == 1


# -- nothing to say ----------------------------------------------------------------------


def _near_miss(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + next(c for c in ALPHABET if c != last)


def _rotated_out(db: Database) -> str:
    created = seed(db, owner=OWNER)
    with db.sessions.begin() as session:
        tokens.rotate_token(session, box=db.box, actor=tokens.Actor(TEAM, OWNER),
                            public_id=created.token.public_id,
                            expected_version=created.token.version, now=utcnow())
    return created.secret


def _deleted(db: Database) -> str:
    created = seed(db, owner=OWNER)
    with db.sessions.begin() as session:
        tokens.delete_token(session,
                            actor=tokens.Actor(TEAM, OWNER), public_id=created.token.public_id,
                            expected_version=created.token.version, now=utcnow())
    return created.secret


CASES: dict[str, Callable[[Database], str]] = {
    "near-miss checksum": lambda db: _near_miss(seed(db, owner=OWNER).secret),
    "too long": lambda db: seed(db, owner=OWNER).secret + "x",
    "disabled": lambda db: seed(db, owner=OWNER, disabled=True).secret,
    "rotated out": _rotated_out,
    "deleted": _deleted,
    "nobody's (valid checksum)": lambda db: generate_secret(),
    "another workspace's": lambda db: seed(db, owner=OWNER, team=OTHER_TEAM).secret,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_dead_or_foreign_secret_says_nothing_and_stores_nothing(bot, db, standin, case):
    secret = CASES[case](db)
    post(bot, message_body(f"token: {secret}"))
    nothing_said(standin, db)


# Tokenbot's own messages as Slack sends them: by its bot user (the envelope's
# authorization), or by its app (this request's api_app_id) as a bot message.
OWN = {
    "its bot user": ({"user": "UBOT", "bot_id": "BBOT",
                      "bot_profile": {"id": "BBOT", "app_id": "A1", "name": "tokenbot"}}),
    "its app, no user": ({"user": None, "subtype": "bot_message", "bot_id": "BTKB",
                          "app_id": "A1"}),
    "its app, in the bot profile": ({"user": None, "bot_id": "BTKB",
                                     "bot_profile": {"id": "BTKB", "app_id": "A1"}}),
}


@pytest.mark.parametrize("own", list(OWN))
def test_tokenbot_s_own_messages_are_not_read(bot, db, standin, own):
    created = seed(db, owner=OWNER)
    extra = dict(OWN[own])
    user = extra.pop("user")
    post(bot, message_body(f"token: {created.secret}", user=user, extra=extra))
    nothing_said(standin, db)


def test_a_channel_join_is_not_read(bot, db, standin):
    created = seed(db, owner=OWNER)
    post(bot, message_body(f"token: {created.secret}", extra={"subtype": "channel_join"}))
    nothing_said(standin, db)


def test_a_deletion_is_not_read(bot, db, standin):
    created = seed(db, owner=OWNER)
    body = json.loads(message_body("x"))
    body["event"] = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL,
                     "hidden": True, "ts": _ts(), "deleted_ts": _ts(),
                     "previous_message": {"type": "message", "user": OWNER,
                                          "text": created.secret, "ts": _ts()}}
    post(bot, json.dumps(body))
    nothing_said(standin, db)


# -- disable mode ----------------------------------------------------------------------


def test_disable_mode_disables_at_once_and_says_how_to_re_enable(make_bot, db, standin):
    bot = make_bot(TOKENBOT_LEAK_ACTION="disable")
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(f"token {created.secret}", user=OWNER))

    assert load(db, created.token.public_id).status == TokenStatus.DISABLED
    assert audit_actions(db, created.token.public_id) == ["create", "leak", "disable"]
    (warning,) = ephemerals(standin)
    (dm,) = posts(standin, OWNER)
    (alert,) = posts(standin, ALERTS)
    for said in (texts(warning["blocks"]), texts(dm["blocks"]), texts(alert["blocks"])):
        assert "Tokenbot disabled it at once" in said
        assert "rotate it, then enable it" in said
    # Nothing left to disable: Rotate only.
    assert set(leak_buttons(warning)) == {ActionId.ROTATE}
    # The disable is not the owner's doing, nor a person's: no owner notice besides the DM.
    assert len(standin.calls_to("chat.postMessage")) == 2


# -- the ephemeral's buttons -------------------------------------------------------------


def test_the_warning_s_buttons_work_for_the_owner(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(created.secret, user=OWNER))
    (warning,) = ephemerals(standin)
    # Issue 22's words: the token's label and masked secret, what to do, Rotate and Disable.
    assert warning["text"] == (f"This message contains a live token: *CI deploy*, "
                               f"`{created.token.secret_masked}`; delete the message and "
                               "rotate the token.")
    assert [b["text"]["text"] for b in buttons(warning["blocks"])] == ["Rotate", "Disable"]
    disable = leak_buttons(warning)[ActionId.DISABLE]
    assert disable["confirm"]["confirm"]["text"] == "Disable Token"  # the guide's dialog
    bot.click(disable, user=OWNER)
    assert load(db, created.token.public_id).status == TokenStatus.DISABLED
    shown = standin.calls_to("response_url")[-1].body
    assert "Disabled *CI deploy*" in texts(shown["blocks"])


def test_rotate_from_the_warning_stops_the_pasted_secret(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(created.secret, user=OWNER))
    (warning,) = ephemerals(standin)
    bot.click(leak_buttons(warning)[ActionId.ROTATE], user=OWNER)
    modal = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(modal, rotate_values(None), user=OWNER)
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is None
    assert audit_actions(db, created.token.public_id) == ["create", "leak", "rotate"]
    # The new secret went to the owner alone (the warning's response_url), nowhere else.
    shown = [json.dumps(c.body) for c in standin.calls_to("response_url")]
    (new_secret,) = {found for body in shown for found in find_secrets(body)}
    assert new_secret != created.secret
    assert all(new_secret not in json.dumps(c.body) for c in standin.calls
               if c.method != "response_url")


def test_the_warning_s_buttons_are_refused_to_anyone_else(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(created.secret, user=OWNER))
    (warning,) = ephemerals(standin)
    found = leak_buttons(warning)

    bot.click(found[ActionId.DISABLE], user=OTHER_USER)
    bot.click(found[ActionId.ROTATE], user=OTHER_USER)
    token = load(db, created.token.public_id)
    assert token.status == TokenStatus.ACTIVE and token.version == created.token.version
    assert standin.calls_to("views.open") == []  # no rotate modal for them
    answers = [texts(c.body["blocks"]) for c in standin.calls_to("response_url")]
    assert len(answers) == 2
    for answer, verb in zip(answers, ("disable", "rotate")):
        assert (f"Only the token's owner (<@{OWNER}>) or a workspace admin can {verb} it."
                in answer)

    bot.click(found[ActionId.ROTATE], user=ADMIN)  # an admin may
    assert standin.wait_for("views.open")[-1].body["view"]["callback_id"] == "token_rotate_modal"


# -- a bot's message ---------------------------------------------------------------------


@pytest.mark.parametrize(("bot_fields", "named"), [
    # A CI app posting with its bot token: its bot user, by mention.
    ({"user": "UCIBOT", "bot_id": "BCI", "app_id": "ACI",
      "bot_profile": {"id": "BCI", "app_id": "ACI", "name": "ci"}}, "<@UCIBOT>"),
    # An incoming webhook: no user, the name it posted under (escaped: it is its text).
    ({"user": None, "subtype": "bot_message", "bot_id": "BHOOK",
      "username": "deploy <hook>"}, "a bot (deploy &lt;hook&gt;)"),
])
def test_a_secret_posted_by_another_bot_is_told_to_the_owner_and_the_channel(
        bot, db, standin, bot_fields, named):
    created = seed(db, label="CI deploy", owner=OWNER)
    extra = dict(bot_fields)
    user = extra.pop("user")
    post(bot, message_body(f"deploying with {created.secret}", user=user, extra=extra))

    assert ephemerals(standin) == []  # a bot cannot be sent one
    (dm,) = posts(standin, OWNER)
    (alert,) = posts(standin, ALERTS)
    for notice in (dm, alert):
        said = texts(notice["blocks"])
        assert "A live token, *CI deploy*" in said and f"in <#{CHANNEL}> by {named}." in said
    assert audit_actions(db, created.token.public_id) == ["create", "leak"]
    with db.sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "leak")).one()
        assert event.actor == (user or extra["bot_id"])


def test_disable_mode_disables_a_token_a_bot_posted(make_bot, db, standin):
    bot = make_bot(TOKENBOT_LEAK_ACTION="disable")
    created = seed(db, label="CI deploy", owner=OWNER)
    post(bot, message_body(created.secret, user=None,
                           extra={"subtype": "bot_message", "bot_id": "BHOOK"}))
    assert load(db, created.token.public_id).status == TokenStatus.DISABLED
    assert ephemerals(standin) == []
    (dm,) = posts(standin, OWNER)
    assert "by a bot." in texts(dm["blocks"]) and "Tokenbot disabled it" in texts(dm["blocks"])


# -- where it was: a direct message, a private channel, a group DM ------------------------


@pytest.mark.parametrize(("channel", "channel_type", "place"), [
    ("D0DM", "im", "a direct message"),                      # message.im: a DM with Tokenbot
    ("G0PRIV", "group", "the private channel <#G0PRIV>"),     # message.groups
    ("G0MPIM", "mpim", "a group direct message"),             # message.mpim
    ("C0MPIM", "mpim", "a group direct message"),             # newer mpim ids start with C
    ("C0PUB", "channel", "<#C0PUB>"),                         # message.channels
])
def test_the_notices_say_what_kind_of_conversation_it_was(bot, db, standin, channel,
                                                          channel_type, place):
    created = seed(db, label="CI deploy", owner=OWNER)
    ts = _ts()
    post(bot, message_body(f"here: {created.secret}", user=OTHER_USER, ts=ts,
                           channel=channel, channel_type=channel_type))

    (warning,) = ephemerals(standin)  # in that conversation, to the poster
    assert (warning["channel"], warning["user"]) == (channel, OTHER_USER)
    assert "This message contains a live token: *CI deploy*" in texts(warning["blocks"])
    link = f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    for notice in (*posts(standin, OWNER), *posts(standin, ALERTS)):
        assert f"<{link}|a message> in {place} by <@{OTHER_USER}>." in texts(notice["blocks"])
    assert len(posts(standin, OWNER)) == 1 and len(posts(standin, ALERTS)) == 1
    with db.sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "leak")).one()
        assert event.details["channel"] == channel


def test_an_edit_in_a_direct_message_is_caught_and_named_so(bot, db, standin):
    created = seed(db, label="CI deploy", owner=OWNER)
    standin.fail_next("chat.getPermalink", Failure(200, {"ok": False,
                                                         "error": "channel_not_found"}))
    ts = _ts()
    post(bot, message_body(f"it is {created.secret}", user=OWNER, ts=ts, channel="D0DM",
                           channel_type="im", edit=True, previous="it is coming"))
    (warning,) = ephemerals(standin)
    assert warning["channel"] == "D0DM"
    (dm,) = posts(standin, OWNER)
    assert f"a message in a direct message by <@{OWNER}>." in texts(dm["blocks"])


# -- the old secret of a rotation in progress ---------------------------------------------


def _rotating(db: Database) -> tuple[tokens.CreatedToken, str]:
    """A token rotated with a day's overlap: its old secret and its new one both work."""
    created = seed(db, label="CI deploy", owner=OWNER)
    with db.sessions.begin() as session:
        rotated = tokens.rotate_token(session, box=db.box, actor=tokens.Actor(TEAM, OWNER),
                                      public_id=created.token.public_id,
                                      expected_version=created.token.version, now=utcnow(),
                                      overlap=dt.timedelta(days=1))
    return created, rotated.secret


def _works(db: Database, secret: str) -> bool:
    with db.sessions.begin() as session:
        return verify(session, secret=secret, now=utcnow()) is not None


def test_disable_mode_retires_a_pasted_old_secret_and_keeps_the_new_one(make_bot, db,
                                                                        standin):
    bot = make_bot(TOKENBOT_LEAK_ACTION="disable")
    created, new_secret = _rotating(db)
    post(bot, message_body(f"old one: {created.secret}", user=OWNER))

    token = load(db, created.token.public_id)
    assert token.status == TokenStatus.ACTIVE and not token.rotating(utcnow())
    assert not _works(db, created.secret) and _works(db, new_secret)
    assert audit_actions(db, created.token.public_id) == ["create", "rotate", "leak",
                                                          "retire_old"]
    (warning,) = ephemerals(standin)
    (dm,) = posts(standin, OWNER)
    (alert,) = posts(standin, ALERTS)
    for said in (texts(warning["blocks"]), texts(dm["blocks"]), texts(alert["blocks"])):
        assert "old secret of a rotation in progress" in said
        assert "Tokenbot stopped that old secret at once; the new secret keeps working." in said
        assert "disabled" not in said
    assert f"`{created.token.secret_masked}`" in texts(warning["blocks"])
    assert set(leak_buttons(warning)) == {ActionId.ROTATE, ActionId.DISABLE}


def test_disable_mode_disables_the_token_when_its_new_secret_is_pasted_too(make_bot, db,
                                                                           standin):
    bot = make_bot(TOKENBOT_LEAK_ACTION="disable")
    created, new_secret = _rotating(db)
    post(bot, message_body(f"{created.secret} or {new_secret}", user=OWNER))
    assert load(db, created.token.public_id).status == TokenStatus.DISABLED
    (warning,) = ephemerals(standin)
    said = texts(warning["blocks"])
    assert "This message contains a live token" in said and "Tokenbot disabled it" in said


def test_notify_mode_says_a_pasted_old_secret_is_one_and_offers_to_retire_it(bot, db,
                                                                             standin):
    created, new_secret = _rotating(db)
    post(bot, message_body(f"old one: {created.secret}", user=OWNER))

    assert _works(db, created.secret) and _works(db, new_secret)  # notify: nothing stopped
    (warning,) = ephemerals(standin)
    (dm,) = posts(standin, OWNER)
    for said in (texts(warning["blocks"]), texts(dm["blocks"])):
        assert "old secret of a rotation in progress" in said
        assert "retire the old secret now; the new secret keeps working." in said
    found = leak_buttons(warning)
    assert [b["text"]["text"] for b in found.values()] == ["Retire old secret now", "Disable"]
    assert found[ActionId.ROTATION_RETIRE]["confirm"]["confirm"]["text"] == "Retire Old Secret"

    bot.click(found[ActionId.ROTATION_RETIRE], user=OWNER)
    assert not _works(db, created.secret) and _works(db, new_secret)
    assert audit_actions(db, created.token.public_id)[-2:] == ["leak", "retire_old"]


# -- nothing of the message in the logs --------------------------------------------------


def test_the_message_text_and_the_secret_are_never_logged(bot, db, standin, caplog):
    caplog.set_level(logging.DEBUG)  # every logger: Bolt's, slack_sdk's, SQLAlchemy's
    created = seed(db, label="CI deploy", owner=OWNER)
    words = "quarterly-figures-for-the-board-meeting"
    post(bot, message_body(f"{words} {created.secret}"))
    post(bot, message_body(f"{words} and nothing else"))
    post(bot, message_body(f"{words} {_near_miss(created.secret)}"))
    assert len(ephemerals(standin)) == 1  # it did read them
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert words not in logged
    assert created.secret not in logged and _near_miss(created.secret) not in logged
