"""Confirmations with the guide's warnings (``bot.texts``): Slack's native dialog on a
button, and the modal a "More…" choice that cuts access opens (a menu carries one confirm
for all its options).

Shared by every surface that offers these actions (the token table, the expiry digests)."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ConfirmObject,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.slack.ids import BlockId, CallbackId
from bot.slack.views.formatting import code, escape, truncate
from bot.texts import CONFIRMATIONS, Lifecycle

DANGER = "danger"
PRIMARY = "primary"

def style_of(action: Lifecycle) -> str:
    """Danger where the action cuts access, primary where it gives it back."""
    return DANGER if CONFIRMATIONS[action].cuts_access else PRIMARY


def _dialog(action: Lifecycle, title: str) -> ConfirmObject:
    text = CONFIRMATIONS[action]
    return ConfirmObject(
        title=PlainTextObject(text=title, emoji=False),
        text=PlainTextObject(text=text.text, emoji=False),
        confirm=PlainTextObject(text=text.confirm, emoji=False),
        deny=PlainTextObject(text="Cancel", emoji=False),
        style=style_of(action),
    )


def confirm_dialog(action: Lifecycle, label: str) -> ConfirmObject:
    """Title names the token (plain text: nothing in it is parsed); text is the warning."""
    verb = CONFIRMATIONS[action].verb
    return _dialog(action, f"{verb} “{truncate(label, 100 - len(verb) - 4)}”?")


def confirm_choice(action: Lifecycle) -> ConfirmObject:
    """A menu's one dialog for all its options: the guide's title ("Disable token?")."""
    return _dialog(action, CONFIRMATIONS[action].title)


def confirm_modal(action: Lifecycle, *, label: str, masked: str, metadata: str) -> View:
    """The confirmation of a "More…" menu choice that cuts access (a menu has one confirm
    for all its options): the guide's warnings, a close button saying what it keeps
    ("Keep rotating", else "Back"), and the guide's confirm label as
    the submit button. Slack gives a modal's submit button no ``style`` (no red "danger"
    as on a confirm dialog), so the warnings carry it. ``metadata``: what the submission
    runs (``state.ModalMetadata``)."""
    text = CONFIRMATIONS[action]
    warnings = "\n".join(f"• {line}" for line in text.lines)
    return View(
        type="modal",
        callback_id=CallbackId.CONFIRM,
        title=PlainTextObject(text=text.title, emoji=False),
        submit=PlainTextObject(text=text.confirm, emoji=False),
        close=PlainTextObject(text=text.keep, emoji=False),
        private_metadata=metadata,
        blocks=[
            SectionBlock(
                block_id=BlockId.CONFIRM_WARNING,
                text=MarkdownTextObject(
                    text=f":warning: *{text.verb} “{escape(label)}”* ({code(masked)})?\n"
                    f"{warnings}"
                ),
            )
        ],
    )
