"""The App Home tab: a short intro (when to disable vs delete), the filter menus, the same
table, with a "Create token" button."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.dates import UTC_RULE
from bot.services.actor import Actor
from bot.services.listing import StatusFilter, TokenPage
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import TableState
from bot.slack.views.elements import button, plain
from bot.slack.views.table import Notice, status_words, table_blocks
from bot.texts import DISABLE_VS_DELETE, DISABLE_VS_DELETE_TITLE

ALL_STATUSES = "all"
_MENU_ORDER = (StatusFilter.ACTIVE, StatusFilter.EXPIRING, StatusFilter.EXPIRED,
               StatusFilter.DISABLED)


def intro_block() -> ContextBlock:
    """The guide's "when to disable vs delete", and the rule for expiry dates."""
    lines = " ".join(DISABLE_VS_DELETE)
    return ContextBlock(
        block_id=BlockId.INTRO,
        elements=[MarkdownTextObject(text=f"*{DISABLE_VS_DELETE_TITLE}.* {lines} {UTC_RULE}")],
    )


def _option(value: str, expiring_days: int) -> Option:
    text = "Any status" if value == ALL_STATUSES else status_words(StatusFilter(value),
                                                                   expiring_days)
    return Option(text=plain(text[:1].upper() + text[1:]), value=value)


def filter_menus(state: TableState, expiring_days: int) -> ActionsBlock:
    """A status menu and an owner picker: the filters ``/tokens`` takes as words."""
    status = StaticSelectElement(
        action_id=ActionId.HOME_STATUS,
        placeholder=plain("Any status"),
        options=[_option(value, expiring_days) for value in (ALL_STATUSES, *_MENU_ORDER)],
        initial_option=_option(state.status.value, expiring_days) if state.status else None,
    )
    owner = UserSelectElement(
        action_id=ActionId.HOME_OWNER,
        placeholder=plain("Any owner"),
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
    blocks: list[Block] = [HeaderBlock(text=plain("Tokenbot")), intro_block()]
    blocks.extend(panel)
    blocks.append(filter_menus(state, page.expiring_days))
    blocks.extend(table_blocks(page, now=now, state=state, viewer=viewer, notice=notice))
    return View(type="home", blocks=blocks, private_metadata=state.encode())


def home_notice_view(notice: Notice) -> View:
    """Home when the table itself cannot be drawn (an unexpected error)."""
    return View(
        type="home",
        blocks=[
            HeaderBlock(text=plain("Tokenbot")),
            notice.block(),
            ActionsBlock(
                block_id=BlockId.PAGER,
                elements=[button("Refresh", ActionId.REFRESH, TableState().encode())],
            ),
        ],
    )
