"""Ephemeral messages: the table, the secret (copy / creation / rotation), help, errors."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.dates import EXPIRES_SOON_DAYS, UTC_RULE
from bot.models import AuditEvent, AuditSource, Token
from bot.services.actor import CLI_OPERATOR, Actor
from bot.services.audit import CHANGES
from bot.services.listing import TokenPage
from bot.slack.actions import ROW_ACTIONS
from bot.slack.ids import USER_ID_PATTERN, ActionId, BlockId
from bot.slack.state import FIRST_PAGE, TableState
from bot.slack.views.formatting import ago, code, escape, mention
from bot.slack.views.elements import button, open_table
from bot.slack.views.table import Notice, NoticeKind, fallback_text, table_blocks
from bot.texts import DISABLE_VS_DELETE, DISABLE_VS_DELETE_TITLE, DONE, SECURITY_NOTE


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """Keyword arguments for respond() / chat.postEphemeral."""
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


def table_message(
    page: TokenPage, *, now: dt.datetime, state: TableState, viewer: Actor,
    notice: Notice | None = None,
) -> Message:
    return Message(
        text=fallback_text(page, notice),
        blocks=table_blocks(page, now=now, state=state, viewer=viewer, notice=notice),
    )


def notice_message(text: str, kind: NoticeKind = NoticeKind.ERROR) -> Message:
    notice = Notice(text=text, kind=kind)
    return Message(text=text, blocks=[notice.block()])


class SecretReason(enum.StrEnum):
    COPY = "copy"
    CREATE = "create"
    ROTATE = "rotate"
    ROTATE_OVERLAP = "rotate_overlap"


_SECRET_HEADINGS = {
    SecretReason.COPY: "Here is the full token *{label}*, only you can see it; "
    "select it to copy.",
    SecretReason.CREATE: "Created *{label}*. Here is its token, shown only to you. "
    "Copy it now and store it safely.",
    SecretReason.ROTATE: "Rotated *{label}*. Here is its new token, shown only to you; "
    "the previous one no longer works.",
    SecretReason.ROTATE_OVERLAP: "Rotated *{label}*. Here is its new token, shown only to "
    "you; the previous one keeps working until the new one is first used (or the time "
    "chosen runs out).",
}


def secret_blocks(
    token: Token, secret: str, reason: SecretReason, state: TableState = FIRST_PAGE
) -> list[Block]:
    """The full secret in a code block, the security note and a Hide button (3 blocks).
    ``state``: the table to show again when the secret is hidden on Home."""
    heading = _SECRET_HEADINGS[reason].format(label=escape(token.label))
    return [
        SectionBlock(
            block_id=BlockId.SECRET,
            text=MarkdownTextObject(text=f":key: {heading}\n```{secret}```"),
        ),
        ContextBlock(
            block_id=BlockId.SECRET_NOTE,
            elements=[MarkdownTextObject(text=f":lock: {SECURITY_NOTE}")],
        ),
        ActionsBlock(
            block_id=BlockId.SECRET_ACTIONS,
            elements=[button("Hide", ActionId.HIDE_SECRET, state.encode())],
        ),
    ]


def secret_message(
    token: Token, secret: str, reason: SecretReason, state: TableState = FIRST_PAGE
) -> Message:
    # The notification text never carries the secret.
    text = f"Token {escape(token.label)}: open the message to see it (shown only to you)."
    return Message(text=text, blocks=secret_blocks(token, secret, reason, state))


HELP_TEXT = "\n".join(
    [
        "*`/tokens`* manages this workspace's access tokens.",
        "• `/tokens` or `/tokens list`: the table of tokens (only you see it)",
        "• `/tokens <text>` or `/tokens list <text>`: only tokens whose label contains the text",
        "• `/tokens mine`: only your tokens; `/tokens @someone`: only theirs",
        "• `/tokens active`, `disabled`, `expired` or `expiring` (active, expiring within the "
        "largest reminder threshold): only tokens with that status",
        "• Filters combine: `/tokens mine expiring deploy`. *Clear filter* on the table (or "
        "plain `/tokens`) shows every token again; App Home has the same filters as menus.",
        "• `/tokens create`: create a token (label, scope, optional expiry and alert channel)",
        "• `/tokens help`: this help",
        f"{UTC_RULE} Tokens expiring within {EXPIRES_SOON_DAYS} days carry an "
        "*Expires soon* badge.",
        "A token's owner and workspace admins see its actions; others see who owns it:",
        *(f"• {action.help}" for action in ROW_ACTIONS if action.help),
    ]
)
HELP_DISABLE_VS_DELETE = "\n".join(
    [f"*{DISABLE_VS_DELETE_TITLE}*", *(f"• {line}" for line in DISABLE_VS_DELETE)]
)


def help_message(*, unknown: str | None = None) -> Message:
    blocks: list[Block] = []
    text = "How to use /tokens"
    if unknown is not None:
        text = f"`/tokens {escape(unknown)}` is not a subcommand."
        blocks.append(Notice(text=text, kind=NoticeKind.INFO).block())
    blocks.append(SectionBlock(block_id=BlockId.HELP, text=MarkdownTextObject(text=HELP_TEXT)))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=HELP_DISABLE_VS_DELETE)))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f":lock: {SECURITY_NOTE}")]))
    return Message(text=text, blocks=blocks)


def _value(name: str, value: Any) -> str:
    if value is None:
        return "default" if name == "alert_channel" else "never"
    if name == "alert_channel":
        return f"<#{value}>"
    if name == "expires_on":
        return str(value)
    return f"“{escape(str(value))}”"


_FIELD_NAMES = {"label": "label", "scope": "scope", "expires_on": "expiry",
                "alert_channel": "alert channel"}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """``label “a” → “b”, expiry never → 2027-01-31`` (user text escaped)."""
    parts = [
        f"{_FIELD_NAMES.get(name, name)} {_value(name, before)} → {_value(name, after)}"
        for name, (before, after) in changes.items()
    ]
    return ", ".join(parts)


def owner_notice_message(*, actor: str, source: str, action: str, label: str, masked: str,
                         public_id: str, before: dict[str, Any] | None = None,
                         after: dict[str, Any] | None = None) -> Message:
    """The owner's DM: who did what to which token (an edit: what it changed), and a
    button to open the table at it (filtered to that one token by its public id, so
    neither a look-alike label nor a later rename matters; none after a delete). Never
    the secret."""
    verb = DONE.get(action, action)
    who = actor_text(actor, source)
    what = f"{who} {verb} your token *{escape(label)}* ({code(masked)})."
    if isinstance(before, dict) and isinstance(after, dict):
        what += "\n" + describe_changes({name: (before.get(name), after.get(name))
                                         for name in after})
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.OWNER_NOTICE, text=MarkdownTextObject(text=what))
    ]
    if action != "delete":
        blocks.append(ActionsBlock(block_id=BlockId.OWNER_NOTICE_ACTIONS,
                                   elements=[open_table(public_id, "Open in the table")]))
    return Message(text=f"{who} {verb} your token {escape(label)}.", blocks=blocks)


SLACK_USER_ID = re.compile(USER_ID_PATTERN)


def actor_text(actor: str, source: AuditSource | str) -> str:
    """Who acted, as the audit log records it, in mrkdwn: a Slack user as a mention (also
    the CLI's ``--as U…``); the CLI without ``--as`` as "an operator (CLI)", with ``--as``
    some other name as that name; the scheduler, an introspection caller (a rotation
    that ended on the new secret's first use), Tokenbot's leak scan or the token policy
    (a dormant token it disabled) by name."""
    if source in (AuditSource.API, AuditSource.SCHEDULER, AuditSource.LEAK_SCAN,
                  AuditSource.POLICY):
        return f"*{escape(actor)}*"
    if source == AuditSource.CLI and not SLACK_USER_ID.fullmatch(actor):
        return "an operator (CLI)" if actor == CLI_OPERATOR else f"*{escape(actor)}* (CLI)"
    return mention(actor)


def change_text(event: AuditEvent) -> str | None:
    """A change from the audit log in words: "<@U2> disabled it 2 minutes ago" (the time
    each reader's client writes relative), and for an edit what it changed."""
    action = str(event.action)
    if action not in CHANGES:
        return None
    text = f"{actor_text(event.actor, event.source)} {DONE[action]} it {ago(event.at)}"
    details = event.details if isinstance(event.details, dict) else {}
    before, after = details.get("before"), details.get("after")
    if action == "edit" and isinstance(before, dict) and isinstance(after, dict):
        changes = {name: (before.get(name), after.get(name)) for name in after}
        if changes:
            text += f" ({describe_changes(changes)})"
    return text
