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
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.alerts import service as alerts
from bot.alerts.digest import redraw_item
from bot.errors import NotFoundError, TokenbotError
from bot.listeners.common import Deps, actor_from, deps, utcnow
from bot.models import AlertKind
from bot.services import tokens as svc
from bot.views.alerts import (
    AlertActionId,
    AlertRef,
    DigestAudience,
    digest_blocks,
    digest_text,
)
from bot.views.formatting import date_short, escape
from bot.views.modals import FormMode, token_form
from bot.views.state import ModalMetadata, Origin, OriginKind

log = logging.getLogger("bot.listeners.alerts")

Body = dict[str, Any]


@dataclass(frozen=True)
class Click:
    deps: Deps
    actor: svc.Actor
    ref: AlertRef
    channel: str
    ts: str


def _click(body: Body, action: dict[str, Any], context: BoltContext) -> Click:
    d = deps(context)
    actor = actor_from(body, d.settings)
    value = action.get("value")
    if value is None:  # a menu of the compact layout
        value = (action.get("selected_option") or {}).get("value")
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        raise NotFoundError("That reminder message could not be found.")
    return Click(deps=d, actor=actor, ref=AlertRef.decode(value), channel=channel, ts=ts)


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


def _tell(client: WebClient, click: Click, text: str) -> None:
    client.chat_postEphemeral(channel=click.channel, user=click.actor.user_id, text=text)


def _refused(client: WebClient, click: Click, error: TokenbotError) -> None:
    log.info("Refused a digest action: %s", type(error).__name__)
    _tell(client, click, f":warning: {error}")
    now = utcnow()
    with click.deps.sessions.begin() as session:
        update = digest_update(session, channel=click.channel, ts=click.ts, now=now)
    _update(client, update)


def handle_extend(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    ack()
    click = _click(body, action, context)
    now = utcnow()
    try:
        with click.deps.sessions.begin() as session:
            result = alerts.extend_token(
                session, actor=click.actor, public_id=click.ref.public_id,
                expected_version=click.ref.version,
                scopes=click.deps.settings.tokenbot_scopes, now=now,
            )
            alerts.record_action(session, channel=click.channel, ts=click.ts,
                                 token=result.token, action=alerts.ActedAction.EXTENDED,
                                 user_id=click.actor.user_id, now=now)
            update = digest_update(session, channel=click.channel, ts=click.ts, now=now)
            label, until = result.token.label, result.token.expires_at
    except TokenbotError as error:
        _refused(client, click, error)
        return
    _update(client, update)
    assert until is not None
    _tell(client, click, f"Extended *{escape(label)}*: it now expires {date_short(until)}.")


def handle_disable(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                   client: WebClient) -> None:
    ack()
    click = _click(body, action, context)
    now = utcnow()
    try:
        with click.deps.sessions.begin() as session:
            token = svc.disable_token(
                session, actor=click.actor, public_id=click.ref.public_id,
                expected_version=click.ref.version, now=now,
            )
            alerts.record_action(session, channel=click.channel, ts=click.ts, token=token,
                                 action=alerts.ActedAction.DISABLED,
                                 user_id=click.actor.user_id, now=now)
            update = digest_update(session, channel=click.channel, ts=click.ts, now=now)
            label = token.label
    except TokenbotError as error:
        _refused(client, click, error)
        return
    _update(client, update)
    _tell(
        client, click,
        f"Disabled *{escape(label)}*. Any process using it has lost access; "
        "enable it from `/tokens` to restore access.",
    )


def handle_edit(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """The table's "Edit Access Token" modal, checked first like the table's Edit.
    After the submission the user's App Home shows the result."""
    ack()
    click = _click(body, action, context)
    try:
        with click.deps.sessions.begin() as session:
            token = svc.load_for_edit(session, actor=click.actor, public_id=click.ref.public_id,
                                      expected_version=click.ref.version)
            metadata = ModalMetadata(origin=Origin(kind=OriginKind.HOME),
                                     public_id=token.public_id, version=token.version)
            view = token_form(mode=FormMode.EDIT, scopes=click.deps.settings.tokenbot_scopes,
                              metadata=metadata, token=token)
    except TokenbotError as error:
        _refused(client, click, error)
        return
    client.views_open(trigger_id=body["trigger_id"], view=view)


def register(app: App) -> None:
    app.action(AlertActionId.EXTEND)(handle_extend)
    app.action(AlertActionId.DISABLE)(handle_disable)
    app.action(AlertActionId.EDIT)(handle_edit)
