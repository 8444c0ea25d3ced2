"""The Block Kit elements every surface draws alike: plain text, a button, a row action's
button from the registry, a token as a menu option, and "Open table"."""

from __future__ import annotations

from slack_sdk.models.blocks import ButtonElement, ConfirmObject, Option, PlainTextObject

from bot.slack.actions import Action
from bot.slack.ids import ActionId
from bot.slack.state import TableState
from bot.slack.views.confirms import confirm_dialog, style_of
from bot.slack.views.formatting import truncate


def plain(text: str) -> PlainTextObject:
    """Plain text as every surface draws it (an emoji code is shown as typed)."""
    return PlainTextObject(text=text, emoji=False)


def button(text: str, action: ActionId, value: str, *, style: str | None = None,
           confirm: ConfirmObject | None = None) -> ButtonElement:
    """A button of any surface (its ``value``: what the listener reads back)."""
    return ButtonElement(text=plain(text), action_id=action, value=value, style=style,
                         confirm=confirm)


def action_button(action: Action, value: str, label: str) -> ButtonElement:
    """A row action of the registry (``bot.slack.actions``) on the token ``label``: its
    text, and its confirmation, naming the token."""
    confirm = action.confirm
    return button(action.button, action.id, value,
                  style=style_of(confirm) if confirm else None,
                  confirm=confirm_dialog(confirm, label) if confirm else None)


def token_option(label: str, masked: str, value: str) -> Option:
    """A token in a menu: its label (shortened to fit an option's 75 characters) and its
    masked secret."""
    return Option(text=plain(f"{truncate(label, 75 - len(masked) - 3)} ({masked})"),
                  value=value)


def open_table(public_id: str = "", text: str = "Open table") -> ButtonElement:
    """The table filtered to one token (without one: the whole table), as a new message
    only the clicker sees."""
    return button(text, ActionId.OPEN_TABLE, TableState(token=public_id).encode())
