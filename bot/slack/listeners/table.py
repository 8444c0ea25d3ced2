"""Buttons of the token table (ephemeral message or App Home): the lifecycle actions,
copy and hide, pagination, and opening the create / edit modals. Each listener is marked
with the actions it handles; ``bot.slack.actions`` lists them all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.models import utcnow
from bot.services import rotation
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
from bot.slack.state import (FIRST_PAGE, ModalMetadata, Origin, OriginKind, RowRef, TableState,
                             mapping)
from bot.slack.views.formatting import escape
from bot.slack.views.home import ALL_STATUSES
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
    body: Body, action: dict[str, Any], context: BoltContext,
    otherwise: TableState | None = None,
) -> tuple[Deps, svc.Actor, Origin]:
    """For the buttons that carry a table state rather than a row."""
    d = deps(context)
    actor = actor_from(body, d.settings)
    state = TableState.decode(action.get("value"), otherwise=otherwise)
    return d, actor, origin_of_action(body, state)


def _disable(session: Session, actor: svc.Actor, ref: RowRef,
             now: dt.datetime) -> str:
    token = svc.disable_token(session, actor=actor, public_id=ref.public_id,
                              expected_version=ref.version, now=now)
    return (f"Disabled *{escape(token.label)}*. Any process using it has lost access; "
            "enable it to restore access.")


def enable(session: Session, actor: svc.Actor, ref: RowRef,
           now: dt.datetime) -> str:
    """Also the dead-secret alarm's Enable (``listeners/rotation``)."""
    token = svc.enable_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now)
    return f"Enabled *{escape(token.label)}*. It is active again, immediately."


def _delete(session: Session, actor: svc.Actor, ref: RowRef,
            now: dt.datetime) -> str:
    label = svc.delete_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now)
    return f"Deleted *{escape(label)}* for good. Requests using it now fail."


def _retire_old(session: Session, actor: svc.Actor, ref: RowRef,
                now: dt.datetime) -> str:
    token = rotation.retire_now(session, actor=actor, public_id=ref.public_id,
                                expected_version=ref.version, now=now)
    return f"Retired the old secret of *{escape(token.label)}*: only the new one works."


def _cancel_rotation(session: Session, actor: svc.Actor, ref: RowRef,
                     now: dt.datetime) -> str:
    token = rotation.cancel_rotation(session, actor=actor, public_id=ref.public_id,
                                     expected_version=ref.version, now=now)
    return (f"Cancelled the rotation of *{escape(token.label)}*: the old secret stays, "
            "the new one no longer works.")


# A change of one token, then the table redrawn with what it says (its owner is told
# through the outbox: ``services.audit.record``).
_CHANGES: dict[str, Callable[[Session, svc.Actor, RowRef, dt.datetime],
                              str]] = {
    ActionId.DISABLE: _disable,
    ActionId.ENABLE: enable,
    ActionId.DELETE: _delete,
    ActionId.ROTATION_RETIRE: _retire_old,
    ActionId.ROTATION_CANCEL: _cancel_rotation,
}


@listener(*_CHANGES)
def handle_change(body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    d, actor, ref, origin = _row(body, action, context)
    change, now = _CHANGES[action["action_id"]], utcnow()
    with d.sessions.begin() as session:
        text = change(session, actor, ref, now)
        drawing = draw_table(session, actor=actor, origin=origin, now=now,
                             expiring_days=d.settings.expiring_days, notice=Notice(text))
    show(drawing, client)


@listener(ActionId.COPY)
def handle_copy(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """The full secret, only to the person who asked; audited by the service."""
    d, actor, ref, origin = _row(body, action, context)
    now = utcnow()
    with d.sessions.begin() as session:
        token, secret = svc.reveal_token(session, box=d.box, actor=actor,
                                         public_id=ref.public_id, now=now)
        drawing = None
        if origin.kind == OriginKind.HOME:
            drawing = draw_table(
                session, actor=actor, origin=origin, now=now,
                expiring_days=d.settings.expiring_days,
                notice=Notice(f"The full token *{escape(token.label)}* is shown above, "
                              "only to you."),
                panel=secret_blocks(token, secret, SecretReason.COPY, origin.state),
            )
    if drawing is not None:
        show(drawing, client)
    else:
        respond = respond_to(origin.response_url, client)
        if respond is not None:
            send(respond, secret_message(token, secret, SecretReason.COPY, origin.state),
                 replace_original=False)


@listener(ActionId.HIDE_SECRET)
def handle_hide(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Remove the secret: delete the ephemeral message, or redraw Home without it."""
    d, actor, origin = _table(body, action, context)
    if origin.kind == OriginKind.HOME:
        redraw(d, client, actor=actor, origin=origin)
        return
    respond = respond_to(origin.response_url, client)
    if respond is not None:
        respond(delete_original=True)


@listener(ActionId.PAGE_PREVIOUS, ActionId.PAGE_NEXT, ActionId.REFRESH, ActionId.CLEAR_FILTER)
def handle_page(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Previous / Next / Refresh / Clear filter: the table at the page and filter the
    button carries."""
    d, actor, origin = _table(body, action, context)
    redraw(d, client, actor=actor, origin=origin)


@listener(ActionId.HOME_STATUS, ActionId.HOME_OWNER)
def handle_home_filter(body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    """Home's status menu and owner picker: the table from page 1 with that filter (the
    rest of the filter is what the Home view remembers)."""
    d = deps(context)
    actor = actor_from(body, d.settings)
    state = TableState.decode(mapping(body.get("view")).get("private_metadata"))
    if action.get("action_id") == ActionId.HOME_OWNER:
        chosen = {"owner": action.get("selected_user") or ""}  # none: no owner filter
    else:
        status = mapping(action.get("selected_option")).get("value")
        chosen = {"status": None if status == ALL_STATUSES else status}
    state = TableState.of(**{**state.model_dump(), "page": 1, **chosen})
    origin = Origin(kind=OriginKind.HOME, state=state)
    redraw(d, client, actor=actor, origin=origin)


@listener(ActionId.OPEN_TABLE)
def handle_open_table(body: Body, action: dict[str, Any], context: BoltContext,
                      client: WebClient) -> None:
    """The button of an owner's DM or a dead-secret alarm: the table filtered to that
    token, as a new message only the clicker sees (the message itself stays). A value it
    cannot read (a message older than its codec) opens the whole table."""
    d, actor, origin = _table(body, action, context, otherwise=FIRST_PAGE)
    redraw(d, client, actor=actor, origin=origin.model_copy(update={"kind": OriginKind.COMMAND}))


@listener(ActionId.EDIT)
def handle_edit_open(body: Body, action: dict[str, Any], context: BoltContext,
                     client: WebClient) -> None:
    """Check first (owner or admin, unchanged, not disabled), then open the prefilled form."""
    d, actor, ref, origin = _row(body, action, context)
    with d.sessions.begin() as session:
        token = svc.load_for_edit(session, actor=actor, public_id=ref.public_id,
                                  expected_version=ref.version)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version)
        scopes = svc.grantable_scopes(scopes=d.settings.tokenbot_scopes, actor=actor,
                                      current=token.scope)
        view = token_form(mode=FormMode.EDIT, scopes=scopes, metadata=metadata, token=token)
    client.views_open(trigger_id=body["trigger_id"], view=view)


@listener(ActionId.CREATE_OPEN)
def handle_create_open(body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    d, actor, origin = _table(body, action, context)
    scopes = svc.grantable_scopes(scopes=d.settings.tokenbot_scopes, actor=actor)
    view = token_form(mode=FormMode.CREATE, scopes=scopes, metadata=ModalMetadata(origin=origin))
    client.views_open(trigger_id=body["trigger_id"], view=view)
