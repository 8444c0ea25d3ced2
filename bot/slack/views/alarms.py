"""The dead-secret alarm: a disabled, expired or deleted secret still presented to
``/introspect``, posted to its owner and its alert channel. A pure builder."""

from __future__ import annotations

import datetime as dt

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    MarkdownTextObject,
    SectionBlock,
)

from bot.services.dead_secrets import DeadSecretReport
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import RowRef
from bot.slack.views.formatting import code, escape, mention, truncate
from bot.slack.views.messages import Message
from bot.slack.views.elements import button, open_table


def _age(since: dt.datetime | None, now: dt.datetime) -> str:
    """" 3 days ago" (nothing when not known)."""
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f" {count} {unit}{'s' if count != 1 else ''} ago"
    return " just now"


def _callers(callers: list[tuple[str, int]]) -> str:
    if len(callers) == 1:
        return escape(callers[0][0])
    named = [f"{escape(name)} ({count})" for name, count in callers[:5]]
    if len(callers) > 5:
        named.append(f"{len(callers) - 5} more")
    return ", ".join(named[:-1]) + " and " + named[-1]


def dead_secret_post(report: DeadSecretReport, *, now: dt.datetime, counted_at: dt.datetime,
                     owner_unreached: bool = False) -> Message:
    """"`tkb_ab12cd…` (CI deploy, disabled 3 days ago) was presented 14 times in the last
    24 hours by ci-runner", with Enable (a disabled token) and Open table. Never the
    secret: its masked prefix only. ``counted_at``: when the 24 hours ended (a post
    delayed by an outage names them). ``owner_unreached``: the owner's DM was refused (the
    channel's copy says so, as nobody else will tell the channel)."""
    times = "once" if report.presented == 1 else f"{report.presented} times"
    window = ("in the last 24 hours" if now - counted_at < dt.timedelta(hours=1)
              else f"in the 24 hours to {counted_at:%Y-%m-%d %H:%M} UTC")
    text = (f"{code(report.masked)} ({escape(truncate(report.label, 100))}, {report.state}"
            f"{_age(report.since, now)}) was presented {times} {window} by "
            f"{_callers(report.callers)}")
    if owner_unreached:
        text += (f"\n_Its owner, {mention(report.owner)}, could not be sent a direct "
                 "message about this._")
    buttons: list[ButtonElement] = []
    if report.enable and report.version is not None:
        buttons.append(button(
            "Enable", ActionId.DEAD_ENABLE, style="primary",
            value=RowRef(public_id=report.public_id, version=report.version).encode()))
    buttons.append(open_table(report.public_id))
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.DEAD_SECRET,
                     text=MarkdownTextObject(text=f":rotating_light: {text}")),
        ActionsBlock(block_id=BlockId.DEAD_SECRET_ACTIONS, elements=buttons),
    ]
    return Message(text=text, blocks=blocks)
