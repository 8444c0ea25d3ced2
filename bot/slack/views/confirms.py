"""Slack's native confirmation dialogs, with the guide's warnings (``bot.texts``).

Shared by every surface that offers these actions (the token table, the expiry digests)."""

from __future__ import annotations

from slack_sdk.models.blocks import ConfirmObject, PlainTextObject

from bot.slack.views.formatting import truncate
from bot.texts import CONFIRMATIONS, CONFIRMATIONS_MORE, Confirm, Confirmation, Lifecycle

DANGER = "danger"
PRIMARY = "primary"

_TEXTS: dict[Lifecycle | Confirm, Confirmation] = {**CONFIRMATIONS, **CONFIRMATIONS_MORE}


def style_of(action: Lifecycle | Confirm) -> str:
    """Danger where the action cuts access, primary where it gives it back."""
    return DANGER if _TEXTS[action].cuts_access else PRIMARY


def confirm_dialog(action: Lifecycle | Confirm, label: str) -> ConfirmObject:
    """Title names the token (plain text: nothing in it is parsed); text is the warning."""
    text = _TEXTS[action]
    title = f"{text.verb} “{truncate(label, 100 - len(text.verb) - 4)}”?"
    return ConfirmObject(
        title=PlainTextObject(text=title, emoji=False),
        text=PlainTextObject(text=text.text, emoji=False),
        confirm=PlainTextObject(text=text.confirm, emoji=False),
        deny=PlainTextObject(text="Cancel", emoji=False),
        style=style_of(action),
    )
