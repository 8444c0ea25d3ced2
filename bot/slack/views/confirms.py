"""Slack's native confirmation dialogs, with the guide's warnings (SPEC "Lifecycle rules").

Shared by every surface that offers these actions (the token table, the expiry digests)."""

from __future__ import annotations

import enum

from slack_sdk.models.blocks import ConfirmObject, PlainTextObject

from bot.slack.views.formatting import truncate

DANGER = "danger"
PRIMARY = "primary"

DISABLE_WARNING = (
    "Any processes using this token will immediately lose access. "
    "CI/CD pipelines and integrations will fail to authenticate. "
    "This action can be reversed by enabling the token."
)
ENABLE_WARNING = (
    "Integrations and automation using this token will regain access. "
    "The token will be immediately active."
)
DELETE_WARNING = (
    "This action cannot be undone. "
    "Any processes using this token will immediately stop working. "
    "CI/CD pipelines, automation scripts, and integrations will fail. "
    "To revoke access only for a while, disable the token instead: it can be re-enabled."
)
ROTATE_WARNING = (
    "A new secret replaces the current one, which stops working immediately. "
    "Any processes, CI/CD pipelines and integrations using the current secret will fail "
    "to authenticate until they are given the new one."
)


class Confirmable(enum.StrEnum):
    DISABLE = "disable"
    ENABLE = "enable"
    DELETE = "delete"
    ROTATE = "rotate"


# verb in the title, warning text, confirm button, style (danger where access is cut)
_DIALOGS: dict[Confirmable, tuple[str, str, str, str]] = {
    Confirmable.DISABLE: ("Disable", DISABLE_WARNING, "Disable Token", DANGER),
    Confirmable.ENABLE: ("Enable", ENABLE_WARNING, "Enable Token", PRIMARY),
    Confirmable.DELETE: ("Delete", DELETE_WARNING, "Delete Token", DANGER),
    Confirmable.ROTATE: ("Rotate", ROTATE_WARNING, "Rotate Token", DANGER),
}


def style_of(action: Confirmable) -> str:
    return _DIALOGS[action][3]


def confirm_title(action: Confirmable, label: str) -> str:
    """The dialog's title names the token, within Slack's 100 characters."""
    verb = _DIALOGS[action][0]
    return f"{verb} “{truncate(label, 100 - len(verb) - 4)}”?"


def confirm_dialog(action: Confirmable, label: str) -> ConfirmObject:
    """Title names the token (plain text: nothing in it is parsed); text is the warning."""
    _verb, warning, button, style = _DIALOGS[action]
    return ConfirmObject(
        title=PlainTextObject(text=confirm_title(action, label), emoji=False),
        text=PlainTextObject(text=warning, emoji=False),
        confirm=PlainTextObject(text=button, emoji=False),
        deny=PlainTextObject(text="Cancel", emoji=False),
        style=style,
    )
