"""The guide's words, in one place for every surface (Slack dialogs and help, the CLI's
prompts and output): the warnings before a lifecycle action, the security note, and when
to disable rather than delete. Plain text: each surface adds its own formatting."""

from __future__ import annotations

import enum
from dataclasses import dataclass


# What someone did to a token, as the owner's DM and the "changed since you looked"
# notices say it; keyed by the action (the audit log's names, and "extend").
DONE: dict[str, str] = {
    "edit": "edited",
    "disable": "disabled",
    "enable": "enabled",
    "delete": "deleted",
    "rotate": "rotated",
    "reveal": "copied",
    "extend": "extended",
    "retire_old": "retired the old secret of",
    "cancel_rotation": "cancelled the rotation of",
    "reassign": "reassigned",
}


class Lifecycle(enum.StrEnum):
    """The actions that ask for confirmation first."""

    DISABLE = "disable"
    ENABLE = "enable"
    DELETE = "delete"
    ROTATE = "rotate"
    RETIRE_OLD = "retire_old"  # end a rotation's overlap now
    CANCEL_ROTATION = "cancel_rotation"


@dataclass(frozen=True)
class Confirmation:
    """A confirmation: its verb, the guide's warnings (one sentence each), the button,
    and a title short enough for a modal (24 characters)."""

    verb: str
    lines: tuple[str, ...]
    confirm: str
    cuts_access: bool  # shown as a danger action
    title: str
    right: str  # the right it takes ("only the owner or an admin can <right> it")
    keep: str = "Back"  # a confirmation modal's close button: leave without doing it

    @property
    def text(self) -> str:
        return " ".join(self.lines)


CONFIRMATIONS: dict[Lifecycle, Confirmation] = {
    Lifecycle.DISABLE: Confirmation(
        verb="Disable",
        lines=(
            "Any processes using this token will immediately lose access.",
            "CI/CD pipelines and integrations will fail to authenticate.",
            "This action can be reversed by enabling the token.",
        ),
        confirm="Disable Token",
        title="Disable token?",
        right="disable",
        cuts_access=True,
    ),
    Lifecycle.ENABLE: Confirmation(
        verb="Enable",
        lines=(
            "Integrations and automation using this token will regain access.",
            "The token will be immediately active.",
        ),
        confirm="Enable Token",
        title="Enable token?",
        right="enable",
        cuts_access=False,
    ),
    Lifecycle.DELETE: Confirmation(
        verb="Delete",
        lines=(
            "This action cannot be undone.",
            "Any processes using this token will immediately stop working.",
            "CI/CD pipelines, automation scripts, and integrations will fail.",
            "To revoke access only for a while, disable the token instead: it can be "
            "re-enabled.",
        ),
        confirm="Delete Token",
        title="Delete token?",
        right="delete",
        cuts_access=True,
    ),
    Lifecycle.ROTATE: Confirmation(
        verb="Rotate",
        lines=(
            "A new secret replaces the current one, which stops working immediately.",
            "Any processes, CI/CD pipelines and integrations using the current secret will "
            "fail to authenticate until they are given the new one.",
        ),
        confirm="Rotate Token",
        title="Rotate token?",
        right="rotate",
        cuts_access=True,
    ),
    Lifecycle.RETIRE_OLD: Confirmation(
        verb="Retire the old secret of",
        lines=(
            "The old secret stops working immediately; only the new one works.",
            "Anything still using the old secret will fail to authenticate.",
        ),
        confirm="Retire Old Secret",
        cuts_access=True,
        title="Retire old secret?",
        right="rotate",
    ),
    Lifecycle.CANCEL_ROTATION: Confirmation(
        verb="Cancel the rotation of",
        lines=(
            "The old secret stays the token's secret.",
            "The new secret is discarded and stops working immediately.",
        ),
        confirm="Cancel Rotation",
        cuts_access=True,
        title="Cancel rotation?",
        right="rotate",
        keep="Keep rotating",  # not a second "Cancel" beside "Cancel Rotation"
    ),
}

#: What the rotate modal offers besides the guide's rotate warning.
ROTATE_OVERLAP_NOTE = (
    "Or keep the old secret working until the new one is first used (at most the time "
    "chosen), so nothing fails while services switch over."
)

#: Instead of the guide's rotate warning, when the old secret is kept working (the CLI's
#: ``rotate --overlap``; the Slack modal offers both and shows the note above).
ROTATE_OVERLAP_LINES = (
    "A new secret replaces the current one, which keeps working until the new one is first "
    "used, and at most for the overlap chosen.",
    "After that, anything still using the current secret fails to authenticate until it is "
    "given the new one.",
)

#: Rotating a token whose earlier rotation still keeps an old secret working: that secret
#: stops at once, whether the new rotation is immediate or keeps the current one working.
ROTATION_IN_PROGRESS_NOTE = (
    "A rotation is already in progress: its old secret stops working now too."
)
#: The same, said after the rotation (``{masked}``: that old secret's masked form).
ROTATION_IN_PROGRESS_DONE = (
    "The earlier rotation's old secret ({masked}) was stopped: it no longer works."
)

SECURITY_NOTE = (
    "Security Note: Only copy tokens when necessary, and never share them publicly or "
    "commit them to version control."
)

# What the person who disabled a token is told ({label} escaped; {where}: where Enable is,
# "" on the table itself).
DISABLED_REPLY = ("Disabled *{label}*. Any process using it has lost access; enable it{where} "
                  "to restore access.")
ENABLE_ELSEWHERE = " from `/tokens`"
DISABLE_VS_DELETE_TITLE = "When to disable vs delete"
DISABLE_VS_DELETE = (
    "Disable: temporarily revoke access without losing the token (it can be re-enabled).",
    "Delete: permanently remove the token (it cannot be recovered).",
    "Disabled tokens cannot be edited or deleted: enable them first.",
)

#: The CLI's ``--exception`` (the Slack form's field says the same in its hint).
POLICY_EXCEPTION_HELP = ("why this token may expire beyond the lifetime policy "
                         "(TOKENBOT_MAX_LIFETIME_DAYS): audited and shown on the token")
#: A live secret seen in a Slack message (``{label}``, ``{masked}``: the token's label and
#: the secret's masked form), to whoever posted it.
LEAK_WARNING = (
    "This message contains a live token: {label}, {masked}; delete the message and rotate "
    "the token."
)
#: The same, to the owner and the alert channel (``{where}``: the message, ``{poster}``).
LEAK_NOTICE = (
    "A live token, {label} ({masked}), was posted in {where} by {poster}. Delete the "
    "message and rotate the token."
)
#: With TOKENBOT_LEAK_ACTION=disable, what every one of those messages adds.
LEAK_DISABLED = (
    "Tokenbot disabled it at once: anything using it has lost access. To restore access, "
    "rotate it, then enable it (/tokens)."
)
#: To a poster who may not act on the token.
LEAK_OWNER_TOLD = "Its owner, {owner}, has been told."
#: The old secret of a rotation in progress seen (``{advice}``: one of the two below), to
#: whoever posted it, then to the owner and the alert channel.
LEAK_OLD_WARNING = ("This message contains the old secret of a rotation in progress: {label}, "
                    "{masked}. {advice}")
LEAK_OLD_NOTICE = ("The old secret of a rotation in progress, {label} ({masked}), was posted "
                   "in {where} by {poster}. {advice}")
LEAK_OLD_ADVICE = ("Delete the message and retire the old secret now; the new secret keeps "
                   "working.")
#: With TOKENBOT_LEAK_ACTION=disable.
LEAK_OLD_RETIRED = ("Delete the message. Tokenbot stopped that old secret at once; the new "
                    "secret keeps working.")
