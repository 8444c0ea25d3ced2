"""The one registry of block actions: every button and menu the app draws, with where it
lives, its button, its confirmation, which rows offer it and its line in `/tokens help`.

Adding an action is one entry in ``ACTIONS`` plus its function in its listener module
(a row action: ``listeners/table.ROWS``); ``bot.slack.app`` refuses to start if an entry
has no listener. The table's rows draw their buttons from here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.slack.ids import ActionId
from bot.texts import Lifecycle


class Place(enum.StrEnum):
    ROW = "row"  # a button on a token's row of the table
    TABLE = "table"  # the table's own buttons (pager, create, hide the secret)
    DIGEST = "digest"  # a button or menu of an expiry digest message
    ALARM = "alarm"  # a button of a dead-secret alarm (DM or channel message)
    DEPARTED = "departed"  # a departed owner's post in the alert channel
    HYGIENE = "hygiene"  # a button or menu of a hygiene digest


class Slot(enum.StrEnum):
    """Where a row action is drawn: one of the guide's four buttons, or an option of the
    row's one overflow menu ("More…"), which dispatches to the action's own listener."""

    BUTTON = "button"
    MENU = "menu"


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
    confirm: Lifecycle | None = None  # the guide's warning: Slack's confirm dialog on a
    # button; a confirmation modal for a menu option that cuts access. (Rotate has none:
    # its own modal, which asks how, carries the warning.)
    rows: Rows = Rows.ALL
    help: str = ""  # its line in `/tokens help` (mrkdwn)
    slot: Slot = Slot.MENU  # row actions only: the guide's four are buttons
    admins: bool = False  # offered to workspace admins only (the service checks again)


ACTIONS: tuple[Action, ...] = (
    Action(ActionId.COPY, Place.ROW, "Copy", slot=Slot.BUTTON,
           help="*Copy* shows the full token only to you (audited)"),
    Action(ActionId.EDIT, Place.ROW, "Edit", rows=Rows.NOT_DISABLED, slot=Slot.BUTTON,
           help="*Edit* changes its label, scope, expiry or alert channel"),
    Action(ActionId.DISABLE, Place.ROW, "Disable", Lifecycle.DISABLE, Rows.NOT_DISABLED,
           slot=Slot.BUTTON, help="*Disable* cuts its access at once; *Enable* gives it back"),
    Action(ActionId.ENABLE, Place.ROW, "Enable", Lifecycle.ENABLE, Rows.DISABLED,
           slot=Slot.BUTTON),
    Action(ActionId.DELETE, Place.ROW, "Delete", Lifecycle.DELETE, Rows.NOT_DISABLED,
           slot=Slot.BUTTON, help="*Delete* removes it for good"),
    Action(ActionId.ROTATE, Place.ROW, "Rotate",
           help="*Rotate…* (under *More…*) gives it a new secret; the old one stops at once "
                "or when the new one is first used"),
    Action(ActionId.ROTATION_RETIRE, Place.ROW, "Retire old secret now",
           Lifecycle.RETIRE_OLD, Rows.ROTATING,
           help="*Retire old secret now* (under *More…*) ends a rotation's overlap: the old "
                "secret stops"),
    Action(ActionId.ROTATION_CANCEL, Place.ROW, "Cancel rotation", Lifecycle.CANCEL_ROTATION,
           Rows.ROTATING,
           help="*Cancel rotation* (under *More…*) keeps the old secret and discards the new "
                "one"),
    Action(ActionId.REASSIGN, Place.ROW, "Reassign", admins=True,
           help="*Reassign…* (under *More…*, admins) gives it a new owner; both owners "
                "are told"),
    # The row's "More…" menu itself: its listener runs the chosen option's action.
    Action(ActionId.ROW_MORE, Place.TABLE),
    Action(ActionId.PAGE_PREVIOUS, Place.TABLE),
    Action(ActionId.PAGE_NEXT, Place.TABLE),
    Action(ActionId.REFRESH, Place.TABLE),
    Action(ActionId.CREATE_OPEN, Place.TABLE),
    Action(ActionId.CLEAR_FILTER, Place.TABLE),
    Action(ActionId.HOME_STATUS, Place.TABLE),
    Action(ActionId.HOME_OWNER, Place.TABLE),
    Action(ActionId.OPEN_TABLE, Place.TABLE),
    Action(ActionId.HIDE_SECRET, Place.TABLE),
    Action(ActionId.ALERT_EXTEND, Place.DIGEST),
    Action(ActionId.ALERT_EDIT, Place.DIGEST),
    Action(ActionId.ALERT_DISABLE, Place.DIGEST),
    Action(ActionId.DEAD_ENABLE, Place.ALARM),
    Action(ActionId.DEPARTED_REASSIGN, Place.DEPARTED),
    Action(ActionId.DEPARTED_DISABLE, Place.DEPARTED),
    Action(ActionId.HYGIENE_DISABLE, Place.HYGIENE),
    Action(ActionId.HYGIENE_EDIT, Place.HYGIENE),
)
BY_ID: dict[str, Action] = {action.id.value: action for action in ACTIONS}
ROW_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.place == Place.ROW)
ROW_BUTTONS: tuple[Action, ...] = tuple(a for a in ROW_ACTIONS if a.slot == Slot.BUTTON)
ROW_MENU: tuple[Action, ...] = tuple(a for a in ROW_ACTIONS if a.slot == Slot.MENU)
MENU_OPTIONS_MAX = 5  # Slack's limit on an overflow menu's options
# A row shows at most the guide's four buttons (Enable stands where Disable would).
assert sum(1 for a in ROW_BUTTONS if a.rows != Rows.DISABLED) <= 4
assert sum(1 for a in ROW_BUTTONS if a.rows != Rows.NOT_DISABLED) <= 4
assert len(ROW_MENU) <= MENU_OPTIONS_MAX, "split the row menu: Slack shows at most 5 options"
