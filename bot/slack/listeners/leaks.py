"""Chat messages in the conversations the bot is in (``message`` events: new messages and
edits): a live Tokenbot secret in one is told to whoever posted it (an ephemeral warning
with the row's Rotate and Disable), its owner and its alert channel (the outbox), once per
token and message. A message without a secret ends in the acknowledgement (one substring
test); the text is read, never kept or logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot import crypto
from bot.models import utcnow
from bot.services import leaks
from bot.services.actor import Actor
from bot.slack.acks import on_event
from bot.slack.listeners.common import Deps, deps
from bot.slack.state import mapping
from bot.slack.views.leaks import leak_warning

log = logging.getLogger("bot.slack.leaks")

Body = dict[str, Any]

# What a person's message may be (a reply also sent to the channel, a file with a comment,
# /me); any other subtype (a bot's message, a deletion, a join…) is not read.
_PEOPLES: frozenset[str | None] = frozenset({None, "thread_broadcast", "file_share",
                                             "me_message"})


@dataclass(frozen=True)
class Posted:
    """A person's message as it reads now (an edit: its new text, under its first ts)."""

    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None


def posted(event: Body) -> Posted | None:
    """The message a ``message`` event is about, or None when it is no person's (a bot's,
    Tokenbot's own included), a deletion, or not readable."""
    message, subtype = event, event.get("subtype")
    if subtype == "message_changed":
        message = mapping(event.get("message"))
        subtype = message.get("subtype")
    if subtype not in _PEOPLES or message.get("bot_id") or message.get("bot_profile"):
        return None
    channel, ts, user, text = (event.get("channel"), message.get("ts"), message.get("user"),
                               message.get("text"))
    if not all(isinstance(v, str) and v for v in (channel, ts, user, text)):
        return None
    thread_ts = message.get("thread_ts")
    return Posted(channel=channel, ts=ts, user=user, text=text,  # type: ignore[arg-type]
                  thread_ts=thread_ts if isinstance(thread_ts, str) else None)


def nothing_to_do(event: Body) -> dict[str, Any] | None:
    """In the acknowledgement: ``{}`` (acknowledge, done) unless a person's message holds
    a string with a secret's shape and checksum."""
    message = posted(event)
    return None if message is not None and crypto.find_secrets(message.text) else {}


def handle_message(body: Body, event: Body, context: BoltContext, client: WebClient) -> None:
    """Look the secrets up; for the live ones not yet noticed in this message, queue the
    notices (posted by the drain after the commit) and warn the poster."""
    d = deps(context)
    message, team_id = posted(event), body.get("team_id")
    if message is None or not isinstance(team_id, str):
        return
    secrets = crypto.find_secrets(message.text)
    with d.sessions.begin() as session:
        if not leaks.live_tokens(session, team_id=team_id, secrets=secrets, now=utcnow()):
            return  # dead, of another workspace, or nobody's: nothing is said
    where = leaks.Where(channel=message.channel, message_ts=message.ts, poster=message.user,
                        permalink=_permalink(client, message))
    with d.sessions.begin() as session:
        found = leaks.record_leaks(
            session, team_id=team_id, secrets=secrets, where=where,
            action=leaks.LeakAction(d.settings.tokenbot_leak_action),
            default_channel=d.settings.tokenbot_alert_channel, now=utcnow())
    viewer = Actor(team_id, message.user, is_admin=d.settings.is_admin(message.user))
    for leak in found:
        client.chat_postEphemeral(channel=message.channel, user=message.user,
                                  thread_ts=message.thread_ts,
                                  **leak_warning(leak, viewer=viewer).payload())


def _permalink(client: WebClient, message: Posted) -> str | None:
    """Slack's link to the message (chat.getPermalink: the event carries no workspace URL,
    and a thread reply's link needs its thread); None when Slack does not answer."""
    try:
        link = client.chat_getPermalink(channel=message.channel,
                                        message_ts=message.ts).get("permalink")
    except (SlackClientError, OSError) as error:
        log.warning("No permalink for a leaked secret's message (%s): the notices name "
                    "its conversation only", type(error).__name__)
        return None
    return link if isinstance(link, str) else None


def answer_error(error: Exception, body: Body, d: Deps, client: WebClient) -> None:
    """Nobody asked for anything, so nobody is told: the error is only logged (its type
    and traceback, never the message); the notices already queued are posted anyway."""


def register(app: App) -> None:
    on_event(app, "message", handle_message, surface=answer_error, answer=nothing_to_do)
