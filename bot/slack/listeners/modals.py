"""Submissions of the create and "Edit Access Token" modals.

Validation is the service's: its ValidationError names a field, which maps onto the
modal's block, and the modal answers ``response_action: errors`` with nothing written.
A submission is acknowledged once its transaction is over; what it draws afterwards (the
table, the digest, the new secret) is returned, to run after the acknowledgement
(``bot.slack.acks.run_then_draw``)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.errors import NotFoundError, PermissionDeniedError, ValidationError
from bot.models import utcnow
from bot.services import tokens as svc
from bot.slack.background import Task
from bot.slack.listeners.common import (
    Deps,
    Drawing,
    actor_from,
    deps,
    draw_table,
    redraw,
    respond_to,
    send,
    show,
)
from bot.slack.listeners.digests import DigestRedraw, after_edit
from bot.slack.state import ModalMetadata, Origin, OriginKind
from bot.slack.views.formatting import escape
from bot.slack.views.messages import SecretReason, describe_changes, secret_blocks, secret_message
from bot.slack.views.modals import field_errors, read_form
from bot.slack.views.table import Notice

def _answer_inline(ack: Ack, error: ValidationError | PermissionDeniedError) -> None:
    """Show the error on the modal field it names; one that names none goes on to the
    error path."""
    errors = field_errors(error)
    if errors is None:
        raise error
    ack(response_action="errors", errors=errors)


def handle_create_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                         context: BoltContext, client: WebClient) -> Task | None:
    d = deps(context)
    actor = actor_from(body, d.settings)
    origin = ModalMetadata.decode(view.get("private_metadata")).origin
    try:
        form = read_form(view)
        with d.sessions.begin() as session:
            created = svc.create_token(session, box=d.box, actor=actor,
                                       scopes=d.settings.tokenbot_scopes, now=utcnow(),
                                       **form.fields())
    except (ValidationError, PermissionDeniedError) as error:
        _answer_inline(ack, error)
        return None
    ack()
    return lambda: deliver_created(d, client, actor=actor, origin=origin, created=created)


def deliver_created(d: Deps, client: WebClient, *, actor: svc.Actor, origin: Origin,
                    created: svc.CreatedToken) -> None:
    """The new secret reaches its creator only: where they came from, else on Home."""
    token, secret = created.token, created.secret
    notice = Notice(f"Created *{escape(token.label)}*.")
    respond = respond_to(origin.response_url)
    if origin.kind == OriginKind.HOME or respond is None:
        home = Origin(kind=OriginKind.HOME, state=origin.state)
        redraw(d, client, actor=actor, origin=home, notice=notice,
               panel=secret_blocks(token, secret, SecretReason.CREATE, origin.state))
        return
    send(respond, secret_message(token, secret, SecretReason.CREATE, origin.state),
         replace_original=False)
    if origin.kind == OriginKind.MESSAGE:
        redraw(d, client, actor=actor, origin=origin, notice=notice)


def handle_edit_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: BoltContext, client: WebClient) -> Task | None:
    d = deps(context)
    actor = actor_from(body, d.settings)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    try:
        form = read_form(view)
        now = utcnow()
        with d.sessions.begin() as session:
            result = svc.edit_token(
                session, actor=actor, public_id=metadata.public_id,
                expected_version=metadata.version or 0, scopes=d.settings.tokenbot_scopes,
                now=now, **form.fields(),
            )
            # Read in the same transaction, what the user looks at shows this very change.
            text = _edited(result)
            drawing: Drawing | DigestRedraw
            if metadata.origin.kind == OriginKind.DIGEST:
                drawing = after_edit(session, origin=metadata.origin, actor=actor,
                                     result=result, now=now, text=text)
            else:
                drawing = draw_table(session, actor=actor, origin=metadata.origin, now=now,
                                     notice=Notice(text))
    except (ValidationError, PermissionDeniedError) as error:
        _answer_inline(ack, error)
        return None
    ack()
    if isinstance(drawing, DigestRedraw):
        return lambda: drawing.show(client)
    return lambda: show(drawing, client)


def _edited(result: svc.EditResult) -> str:
    label = escape(result.token.label)
    if result.changes:
        return f"Updated *{label}*: {describe_changes(result.changes)}."
    return f"Nothing to change on *{label}*."
