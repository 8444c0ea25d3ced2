"""mrkdwn helpers: escaping of user-supplied text and Slack's ``<!date^…>`` dates."""

from __future__ import annotations

import datetime as dt

ELLIPSIS = "…"
# Slack's limits (../shared/slack): blocks in a message and in a modal or Home view, and
# fields in a section (a digest's compact layout groups tokens by it).
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
SECTION_FIELDS_MAX = 10


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters.

    With them escaped a label such as ``<!channel>`` or ``<https://evil|click>`` is shown as
    typed and never becomes a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def slack_date(moment: dt.datetime, tokens: str, fallback: str) -> str:
    """``<!date^epoch^tokens|fallback>``: each reader's client renders it in local time;
    ``fallback`` is the ``strftime`` format of the UTC text shown where it cannot."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    utc = moment.astimezone(dt.timezone.utc).strftime(fallback)
    return f"<!date^{int(moment.timestamp())}^{tokens}|{escape(utc)}>"


def date_time(moment: dt.datetime) -> str:
    """An instant (created, last used) as date and time of day in the reader's time zone
    (an expiry is a calendar date instead: ``bot.dates``)."""
    return slack_date(moment, "{date_short} {time}", "%Y-%m-%d %H:%M UTC")


def ago(moment: dt.datetime) -> str:
    """Relative time, e.g. "3 days ago", with the UTC date as fallback."""
    return slack_date(moment, "{ago}", "%Y-%m-%d %H:%M UTC")


def code(text: str) -> str:
    """Inline code. Backticks cannot be escaped inside code spans, so they are dropped."""
    return "`" + escape(text.replace("`", "ˋ")) + "`"


def mention(user_id: str) -> str:
    return f"<@{user_id}>"
