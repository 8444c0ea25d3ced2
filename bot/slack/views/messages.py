"""Ephemeral messages: the table, the secret (copy / creation / rotation), help, errors."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.models import Token
from bot.services.listing import TokenPage
from bot.slack.actions import ROW_ACTIONS
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import FIRST_PAGE, TableState
from bot.slack.views.formatting import escape
from bot.slack.views.table import Notice, NoticeKind, fallback_text, table_blocks
from bot.texts import DISABLE_VS_DELETE, DISABLE_VS_DELETE_TITLE, SECURITY_NOTE


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """Keyword arguments for respond() / chat.postEphemeral."""
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


def table_message(
    page: TokenPage, *, now: dt.datetime, state: TableState, notice: Notice | None = None
) -> Message:
    return Message(
        text=fallback_text(page, notice),
        blocks=table_blocks(page, now=now, state=state, notice=notice),
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
    SecretReason.COPY: "Copied: the full token *{label}*, shown only to you.",
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
            elements=[
                ButtonElement(
                    text=PlainTextObject(text="Hide", emoji=False),
                    action_id=ActionId.HIDE_SECRET,
                    value=state.encode(),
                )
            ],
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
        "• `/tokens create`: create a token (label, scope, optional expiry and alert channel)",
        "• `/tokens help`: this help",
        "Each row has buttons; only a token's owner or a workspace admin can act on it:",
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
