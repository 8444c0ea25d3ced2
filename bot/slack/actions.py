"""The one registry of block actions: every button and menu the app draws, with where it
lives, its button, its confirmation, which rows offer it and its line in `/tokens help`.

Adding an action is one entry in ``ACTIONS`` plus its listener, marked with
``@listener(ActionId.X)``. ``bot.slack.app`` registers each entry's listener with Bolt,
wrapped in the error path; it refuses to start if an entry has no listener, and
``listener`` refuses an id without an entry, so nothing else is kept in step by hand.
The table's rows draw their buttons from here, and the error path reads ``place`` to
answer a refusal where the user looks."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from bot.slack.ids import ActionId
from bot.texts import Confirm, Lifecycle

Listener = Callable[..., None]


class Place(enum.StrEnum):
    ROW = "row"  # a button on a token's row of the table
    TABLE = "table"  # the table's own buttons (pager, create, hide the secret)
    DIGEST = "digest"  # a button or menu of an expiry digest message
    ALARM = "alarm"  # a button of a dead-secret alarm (DM or channel message)


class Rows(enum.StrEnum):
    """Which rows offer a row action."""

    ALL = "all"
    NOT_DISABLED = "not_disabled"  # the service refuses it on a disabled token anyway
    DISABLED = "disabled"
    ROTATING = "rotating"  # a rotation with overlap whose old secret still works


@dataclass(frozen=True)
class Action:
    id: ActionId
    place: Place
    button: str = ""  # a row button's text
    # Slack's confirm dialog with the guide's warning; Rotate's confirmation is its modal.
    confirm: Lifecycle | Confirm | None = None
    rows: Rows = Rows.ALL
    help: str = ""  # its line in `/tokens help` (mrkdwn)


ACTIONS: tuple[Action, ...] = (
    Action(ActionId.COPY, Place.ROW, "Copy",
           help="*Copy* shows the full token only to you (audited)"),
    Action(ActionId.EDIT, Place.ROW, "Edit", rows=Rows.NOT_DISABLED,
           help="*Edit* changes its label, scope, expiry or alert channel"),
    Action(ActionId.DISABLE, Place.ROW, "Disable", Lifecycle.DISABLE, Rows.NOT_DISABLED,
           help="*Disable* cuts its access at once; *Enable* gives it back"),
    Action(ActionId.ENABLE, Place.ROW, "Enable", Lifecycle.ENABLE, Rows.DISABLED),
    Action(ActionId.DELETE, Place.ROW, "Delete", Lifecycle.DELETE, Rows.NOT_DISABLED,
           help="*Delete* removes it for good"),
    Action(ActionId.ROTATE, Place.ROW, "Rotate…",
           help="*Rotate…* gives it a new secret; the old one stops at once or when the new "
                "one is first used"),
    Action(ActionId.ROTATION_RETIRE, Place.ROW, "Retire old secret now",
           Confirm.RETIRE_OLD, Rows.ROTATING,
           help="*Retire old secret now* ends a rotation's overlap: the old secret stops"),
    Action(ActionId.ROTATION_CANCEL, Place.ROW, "Cancel rotation", Confirm.CANCEL_ROTATION,
           Rows.ROTATING,
           help="*Cancel rotation* keeps the old secret and discards the new one"),
    Action(ActionId.PAGE_PREVIOUS, Place.TABLE),
    Action(ActionId.PAGE_NEXT, Place.TABLE),
    Action(ActionId.REFRESH, Place.TABLE),
    Action(ActionId.CREATE_OPEN, Place.TABLE),
    Action(ActionId.HIDE_SECRET, Place.TABLE),
    Action(ActionId.ALERT_EXTEND, Place.DIGEST),
    Action(ActionId.ALERT_EDIT, Place.DIGEST),
    Action(ActionId.ALERT_DISABLE, Place.DIGEST),
    Action(ActionId.DEAD_ENABLE, Place.ALARM),
    Action(ActionId.DEAD_OPEN_TABLE, Place.ALARM),
)
BY_ID: dict[str, Action] = {action.id.value: action for action in ACTIONS}
ROW_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.place == Place.ROW)

_listeners: dict[ActionId, Listener] = {}


def listener(*ids: ActionId) -> Callable[[Listener], Listener]:
    """Mark the function that handles these actions (each must have an entry)."""

    def mark(function: Listener) -> Listener:
        for action_id in ids:
            if action_id.value not in BY_ID:
                raise LookupError(f"{action_id!r} has no entry in bot.slack.actions.ACTIONS")
            _listeners[action_id] = function
        return function

    return mark


def listener_of(action: Action) -> Listener:
    try:
        return _listeners[action.id]
    except KeyError:
        raise LookupError(f"no listener is marked for {action.id!r}") from None


def place_of(action_id: object) -> Place | None:
    """Where the clicked element lives, or None for an id that is not ours."""
    action = BY_ID.get(action_id) if isinstance(action_id, str) else None
    return action.place if action is not None else None
