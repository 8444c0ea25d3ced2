"""Rotation with overlap and dead-secret alarms in Slack: the row's "Rotate…" opens the
rotate modal (its submission rotates and shows the new secret to the user only), and the
alarm's "Enable" button (its "Open table" is the table's ``OPEN_TABLE``). A rotating row's
"Retire old secret now" and "Cancel rotation" are changes of one token, in
``listeners/table._CHANGES``. Thin: parse, call a service, draw."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import NotFoundError, ValidationError
from bot.models import utcnow
from bot.services import tokens
from bot.slack.acks import on_actions, on_submission
from bot.slack.background import Task
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.listeners import modals, table
from bot.slack.listeners.common import (
    RowFunction,
    Deps,
    Row,
    actor_from,
    deps_of,
    draw_table,
    respond_to,
    send,
    show,
)
from bot.slack.listeners.errors import tell_line, user_text
from bot.slack.state import ModalMetadata, Origin, OriginKind, RowRef
from bot.slack.views.formatting import escape
from bot.slack.views.rotation import read_rotate_form, rotate_modal
from bot.slack.views.messages import (
    SecretReason,
    notice_message,
    secret_blocks,
    secret_message,
)
from bot.slack.views.table import Notice, NoticeKind

Body = dict[str, Any]


def rotate_open(row: Row) -> None:
    """Check first (owner or admin, unchanged), then open the rotate modal: it is the
    confirmation, with the guide's warning."""
    deps, actor, ref, origin = row.deps, row.actor, row.ref, row.origin
    with deps.sessions.begin() as session:
        token = tokens.check_change(session, actor=actor, public_id=ref.public_id,
                                    expected_version=ref.version, verb="rotate")
        view = rotate_modal(label=token.label, masked=token.secret_masked,
                            metadata=ModalMetadata(origin=origin, public_id=token.public_id,
                                                   version=token.version),
                            retiring=token.previous_secret_masked
                            if token.rotating(utcnow()) else None)
    row.client.views_open(trigger_id=row.trigger_id, view=view)


def handle_rotate_submit(ack: Ack, body: Body, view: dict[str, Any], context: BoltContext,
                         client: WebClient) -> Task | None:
    """Rotate (now or with overlap), then acknowledge; the new secret goes to this user
    only, after the acknowledgement (with the table, and the owner's DM)."""
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    try:
        overlap = read_rotate_form(view)
    except ValidationError as error:
        ack(response_action="errors", errors={BlockId.ROTATE_OVERLAP: str(error)})
        return None
    now, origin = utcnow(), metadata.origin
    with deps.sessions.begin() as session:
        rotated = tokens.rotate_token(session, box=deps.box, actor=actor,
                                      public_id=metadata.public_id,
                                      expected_version=metadata.version, now=now,
                                      overlap=overlap)
        label = escape(rotated.token.label)
        if overlap is None:
            reason = SecretReason.ROTATE
            notice = Notice(f"Rotated *{label}*: the previous secret no longer works.")
        else:
            reason = SecretReason.ROTATE_OVERLAP
            notice = Notice(f"Rotated *{label}*: the previous secret works until the new one "
                            "is first used.")
        respond = respond_to(origin.response_url, client)
        home = origin.kind == OriginKind.HOME or respond is None
        drawing = draw_table(
            session, deps, actor=actor, now=now, notice=notice,
            origin=origin if not home else Origin(kind=OriginKind.HOME, state=origin.state),
            panel=secret_blocks(rotated.token, rotated.secret, reason, origin.state)
            if home else (),
        )
    ack()

    def then() -> None:
        if home or origin.kind == OriginKind.MESSAGE:
            show(drawing, client)
        if not home and respond is not None:
            send(respond, secret_message(rotated.token, rotated.secret, reason, origin.state),
                 replace_original=False)

    return then


# -- the dead-secret alarm's buttons -----------------------------------------------------------


def handle_alarm_enable(body: Body, action: dict[str, Any], context: BoltContext,
                        client: WebClient) -> None:
    """Enable the token the alarm is about; the answer goes to the clicker only."""
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    ref = RowRef.decode(action.get("value"))
    with deps.sessions.begin() as session:
        text = table.apply_change(session, actor, ref, utcnow(), ActionId.ENABLE)
    respond = respond_to(body.get("response_url"), client)
    if respond is not None:
        send(respond, notice_message(text, NoticeKind.SUCCESS), replace_original=False)


ROWS: dict[str, RowFunction] = {ActionId.ROTATE: rotate_open}


def answer_alarm_error(error: Exception, body: Body, deps: Deps, client: WebClient) -> None:
    """An alarm is a message to many: the answer goes to the clicker only."""
    tell_line(body.get("response_url"), user_text(error, on_table=False), client)


def register(app: App) -> None:
    on_actions(app, [ActionId.ROTATE], table.on_row(rotate_open), surface=table.answer_error)
    on_actions(app, [ActionId.DEAD_ENABLE], handle_alarm_enable, surface=answer_alarm_error)
    on_submission(app, CallbackId.ROTATE, handle_rotate_submit, surface=modals.answer_error)
