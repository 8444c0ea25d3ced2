"""Buttons of the token table (ephemeral message or App Home): the lifecycle actions,
copy and hide, pagination, and opening the create / edit modals. Each listener is marked
with the actions it handles; ``bot.slack.actions`` lists them all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.models import utcnow
from bot.services import tokens as svc
from bot.slack.actions import listener
from bot.slack.ids import ActionId
from bot.slack.listeners.common import (
    Deps,
    actor_from,
    deps,
    draw_table,
    origin_of_action,
    redraw,
    respond_to,
    send,
    show,
)
from bot.slack.state import ModalMetadata, Origin, OriginKind, RowRef, TableState
from bot.slack.views.formatting import escape
from bot.slack.views.messages import SecretReason, secret_blocks, secret_message
from bot.slack.views.modals import FormMode, token_form
from bot.slack.views.table import Notice

Body = dict[str, Any]


def _row(
    body: Body, action: dict[str, Any], context: BoltContext
) -> tuple[Deps, svc.Actor, RowRef, Origin]:
    d = deps(context)
    actor = actor_from(body, d.settings)
    ref = RowRef.decode(action.get("value"))
    return d, actor, ref, origin_of_action(body, ref.state)


def _table(
    body: Body, action: dict[str, Any], context: BoltContext
) -> tuple[Deps, svc.Actor, Origin]:
    """For the buttons that carry a table state rather than a row."""
    d = deps(context)
    actor = actor_from(body, d.settings)
    return d, actor, origin_of_action(body, TableState.decode(action.get("value")))


def _disable(session: Session, actor: svc.Actor, ref: RowRef, now: dt.datetime) -> str:
    token = svc.disable_token(session, actor=actor, public_id=ref.public_id,
                              expected_version=ref.version, now=now)
    return (
        f"Disabled *{escape(token.label)}*. Any process using it has lost access; "
        "enable it to restore access."
    )


def _enable(session: Session, actor: svc.Actor, ref: RowRef, now: dt.datetime) -> str:
    token = svc.enable_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now)
    return f"Enabled *{escape(token.label)}*. It is active again, immediately."


def _delete(session: Session, actor: svc.Actor, ref: RowRef, now: dt.datetime) -> str:
    label = svc.delete_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now)
    return f"Deleted *{escape(label)}* for good. Requests using it now fail."


# A change of one token, then the table redrawn with what it says.
_CHANGES: dict[str, Callable[[Session, svc.Actor, RowRef, dt.datetime], str]] = {
    ActionId.DISABLE: _disable,
    ActionId.ENABLE: _enable,
    ActionId.DELETE: _delete,
}


@listener(*_CHANGES)
def handle_change(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    ack()
    d, actor, ref, origin = _row(body, action, context)
    change, now = _CHANGES[action["action_id"]], utcnow()
    with d.sessions.begin() as session:
        text = change(session, actor, ref, now)
        drawing = draw_table(session, actor=actor, origin=origin, now=now, notice=Notice(text))
    show(drawing, client)


@listener(ActionId.COPY)
def handle_copy(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """The full secret, only to the person who asked; audited by the service."""
    ack()
    d, actor, ref, origin = _row(body, action, context)
    now = utcnow()
    with d.sessions.begin() as session:
        token, secret = svc.reveal_token(session, box=d.box, actor=actor,
                                         public_id=ref.public_id, now=now)
        drawing = None
        if origin.kind == OriginKind.HOME:
            drawing = draw_table(
                session, actor=actor, origin=origin, now=now,
                notice=Notice(f"Copied *{escape(token.label)}*: the token is shown above."),
                panel=secret_blocks(token, secret, SecretReason.COPY, origin.state),
            )
    if drawing is not None:
        show(drawing, client)
        return
    respond = respond_to(origin.response_url)
    if respond is not None:
        send(respond, secret_message(token, secret, SecretReason.COPY, origin.state),
             replace_original=False)


@listener(ActionId.HIDE_SECRET)
def handle_hide(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Remove the secret: delete the ephemeral message, or redraw Home without it."""
    ack()
    d, actor, origin = _table(body, action, context)
    if origin.kind == OriginKind.HOME:
        redraw(d, client, actor=actor, origin=origin)
        return
    respond = respond_to(origin.response_url)
    if respond is not None:
        respond(delete_original=True)


@listener(ActionId.PAGE_PREVIOUS, ActionId.PAGE_NEXT, ActionId.REFRESH)
def handle_page(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Previous / Next / Refresh: the same table at another page."""
    ack()
    d, actor, origin = _table(body, action, context)
    redraw(d, client, actor=actor, origin=origin)


@listener(ActionId.EDIT)
def handle_edit_open(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                     client: WebClient) -> None:
    """Check first (owner or admin, unchanged, not disabled), then open the prefilled form."""
    ack()
    d, actor, ref, origin = _row(body, action, context)
    with d.sessions.begin() as session:
        token = svc.load_for_edit(session, actor=actor, public_id=ref.public_id,
                                  expected_version=ref.version)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version)
        view = token_form(mode=FormMode.EDIT, scopes=d.settings.tokenbot_scopes,
                          metadata=metadata, token=token)
    client.views_open(trigger_id=body["trigger_id"], view=view)


@listener(ActionId.CREATE_OPEN)
def handle_create_open(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    ack()
    d = deps(context)
    origin = origin_of_action(body, TableState.decode(action.get("value")))
    view = token_form(mode=FormMode.CREATE, scopes=d.settings.tokenbot_scopes,
                      metadata=ModalMetadata(origin=origin))
    client.views_open(trigger_id=body["trigger_id"], view=view)
