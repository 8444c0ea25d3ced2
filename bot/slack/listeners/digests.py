"""Buttons (and, in large digests, menus) of the expiry digest messages: Extend 30 days,
Edit, Disable.

Thin: the acting user and team come from the signed payload (never from the value, which
only names the token and the version the user saw); the same services and rules as the
token table decide; then the digest message is redrawn in place with ``chat.update``
(the channel and ts of the message clicked) to show what was done and by whom, and the
user gets a short ephemeral confirmation.

Refusals (not the owner or an admin, a stale version, a deleted or disabled token) are
answered here, ephemerally, with the digest redrawn to the current state: the table's
error path would redraw a token table over the shared message.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.services import alerts

from bot.errors import NotFoundError, TokenbotError
from bot.slack.listeners.common import Deps, actor_from, deps, utcnow
from bot.models import AlertKind
from bot.services import tokens as svc
from bot.slack.views.digests import (
    redraw_item,
    AlertActionId,
    AlertRef,
    DigestAudience,
    digest_blocks,
    digest_text,
)
from bot.slack.views.formatting import date_short, escape
from bot.slack.views.modals import FormMode, token_form
from bot.slack.state import ModalMetadata, Origin, OriginKind

log = logging.getLogger("bot.slack.listeners.digests")

Body = dict[str, Any]


@dataclass(frozen=True)
class Where:
    """The digest message clicked, and who clicked (from the signed payload)."""

    channel: str
    ts: str
    user_id: str


@dataclass(frozen=True)
class Click:
    deps: Deps
    actor: svc.Actor
    ref: AlertRef
    where: Where


def _where(body: Body) -> Where | None:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    user = (body.get("user") or {}).get("id")
    if isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str) and all(
        (channel, ts, user)
    ):
        return Where(channel=channel, ts=ts, user_id=user)
    return None


def _value(action: dict[str, Any]) -> str | None:
    value = action.get("value")
    if value is None:  # a menu of the compact layout
        value = (action.get("selected_option") or {}).get("value")
    return value if isinstance(value, str) else None


def digest_update(session: Any, *, channel: str, ts: str, now: dt.datetime) -> dict[str, Any]:
    """``chat.update`` arguments that redraw a digest from its alert records and the
    tokens' current state (empty when the message carries nothing any more)."""
    rows = alerts.message_alerts(session, channel=channel, ts=ts)
    items = [item for alert, token in rows if (item := redraw_item(alert, token)) is not None]
    if not items:
        return {}
    audience = (
        DigestAudience.OWNER if rows[0][0].kind == AlertKind.OWNER else DigestAudience.CHANNEL
    )
    return {
        "channel": channel,
        "ts": ts,
        "text": digest_text(items, audience, now),
        "blocks": digest_blocks(items, audience=audience, now=now),
    }


def _update(client: WebClient, update: dict[str, Any]) -> None:
    if update:
        client.chat_update(**update)


def _tell(client: WebClient, where: Where, text: str) -> None:
    client.chat_postEphemeral(channel=where.channel, user=where.user_id, text=text)


Act = Callable[[Click, Body, WebClient], "str | None"]


def _digest_action(act: Act) -> Callable[..., None]:
    """Ack, act as the payload's user, then confirm ephemerally. A refusal (domain error)
    is told to the clicker alone and the digest redrawn to the current state, here rather
    than in the app's error handler, which would draw a token table over the digest."""

    def handle(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
               client: WebClient) -> None:
        ack()
        d = deps(context)
        where = _where(body)
        if where is None:
            raise NotFoundError("That reminder message could not be found.")
        try:
            click = Click(deps=d, actor=actor_from(body, d.settings),
                          ref=AlertRef.decode(_value(action)), where=where)
            text = act(click, body, client)
        except TokenbotError as error:
            log.info("Refused a digest action: %s", type(error).__name__)
            _tell(client, where, f":warning: {error}")
            with d.sessions.begin() as session:
                update = digest_update(session, channel=where.channel, ts=where.ts,
                                       now=utcnow())
            _update(client, update)
            return
        if text:
            _tell(client, where, text)

    handle.__name__ = f"handle_{act.__name__.lstrip('_')}"
    return handle


def _extend(click: Click, body: Body, client: WebClient) -> str:
    now = utcnow()
    where = click.where
    with click.deps.sessions.begin() as session:
        result = alerts.extend_token(
            session, actor=click.actor, public_id=click.ref.public_id,
            expected_version=click.ref.version, scopes=click.deps.settings.tokenbot_scopes,
            now=now,
        )
        alerts.record_action(session, channel=where.channel, ts=where.ts, token=result.token,
                             action=alerts.ActedAction.EXTENDED,
                             user_id=click.actor.user_id, now=now)
        update = digest_update(session, channel=where.channel, ts=where.ts, now=now)
        label, until = result.token.label, result.token.expires_at
    _update(client, update)
    assert until is not None
    return f"Extended *{escape(label)}*: it now expires {date_short(until)}."


def _disable(click: Click, body: Body, client: WebClient) -> str:
    now = utcnow()
    where = click.where
    with click.deps.sessions.begin() as session:
        token = svc.disable_token(session, actor=click.actor, public_id=click.ref.public_id,
                                  expected_version=click.ref.version, now=now)
        alerts.record_action(session, channel=where.channel, ts=where.ts, token=token,
                             action=alerts.ActedAction.DISABLED,
                             user_id=click.actor.user_id, now=now)
        update = digest_update(session, channel=where.channel, ts=where.ts, now=now)
        label = token.label
    _update(client, update)
    return (
        f"Disabled *{escape(label)}*. Any process using it has lost access; "
        "enable it from `/tokens` to restore access."
    )


def _edit(click: Click, body: Body, client: WebClient) -> None:
    """The table's "Edit Access Token" modal, checked first like the table's Edit. Its
    submission redraws this digest (see ``after_edit``)."""
    where = click.where
    with click.deps.sessions.begin() as session:
        token = svc.load_for_edit(session, actor=click.actor, public_id=click.ref.public_id,
                                  expected_version=click.ref.version)
        origin = Origin(kind=OriginKind.DIGEST, channel=where.channel, ts=where.ts)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version, seen=svc.Seen.of(token))
        view = token_form(mode=FormMode.EDIT, scopes=click.deps.settings.tokenbot_scopes,
                          metadata=metadata, token=token)
    client.views_open(trigger_id=body["trigger_id"], view=view)
    return None


@dataclass(frozen=True)
class DigestRedraw:
    """A digest redrawn after an edit made from it, and the editor's confirmation."""

    where: Where
    update: dict[str, Any]
    text: str | None = None

    def show(self, client: WebClient) -> None:
        _update(client, self.update)
        if self.text:
            _tell(client, self.where, self.text)


def after_edit(session: Any, *, origin: Origin, actor: svc.Actor,
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
    update = digest_update(session, channel=origin.channel, ts=origin.ts, now=now)
    return DigestRedraw(where=where, update=update, text=text)


handle_extend = _digest_action(_extend)
handle_disable = _digest_action(_disable)
handle_edit = _digest_action(_edit)


def register(app: App) -> None:
    app.action(AlertActionId.EXTEND)(handle_extend)
    app.action(AlertActionId.DISABLE)(handle_disable)
    app.action(AlertActionId.EDIT)(handle_edit)
