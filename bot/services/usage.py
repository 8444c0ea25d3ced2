"""Last used: when (to the minute) and by which caller a token was last presented
successfully. :class:`UsageMemo` tells, in memory, whether a write is due; :func:`record_uses`
writes with one conditional ``UPDATE`` per use (at most once a minute per token, however
many processes race), leaving ``version`` and ``updated_at`` alone so nobody's open view
turns stale. Plain functions, ``now`` passed in, no commit."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

from sqlalchemy import Connection, bindparam, or_, update

from bot.models import Token

#: How fresh ``last_used_at`` is kept: at most one write per token per interval.
LAST_USED_INTERVAL: Final = dt.timedelta(minutes=1)

_tokens = Token.__table__


@dataclass(frozen=True, slots=True)
class Use:
    """A successful check of a token: when, and by which caller (None: not named)."""

    token_id: int
    at: dt.datetime
    caller: str | None = None


# Built once: each use binds its token, time, caller and the cutoff.
_RECORD_USE: Final = (
    update(_tokens)
    .where(
        _tokens.c.id == bindparam("token_id"),
        or_(_tokens.c.last_used_at.is_(None), _tokens.c.last_used_at <= bindparam("cutoff")),
    )
    .values(last_used_at=bindparam("used_at"), last_used_by=bindparam("caller"))
)


def record_uses(
    connection: Connection, *, uses: Collection[Use], interval: dt.timedelta = LAST_USED_INTERVAL
) -> int:
    """Set each used token's ``last_used_at`` to the use's time and ``last_used_by`` to its
    caller (the introspection caller's name), except where it was set less than
    ``interval`` before that use. One statement, executed for each use, in the caller's
    transaction. Returns how many rows changed. Never touches ``version`` or
    ``updated_at``."""
    if not uses:
        return 0
    # In token order: two processes writing the same tokens lock their rows in the same
    # order, so they wait for each other instead of deadlocking.
    result = connection.execute(_RECORD_USE, [
        {"token_id": use.token_id, "used_at": use.at, "cutoff": use.at - interval,
         "caller": use.caller}
        for use in sorted(uses, key=attrgetter("token_id"))
    ])
    return result.rowcount


class UsageMemo:
    """When this process last knew a token's ``last_used_at`` to be fresh.

    ``due()`` is True when neither the memo nor the value just read from the row is within
    ``interval`` of ``now``; ``claim()`` marks the write as taken before it runs, so
    concurrent requests for the same token schedule one write, not many. The memo is
    bounded (cleared when full); forgetting only costs one extra conditional UPDATE.
    """

    def __init__(
        self, *, interval: dt.timedelta = LAST_USED_INTERVAL, max_entries: int = 100_000
    ) -> None:
        self.interval = interval
        self.max_entries = max_entries
        self._written: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()

    def due(self, token_id: int, *, now: dt.datetime, stored: dt.datetime | None) -> bool:
        cutoff = now - self.interval
        if stored is not None and stored > cutoff:
            return False
        last = self._written.get(token_id)
        return last is None or last <= cutoff

    def claim(self, token_id: int, *, now: dt.datetime, stored: dt.datetime | None) -> bool:
        """True (and remembered) when a write is due and nobody in this process took it."""
        with self._lock:
            if not self.due(token_id, now=now, stored=stored):
                return False
            if len(self._written) >= self.max_entries:
                self._written.clear()
            self._written[token_id] = now
            return True

    def forget(self, token_id: int) -> None:
        """The claimed write failed: let the next request try again."""
        with self._lock:
            self._written.pop(token_id, None)
