"""Submissions of the create and "Edit Access Token" modals: a field's error inline, any
other refusal on the form again with what was typed and a notice on top; what is drawn
after the acknowledgement is returned. ``answer_error`` is every modal's error surface."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import (
    NotFoundError,
    PermissionDeniedError,
    StaleTokenError,
    TokenbotError,
    ValidationError,
)
from bot.models import utcnow
from bot.services import tokens
from bot.slack.acks import on_submission
from bot.slack.background import Task
from bot.slack.ids import CallbackId
from bot.slack.listeners.common import (
    Deps,
    Drawing,
    actor_from,
    deps_of,
    draw_table,
    redraw,
    respond_to,
    send,
    show,
)
from bot.slack.listeners.digests import DigestRedraw, after_edit
from bot.slack.listeners.errors import FORM_TAIL, user_text, what_changed
from bot.slack.state import NOWHERE, ModalMetadata, Origin, OriginKind, mapping
from bot.slack.views.formatting import escape
from bot.slack.views.messages import SecretReason, describe_changes, secret_blocks, secret_message
from bot.slack.views.modals import (
    FormMode,
    FormValues,
    drawn_form,
    field_errors,
    notice_modal,
    read_form,
    reset_fields,
    token_form,
)
from bot.slack.views.table import Notice, NoticeKind

log = logging.getLogger("bot.slack.listeners")


def _answer_on_form(ack: Ack, error: TokenbotError, *, view: dict[str, Any], deps: Deps,
                    actor: tokens.Actor, metadata: ModalMetadata) -> None:
    """On the field it names; else the form again with what was typed and, on top, why
    it was not saved (for a token changed meanwhile: what changed and who changed it)."""
    errors = field_errors(error, view) if isinstance(error, (ValidationError,
                                                            PermissionDeniedError)) else None
    if errors is not None:
        ack(response_action="errors", errors=errors)
        return
    if metadata.public_id is not None:
        notice = what_changed(deps, error, team_id=actor.team_id, public_id=metadata.public_id,
                              tail=FORM_TAIL)
        with deps.sessions.begin() as session:
            try:
                token = tokens.get_token(session, team_id=actor.team_id,
                                         public_id=metadata.public_id)
                # a second submit applies the kept values over what is there now
                metadata = metadata.model_copy(update={"version": token.version})
            except NotFoundError:
                token = None
            form = _form(view, metadata, token, notice, actor, deps,
                         changed_meanwhile=isinstance(error, StaleTokenError))
    else:
        form = _form(view, metadata, None, user_text(error, on_table=False), actor, deps)
    ack(response_action="update", view=form)


def _form(view: dict[str, Any], metadata: ModalMetadata, token: Any, notice: str,
          actor: tokens.Actor, deps: Deps, *, changed_meanwhile: bool = False) -> Any:
    """The same form, as the user filled it (what cannot be read is left empty); for a
    token changed meanwhile, the fields the user left alone show its current values (under
    new block ids: Slack would keep showing what they held)."""
    mode = FormMode.EDIT if metadata.public_id is not None else FormMode.CREATE
    try:
        typed = read_form(view)
    except ValidationError:
        typed = None
    reset: set[str] = set()
    if typed is not None and token is not None and changed_meanwhile:
        shown = typed.over(FormValues.of(token), drawn=drawn_form(view))
        reset, typed = reset_fields(typed, shown), shown
    offered = tokens.grantable_scopes(scopes=deps.settings.tokenbot_scopes, actor=actor,
                                      current=token.scope if token is not None else None)
    return token_form(mode=mode, scopes=offered, metadata=metadata, token=token, typed=typed,
                      notice=notice, reset=reset, **deps.form_rules(actor))


def handle_create_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                         context: BoltContext, client: WebClient) -> Task | None:
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    origin = metadata.origin
    try:
        form = read_form(view)
        with deps.sessions.begin() as session:
            created = tokens.create_token(session, box=deps.box, actor=actor,
                                          scopes=deps.settings.tokenbot_scopes, now=utcnow(),
                                          policy=deps.policy, **form.fields())
    except TokenbotError as error:
        _answer_on_form(ack, error, view=view, deps=deps, actor=actor, metadata=metadata)
        return None
    ack()
    return lambda: deliver_created(deps, client, actor=actor, origin=origin, created=created)


def deliver_created(deps: Deps, client: WebClient, *, actor: tokens.Actor, origin: Origin,
                    created: tokens.CreatedToken) -> None:
    """The new secret reaches its creator only: where they came from, else on Home."""
    token, secret = created.token, created.secret
    notice = Notice(f"Created *{escape(token.label)}*.")
    respond = respond_to(origin.response_url, client)
    if origin.kind == OriginKind.HOME or respond is None:
        home = Origin(kind=OriginKind.HOME, state=origin.state)
        redraw(deps, client, actor=actor, origin=home, notice=notice,
               panel=secret_blocks(token, secret, SecretReason.CREATE, origin.state))
        return
    send(respond, secret_message(token, secret, SecretReason.CREATE, origin.state),
         replace_original=False)
    if origin.kind == OriginKind.MESSAGE:
        redraw(deps, client, actor=actor, origin=origin, notice=notice)


def handle_edit_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: BoltContext, client: WebClient) -> Task | None:
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    try:
        form = read_form(view)
        now = utcnow()
        with deps.sessions.begin() as session:
            result = tokens.edit_token(
                session, actor=actor, public_id=metadata.public_id,
                expected_version=metadata.version, scopes=deps.settings.tokenbot_scopes,
                now=now, policy=deps.policy, **form.fields(),
            )
            # Read in the same transaction, what the user looks at shows this very change.
            text = _edited(result)
            drawing: Drawing | DigestRedraw
            if metadata.origin.kind == OriginKind.DIGEST:
                drawing = after_edit(session, origin=metadata.origin, actor=actor,
                                     result=result, now=now, text=text)
            else:
                drawing = draw_table(session, deps, actor=actor, origin=metadata.origin, now=now,
                                     notice=Notice(text))
    except TokenbotError as error:
        _answer_on_form(ack, error, view=view, deps=deps, actor=actor, metadata=metadata)
        if isinstance(error, (StaleTokenError, NotFoundError)):
            refused = error  # (``error`` itself is unbound after the except block)
            return lambda: _redraw_behind(deps, client, actor=actor, metadata=metadata,
                                          error=refused)
        return None
    ack()

    def then() -> None:
        if isinstance(drawing, DigestRedraw):
            drawing.show(client)
        else:
            show(drawing, client)

    return then


def _redraw_behind(deps: Deps, client: WebClient, *, actor: tokens.Actor, metadata: ModalMetadata,
                   error: TokenbotError) -> None:
    """The table (or digest) behind the form, as the token now is."""
    if metadata.origin.kind == OriginKind.DIGEST:
        with deps.sessions.begin() as session:
            after_edit(session, origin=metadata.origin, actor=actor, result=None,
                       now=utcnow()).show(client)
        return
    notice = what_changed(deps, error, team_id=actor.team_id, public_id=metadata.public_id)
    redraw(deps, client, actor=actor, origin=metadata.origin,
           notice=Notice(notice, NoticeKind.ERROR))


def _edited(result: tokens.EditResult) -> str:
    label = escape(result.token.label)
    if result.changes:
        return f"Updated *{label}*: {describe_changes(result.changes)}."
    return f"Nothing to change on *{label}*."


def answer_error(error: Exception, body: dict[str, Any], deps: Deps, client: WebClient,
                 ack: Ack | None) -> None:
    """While the modal is open (``ack`` given), the answer inside it; the table (or
    digest) behind it redrawn when the token changed or went."""
    text = user_text(error)
    if isinstance(error, (StaleTokenError, NotFoundError)):
        actor = actor_from(body, deps.settings)
        metadata = ModalMetadata.decode(mapping(body.get("view")).get("private_metadata"),
                                        otherwise=NOWHERE)
        text = what_changed(deps, error, team_id=actor.team_id, public_id=metadata.public_id)
        refused = error
        # Still acknowledging: what is drawn behind the modal waits for no Slack call.
        if not deps.work.submit(lambda: _redraw_behind(deps, client, actor=actor,
                                                       metadata=metadata, error=refused)):
            log.warning("Busy: the table behind a refused submission was not redrawn")
    if ack is not None:
        ack(response_action="update", view=notice_modal(f":warning: {text}"))


def register(app: App) -> None:
    on_submission(app, CallbackId.CREATE, handle_create_submit, surface=answer_error)
    on_submission(app, CallbackId.EDIT, handle_edit_submit, surface=answer_error)
