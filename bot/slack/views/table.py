"""The token table: one builder for the ephemeral message and the App Home tab, for the
first drawing and every redraw."""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.ids import ActionId, BlockId, row_block_id
from bot.models import DisplayStatus
from bot.services.tokens import Listed, TokenPage
from bot.slack.views.confirms import Confirmable, confirm_dialog, confirm_title, style_of
from bot.slack.views.formatting import ago, code, date_short, date_time, escape, mention
from bot.slack.state import RowRef, TableState

MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100


class Surface(enum.StrEnum):
    MESSAGE = "message"
    HOME = "home"


# Blocks around the rows: notice, header, summary, pager (+ on Home: title and a secret
# panel of at most 3 blocks). Each row is its body, its buttons and a divider.
BLOCKS_PER_ROW = 3
FIXED_BLOCKS = {Surface.MESSAGE: 4, Surface.HOME: 4 + 1 + 3}
PAGE_SIZE = {Surface.MESSAGE: 10, Surface.HOME: 20}
for _surface, _limit in ((Surface.MESSAGE, MESSAGE_BLOCK_LIMIT), (Surface.HOME, VIEW_BLOCK_LIMIT)):
    assert FIXED_BLOCKS[_surface] + BLOCKS_PER_ROW * PAGE_SIZE[_surface] <= _limit


class NoticeKind(enum.StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    INFO = "info"


_NOTICE_ICON = {
    NoticeKind.SUCCESS: ":white_check_mark:",
    NoticeKind.ERROR: ":warning:",
    NoticeKind.INFO: ":information_source:",
}


@dataclass(frozen=True)
class Notice:
    """A short line above the table: the confirmation or error of the last action.
    ``text`` is mrkdwn that is already safe (user-supplied parts escaped)."""

    text: str
    kind: NoticeKind = NoticeKind.SUCCESS

    def block(self) -> SectionBlock:
        return SectionBlock(
            block_id=BlockId.NOTICE,
            text=MarkdownTextObject(text=f"{_NOTICE_ICON[self.kind]} {self.text}"),
        )


BADGES = {
    DisplayStatus.ACTIVE: ":large_green_circle: Active",
    DisplayStatus.EXPIRED: ":red_circle: *Expired*",
    DisplayStatus.DISABLED: ":no_entry_sign: *Disabled*",
}


def _button(
    text: str,
    action: ActionId,
    value: str,
    *,
    style: str | None = None,
    confirm: ConfirmObject | None = None,
) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text, emoji=False),
        action_id=action,
        value=value,
        style=style,
        confirm=confirm,
    )


@dataclass(frozen=True, slots=True)
class RowFacts:
    """Everything a row shows of a token at one moment. Hashable: a row looks the same
    whenever its facts are the same, so a look drawn before is not built again."""

    public_id: str
    label: str
    scope: str
    secret_masked: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    status: DisplayStatus

    @classmethod
    def of(cls, token: Listed, now: dt.datetime) -> RowFacts:
        return cls(
            public_id=token.public_id,
            label=token.label,
            scope=token.scope,
            secret_masked=token.secret_masked,
            created_by=token.created_by,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            status=token.display_status(now),
        )


def _expires(row: RowFacts) -> str:
    if row.expires_at is None:
        return "Expires: Never"
    if row.status == DisplayStatus.EXPIRED:
        return f":warning: *Expired* {date_time(row.expires_at)}"
    return f"Expires: {date_time(row.expires_at)}"


def row_text(row: RowFacts) -> str:
    """Everything a row shows: label, masked token, scope, owner, dates, status badge."""
    last_used = f"Last used {ago(row.last_used_at)}" if row.last_used_at else "Never used"
    return (
        f"*{escape(row.label)}*   {BADGES[row.status]}\n"
        f"{code(row.secret_masked)}  ·  Scope: {code(row.scope)}  ·  "
        f"Owner: {mention(row.created_by)}\n"
        f"Created: {date_short(row.created_at)}  ·  {_expires(row)}  ·  {last_used}"
    )


def row_buttons(row: RowFacts, value: str) -> list[ButtonElement]:
    """Copy, Edit, Disable or Enable, Delete, Rotate; no Edit or Delete on a disabled token.
    ``value``: what every button carries back (a ``RowRef``)."""
    disabled = row.status == DisplayStatus.DISABLED
    buttons = [_button("Copy", ActionId.COPY, value)]
    if not disabled:
        buttons.append(_button("Edit", ActionId.EDIT, value))
    toggle = Confirmable.ENABLE if disabled else Confirmable.DISABLE
    buttons.append(
        _button(
            "Enable" if disabled else "Disable",
            ActionId.ENABLE if disabled else ActionId.DISABLE,
            value,
            style=style_of(toggle),
            confirm=confirm_dialog(toggle, row.label),
        )
    )
    if not disabled:
        buttons.append(
            _button(
                "Delete", ActionId.DELETE, value,
                style=style_of(Confirmable.DELETE),
                confirm=confirm_dialog(Confirmable.DELETE, row.label),
            )
        )
    buttons.append(
        _button(
            "Rotate", ActionId.ROTATE, value,
            style=style_of(Confirmable.ROTATE),
            confirm=confirm_dialog(Confirmable.ROTATE, row.label),
        )
    )
    return buttons


def build_row(row: RowFacts, value: str) -> list[Block]:
    """A row's blocks: its body (muted when disabled), its buttons and a divider."""
    text = row_text(row)
    body: Block
    if row.status == DisplayStatus.DISABLED:
        # Slack has no opacity: a context block is the quiet, muted rendering.
        body = ContextBlock(
            block_id=row_block_id(BlockId.ROW, row.public_id),
            elements=[MarkdownTextObject(text=text)],
        )
    else:
        body = SectionBlock(
            block_id=row_block_id(BlockId.ROW, row.public_id),
            text=MarkdownTextObject(text=text),
        )
    actions = ActionsBlock(
        block_id=row_block_id(BlockId.ROW_ACTIONS, row.public_id),
        elements=row_buttons(row, value),
    )
    return [body, actions, DividerBlock()]


class Rendered(Block):
    """A block that was built and validated (``to_dict()``) before: it gives back that
    dict. The dict is shared between drawings, so nothing may change it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(type=data["type"], block_id=data.get("block_id"))
        self._data = data

    def to_dict(self, *args: Any) -> dict[str, Any]:
        return self._data  # type: ignore[return-value]


# About 3 kB per row: a few thousand rows cost a few MB and cover the pages people look at.
ROW_CACHE_SIZE = 4096

# The buttons whose confirmation dialog names the token.
_CONFIRMS = {
    ActionId.DISABLE: Confirmable.DISABLE,
    ActionId.ENABLE: Confirmable.ENABLE,
    ActionId.DELETE: Confirmable.DELETE,
    ActionId.ROTATE: Confirmable.ROTATE,
}


_SHAPE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


@functools.lru_cache(maxsize=2)
def _row_shape(disabled: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A row of this shape (a disabled row is muted and offers fewer buttons), built and
    validated by slack_sdk once. Rows differ only in texts whose length is bounded (block
    ids, the row's text, the dialogs' titles), which ``_row_look`` fills in."""
    sample = RowFacts(
        public_id="tok_shape", label="shape", scope="shape", secret_masked="shape",
        created_by="USHAPE", created_at=_SHAPE_TIME, expires_at=None, last_used_at=None,
        status=DisplayStatus.DISABLED if disabled else DisplayStatus.ACTIVE,
    )
    value = RowRef(public_id=sample.public_id, version=0, state=TableState()).encode()
    body, actions, divider = (block.to_dict() for block in build_row(sample, value))
    return body, actions, divider



@functools.lru_cache(maxsize=ROW_CACHE_SIZE)
def _row_look(row: RowFacts) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What ``build_row`` gives for these facts (a test holds them equal), at a fraction of
    its cost: a redraw shows the same rows again, an edit or a new token one new row. The
    buttons' value is filled in per drawing."""
    body, actions, divider = _row_shape(row.status == DisplayStatus.DISABLED)
    text = row_text(row)
    if body["type"] == "section":
        body = {**body, "text": {**body["text"], "text": text}}
    else:
        body = {**body, "elements": [{**body["elements"][0], "text": text}]}
    body["block_id"] = row_block_id(BlockId.ROW, row.public_id)
    buttons = []
    for button in actions["elements"]:
        if "confirm" in button:
            title = confirm_title(_CONFIRMS[button["action_id"]], row.label)
            confirm = button["confirm"]
            titled = {**confirm, "title": {**confirm["title"], "text": title}}
            button = {**button, "confirm": titled}
        buttons.append(button)
    actions = {**actions, "block_id": row_block_id(BlockId.ROW_ACTIONS, row.public_id),
               "elements": buttons}
    return body, actions, divider


def row_blocks(token: Listed, now: dt.datetime, state: TableState) -> list[Block]:
    """A row's blocks, its buttons carrying the token's version and the table's state."""
    body, actions, divider = _row_look(RowFacts.of(token, now))
    value = RowRef(public_id=token.public_id, version=token.version, state=state).encode()
    buttons = [{**button, "value": value} for button in actions["elements"]]
    return [Rendered(body), Rendered({**actions, "elements": buttons}), Rendered(divider)]


def summary_text(page: TokenPage) -> str:
    noun = "token" if page.total == 1 else "tokens"
    return f"Page {page.page} of {page.pages_text}, {page.total_text} {noun}"


def _header(state: TableState) -> Block:
    return Rendered(_header_look(state.query))


@functools.lru_cache(maxsize=256)
def _header_look(query: str) -> dict[str, Any]:
    text = "*Access tokens*"
    if query:
        text += f" with labels containing “{escape(query)}”"
    return SectionBlock(block_id=BlockId.HEADER, text=MarkdownTextObject(text=text)).to_dict()


def _empty(state: TableState) -> SectionBlock:
    if state.query:
        text = (
            f"No tokens match “{escape(state.query)}”. `/tokens` shows them all; "
            "`/tokens help` lists the subcommands."
        )
    else:
        text = "No tokens yet. Create one with *Create token* below or `/tokens create`."
    return SectionBlock(block_id=BlockId.EMPTY, text=MarkdownTextObject(text=text))


def _pager(page: TokenPage, state: TableState) -> Block:
    return Rendered(_pager_look(page.page, page.has_next, state))


@functools.lru_cache(maxsize=256)
def _pager_look(number: int, has_next: bool, state: TableState) -> dict[str, Any]:
    """Previous / Next / Create token / Refresh, built and validated once per page state."""
    elements: list[ButtonElement] = []
    if number > 1:
        elements.append(_button("Previous", ActionId.PAGE_PREVIOUS, state.at(number - 1).encode()))
    if has_next:
        elements.append(_button("Next", ActionId.PAGE_NEXT, state.at(number + 1).encode()))
    elements.append(
        _button("Create token", ActionId.CREATE_OPEN, state.at(number).encode(), style="primary")
    )
    elements.append(_button("Refresh", ActionId.REFRESH, state.at(number).encode()))
    return ActionsBlock(block_id=BlockId.PAGER, elements=elements).to_dict()


def table_blocks(
    page: TokenPage,
    *,
    now: dt.datetime,
    state: TableState,
    notice: Notice | None = None,
) -> list[Block]:
    """The table for one page; ``state`` is what the buttons carry back."""
    state = replace(state, page=page.page, many=not page.total_exact)
    blocks: list[Block] = []
    if notice is not None:
        blocks.append(notice.block())
    blocks.append(_header(state))
    if page.items:
        for token in page.items:
            blocks.extend(row_blocks(token, now, state))
    else:
        blocks.append(_empty(state))
    blocks.append(Rendered(_summary_look(summary_text(page))))
    blocks.append(_pager(page, state))
    return blocks


@functools.lru_cache(maxsize=1024)
def _summary_look(text: str) -> dict[str, Any]:
    """"Page x of y, n tokens", built and validated once per text."""
    return ContextBlock(
        block_id=BlockId.SUMMARY, elements=[MarkdownTextObject(text=text)]
    ).to_dict()


def fallback_text(page: TokenPage, notice: Notice | None = None) -> str:
    """The message's ``text`` (notifications, screen readers)."""
    text = f"Access tokens: {summary_text(page)}"
    if notice is not None:
        text = f"{notice.text}\n{text}"
    return text
