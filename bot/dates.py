"""Expiry dates as people read them, on every surface (Slack, digests, the CLI).

An expiry is a calendar date: the token stops working at 00:00 UTC of that date. It is
shown as that date (``2027-01-11``), never as the instant 00:00 UTC drawn in a reader's
time zone (which west of UTC is the evening before), with how far away it is in whole UTC
days ("in 3 days", "expired today", "expired 2 days ago"). Instants (created, last used)
are a different thing and each surface shows them as instants."""

from __future__ import annotations

import datetime as dt
from typing import Final

# Within this many days an active token "expires soon" (the table's badge).
EXPIRES_SOON_DAYS: Final = 7
UTC_RULE: Final = "Expiry dates are calendar dates (UTC): a token stops working at 00:00 UTC of its expiry date."


def today(now: dt.datetime) -> dt.date:
    """The current calendar date, in UTC (the calendar expiry dates are kept in)."""
    return now.astimezone(dt.timezone.utc).date()


def expiry_date(expires_at: dt.datetime) -> dt.date:
    """The date a user picked, from the instant it is stored as (00:00 UTC of it)."""
    return expires_at.astimezone(dt.timezone.utc).date()


def date_text(day: dt.date) -> str:
    """A calendar date as every surface writes it (as the date picker and the CLI take it)."""
    return day.isoformat()


def days_until(day: dt.date, now: dt.datetime) -> int:
    """Whole days from today (UTC) to ``day``; 0 on the day itself, negative after it."""
    return (day - today(now)).days


def _days(count: int) -> str:
    return f"{count} day{'s' if count != 1 else ''}"


def relative_expiry(day: dt.date, now: dt.datetime) -> str:
    """ "in 3 days", "expired today" (it stopped working at 00:00 UTC today), "expired 2
    days ago"."""
    left = days_until(day, now)
    if left > 0:
        return f"in {_days(left)}"
    if left == 0:
        return "expired today"
    return f"expired {_days(-left)} ago"


def expires_soon(day: dt.date | None, now: dt.datetime) -> bool:
    """Not yet expired, and at most :data:`EXPIRES_SOON_DAYS` away."""
    return day is not None and 0 < days_until(day, now) <= EXPIRES_SOON_DAYS
