"""The App Home tab: a short intro (when to disable vs delete), the filter menus, the same
table, with a "Create token" button."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.dates import UTC_RULE
from bot.services.actor import Actor
from bot.services.listing import StatusFilter, TokenPage
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import TableState
from bot.slack.views.table import Notice, table_blocks
from bot.texts import DISABLE_VS_DELETE, DISABLE_VS_DELETE_TITLE

ALL_STATUSES = "all"
_STATUS_OPTIONS = {
    ALL_STATUSES: "Any status",
    StatusFilter.ACTIVE: "Active",
    StatusFilter.EXPIRING: "Expiring soon",
    StatusFilter.EXPIRED: "Expired",
    StatusFilter.DISABLED: "Disabled",
}


def _plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=text, emoji=False)


def intro_block() -> ContextBlock:
    """The guide's "when to disable vs delete", and the rule for expiry dates."""
    lines = " ".join(DISABLE_VS_DELETE)
    return ContextBlock(
        block_id=BlockId.INTRO,
        elements=[MarkdownTextObject(text=f"*{DISABLE_VS_DELETE_TITLE}.* {lines} {UTC_RULE}")],
    )


def _option(value: str) -> Option:
    return Option(text=_plain(_STATUS_OPTIONS[value]), value=value)


def filter_menus(state: TableState) -> ActionsBlock:
    """A status menu and an owner picker: the filters ``/tokens`` takes as words."""
    status = StaticSelectElement(
        action_id=ActionId.HOME_STATUS,
        placeholder=_plain("Any status"),
        options=[_option(value) for value in _STATUS_OPTIONS],
        initial_option=_option(state.status.value) if state.status else None,
    )
    owner = UserSelectElement(
        action_id=ActionId.HOME_OWNER,
        placeholder=_plain("Any owner"),
        initial_user=state.owner or None,
    )
    return ActionsBlock(block_id=BlockId.FILTERS, elements=[status, owner])


def home_view(
    page: TokenPage,
    *,
    now: dt.datetime,
    state: TableState,
    viewer: Actor,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
) -> View:
    """``panel``: blocks shown above the table, only to this user (a secret with Hide).
    The view remembers the table's state (page and filter) for the filter menus."""
    blocks: list[Block] = [HeaderBlock(text=_plain("Tokenbot")), intro_block()]
    blocks.extend(panel)
    blocks.append(filter_menus(state))
    blocks.extend(table_blocks(page, now=now, state=state, viewer=viewer, notice=notice))
    return View(type="home", blocks=blocks, private_metadata=state.encode())


def home_notice_view(notice: Notice) -> View:
    """Home when the table itself cannot be drawn (an unexpected error)."""
    return View(
        type="home",
        blocks=[
            HeaderBlock(text=_plain("Tokenbot")),
            notice.block(),
            ActionsBlock(
                block_id=BlockId.PAGER,
                elements=[
                    ButtonElement(
                        text=_plain("Refresh"),
                        action_id=ActionId.REFRESH,
                        value=TableState().encode(),
                    )
                ],
            ),
        ],
    )
