"""Buttons (and, in large digests, menus) of the expiry digest messages: Extend 30 days,
Edit, Disable. The digest is redrawn in place (``chat.update``) with what was done and by
whom, and the clicker gets an ephemeral confirmation; ``answer_error`` is this surface's
error path (an ephemeral reason, the digest redrawn)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block
from sqlalchemy.orm import Session

from bot.errors import NotFoundError, TokenbotError
from bot.models import Audience, Token, utcnow
from bot.services import alerts
from bot.services import tokens
from bot.services.policy import Policy
from bot.slack.acks import on_actions
from bot.slack.ids import ActionId
from bot.slack.listeners.common import Deps, Row, actor_from, deps_of
from bot.slack.listeners.errors import Surface, tell_line, user_text
from bot.slack.listeners.table import edit_open
from bot.slack.state import Origin, OriginKind, RowRef, mapping
from bot.slack.views.digests import (
    digest_blocks,
    digest_text,
    moved_text,
    redraw_item,
)
from bot.slack.views.formatting import escape
from bot.texts import DISABLED_REPLY, ENABLE_ELSEWHERE

Body = dict[str, Any]


@dataclass(frozen=True)
class Where:
    """The digest message clicked, and who clicked (from the signed payload)."""

    channel: str
    ts: str
    user_id: str


def where_clicked(body: Body) -> Where | None:
    container = mapping(body.get("container"))
    channel = container.get("channel_id") or mapping(body.get("channel")).get("id")
    ts = container.get("message_ts") or mapping(body.get("message")).get("ts")
    user = mapping(body.get("user")).get("id")
    if isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str) and all(
        (channel, ts, user)
    ):
        return Where(channel=channel, ts=ts, user_id=user)
    return None


def ref_of(action: dict[str, Any]) -> RowRef:
    """The row a post's button, or a menu of its compact layout, is about."""
    value = action.get("value")
    if value is None:  # a menu of the compact layout
        value = mapping(action.get("selected_option")).get("value")
    return RowRef.decode(value)


@dataclass(frozen=True)
class DigestRedraw:
    """A message Tokenbot posted (an expiry or hygiene digest, a departure post) as it now
    looks (its headline and blocks; no headline when there is nothing to redraw), and what
    to tell the user who acted."""

    where: Where
    headline: str | None = None
    blocks: list[Block] = field(default_factory=list)
    text: str | None = None

    def show(self, client: WebClient) -> None:
        if self.headline is not None:
            client.chat_update(channel=self.where.channel, ts=self.where.ts,
                               text=self.headline, blocks=self.blocks)
        if self.text:
            client.chat_postEphemeral(channel=self.where.channel, user=self.where.user_id,
                                      text=self.text)


#: A posted message as it now looks, with the reply to the clicker: (session, where, reply).
Redraw = Callable[[Session, Where, str | None], DigestRedraw]
#: A change made from a posted message: (session, actor, where, now) -> the reply.
PostChange = Callable[[Session, tokens.Actor, Where, dt.datetime], str]


def redraw_digest(session: Session, where: Where, text: str | None = None) -> DigestRedraw:
    """The digest redrawn from its alert records and the tokens' current state."""
    rows = alerts.message_alerts(session, channel=where.channel, ts=where.ts)
    items = [item for alert, token in rows if (item := redraw_item(alert, token)) is not None]
    if not items:
        return DigestRedraw(where=where, text=text)
    audience = Audience(rows[0][0].audience)
    now = utcnow()
    return DigestRedraw(where=where, headline=digest_text(items, audience, now),
                        blocks=digest_blocks(items, audience=audience, now=now), text=text)


def act_on_post(body: Body, context: BoltContext, client: WebClient, *, missing: str,
                change: PostChange, redraw: Redraw) -> None:
    """Run ``change`` for the clicker (from the signed payload) and, in its transaction,
    ``redraw`` the message; then update it in place and give the clicker the reply."""
    deps = deps_of(context)
    actor, where = actor_from(body, deps.settings), where_clicked(body)
    if where is None:
        raise NotFoundError(missing)
    now = utcnow()
    with deps.sessions.begin() as session:
        redrawn = redraw(session, where, change(session, actor, where, now))
    redrawn.show(client)


def disable_from_post(session: Session, actor: tokens.Actor, ref: RowRef,
                      now: dt.datetime) -> tuple[Token, str]:
    """Disable from a posted message: the token, and the reply (Enable is in ``/tokens``)."""
    token = tokens.disable_token(session, actor=actor, public_id=ref.public_id,
                                 expected_version=ref.version, now=now)
    return token, DISABLED_REPLY.format(label=escape(token.label), where=ENABLE_ELSEWHERE)


def _extend(session: Session, actor: tokens.Actor, ref: RowRef, now: dt.datetime,
            policy: Policy) -> tuple[Token, str, str]:
    result = tokens.extend_token(session, actor=actor, public_id=ref.public_id,
                                 expected_version=ref.version, now=now, policy=policy)
    token = result.token
    old, new = (dt.date.fromisoformat(day) for day in result.changes["expires_on"])
    text = f"Extended *{escape(token.label)}*: its expiry {moved_text(old, new)}."
    return token, alerts.ActedAction.EXTENDED, text


def _disable(session: Session, actor: tokens.Actor, ref: RowRef, now: dt.datetime,
             policy: Policy) -> tuple[Token, str, str]:
    token, text = disable_from_post(session, actor, ref, now)
    return token, alerts.ActedAction.DISABLED, text


# A change of one token from the digest: the token, what the digest remembers, the reply.
_CHANGES: dict[str, Callable[[Session, tokens.Actor, RowRef, dt.datetime, Policy],
                              tuple[Token, str, str]]] = {
    ActionId.ALERT_EXTEND: _extend,
    ActionId.ALERT_DISABLE: _disable,
}
MISSING = "That reminder message could not be found."


def handle_change(body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    ref, function = ref_of(action), _CHANGES[action["action_id"]]
    policy = deps_of(context).policy

    def change(session: Session, actor: tokens.Actor, where: Where, now: dt.datetime) -> str:
        token, acted, text = function(session, actor, ref, now, policy)
        alerts.record_action(session, channel=where.channel, ts=where.ts, token=token,
                             action=acted, user_id=actor.user_id, now=now)
        return text

    act_on_post(body, context, client, missing=MISSING, change=change, redraw=redraw_digest)


def handle_edit(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """The table's "Edit Access Token" modal, checked first like the table's Edit. Its
    submission redraws this digest (see ``after_edit``)."""
    deps, where = deps_of(context), where_clicked(body)
    if where is None:
        raise NotFoundError(MISSING)
    origin = Origin(kind=OriginKind.DIGEST, channel=where.channel, ts=where.ts)
    edit_open(Row(deps=deps, client=client, actor=actor_from(body, deps.settings),
                  ref=ref_of(action), origin=origin, trigger_id=body.get("trigger_id")))


def after_edit(session: Session, *, origin: Origin, actor: tokens.Actor,
               result: tokens.EditResult | None, now: dt.datetime,
               text: str | None = None) -> DigestRedraw:
    """In the edit's transaction: remember on the digest that the token was edited from it
    (when something changed), and the digest as it now looks."""
    assert origin.channel and origin.ts
    if result is not None and result.changes:
        alerts.record_action(session, channel=origin.channel, ts=origin.ts,
                             token=result.token, action=alerts.ActedAction.EDITED,
                             user_id=actor.user_id, now=now)
    where = Where(channel=origin.channel, ts=origin.ts, user_id=actor.user_id)
    redrawn = redraw_digest(session, where, text)
    if redrawn.headline is None:  # perhaps a hygiene digest (its Edit)
        from bot.slack.listeners.hygiene import redraw_hygiene

        redrawn = redraw_hygiene(session, where, text)
    return redrawn


def post_surface(redraw: Redraw) -> Surface:
    """The error surface of a message Tokenbot posted (an expiry or hygiene digest, a
    departure post): the reason ephemerally in its channel (else through the payload's
    ``response_url``); after a refusal, ``redraw`` shows the message as things now are."""

    def answer(error: Exception, body: Body, deps: Deps, client: WebClient) -> None:
        text = user_text(error, on_table=False)
        where = where_clicked(body)
        if where is None:
            tell_line(body.get("response_url"), text, client)
            return
        client.chat_postEphemeral(channel=where.channel, user=where.user_id,
                                  text=f":warning: {text}")
        if isinstance(error, TokenbotError):
            with deps.sessions.begin() as session:
                redrawn = redraw(session, where, None)
            redrawn.show(client)

    return answer


answer_error = post_surface(redraw_digest)


def register(app: App) -> None:
    on_actions(app, _CHANGES, handle_change, surface=answer_error)
    on_actions(app, [ActionId.ALERT_EDIT], handle_edit, surface=answer_error)
