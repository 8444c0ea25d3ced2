"""Buttons (and, in large digests, menus) of the expiry digest messages: Extend 30 days,
Edit, Disable. The digest is redrawn in place (``chat.update``) with what was done and by
whom, and the clicker gets an ephemeral confirmation; ``answer_error`` is this surface's
error path (an ephemeral reason, the digest redrawn)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.errors import NotFoundError, TokenbotError
from bot.models import Audience, Token, utcnow
from bot.services import alerts
from bot.services import tokens as svc
from bot.services.policy import Policy
from bot.slack.acks import on_actions
from bot.slack.ids import ActionId
from bot.slack.listeners.common import Deps, actor_from, deps
from bot.slack.listeners.errors import tell_line, user_text
from bot.slack.state import ModalMetadata, Origin, OriginKind, RowRef, mapping
from bot.slack.views.digests import (
    digest_blocks,
    digest_text,
    moved_text,
    redraw_item,
)
from bot.slack.views.formatting import escape
from bot.slack.views.modals import FormMode, token_form
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


def _ref(action: dict[str, Any]) -> RowRef:
    value = action.get("value")
    if value is None:  # a menu of the compact layout
        value = mapping(action.get("selected_option")).get("value")
    return RowRef.decode(value)


@dataclass(frozen=True)
class DigestRedraw:
    """A message Tokenbot posted (an expiry or hygiene digest, a departure post) as it now
    looks (``chat.update`` arguments; empty when there is nothing to redraw), and what to
    tell the user who acted."""

    where: Where
    update: dict[str, Any]
    text: str | None = None

    def show(self, client: WebClient) -> None:
        if self.update:
            client.chat_update(**self.update)
        if self.text:
            client.chat_postEphemeral(channel=self.where.channel, user=self.where.user_id,
                                      text=self.text)


def redraw_digest(session: Session, *, where: Where, now: dt.datetime,
                  text: str | None = None) -> DigestRedraw:
    """The digest redrawn from its alert records and the tokens' current state."""
    rows = alerts.message_alerts(session, channel=where.channel, ts=where.ts)
    items = [item for alert, token in rows if (item := redraw_item(alert, token)) is not None]
    if not items:
        return DigestRedraw(where=where, update={}, text=text)
    audience = Audience(rows[0][0].audience)
    update = {"channel": where.channel, "ts": where.ts,
              "text": digest_text(items, audience, now),
              "blocks": digest_blocks(items, audience=audience, now=now)}
    return DigestRedraw(where=where, update=update, text=text)


def _extend(session: Session, actor: svc.Actor, ref: RowRef, now: dt.datetime,
            policy: Policy) -> tuple[Token, str, str]:
    result = svc.extend_token(session, actor=actor, public_id=ref.public_id,
                              expected_version=ref.version, now=now, policy=policy)
    token = result.token
    old, new = (dt.date.fromisoformat(day) for day in result.changes["expires_on"])
    text = f"Extended *{escape(token.label)}*: its expiry {moved_text(old, new)}."
    return token, alerts.ActedAction.EXTENDED, text


def _disable(session: Session, actor: svc.Actor, ref: RowRef, now: dt.datetime,
             policy: Policy) -> tuple[Token, str, str]:
    token = svc.disable_token(session, actor=actor, public_id=ref.public_id,
                              expected_version=ref.version, now=now)
    text = DISABLED_REPLY.format(label=escape(token.label), where=ENABLE_ELSEWHERE)
    return token, alerts.ActedAction.DISABLED, text


# A change of one token from the digest: the token, what the digest remembers, the reply.
_CHANGES: dict[str, Callable[[Session, svc.Actor, RowRef, dt.datetime, Policy],
                              tuple[Token, str, str]]] = {
    ActionId.ALERT_EXTEND: _extend,
    ActionId.ALERT_DISABLE: _disable,
}


def handle_change(body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    d = deps(context)
    actor, ref, where = actor_from(body, d.settings), _ref(action), where_clicked(body)
    if where is None:
        raise NotFoundError("That reminder message could not be found.")
    change, now = _CHANGES[action["action_id"]], utcnow()
    with d.sessions.begin() as session:
        token, acted, text = change(session, actor, ref, now, d.policy)
        alerts.record_action(session, channel=where.channel, ts=where.ts, token=token,
                             action=acted, user_id=actor.user_id, now=now)
        redrawn = redraw_digest(session, where=where, now=now, text=text)
    redrawn.show(client)


def handle_edit(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """The table's "Edit Access Token" modal, checked first like the table's Edit. Its
    submission redraws this digest (see ``after_edit``)."""
    d = deps(context)
    actor, ref, where = actor_from(body, d.settings), _ref(action), where_clicked(body)
    if where is None:
        raise NotFoundError("That reminder message could not be found.")
    with d.sessions.begin() as session:
        token = svc.load_for_edit(session, actor=actor, public_id=ref.public_id,
                                  expected_version=ref.version)
        origin = Origin(kind=OriginKind.DIGEST, channel=where.channel, ts=where.ts)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version)
        scopes = svc.grantable_scopes(scopes=d.settings.tokenbot_scopes, actor=actor,
                                      current=token.scope)
        view = token_form(mode=FormMode.EDIT, scopes=scopes, metadata=metadata, token=token,
                          **d.form_rules(actor))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def after_edit(session: Session, *, origin: Origin, actor: svc.Actor,
               result: svc.EditResult | None, now: dt.datetime,
               text: str | None = None) -> DigestRedraw:
    """In the edit's transaction: remember on the digest that the token was edited from it
    (when something changed), and the digest as it now looks."""
    assert origin.channel and origin.ts
    if result is not None and result.changes:
        alerts.record_action(session, channel=origin.channel, ts=origin.ts,
                             token=result.token, action=alerts.ActedAction.EDITED,
                             user_id=actor.user_id, now=now)
    where = Where(channel=origin.channel, ts=origin.ts, user_id=actor.user_id)
    redrawn = redraw_digest(session, where=where, now=now, text=text)
    if not redrawn.update:  # perhaps a hygiene digest (its Edit)
        from bot.slack.listeners.hygiene import redraw_hygiene

        redrawn = redraw_hygiene(session, where=where, text=text)
    return redrawn


def answer_on_post(error: Exception, body: Body, client: WebClient,
                   redraw: Callable[[Where], None]) -> None:
    """The error surface of a message Tokenbot posted (an expiry or hygiene digest, a
    departure post): the reason ephemerally in its channel (else through the payload's
    ``response_url``); after a refusal, ``redraw`` shows the message as things now are."""
    text = user_text(error, on_table=False)
    where = where_clicked(body)
    if where is None:
        tell_line(body.get("response_url"), text, client)
        return
    client.chat_postEphemeral(channel=where.channel, user=where.user_id,
                              text=f":warning: {text}")
    if isinstance(error, TokenbotError):
        redraw(where)


def answer_error(error: Exception, body: Body, d: Deps, client: WebClient) -> None:
    """Ephemerally in the digest's channel; after a refusal the digest is redrawn."""

    def redraw(where: Where) -> None:
        with d.sessions.begin() as session:
            redraw_digest(session, where=where, now=utcnow()).show(client)

    answer_on_post(error, body, client, redraw)


def register(app: App) -> None:
    on_actions(app, _CHANGES, handle_change, surface=answer_error)
    on_actions(app, [ActionId.ALERT_EDIT], handle_edit, surface=answer_error)
