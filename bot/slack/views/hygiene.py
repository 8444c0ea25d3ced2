"""The hygiene digest (one message per destination and week: dormant tokens, tokens over
policy) and the DM of a dormant token the policy disabled. Pure builders over the
digest's payload (``services.hygiene.payload_of``) and, when redrawn after an action, the
tokens' current state; the same builder draws the first post and every redraw.

A section is a header and its tokens: up to :data:`FULL_MAX` as a section and a row of
buttons each (Disable, Open table), more in groups of ten (a section of ten fields and a
"Disable…" menu with an Open table button), up to the payload's per-section limit; the
rest is counted in the header. :data:`SECTION_LIMIT` keeps :data:`SECTIONS_MAX` sections
within Slack's 50 blocks."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    MarkdownTextObject,
    SectionBlock,
    StaticSelectElement,
)

from bot.models import Audience, Token, TokenStatus
from bot.services.hygiene import HygieneItem, Section
from bot.services.policy import cap_of
from bot.slack.ids import ActionId, BlockId, row_block_id
from bot.slack.state import RowRef
from bot.slack.views.confirms import confirm_choice, confirm_dialog
from bot.slack.views.elements import button, open_table, plain, token_option
from bot.slack.views.formatting import (
    MESSAGE_BLOCK_LIMIT,
    SECTION_FIELDS_MAX,
    ago,
    code,
    date_time,
    escape,
    mention,
)
from bot.texts import Lifecycle

SECTIONS_MAX = 3  # dormant, over policy, owners who left
FULL_MAX = 7  # a section of at most this many tokens draws a row of buttons for each
GROUP_SIZE = SECTION_FIELDS_MAX  # a menu lists the same tokens as its section
SECTION_LIMIT = 70  # tokens a section lists: 1 header + 2 blocks per group of 10 = 15
assert 1 + SECTIONS_MAX * (1 + 2 * FULL_MAX) <= MESSAGE_BLOCK_LIMIT
assert 1 + SECTIONS_MAX * (1 + 2 * math.ceil(SECTION_LIMIT / GROUP_SIZE)) <= MESSAGE_BLOCK_LIMIT

_TITLES = {Section.DORMANT: "Dormant tokens", Section.OVER_POLICY: "Over policy",
           Section.DEPARTED: "Owners who left"}


@dataclass(frozen=True)
class Shown:
    """One token as the digest draws it: as listed, and as it is now (None: deleted)."""

    item: HygieneItem
    now_status: str | None
    version: int
    expires_on: str | None

    @property
    def actionable(self) -> bool:
        return self.now_status == TokenStatus.ACTIVE


def shown(payload: Mapping[str, Any], current: Mapping[str, Token] | None,
          ) -> dict[Section, list[Shown]]:
    """The payload's tokens per section; with ``current`` (a redraw), as they now are."""
    out: dict[Section, list[Shown]] = {}
    for name, items in (payload.get("sections") or {}).items():
        rows = []
        for raw in items:
            item = HygieneItem(**raw)
            if current is None:
                rows.append(Shown(item, item.status, item.version, item.expires_on))
                continue
            token = current.get(item.public_id)
            rows.append(Shown(item, str(token.status) if token else None,
                              token.version if token else item.version,
                              token.expires_on.isoformat() if token and token.expires_on
                              else None))
        out[Section(name)] = rows
    return out


def _since(item: HygieneItem) -> str:
    if item.last_used_at is None:
        return f"Never used (created {ago(dt.datetime.fromisoformat(item.created_at))})"
    return f"Last used {ago(dt.datetime.fromisoformat(item.last_used_at))}"


def _state(row: Shown, section: Section, payload: Mapping[str, Any]) -> str:
    if row.now_status is None:
        return ":wastebasket: Deleted since."
    if row.now_status == TokenStatus.DISABLED:
        if row.item.status == TokenStatus.DISABLED:
            return (f":no_entry_sign: *Disabled by the token policy*: unused for "
                    f"{payload.get('dormant_days', '?')} days. Its owner or an admin can "
                    "enable it again from `/tokens`.")
        return ":no_entry_sign: *Disabled*. Requests using it now fail."
    if section == Section.OVER_POLICY:
        cap = cap_of(payload.get("caps") or {}, row.item.scope)
        expires = f"expires {row.expires_on}" if row.expires_on else "never expires"
        limit = f"; {row.item.scope} tokens may live {cap} days" if cap else ""
        if row.expires_on != row.item.expires_on:
            return f":pencil2: Expiry changed since: it {expires}."
        return f":warning: Over policy: it {expires}{limit}."
    if section == Section.DEPARTED:
        return (":bust_in_silhouette: Its owner's account was deactivated: reassign it "
                "from its row in `/tokens` (admins), or disable it.")
    unused = f":zzz: Unused for {payload.get('dormant_days', '?')} days or more."
    if payload.get("dormant_action") == "disable":
        unused += (" The token policy disables it a week after this notice unless "
                   "something uses it before then.")
    return unused


def item_text(row: Shown, section: Section, payload: Mapping[str, Any]) -> str:
    item = row.item
    also = ([_state(row, Section(other), payload) for other in item.also]
            if row.actionable else [])
    return "\n".join([
        f"*{escape(item.label)}*  {code(item.masked)}",
        f"Scope: {code(item.scope)} · Owner: {mention(item.owner)} · {_since(item)}",
        _state(row, section, payload), *also,
    ])


def _ref(row: Shown) -> str:
    return RowRef(public_id=row.item.public_id, version=row.version).encode()


def _full(section: Section, rows: Sequence[Shown], payload: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for row in rows:
        key = f"{section}:{row.item.public_id}"
        blocks.append(SectionBlock(block_id=row_block_id(BlockId.HYGIENE_ITEM, key),
                                   text=MarkdownTextObject(text=item_text(row, section,
                                                                          payload))))
        elements: list[Any] = []
        if row.actionable:
            elements.append(button(
                "Disable", ActionId.HYGIENE_DISABLE, _ref(row), style="danger",
                confirm=confirm_dialog(Lifecycle.DISABLE, row.item.label)))
            if Section.OVER_POLICY in (section, *row.item.also):
                elements.append(button("Edit", ActionId.HYGIENE_EDIT, _ref(row)))
        if row.now_status is not None:
            elements.append(open_table(row.item.public_id))
        if elements:
            blocks.append(ActionsBlock(block_id=row_block_id(BlockId.HYGIENE_ITEM_ACTIONS, key),
                                       elements=elements))
    return blocks


def _compact(section: Section, rows: Sequence[Shown],
             payload: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for number, start in enumerate(range(0, len(rows), GROUP_SIZE), start=1):
        group = rows[start:start + GROUP_SIZE]
        key = f"{section}:{number}"
        blocks.append(SectionBlock(
            block_id=row_block_id(BlockId.HYGIENE_GROUP, key),
            fields=[MarkdownTextObject(text=item_text(row, section, payload)) for row in group]))
        options = [token_option(r.item.label, r.item.masked, _ref(r))
                   for r in group if r.actionable]
        elements: list[Any] = []
        if options:
            elements.append(StaticSelectElement(
                placeholder=plain("Disable…"),
                action_id=ActionId.HYGIENE_DISABLE, options=options,
                confirm=confirm_choice(Lifecycle.DISABLE)))
        elements.append(open_table())
        blocks.append(ActionsBlock(block_id=row_block_id(BlockId.HYGIENE_GROUP_ACTIONS, key),
                                   elements=elements))
    return blocks


def _counts(sections: Mapping[Section, Sequence[Shown]], payload: Mapping[str, Any]) -> str:
    more = payload.get("more") or {}
    parts = [f"{len(rows) + int(more.get(str(section), 0))} {_TITLES[section].lower()}"
             for section, rows in sections.items()]
    return ", ".join(parts)


def hygiene_text(sections: Mapping[Section, Sequence[Shown]], audience: Audience,
                 payload: Mapping[str, Any]) -> str:
    """The headline, also the notification text (nothing user-supplied in it)."""
    noun = "Hygiene of your access tokens" if audience == Audience.OWNER else "Token hygiene"
    return f"{noun}: {_counts(sections, payload)}"


def hygiene_blocks(payload: Mapping[str, Any], *, audience: Audience,
                   current: Mapping[str, Token] | None = None) -> tuple[str, list[Block]]:
    """The digest: a headline, then each section's tokens (``current``: as they now are)."""
    sections = shown(payload, current)
    intro = ("Tokens of yours nobody uses, or whose expiry is beyond the lifetime policy. "
             "Disable what is no longer needed; *Edit* an expiry (here, or on its row in "
             "the table) to bring it within policy."
             if audience == Audience.OWNER else
             "Tokens nobody uses, and tokens whose expiry is beyond the lifetime policy. "
             "Their owners or a workspace admin can act here.")
    text = hygiene_text(sections, audience, payload)
    blocks: list[Block] = [SectionBlock(block_id=BlockId.HYGIENE_HEADER,
                                        text=MarkdownTextObject(text=f":broom: *{text}*\n{intro}"))]
    more = payload.get("more") or {}
    for section, rows in sections.items():
        title = f"*{_TITLES[section]}*"
        if section == Section.DORMANT:
            title += f" (not presented to /introspect for {payload.get('dormant_days')} days)"
        hidden = int(more.get(str(section), 0))
        if hidden:
            title += f"\n…and {hidden} more: see `/tokens` (Open table)."
        blocks.append(SectionBlock(block_id=row_block_id(BlockId.HYGIENE_SECTION, section),
                                   text=MarkdownTextObject(text=title)))
        draw = _full if len(rows) <= FULL_MAX else _compact
        blocks.extend(draw(section, rows, payload))
    return text, blocks


def dormant_disabled_post(*, label: str, masked: str, public_id: str, dormant_days: int,
                          last_used_at: str | None) -> tuple[str, list[Block]]:
    """The owner's DM: which token, why it was disabled and how to enable it again."""
    used = ("it was never used" if last_used_at is None else
            f"it was last used {date_time(dt.datetime.fromisoformat(last_used_at))}")
    text = (f"Your token *{escape(label)}* ({code(masked)}) was disabled by the token policy: "
            f"nothing presented it for {dormant_days} days ({used}). Anything still using it "
            "now fails to authenticate. If it is still needed, enable it again from "
            "`/tokens` (*Enable* on its row), or ask a workspace admin.")
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.DORMANT_DISABLED, text=MarkdownTextObject(text=text)),
        ActionsBlock(block_id=BlockId.DORMANT_DISABLED_ACTIONS,
                     elements=[open_table(public_id)]),
    ]
    return f"Your token {escape(label)} was disabled: unused for {dormant_days} days.", blocks

