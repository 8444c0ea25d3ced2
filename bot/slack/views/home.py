"""The App Home tab: the same table, with a "Create token" button."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    HeaderBlock,
    PlainTextObject,
)
from slack_sdk.models.views import View

from bot.slack.ids import ActionId, BlockId
from bot.services.listing import TokenPage
from bot.slack.state import TableState
from bot.slack.views.table import Notice, table_blocks


def home_view(
    page: TokenPage,
    *,
    now: dt.datetime,
    state: TableState,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
) -> View:
    """``panel``: blocks shown above the table, only to this user (a secret with Hide)."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Tokenbot", emoji=False))]
    blocks.extend(panel)
    blocks.extend(table_blocks(page, now=now, state=state, notice=notice))
    return View(type="home", blocks=blocks)


def home_notice_view(notice: Notice) -> View:
    """Home when the table itself cannot be drawn (an unexpected error)."""
    return View(
        type="home",
        blocks=[
            HeaderBlock(text=PlainTextObject(text="Tokenbot", emoji=False)),
            notice.block(),
            ActionsBlock(
                block_id=BlockId.PAGER,
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text="Refresh", emoji=False),
                        action_id=ActionId.REFRESH,
                        value=TableState().encode(),
                    )
                ],
            ),
        ],
    )
