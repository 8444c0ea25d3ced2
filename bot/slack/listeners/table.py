"""Buttons of the token table (ephemeral message or App Home): the lifecycle actions,
copy and hide, pagination, and opening the create / edit modals; and the table's error
surface (a refusal redraws the table with the reason). ``register(app)`` registers them."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.errors import NotFoundError, TokenbotError
from bot.models import utcnow
from bot.services import rotation
from bot.services import tokens
from bot.slack.acks import on_actions
from bot.slack.ids import ActionId
from bot.slack.listeners.common import (
    RowFunction,
    Deps,
    Row,
    actor_from,
    deps_of,
    draw_table,
    origin_of_action,
    redraw,
    respond_to,
    row_of,
    send,
    show,
)
from bot.slack.listeners import home
from bot.slack.listeners.errors import Body, tell_line, user_text, what_changed
from bot.slack.state import (
    FIRST_PAGE,
    MenuChoice,
    ModalMetadata,
    Origin,
    OriginKind,
    RowRef,
    TableState,
    mapping,
)
from bot.slack.views.formatting import escape

from bot.slack.views.home import ALL_STATUSES
from bot.slack.views.messages import SecretReason, secret_blocks, secret_message
from bot.slack.views.modals import FormMode, token_form
from bot.slack.views.table import Notice, NoticeKind
from bot.texts import DISABLED_REPLY



def _table(
    body: Body, action: dict[str, Any], context: BoltContext,
    otherwise: TableState | None = None,
) -> tuple[Deps, tokens.Actor, Origin]:
    """For the buttons that carry a table state rather than a row."""
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    state = TableState.decode(action.get("value"), otherwise=otherwise)
    return deps, actor, origin_of_action(body, state)


# A change of one token: the service that makes it, and what the table then says ({label}:
# escaped; {where}, in Disable's: "", Enable being on the table itself). The table is redrawn
# with it; the owner is told through the outbox (``services.audit.record``).
_CHANGES: dict[str, tuple[Callable[..., Any], str]] = {
    ActionId.DISABLE: (tokens.disable_token, DISABLED_REPLY),
    ActionId.ENABLE: (tokens.enable_token, "Enabled *{label}*. It is active again, immediately."),
    ActionId.DELETE: (tokens.delete_token,
                      "Deleted *{label}* for good. Requests using it now fail."),
    ActionId.ROTATION_RETIRE: (rotation.retire_now, "Retired the old secret of *{label}*: "
                                                    "only the new one works."),
    ActionId.ROTATION_CANCEL: (rotation.cancel_rotation,
                               "Cancelled the rotation of *{label}*: the old secret stays, "
                               "the new one no longer works."),
}


def apply_change(session: Session, actor: tokens.Actor, ref: RowRef, now: dt.datetime,
                 action_id: str) -> str:
    """Make the change ``action_id`` names (also the dead-secret alarm's Enable); what it
    says."""
    service, said = _CHANGES[action_id]
    done = service(session, actor=actor, public_id=ref.public_id,
                   expected_version=ref.version, now=now)
    return said.format(label=escape(done if isinstance(done, str) else done.label), where="")


def change(row: Row, action_id: str) -> None:
    now = utcnow()
    with row.deps.sessions.begin() as session:
        text = apply_change(session, row.actor, row.ref, now, action_id)
        drawing = draw_table(session, row.deps, actor=row.actor, origin=row.origin, now=now,
                             notice=Notice(text))
    show(drawing, row.client)


def copy(row: Row) -> None:
    """The full secret, only to the person who asked; audited by the service."""
    deps, actor, ref, origin, client = row.deps, row.actor, row.ref, row.origin, row.client
    now = utcnow()
    with deps.sessions.begin() as session:
        token, secret = tokens.reveal_token(session, box=deps.box, actor=actor,
                                            public_id=ref.public_id, now=now)
        drawing = None
        if origin.kind == OriginKind.HOME:
            drawing = draw_table(
                session, deps, actor=actor, origin=origin, now=now,
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


def handle_hide(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Remove the secret: delete the ephemeral message, or redraw Home without it."""
    deps, actor, origin = _table(body, action, context)
    if origin.kind == OriginKind.HOME:
        redraw(deps, client, actor=actor, origin=origin)
        return
    respond = respond_to(origin.response_url, client)
    if respond is not None:
        respond(delete_original=True)


def handle_page(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    """Previous / Next / Refresh / Clear filter: the table at the page and filter the
    button carries."""
    deps, actor, origin = _table(body, action, context)
    redraw(deps, client, actor=actor, origin=origin)


def handle_home_filter(body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    """Home's status menu and owner picker: the table from page 1 with that filter (the
    rest of the filter is what the Home view remembers)."""
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    state = TableState.decode(mapping(body.get("view")).get("private_metadata"))
    if action.get("action_id") == ActionId.HOME_OWNER:
        chosen = {"owner": action.get("selected_user") or ""}  # none: no owner filter
    else:
        status = mapping(action.get("selected_option")).get("value")
        chosen = {"status": None if status == ALL_STATUSES else status}
    state = TableState.of(**{**state.model_dump(), "page": 1, **chosen})
    origin = Origin(kind=OriginKind.HOME, state=state)
    redraw(deps, client, actor=actor, origin=origin)


def handle_open_table(body: Body, action: dict[str, Any], context: BoltContext,
                      client: WebClient) -> None:
    """The button of an owner's DM or a dead-secret alarm: the table filtered to that
    token, as a new message only the clicker sees (the message itself stays). A value it
    cannot read (a message older than its codec) opens the whole table."""
    deps, actor, origin = _table(body, action, context, otherwise=FIRST_PAGE)
    redraw(deps, client, actor=actor, origin=origin.model_copy(update={"kind": OriginKind.COMMAND}))


def edit_open(row: Row) -> None:
    """Check first (owner or admin, unchanged, not disabled), then open the prefilled form
    (also a digest's Edit: ``row.origin`` is the digest)."""
    deps, actor, ref, origin = row.deps, row.actor, row.ref, row.origin
    with deps.sessions.begin() as session:
        token = tokens.load_for_edit(session, actor=actor, public_id=ref.public_id,
                                     expected_version=ref.version)
        metadata = ModalMetadata(origin=origin, public_id=token.public_id,
                                 version=token.version)
        scopes = tokens.grantable_scopes(scopes=deps.settings.tokenbot_scopes, actor=actor,
                                         current=token.scope)
        view = token_form(mode=FormMode.EDIT, scopes=scopes, metadata=metadata, token=token,
                          **deps.form_rules(actor))
    row.client.views_open(trigger_id=row.trigger_id, view=view)


def handle_create_open(body: Body, action: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    deps, actor, origin = _table(body, action, context)
    create_open(deps, client, actor=actor, origin=origin, trigger_id=body["trigger_id"])


def create_open(deps: Deps, client: WebClient, *, actor: tokens.Actor, origin: Origin,
                trigger_id: object) -> None:
    """The empty form (also ``/tokens create``'s)."""
    scopes = tokens.grantable_scopes(scopes=deps.settings.tokenbot_scopes, actor=actor)
    view = token_form(mode=FormMode.CREATE, scopes=scopes, metadata=ModalMetadata(origin=origin),
                      **deps.form_rules(actor))
    client.views_open(trigger_id=trigger_id, view=view)


# Every row action of the table, by id (the "More…" menu runs these too).
ROWS: dict[str, RowFunction] = {
    **{action_id: functools.partial(change, action_id=action_id) for action_id in _CHANGES},
    ActionId.COPY: copy,
    ActionId.EDIT: edit_open,
}


def on_row(function: RowFunction) -> Callable[..., None]:
    """A row function as the listener of its button."""

    def listener(body: Body, action: dict[str, Any], context: BoltContext,
                 client: WebClient) -> None:
        function(row_of(body, RowRef.decode(action.get("value")), context, client))

    return listener


def register(app: App) -> None:
    for action_id, function in ROWS.items():
        on_actions(app, [action_id], on_row(function), surface=answer_error)
    on_actions(app, [ActionId.HIDE_SECRET], handle_hide, surface=answer_error)
    on_actions(app, [ActionId.PAGE_PREVIOUS, ActionId.PAGE_NEXT, ActionId.REFRESH,
                     ActionId.CLEAR_FILTER], handle_page, surface=answer_error)
    on_actions(app, [ActionId.HOME_STATUS, ActionId.HOME_OWNER], handle_home_filter,
               surface=answer_error)
    on_actions(app, [ActionId.OPEN_TABLE], handle_open_table, surface=answer_error)
    on_actions(app, [ActionId.CREATE_OPEN], handle_create_open, surface=answer_error)


# -- the table's error surface ---------------------------------------------------------


def _first_action(body: Body) -> dict[str, Any]:
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return actions[0]
    return {}


def _row_of_action(body: Body) -> RowRef | None:
    """The row a button (or a "More…" choice) was on, if it was on one."""
    action = _first_action(body)
    try:
        if action.get("action_id") == ActionId.ROW_MORE:
            return MenuChoice.decode(mapping(action.get("selected_option")).get("value")).ref
        return RowRef.decode(action.get("value"))
    except NotFoundError:
        return None


def answer_error(error: Exception, body: Body, deps: Deps, client: WebClient) -> None:
    """A click on the table: a refusal redraws the table it was on, with the reason;
    anything else is told where the user looks."""
    row = _row_of_action(body)
    state = row.state if row is not None else TableState.decode(
        _first_action(body).get("value"), otherwise=FIRST_PAGE)
    tell_on_table(error, deps=deps, client=client, origin=origin_of_action(body, state),
                  public_id=row.public_id if row is not None else None,
                  actor=lambda: actor_from(body, deps.settings),
                  user_id=mapping(body.get("user")).get("id"))


def tell_on_table(error: Exception, *, deps: Deps, client: WebClient, origin: Origin,
                  public_id: str | None, actor: Callable[[], tokens.Actor],
                  user_id: object) -> None:
    """A refusal: the table redrawn where it was, with why (and what changed); anything
    else: Home's notice, or one ephemeral line."""
    if isinstance(error, TokenbotError):
        by = actor()
        text = what_changed(deps, error, team_id=by.team_id, public_id=public_id)
        redraw(deps, client, actor=by, origin=origin, notice=Notice(text, NoticeKind.ERROR))
    elif origin.kind == OriginKind.HOME:
        home.publish_error(error, client=client, user_id=user_id)
    else:
        tell_line(origin.response_url, user_text(error), client)
