"""A row's "More…" menu: one overflow per row, one listener for all its options. A choice
runs that action's own listener (its entry in ``bot.slack.actions``), as if its button
had been clicked; a choice that cuts access is confirmed first in a modal with the
guide's warnings (a menu carries one confirm for all its options), whose submission runs
the action."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.errors import NotFoundError
from bot.services import tokens as svc
from bot.slack.background import Task
from bot.slack.actions import BY_ID, Action, Place, Slot, listener, listener_of
from bot.slack.ids import ActionId
from bot.slack.listeners.common import actor_from, deps, origin_of_action
from bot.slack.listeners.errors import handle_error
from bot.slack.state import MenuChoice, ModalMetadata, Origin, OriginKind, RowRef, mapping
from bot.slack.views.confirms import confirm_modal
from bot.texts import CONFIRMATIONS

Body = dict[str, Any]


def _menu_action(action_id: object) -> Action:
    """A row action of the menu, or not found (a crafted value)."""
    chosen = BY_ID.get(action_id) if isinstance(action_id, str) else None
    if chosen is None or chosen.place != Place.ROW or chosen.slot != Slot.MENU:
        raise NotFoundError()
    return chosen


def as_click(body: Body, origin: Origin, action_id: str, ref: RowRef) -> Body:
    """The payload the chosen action's button would have sent from where the user looks:
    who acts (from the signed request), the row, and the table's way back."""
    action = {"action_id": action_id, "value": ref.encode()}
    click: Body = {"type": "block_actions", "user": body.get("user"), "team": body.get("team"),
                   "trigger_id": body.get("trigger_id"), "actions": [action]}
    if origin.kind == OriginKind.HOME:
        click["view"] = {"type": "home"}
    else:
        click["response_url"] = origin.response_url
    return click


def run_as_click(click: Body, context: BoltContext, client: WebClient) -> None:
    """Run the chosen action's listener; its refusals are answered as its button's are."""
    chosen = _menu_action(click["actions"][0]["action_id"])
    try:
        listener_of(chosen)(body=click, action=click["actions"][0], context=context,
                            client=client)
    except Exception as error:  # routed, as a click, to the one error handler
        handle_error(error, body=click, context=context, client=client, response=None)


@listener(ActionId.ROW_MORE)
def handle_more(body: Body, action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    choice = MenuChoice.decode(mapping(action.get("selected_option")).get("value"))
    chosen = _menu_action(choice.action)
    origin = origin_of_action(body, choice.ref.state)
    if chosen.confirm is None or not CONFIRMATIONS[chosen.confirm].cuts_access:
        run_as_click(as_click(body, origin, chosen.id, choice.ref), context, client)
        return
    d = deps(context)
    actor = actor_from(body, d.settings)
    ref = choice.ref
    with d.sessions.begin() as session:  # refused before the question, like Edit
        token = svc.check_change(session, actor=actor, public_id=ref.public_id,
                                 expected_version=ref.version,
                                 verb=CONFIRMATIONS[chosen.confirm].right)
        label, masked = token.label, token.secret_masked
    metadata = ModalMetadata(origin=origin, public_id=ref.public_id, version=ref.version,
                             action=chosen.id.value)
    view = confirm_modal(chosen.confirm, label=label, masked=masked,
                         metadata=metadata.encode())
    client.views_open(trigger_id=body["trigger_id"], view=view)


def handle_confirm_submit(ack: Ack, body: Body, view: dict[str, Any], context: BoltContext,
                          client: WebClient) -> Task:
    """The confirmation modal's submit: close it, then (after the acknowledgement) run
    the action on the table the user came from."""
    ack()
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    ref = RowRef(public_id=metadata.public_id, version=metadata.version or 0,
                 state=metadata.origin.state)
    click = as_click(body, metadata.origin, metadata.action, ref)
    return lambda: run_as_click(click, context, client)
