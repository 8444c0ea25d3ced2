"""Expiry digests: one message per channel (or owner DM) per pass, soonest expiry first.

Pure builders over :class:`DigestItem` (no database, no Slack calls); the same builder
draws the first post and every redraw after someone acted from the message.

Two layouts, chosen by how many tokens one message carries:

- **full** (up to :data:`FULL_LAYOUT_MAX` tokens): per token a section and a row of buttons,
  "Extend 30 days" (confirm), "Edit", "Disable" (the guide's confirm);
- **compact** (more, up to :data:`COMPACT_LAYOUT_MAX` per message): tokens in sections of
  ten fields, each group followed by three menus ("Extend 30 days…", "Edit…", "Disable…",
  the same confirms) listing that group's tokens. This keeps a channel with hundreds of
  expiring tokens to a handful of messages, which matters because a channel gets at most
  one message per second.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    MarkdownTextObject,
    SectionBlock,
    StaticSelectElement,
)

from bot.dates import date_text, days_until, expires_soon, expiry_date, relative_expiry
from bot.models import Audience, OutboxMessage, Token, TokenStatus, has_expired
from bot.services.alerts import ActedAction
from bot.services.tokens import EXTEND_DAYS, extended_date
from bot.slack.ids import ActionId, BlockId, row_block_id
from bot.slack.state import RowRef
from bot.slack.views.confirms import confirm_choice, confirm_dialog
from bot.slack.views.elements import button, plain, token_option
from bot.slack.views.formatting import (
    MESSAGE_BLOCK_LIMIT,
    SECTION_FIELDS_MAX,
    code,
    escape,
    mention,
    truncate,
)
from bot.texts import Lifecycle

FULL_LAYOUT_MAX = 24  # 1 header + 2 blocks per token = 49
GROUP_SIZE = SECTION_FIELDS_MAX  # a menu lists the same tokens as its section
COMPACT_LAYOUT_MAX = 240  # 1 header + 2 blocks per group of 10 = 49
assert 1 + 2 * FULL_LAYOUT_MAX <= MESSAGE_BLOCK_LIMIT
assert 1 + 2 * math.ceil(COMPACT_LAYOUT_MAX / GROUP_SIZE) <= MESSAGE_BLOCK_LIMIT


@dataclass(frozen=True)
class DigestItem:
    public_id: str
    version: int
    label: str
    masked: str
    scope: str
    owner: str
    expires_at: dt.datetime  # the expiry this reminder is about
    threshold_days: int  # 0: the expiry notice
    outcome: ActedAction | None = None  # what became of it since (here or elsewhere)
    outcome_by: str | None = None
    current_expires_at: dt.datetime | None = None  # after an extension or edit

    @property
    def actionable(self) -> bool:
        return self.outcome is None

    def expired(self, now: dt.datetime) -> bool:
        """An expiry notice, or a reminder whose token has expired since."""
        return self.threshold_days == 0 or has_expired(self.expires_at, now)


def sort_items(items: Sequence[DigestItem]) -> list[DigestItem]:
    return sorted(items, key=lambda i: (i.expires_at, i.label.casefold(), i.public_id))


def chunk_items(items: Sequence[DigestItem]) -> list[list[DigestItem]]:
    """The messages one destination needs: one when the tokens fit the full layout, else
    compact messages of up to :data:`COMPACT_LAYOUT_MAX` tokens (only the 50-block limit
    splits them), soonest expiry first."""
    ordered = sort_items(items)
    if len(ordered) <= FULL_LAYOUT_MAX:
        return [ordered] if ordered else []
    messages = math.ceil(len(ordered) / COMPACT_LAYOUT_MAX)
    size = math.ceil(len(ordered) / messages)  # balanced: 250 tokens make 125 + 125
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def expiry(expires_at: dt.datetime) -> str:
    """The calendar date picked, as every surface writes it (``bot.dates``)."""
    return date_text(expiry_date(expires_at))


def how_far(expires_at: dt.datetime, now: dt.datetime) -> str:
    """ "in 7 days", "expired today", "expired 2 days ago": whole UTC days, as the table says."""
    return relative_expiry(expiry_date(expires_at), now)


def _outcome_text(item: DigestItem) -> str:
    by = f" by {mention(item.outcome_by)}" if item.outcome_by else ""
    if item.outcome == ActedAction.EXTENDED:
        until = (
            f" to {expiry(item.current_expires_at)}" if item.current_expires_at else ""
        )
        return f":white_check_mark: Extended{until}{by}."
    if item.outcome == ActedAction.EDITED:
        return f":pencil2: Edited{by}."
    if item.outcome == ActedAction.DISABLED:
        return f":no_entry_sign: *Disabled*{by}. Requests using it now fail."
    return ""


def _status_text(item: DigestItem, now: dt.datetime) -> str:
    if item.outcome is not None:  # the reminder has been dealt with
        return f"Reminder about its expiry on {expiry(item.expires_at)}:"
    if item.expired(now):
        return (
            f":red_circle: *Expired* {expiry(item.expires_at)} "
            f"({how_far(item.expires_at, now)}): *this token no longer works*; "
            "requests using it are refused. Extend it to restore access."
        )
    emoji = ":hourglass_flowing_sand:" if _soon(item, now) else ":calendar:"
    return f"{emoji} Expires {expiry(item.expires_at)} (*{how_far(item.expires_at, now)}*)"


def item_text(item: DigestItem, now: dt.datetime) -> str:
    head = f"*{escape(item.label)}*  {code(item.masked)}"
    meta = f"Scope: {code(item.scope)} · Owner: {mention(item.owner)}"
    lines = [head, meta, _status_text(item, now)]
    if item.outcome is not None:
        lines.append(_outcome_text(item))
    return "\n".join(lines)


def moved_text(old: dt.date, new: dt.date) -> str:
    """What an extension does to the expiry: "moved from 2026-12-10 to 2027-01-09 (30 days
    after the old date)", or for a token already expired "(30 days from today)"."""
    since = "after the old date" if new - old == dt.timedelta(days=EXTEND_DAYS) else "from today"
    return f"moved from {date_text(old)} to {date_text(new)} ({EXTEND_DAYS} days {since})"


def extend_confirm(item: DigestItem | None = None, now: dt.datetime | None = None) -> ConfirmObject:
    """Plain text (nothing parsed); names the token and the new date when known."""
    title = f"Extend by {EXTEND_DAYS} days?"
    if item is None:
        text = (
            f"The chosen token's expiry moves {EXTEND_DAYS} days later "
            f"({EXTEND_DAYS} days from today if it has already expired)."
        )
    else:
        new = extended_date(item.expires_at, now=now or item.expires_at)
        moved = moved_text(expiry_date(item.expires_at), new)
        text = f"The expiry of “{truncate(item.label, 100)}” (a UTC date) will be {moved}."
    return ConfirmObject(
        title=plain(title),
        text=plain(text),
        confirm=plain(f"Extend {EXTEND_DAYS} days"),
        deny=plain("Cancel"),
        style="primary",
    )


def _buttons(item: DigestItem, now: dt.datetime) -> list[ButtonElement]:
    value = _value(item)
    return [
        button(f"Extend {EXTEND_DAYS} days", ActionId.ALERT_EXTEND, value, style="primary",
               confirm=extend_confirm(item, now)),
        button("Edit", ActionId.ALERT_EDIT, value),
        button("Disable", ActionId.ALERT_DISABLE, value, style="danger",
               confirm=confirm_dialog(Lifecycle.DISABLE, item.label)),
    ]


def _full(items: Sequence[DigestItem], now: dt.datetime) -> list[Block]:
    blocks: list[Block] = []
    for item in items:
        blocks.append(
            SectionBlock(
                block_id=row_block_id(BlockId.ALERT_ITEM, item.public_id),
                text=MarkdownTextObject(text=item_text(item, now)),
            )
        )
        if item.actionable:
            blocks.append(
                ActionsBlock(
                    block_id=row_block_id(BlockId.ALERT_ITEM_ACTIONS, item.public_id),
                    elements=_buttons(item, now),
                )
            )
    return blocks


def _value(item: DigestItem) -> str:
    return RowRef(public_id=item.public_id, version=item.version).encode()


def _menus(group: Sequence[DigestItem]) -> list[StaticSelectElement]:
    options = [token_option(item.label, item.masked, _value(item)) for item in group]
    return [
        StaticSelectElement(
            placeholder=plain(f"Extend {EXTEND_DAYS} days…"),
            action_id=ActionId.ALERT_EXTEND,
            options=options,
            confirm=extend_confirm(),
        ),
        StaticSelectElement(
            placeholder=plain("Edit…"),
            action_id=ActionId.ALERT_EDIT,
            options=options,
        ),
        StaticSelectElement(
            placeholder=plain("Disable…"),
            action_id=ActionId.ALERT_DISABLE,
            options=options,
            confirm=confirm_choice(Lifecycle.DISABLE),
        ),
    ]


def _compact(items: Sequence[DigestItem], now: dt.datetime) -> list[Block]:
    blocks: list[Block] = []
    for group_number, start in enumerate(range(0, len(items), GROUP_SIZE), start=1):
        group = items[start : start + GROUP_SIZE]
        blocks.append(
            SectionBlock(
                block_id=row_block_id(BlockId.ALERT_GROUP, group_number),
                fields=[MarkdownTextObject(text=item_text(item, now)) for item in group],
            )
        )
        actionable = [item for item in group if item.actionable]
        if actionable:
            blocks.append(
                ActionsBlock(
                    block_id=row_block_id(BlockId.ALERT_GROUP_ACTIONS, group_number),
                    elements=_menus(actionable),
                )
            )
    return blocks


def _soon(item: DigestItem, now: dt.datetime) -> bool:
    """Expiring soon as the table's badge means it (``bot.dates.expires_soon``)."""
    return expires_soon(expiry_date(item.expires_at), now)


def _counts(items: Sequence[DigestItem], now: dt.datetime) -> list[str]:
    """What is still to do, as it now is ("expiring soon" as the table's badge; later ones
    by their reminder's window), and what was dealt with: "2 expiring soon", …"""
    waiting = [item for item in items if item.actionable]
    expired = [item for item in waiting if item.expired(now)]
    soon = [item for item in waiting if not item.expired(now) and _soon(item, now)]
    later = [item for item in waiting if not item.expired(now) and not _soon(item, now)]
    window = max((max(item.threshold_days, days_until(expiry_date(item.expires_at), now))
                  for item in later), default=0)
    counts = [(len(soon), "expiring soon"), (len(later), f"expiring within {window} days"),
              (len(expired), "expired and no longer working"),
              (len(items) - len(waiting), "dealt with")]
    return [f"{count} {words}" for count, words in counts if count]


def digest_text(items: Sequence[DigestItem], audience: Audience, now: dt.datetime) -> str:
    """The headline, also the notification / fallback text (no user-supplied text in it),
    redrawn with the rows."""
    parts = _counts(items, now)
    noun = "Your access tokens" if audience == Audience.OWNER else "Access tokens"
    return f"{noun}: {', '.join(parts)}" if parts else noun


def digest_blocks(
    items: Sequence[DigestItem], *, audience: Audience, now: dt.datetime
) -> list[Block]:
    """One digest message: a headline, then the tokens soonest first."""
    ordered = sort_items(items)
    if len(ordered) > COMPACT_LAYOUT_MAX:
        raise ValueError(f"{len(ordered)} tokens do not fit one digest; use chunk_items()")
    intro = (
        "These tokens of yours are about to expire. Extend them, or disable the ones "
        "nothing uses any more."
        if audience == Audience.OWNER
        else "Tokens used by this channel's integrations are about to expire. "
        "Their owners or a workspace admin can act here."
    )
    header = SectionBlock(
        block_id=BlockId.ALERT_HEADER,
        text=MarkdownTextObject(
            text=f":alarm_clock: *{digest_text(ordered, audience, now)}*\n{intro}"
        ),
    )
    body = _full(ordered, now) if len(ordered) <= FULL_LAYOUT_MAX else _compact(ordered, now)
    return [header, *body]


def item_for(alert: OutboxMessage, token: Token) -> DigestItem:
    """How a token looks in a digest as it goes out."""
    return DigestItem(
        public_id=token.public_id,
        version=token.version,
        label=token.label,
        masked=token.secret_masked,
        scope=token.scope,
        owner=token.owner,
        expires_at=alert.expires_at,
        threshold_days=alert.threshold_days,
    )


def redraw_item(alert: OutboxMessage, token: Token | None) -> DigestItem | None:
    """How a posted token looks when its digest is redrawn: what was done from the message
    and by whom, or what became of it elsewhere (disabled, re-dated)."""
    if token is None:  # deleted: its alerts went with it (ON DELETE CASCADE)
        return None
    item = item_for(alert, token)
    outcome = ActedAction(alert.acted_action) if alert.acted_action else None
    by = alert.acted_by if outcome is not None else None
    if outcome is None and token.status == TokenStatus.DISABLED:
        outcome = ActedAction.DISABLED
    if outcome is None and token.expires_at != alert.expires_at:
        outcome = ActedAction.EDITED
    return DigestItem(
        **{
            **item.__dict__,
            "outcome": outcome,
            "outcome_by": by,
            "current_expires_at": token.expires_at,
        }
    )
