"""The one registry of block actions: every button and menu the app draws and, for a row
action, its text, its confirmation, which rows offer it and its line in `/tokens help`.

Adding an action is one entry in ``ACTIONS`` plus its function in its listener module
(a row action: ``listeners/table.ROWS``); ``bot.slack.app`` refuses to start if an entry
has no listener. The table's rows draw their buttons from here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.slack.ids import ActionId
from bot.texts import Lifecycle


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
    button: str = ""  # a row action's text (its button or menu option); "": not a row action
    confirm: Lifecycle | None = None  # the guide's warning: Slack's confirm dialog on a
    # button; a confirmation modal for a menu option that cuts access. (Rotate has none:
    # its own modal, which asks how, carries the warning.)
    rows: Rows = Rows.ALL
    help: str = ""  # its line in `/tokens help` (mrkdwn)
    slot: Slot = Slot.MENU  # row actions only: the guide's four are buttons
    admins: bool = False  # offered to workspace admins only (the service checks again)


ACTIONS: tuple[Action, ...] = (
    Action(ActionId.COPY, "Copy", slot=Slot.BUTTON,
           help="*Copy* shows the full token only to you (audited)"),
    Action(ActionId.EDIT, "Edit", rows=Rows.NOT_DISABLED, slot=Slot.BUTTON,
           help="*Edit* changes its label, scope, expiry or alert channel"),
    Action(ActionId.DISABLE, "Disable", Lifecycle.DISABLE, Rows.NOT_DISABLED,
           slot=Slot.BUTTON, help="*Disable* cuts its access at once; *Enable* gives it back"),
    Action(ActionId.ENABLE, "Enable", Lifecycle.ENABLE, Rows.DISABLED,
           slot=Slot.BUTTON),
    Action(ActionId.DELETE, "Delete", Lifecycle.DELETE, Rows.NOT_DISABLED,
           slot=Slot.BUTTON, help="*Delete* removes it for good"),
    Action(ActionId.ROTATE, "Rotate",
           help="*Rotate…* (under *More…*) gives it a new secret; the old one stops at once "
                "or when the new one is first used"),
    Action(ActionId.ROTATION_RETIRE, "Retire old secret now",
           Lifecycle.RETIRE_OLD, Rows.ROTATING,
           help="*Retire old secret now* (under *More…*) ends a rotation's overlap: the old "
                "secret stops"),
    Action(ActionId.ROTATION_CANCEL, "Cancel rotation", Lifecycle.CANCEL_ROTATION,
           Rows.ROTATING,
           help="*Cancel rotation* (under *More…*) keeps the old secret and discards the new "
                "one"),
    Action(ActionId.REASSIGN, "Reassign", admins=True,
           help="*Reassign…* (under *More…*, admins) gives it a new owner; both owners "
                "are told"),
    # The table's own: the row's "More…" menu itself (its listener runs the chosen option's
    # action), the pager, create, the filters, hide the secret; the owner's DM's Open table.
    Action(ActionId.ROW_MORE),
    Action(ActionId.PAGE_PREVIOUS),
    Action(ActionId.PAGE_NEXT),
    Action(ActionId.REFRESH),
    Action(ActionId.CREATE_OPEN),
    Action(ActionId.CLEAR_FILTER),
    Action(ActionId.HOME_STATUS),
    Action(ActionId.HOME_OWNER),
    Action(ActionId.OPEN_TABLE),
    Action(ActionId.HIDE_SECRET),
    # An expiry digest's buttons or menus; a dead-secret alarm's; a departed owner's post's;
    # a hygiene digest's.
    Action(ActionId.ALERT_EXTEND),
    Action(ActionId.ALERT_EDIT),
    Action(ActionId.ALERT_DISABLE),
    Action(ActionId.DEAD_ENABLE),
    Action(ActionId.DEPARTED_REASSIGN),
    Action(ActionId.DEPARTED_DISABLE),
    Action(ActionId.HYGIENE_DISABLE),
    Action(ActionId.HYGIENE_EDIT),
)
BY_ID: dict[str, Action] = {action.id.value: action for action in ACTIONS}
ROW_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.button)
ROW_BUTTONS: tuple[Action, ...] = tuple(a for a in ROW_ACTIONS if a.slot == Slot.BUTTON)
ROW_MENU: tuple[Action, ...] = tuple(a for a in ROW_ACTIONS if a.slot == Slot.MENU)
MENU_OPTIONS_MAX = 5  # Slack's limit on an overflow menu's options
# A row shows at most the guide's four buttons (Enable stands where Disable would).
assert sum(1 for a in ROW_BUTTONS if a.rows != Rows.DISABLED) <= 4
assert sum(1 for a in ROW_BUTTONS if a.rows != Rows.NOT_DISABLED) <= 4
assert len(ROW_MENU) <= MENU_OPTIONS_MAX, "split the row menu: Slack shows at most 5 options"
