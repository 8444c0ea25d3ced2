"""The token table: one builder for the ephemeral message and the App Home tab, for the
first drawing and every redraw."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    Option,
    OverflowMenuElement,
    SectionBlock,
)

from bot.dates import date_text, expires_soon, relative_expiry
from bot.models import DisplayStatus
from bot.services.actor import Actor
from bot.services.listing import Listed, StatusFilter, TokenPage
from bot.slack.actions import ROW_BUTTONS, ROW_MENU, Action, Rows
from bot.slack.ids import ActionId, BlockId, row_block_id
from bot.slack.state import MenuChoice, RowRef, TableState
from bot.slack.views.elements import action_button, button, plain
from bot.slack.views.formatting import (
    MESSAGE_BLOCK_LIMIT,
    VIEW_BLOCK_LIMIT,
    ago,
    code,
    date_time,
    escape,
    mention,
    truncate,
)


class Surface(enum.StrEnum):
    MESSAGE = "message"
    HOME = "home"


# Blocks around the rows: notice, header, summary, pager (+ on Home: title, intro, filter
# menus and a secret panel of at most 3 blocks). Each row is its body, its actions and a
# divider.
BLOCKS_PER_ROW = 3
FIXED_BLOCKS = {Surface.MESSAGE: 4, Surface.HOME: 4 + 3 + 3}
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


SOON_BADGE = ":hourglass_flowing_sand: *Expires soon*"


def expiry_text(token: Listed, now: dt.datetime) -> str:
    """The calendar date picked (``bot.dates``: the same text on every surface) and how
    far away it is; never an instant drawn in the reader's time zone."""
    if token.expires_on is None:
        return "Expires: Never"
    return f"Expires: {date_text(token.expires_on)} ({relative_expiry(token.expires_on, now)})"


OVER_POLICY_BADGE = ":warning: *Over policy*"
#: How much of an exception's reason a row shows (all of it: the edit form, `tokens show`):
#: a row is one section, at most 3,000 characters, and a reason may escape to 2,500.
EXCEPTION_SHOWN = 150


def row_text(token: Listed, status: DisplayStatus, now: dt.datetime, *,
             over_policy: bool) -> str:
    """Everything a row shows: label, masked token, scope, owner, dates, status badge,
    and the lifetime policy: "Over policy", or an admin's "Policy exception" and why."""
    last_used = "Never used"
    if token.last_used_at:
        last_used = f"Last used {ago(token.last_used_at)}"
        if token.last_used_by:
            last_used += f" by {escape(token.last_used_by)}"
    badge = BADGES[status]
    if status == DisplayStatus.ACTIVE and expires_soon(token.expires_on, now):
        badge += f"  {SOON_BADGE}"
    if over_policy:
        badge += f"  {OVER_POLICY_BADGE}"
    text = (
        f"*{escape(token.label)}*   {badge}\n"
        f"{code(token.secret_masked)}  ·  Scope: {code(token.scope)}  ·  "
        f"Owner: {mention(token.owner)}\n"
        f"Created: {date_time(token.created_at)}  ·  {expiry_text(token, now)}  ·  "
        f"{last_used}"
    )
    if token.policy_exception:
        reason = truncate(token.policy_exception, EXCEPTION_SHOWN)
        text += f"\n:memo: Policy exception: {escape(reason)}"
    if token.old_secret_until is not None and token.rotating(now):
        text += (
            f"\n:repeat: Rotating: old secret {code(token.previous_secret_masked or '')} works "
            f"until {date_time(token.old_secret_until)} or until the new one is used"
        )
    return text


def _offered(action: Action, status: DisplayStatus, rotating: bool,
             admin: bool = False) -> bool:
    if action.admins and not admin:
        return False
    if action.rows == Rows.ROTATING:
        return rotating
    if action.rows == Rows.NOT_DISABLED:
        return status != DisplayStatus.DISABLED
    if action.rows == Rows.DISABLED:
        return status == DisplayStatus.DISABLED
    return True


def row_buttons(token: Listed, status: DisplayStatus, ref: RowRef,
                rotating: bool = False) -> list[ButtonElement]:
    """The guide's buttons this token's status offers (``bot.slack.actions``); each
    carries the row (a ``RowRef``)."""
    value = ref.encode()
    return [action_button(action, value, token.label) for action in ROW_BUTTONS
            if _offered(action, status, rotating)]


def row_menu(status: DisplayStatus, ref: RowRef, rotating: bool = False,
             admin: bool = False) -> OverflowMenuElement | None:
    """Every other row action, in one overflow menu ("More…"). An option carries its
    action and the row; the menu's listener runs it (after a confirmation modal where it
    cuts access: a menu has one confirm for all its options)."""
    options = [
        Option(text=plain(f"{action.button}…"),
               value=MenuChoice(action=action.id.value, ref=ref).encode())
        for action in ROW_MENU
        if _offered(action, status, rotating, admin)
    ]
    if not options:
        return None
    return OverflowMenuElement(action_id=ActionId.ROW_MORE, options=options)


def row_blocks(token: Listed, now: dt.datetime, state: TableState,
               viewer: Actor, *, over_policy: bool) -> list[Block]:
    """A row's blocks: its body (muted when disabled), its actions (only for its owner and
    admins) and a divider. The actions carry the token's version and the table's state."""
    status = token.display_status(now)
    text = MarkdownTextObject(text=row_text(token, status, now, over_policy=over_policy))
    block_id = row_block_id(BlockId.ROW, token.public_id)
    body: Block
    if status == DisplayStatus.DISABLED:
        # Slack has no opacity: a context block is the quiet, muted rendering.
        body = ContextBlock(block_id=block_id, elements=[text])
    else:
        body = SectionBlock(block_id=block_id, text=text)
    if not viewer.may_manage(token.owner):
        return [body, DividerBlock()]  # the owner's mention says whom to ask
    ref = RowRef(public_id=token.public_id, version=token.version, state=state)
    rotating = token.rotating(now)
    elements: list[ButtonElement | OverflowMenuElement] = [
        *row_buttons(token, status, ref, rotating)]
    menu = row_menu(status, ref, rotating, admin=viewer.is_admin)
    if menu is not None:
        elements.append(menu)
    actions = ActionsBlock(block_id=row_block_id(BlockId.ROW_ACTIONS, token.public_id),
                           elements=elements)
    return [body, actions, DividerBlock()]


def summary_text(page: TokenPage) -> str:
    noun = "token" if page.total == 1 else "tokens"
    return f"Page {page.page} of {page.pages_text}, {page.total_text} {noun}"


def status_words(status: StatusFilter, expiring_days: int) -> str:
    """A status filter in words ("expiring" is within the largest alert threshold)."""
    if status == StatusFilter.EXPIRING:
        return f"expiring within {expiring_days} days"
    return status.value


def filter_text(state: TableState, viewer: Actor, expiring_days: int) -> str:
    """The filter in words (mrkdwn), e.g. "mine · expiring within 30 days · labels
    containing “ci”", or "one token" (the table at a token, from an owner's DM)."""
    parts: list[str] = []
    if state.token:
        parts.append("one token")
    if state.owner:
        mine = state.owner == viewer.user_id
        parts.append("mine" if mine else f"owned by {mention(state.owner)}")
    if state.status:
        parts.append(status_words(state.status, expiring_days))
    if state.query:
        parts.append(f"labels containing “{escape(state.query)}”")
    return " · ".join(parts)


def _header(state: TableState, viewer: Actor, expiring_days: int) -> SectionBlock:
    """The title, the filter that is on, and a "Clear filter" button."""
    if not state.filters.active:
        return SectionBlock(block_id=BlockId.HEADER,
                            text=MarkdownTextObject(text="*Access tokens*"))
    return SectionBlock(
        block_id=BlockId.HEADER,
        text=MarkdownTextObject(
            text=f"*Access tokens*: {filter_text(state, viewer, expiring_days)}"),
        accessory=button("Clear filter", ActionId.CLEAR_FILTER, TableState().encode()),
    )


def _empty(state: TableState) -> SectionBlock:
    if state.token:
        text = "This token was not found: it may have been deleted."
    elif state.filters.active:
        text = "No tokens match this filter."
    else:
        text = "No tokens yet. Create one with *Create token* below or `/tokens create`."
    return SectionBlock(block_id=BlockId.EMPTY, text=MarkdownTextObject(text=text))


def _pager(page: TokenPage, state: TableState) -> ActionsBlock:
    """Previous / Next / Create token / Refresh."""
    elements: list[ButtonElement] = []
    if page.has_previous:
        elements.append(button("Previous", ActionId.PAGE_PREVIOUS,
                               state.at(page.page - 1).encode()))
    if page.has_next:
        elements.append(button("Next", ActionId.PAGE_NEXT, state.at(page.page + 1).encode()))
    elements.append(button("Create token", ActionId.CREATE_OPEN, state.encode(),
                           style="primary"))
    elements.append(button("Refresh", ActionId.REFRESH, state.encode()))
    return ActionsBlock(block_id=BlockId.PAGER, elements=elements)


def table_blocks(
    page: TokenPage,
    *,
    now: dt.datetime,
    state: TableState,
    viewer: Actor,
    notice: Notice | None = None,
) -> list[Block]:
    """The table for one page, as ``viewer`` may act on it; ``state`` is what the buttons
    carry back."""
    state = state.at(page.page)
    blocks: list[Block] = []
    if notice is not None:
        blocks.append(notice.block())
    blocks.append(_header(state, viewer, page.expiring_days))
    if page.items:
        for token in page.items:
            blocks.extend(row_blocks(token, now, state, viewer,
                                     over_policy=token.public_id in page.over_policy))
    else:
        blocks.append(_empty(state))
    summary = ContextBlock(block_id=BlockId.SUMMARY,
                           elements=[MarkdownTextObject(text=summary_text(page))])
    blocks.append(summary)
    blocks.append(_pager(page, state))
    return blocks


def fallback_text(page: TokenPage, notice: Notice | None = None) -> str:
    """The message's ``text`` (notifications, screen readers)."""
    text = f"Access tokens: {summary_text(page)}"
    if notice is not None:
        text = f"{notice.text}\n{text}"
    return text
