"""Chat messages in the conversations the bot is in (``message`` events: new messages and
edits; a person's or a bot's, not Tokenbot's own): a live Tokenbot secret in one is told
to whoever posted it (an ephemeral warning with the row's Rotate and Disable; not to a
bot), its owner and its alert channel (the outbox), once per token and message. A message
without a secret ends in the acknowledgement (one substring test); the text is read, never
kept or logged."""

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
from bot.slack.listeners.common import deps_of
from bot.slack.listeners.errors import tell_nobody
from bot.slack.state import mapping
from bot.slack.views.leaks import leak_warning

log = logging.getLogger("bot.slack.leaks")

Body = dict[str, Any]

# What a message that is read may be (a reply also sent to the channel, a file with a
# comment, /me, a bot's or an integration's post); any other subtype (a deletion, a join…)
# is not read.
_READ: frozenset[str | None] = frozenset({None, "thread_broadcast", "file_share",
                                          "me_message", "bot_message"})


@dataclass(frozen=True)
class Posted:
    """A message as it reads now (an edit: its new text, under its first ts). ``user``:
    who posted it (a person, or a bot's user); None for a bot without one (a webhook),
    then ``bot_id`` says which. A bot cannot be sent an ephemeral."""

    channel: str
    ts: str
    user: str | None
    text: str
    thread_ts: str | None = None
    channel_type: str = "channel"
    bot_id: str | None = None
    bot_name: str | None = None
    app_id: str | None = None

    @property
    def poster(self) -> str:
        return self.user or self.bot_id or ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def posted(event: Body) -> Posted | None:
    """The message a ``message`` event is about (a person's or a bot's), or None: a
    deletion, another subtype, or not readable."""
    message, subtype = event, event.get("subtype")
    if subtype == "message_changed":
        message = mapping(event.get("message"))
        subtype = message.get("subtype")
    if subtype not in _READ:
        return None
    profile = mapping(message.get("bot_profile"))
    channel, ts, text = _text(event.get("channel")), _text(message.get("ts")), _text(
        message.get("text"))
    user, bot_id = _text(message.get("user")), _text(message.get("bot_id") or profile.get("id"))
    if channel is None or ts is None or text is None or (user is None and bot_id is None):
        return None
    return Posted(channel=channel, ts=ts, user=user, text=text,
                  thread_ts=_text(message.get("thread_ts")),
                  channel_type=_text(event.get("channel_type")) or (
                      "im" if channel.startswith("D") else "channel"),
                  bot_id=bot_id,
                  bot_name=_text(message.get("username") or profile.get("name")),
                  app_id=_text(message.get("app_id") or profile.get("app_id")))


def nothing_to_do(event: Body) -> dict[str, Any] | None:
    """In the acknowledgement: ``{}`` (acknowledge, done) unless a message holds a string
    with a secret's shape and checksum (Tokenbot never posts one: its own messages are
    told apart after, by :func:`is_own`)."""
    message = posted(event)
    return None if message is not None and crypto.find_secrets(message.text) else {}


def is_own(message: Posted, body: Body, context: BoltContext) -> bool:
    """Whether Tokenbot posted ``message``: by its bot and bot user ids as Bolt knows them
    (``context.bot_id``, ``context.bot_user_id``, from the authorization) or, as this app
    authorizes without ``auth.test``, as the event's envelope tells them (its bot user in
    ``authorizations``, this app's ``api_app_id``)."""
    own_users = {context.bot_user_id} | {
        a.get("user_id") for a in body.get("authorizations") or [] if isinstance(a, dict)
        and a.get("is_bot")}
    return bool((message.user and message.user in own_users)
                or (message.bot_id and message.bot_id == context.bot_id)
                or (message.app_id and message.app_id == body.get("api_app_id")))


def handle_message(body: Body, event: Body, context: BoltContext, client: WebClient) -> None:
    """Look the secrets up; for the live ones not yet noticed in this message, queue the
    notices (posted by the drain after the commit) and warn the poster (a person: a bot
    cannot be sent an ephemeral, its owner and the channel are told all the same)."""
    deps = deps_of(context)
    message, team_id = posted(event), body.get("team_id")
    if message is None or not isinstance(team_id, str) or is_own(message, body, context):
        return
    secrets = crypto.find_secrets(message.text)
    with deps.sessions.begin() as session:
        if not leaks.live_tokens(session, team_id=team_id, secrets=secrets, now=utcnow()):
            return  # dead, of another workspace, or nobody's: nothing is said
    by_bot = message.bot_id is not None
    where = leaks.Where(channel=message.channel, message_ts=message.ts, poster=message.poster,
                        permalink=_permalink(client, message),
                        channel_type=message.channel_type, by_bot=by_bot,
                        bot_name=message.bot_name if by_bot else None)
    with deps.sessions.begin() as session:
        found = leaks.record_leaks(
            session, team_id=team_id, secrets=secrets, where=where,
            action=leaks.LeakAction(deps.settings.tokenbot_leak_action),
            default_channel=deps.settings.tokenbot_alert_channel, now=utcnow())
    if by_bot or message.user is None:
        return
    viewer = Actor(team_id, message.user, is_admin=deps.settings.is_admin(message.user))
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


def register(app: App) -> None:
    on_event(app, "message", handle_message, surface=tell_nobody,
             answer=lambda event, _: nothing_to_do(event))
