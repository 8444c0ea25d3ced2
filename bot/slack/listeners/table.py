"""Buttons of the token table (ephemeral message or App Home): the lifecycle actions,
copy and hide, pagination, and opening the create / edit modals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.slack.ids import ActionId
from bot.slack.listeners.common import (
    Deps,
    actor_from,
    deps,
    draw_table,
    origin_of_action,
    prefetch_for,
    redraw,
    respond_to,
    send,
    show,
    utcnow,
)
from bot.slack.listeners.errors import reporting
from bot.services import tokens as svc
from bot.slack.views.formatting import escape
from bot.slack.views.messages import SecretReason, secret_blocks, secret_message
from bot.slack.views.modals import FormMode, token_form
from bot.slack.state import ModalMetadata, Origin, OriginKind, RowRef, TableState
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


def _disable(session: Any, d: Deps, actor: svc.Actor, ref: RowRef, now: Any,
             prefetch: svc.Prefetch | None) -> str:
    token = svc.disable_token(session, actor=actor, public_id=ref.public_id,
                              expected_version=ref.version, now=now, prefetch=prefetch)
    return (
        f"Disabled *{escape(token.label)}*. Any process using it has lost access; "
        "enable it to restore access."
    )


def _enable(session: Any, d: Deps, actor: svc.Actor, ref: RowRef, now: Any,
            prefetch: svc.Prefetch | None) -> str:
    token = svc.enable_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now, prefetch=prefetch)
    return f"Enabled *{escape(token.label)}*. It is active again, immediately."


def _delete(session: Any, d: Deps, actor: svc.Actor, ref: RowRef, now: Any,
            prefetch: svc.Prefetch | None) -> str:
    label = svc.delete_token(session, actor=actor, public_id=ref.public_id,
                             expected_version=ref.version, now=now)
    return f"Deleted *{escape(label)}* for good. Requests using it now fail."


Change = Callable[[Any, Deps, svc.Actor, RowRef, Any, "svc.Prefetch | None"], str]


def _lifecycle(change: Change) -> Callable[..., None]:
    def handle(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
               client: WebClient) -> None:
        ack()
        d, actor, ref, origin = _row(body, action, context)
        now = utcnow()
        removes = change is _delete
        # Disable and Enable read the page to redraw on the way (see svc.Prefetch).
        prefetch = None if removes else prefetch_for(actor, origin)
        with d.sessions.begin() as session:
            text = change(session, d, actor, ref, now, prefetch)
            drawing = draw_table(session, actor=actor, origin=origin, now=now,
                                 notice=Notice(text), recount=removes, prefetch=prefetch)
        show(drawing, client)

    handle.__name__ = f"handle{change.__name__}"
    return handle


def handle_rotate(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    ack()
    d, actor, ref, origin = _row(body, action, context)
    now = utcnow()
    with d.sessions.begin() as session:
        rotated = svc.rotate_token(session, box=d.box, actor=actor, public_id=ref.public_id,
                                   expected_version=ref.version, now=now)
        notice = Notice(
            f"Rotated *{escape(rotated.token.label)}*: the previous secret no longer works."
        )
        panel = (
            secret_blocks(rotated.token, rotated.secret, SecretReason.ROTATE, origin.state)
            if origin.kind == OriginKind.HOME
            else ()
        )
        drawing = draw_table(session, actor=actor, origin=origin, now=now, notice=notice,
                             panel=panel, recount=False)
    show(drawing, client)
    if origin.kind != OriginKind.HOME:
        respond = respond_to(origin.response_url)
        if respond is not None:
            message = secret_message(rotated.token, rotated.secret, SecretReason.ROTATE,
                                     origin.state)
            send(respond, message, replace_original=False)


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


def handle_page(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Previous / Next / Refresh: the same table at another page."""
    ack()
    d, actor, origin = _table(body, action, context)
    redraw(d, client, actor=actor, origin=origin)


def handle_edit_open(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                     client: WebClient) -> None:
    """Check first (owner or admin, unchanged, not disabled), then open the prefilled form."""
    ack()
    d, actor, ref, origin = _row(body, action, context)
    with d.sessions.begin() as session:
        token = svc.load_for_edit(session, actor=actor, public_id=ref.public_id,
                                  expected_version=ref.version)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version, seen=svc.Seen.of(token))
        view = token_form(mode=FormMode.EDIT, scopes=d.settings.tokenbot_scopes,
                          metadata=metadata, token=token)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def handle_create_open(ack: Ack, body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    ack()
    d = deps(context)
    origin = origin_of_action(body, TableState.decode(action.get("value")))
    view = token_form(mode=FormMode.CREATE, scopes=d.settings.tokenbot_scopes,
                      metadata=ModalMetadata(origin=origin))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def register(app: App) -> None:
    app.action(ActionId.DISABLE)(reporting(_lifecycle(_disable)))
    app.action(ActionId.ENABLE)(reporting(_lifecycle(_enable)))
    app.action(ActionId.DELETE)(reporting(_lifecycle(_delete)))
    app.action(ActionId.ROTATE)(reporting(handle_rotate))
    app.action(ActionId.COPY)(reporting(handle_copy))
    app.action(ActionId.HIDE_SECRET)(reporting(handle_hide))
    for page_action in (ActionId.PAGE_PREVIOUS, ActionId.PAGE_NEXT, ActionId.REFRESH):
        app.action(page_action)(reporting(handle_page))
    app.action(ActionId.EDIT)(reporting(handle_edit_open))
    app.action(ActionId.CREATE_OPEN)(reporting(handle_create_open))
