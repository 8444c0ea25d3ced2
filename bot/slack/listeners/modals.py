"""Submissions of the create and "Edit Access Token" modals.

Validation is the service's: its ValidationError names a field, which maps onto the
modal's block, and the modal answers ``response_action: errors`` with nothing written."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.errors import NotFoundError, PermissionDeniedError, ValidationError
from bot.models import utcnow
from bot.services import tokens as svc
from bot.slack.ids import NO_EXPIRY_VALUE, ActionId, BlockId
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
from bot.slack.views.table import Notice

FIELD_BLOCKS: dict[str, BlockId] = {
    "label": BlockId.LABEL,
    "scope": BlockId.SCOPE,
    "expires": BlockId.EXPIRES,
    "alert_channel": BlockId.ALERT_CHANNEL,
}


CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")


@dataclass(frozen=True)
class FormValues:
    label: str
    scope: str | None
    expires_on: dt.date | None
    alert_channel: str | None


def _element(values: dict[str, Any], block: BlockId, action: ActionId) -> dict[str, Any]:
    found = (values.get(block) or {}).get(action)
    return found if isinstance(found, dict) else {}


def read_form(view: dict[str, Any]) -> FormValues:
    values = (view.get("state") or {}).get("values") or {}
    label = _element(values, BlockId.LABEL, ActionId.LABEL_INPUT).get("value") or ""
    scope = (_element(values, BlockId.SCOPE, ActionId.SCOPE_SELECT).get("selected_option")
             or {}).get("value")
    raw_date = _element(values, BlockId.EXPIRES, ActionId.EXPIRES_PICK).get("selected_date")
    cleared = any(
        isinstance(option, dict) and option.get("value") == NO_EXPIRY_VALUE
        for option in _element(values, BlockId.NO_EXPIRY, ActionId.NO_EXPIRY_CHECK).get(
            "selected_options"
        ) or []
    )
    expires_on = None
    if raw_date and not cleared:
        try:
            expires_on = dt.date.fromisoformat(str(raw_date))
        except ValueError:
            raise ValidationError("Pick a date from the calendar.", field="expires") from None
    channel = _element(values, BlockId.ALERT_CHANNEL, ActionId.ALERT_CHANNEL_SELECT).get(
        "selected_conversation"
    )
    if channel and not CHANNEL_ID.fullmatch(str(channel)):
        raise ValidationError("Choose a channel from the list.", field="alert_channel")
    return FormValues(
        label=str(label),
        scope=str(scope) if scope else None,
        expires_on=expires_on,
        alert_channel=str(channel) if channel else None,
    )


def field_errors(error: ValidationError | PermissionDeniedError) -> dict[str, str] | None:
    """``{block_id: message}`` when the error belongs to one of the modal's fields."""
    block = FIELD_BLOCKS.get(getattr(error, "field", None) or "")
    return {block.value: str(error)} if block is not None else None


def handle_create_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                         context: BoltContext, client: WebClient) -> None:
    d = deps(context)
    actor = actor_from(body, d.settings)
    origin = ModalMetadata.decode(view.get("private_metadata")).origin
    try:
        form = read_form(view)
        with d.sessions.begin() as session:
            created = svc.create_token(
                session, box=d.box, actor=actor, label=form.label, scope=form.scope or "",
                scopes=d.settings.tokenbot_scopes, now=utcnow(), expires_on=form.expires_on,
                alert_channel=form.alert_channel,
            )
    except (ValidationError, PermissionDeniedError) as error:
        errors = field_errors(error)
        if errors is None:
            raise
        ack(response_action="errors", errors=errors)
        return
    ack()
    deliver_created(d, client, actor=actor, origin=origin, created=created)


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
                       context: BoltContext, client: WebClient) -> None:
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
                now=now, label=form.label, scope=form.scope or "",
                expires_on=form.expires_on, alert_channel=form.alert_channel,
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
        errors = field_errors(error)
        if errors is None:
            raise
        ack(response_action="errors", errors=errors)
        return
    ack()
    if isinstance(drawing, DigestRedraw):
        drawing.show(client)
    else:
        show(drawing, client)


def _edited(result: svc.EditResult) -> str:
    label = escape(result.token.label)
    if result.changes:
        return f"Updated *{label}*: {describe_changes(result.changes)}."
    return f"Nothing to change on *{label}*."
