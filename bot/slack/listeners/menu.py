"""A row's "More…" menu: one overflow per row, one listener for all its options. A choice
calls that action's row function (``table.ROWS``, ``rotation.ROWS``); a choice that cuts
access is confirmed first in a modal with the guide's warnings (a menu carries one
confirm for all its options), whose submission calls it."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import NotFoundError, TokenbotError
from bot.services import tokens
from bot.slack.acks import on_actions, on_submission
from bot.slack.actions import BY_ID, ROW_MENU, Action
from bot.slack.background import Task
from bot.slack.ids import ActionId, CallbackId
from bot.slack.listeners import modals, owners, rotation, table
from bot.slack.listeners.common import Row, RowFunction, actor_from, deps_of, row_of
from bot.slack.state import MenuChoice, ModalMetadata, RowRef, mapping
from bot.slack.views.confirms import confirm_modal
from bot.texts import CONFIRMATIONS

Body = dict[str, Any]


def _menu_action(action_id: object) -> Action:
    """A row action of the menu, or not found (a crafted value)."""
    chosen = BY_ID.get(action_id) if isinstance(action_id, str) else None
    if chosen is None or chosen not in ROW_MENU:
        raise NotFoundError()
    return chosen


#: Every row action's function, by id: the menu runs them; app.py checks each registered
#: row action has one.
ROWS: dict[str, RowFunction] = {**table.ROWS, **rotation.ROWS, **owners.ROWS}


def handle_more(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    choice = MenuChoice.decode(mapping(action.get("selected_option")).get("value"))
    chosen = _menu_action(choice.action)
    row = row_of(body, choice.ref, context, client)
    if chosen.confirm is None or not CONFIRMATIONS[chosen.confirm].cuts_access:
        ROWS[chosen.id](row)
        return
    with row.deps.sessions.begin() as session:  # refused before the question, like Edit
        token = tokens.check_change(session, actor=row.actor, public_id=row.ref.public_id,
                                    expected_version=row.ref.version,
                                    verb=CONFIRMATIONS[chosen.confirm].right)
        label, masked = token.label, token.secret_masked
    metadata = ModalMetadata(origin=row.origin, public_id=row.ref.public_id,
                             version=row.ref.version, action=chosen.id.value)
    view = confirm_modal(chosen.confirm, label=label, masked=masked,
                         metadata=metadata.encode())
    client.views_open(trigger_id=body["trigger_id"], view=view)


def handle_confirm_submit(ack: Ack, body: Body, view: dict[str, Any],
                          context: BoltContext, client: WebClient) -> Task:
    """Close the modal, then (after the acknowledgement) run the action on the table
    the user came from; a refusal is answered on that table."""
    ack()
    deps = deps_of(context)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    function = ROWS[_menu_action(metadata.action).id]
    row = Row(deps=deps, client=client, actor=actor_from(body, deps.settings),
              ref=RowRef(public_id=metadata.public_id, version=metadata.version,
                         state=metadata.origin.state),
              origin=metadata.origin)

    def then() -> None:
        try:
            function(row)
        except Exception as error:
            table.tell_on_table(error, deps=deps, client=client, origin=row.origin,
                                public_id=row.ref.public_id, actor=lambda: row.actor,
                                user_id=row.actor.user_id)
            if not isinstance(error, TokenbotError):
                raise  # logged with its traceback

    return then


def register(app: App) -> None:
    on_actions(app, [ActionId.ROW_MORE], handle_more, surface=table.answer_error)
    on_submission(app, CallbackId.CONFIRM, handle_confirm_submit, surface=modals.answer_error)
