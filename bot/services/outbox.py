"""The outbox's rows: queue, claim with a lease, record each attempt and its outcome.

Plain functions: keyword-only arguments, ``now`` passed in, no Slack, no commits. How a
row is posted (and why it goes out once) is ``bot.outbox``; docs/ARCHITECTURE.md says it
once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from bot.db import dialect_insert
from bot.models import Audience, MessageKind, OutboxMessage, OutboxStatus, Token

# -- the timing rules, together -------------------------------------------------------------
# One post: each try waits at most POST_TIMEOUT seconds for Slack's answer; a refused
# connection or a 429 asking for at most MAX_RETRY_AFTER seconds is tried again,
# POST_RETRIES times. So a post ends within POST_BUDGET.
POST_TIMEOUT: Final = 10
MAX_RETRY_AFTER: Final = 25
POST_RETRIES: Final = 2
POST_BUDGET: Final = dt.timedelta(
    seconds=(POST_RETRIES + 1) * POST_TIMEOUT + POST_RETRIES * (MAX_RETRY_AFTER + 1))
# How far the hosts' clocks may disagree (leases and attempts are stamped by each
# process's clock, history is read by Slack's).
CLOCK_SKEW: Final = dt.timedelta(minutes=2)
# A post starts only with this much of its lease left, and an attempt younger than this
# may still be in flight (it is not settled from history yet).
IN_FLIGHT: Final = POST_BUDGET + CLOCK_SKEW
# A claim older than this is presumed abandoned (its process died) and may be taken over.
LEASE: Final = dt.timedelta(minutes=10)
BACKOFF_BASE: Final = dt.timedelta(minutes=1)
BACKOFF_MAX: Final = dt.timedelta(hours=6)
# A post that certainly failed this many times (about 3½ days of retries) is given up:
# the destination refuses it for good (a channel the bot left, an owner who left).
GIVE_UP_AFTER: Final = 20
# Rows done (sent, skipped) this long ago are deleted; so are reminders of expiries
# longer ago than this.
KEEP: Final = dt.timedelta(days=90)
# At most this many rows per claim (a backlog beyond it waits for the next one).
CLAIM_LIMIT: Final = 50_000
CLAIM_LOCK_KEY: Final = 0x746B6E62_616C7274  # "tknbalrt": PostgreSQL advisory lock id
QUEUED: Final = "outbox_queued"  # in Session.info: this transaction queued a message


class Closed:
    """Why the delivery closed a row without posting it (any kind; a kind's own reasons,
    e.g. a reminder whose token was deleted, are the kind's)."""

    UNREACHABLE = "unreachable"  # the owner's account is gone or takes no DM from the bot
    GAVE_UP = "gave up"  # refused :data:`GIVE_UP_AFTER` times
    UNDRAWABLE = "could not be drawn"  # its builder failed on it


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try after ``attempts`` failures: 1, 2, 4 … minutes, capped."""
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


def queue(
    session: Session, *, kind: MessageKind, team_id: str, audience: Audience,
    destination: str, now: dt.datetime, token_public_id: str | None = None,
    payload: dict[str, Any] | None = None, key: str | None = None,
) -> bool:
    """Add a message to the caller's transaction; with a ``key``, only if no message has
    had that key (True when queued)."""
    values = dict(kind=kind.value, team_id=team_id, audience=audience.value,
                  destination=destination, token_public_id=token_public_id,
                  payload=payload or {}, key=key, status=OutboxStatus.PENDING.value,
                  attempts=0, next_attempt_at=now, created_at=now)
    statement = dialect_insert(session)(OutboxMessage.__table__).values(**values)
    if key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["key"])
    statement = statement.returning(OutboxMessage.__table__.c.id)
    queued = session.execute(statement).first() is not None
    if queued:
        session.info[QUEUED] = True  # the Slack app's drain posts it after the commit
    return queued


def queue_owner_and_channel(session: Session, *, owner: str, channel: str | None, key: str,
                            **message: Any) -> list[bool]:
    """:func:`queue` to ``owner`` by DM and, when given, to ``channel``, each under ``key``
    and its audience; whether each was queued (the owner's first)."""
    targets = [(Audience.OWNER, owner)] + ([(Audience.CHANNEL, channel)] if channel else [])
    return [queue(session, audience=audience, destination=destination,
                  key=f"{key}:{audience}", **message) for audience, destination in targets]


def take_queued(session: Session) -> bool:
    """Whether this session's transaction queued a message (and forget it: whoever asks
    posts it)."""
    return bool(session.info.pop(QUEUED, False))


def _due(now: dt.datetime, limit: int) -> Any:
    """The ids of the rows due at ``now`` and not leased, oldest first."""
    return select(OutboxMessage.id).where(
        OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at <= now - LEASE),
    ).order_by(OutboxMessage.id).limit(limit)


def claim(session: Session, *, now: dt.datetime, worker: str,
          limit: int = CLAIM_LIMIT) -> list[int]:
    """Lease the due rows to ``worker``; returns their ids. Rows another process holds
    (row-locked or leased) are not returned."""
    if session.get_bind().dialect.name == "postgresql":
        # Claims take turns (for the milliseconds of this transaction), so one process
        # gets all of a destination's due rows: one digest per channel, not two halves.
        # SQLite's write lock does the same.
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
    candidates = _due(now, limit).with_for_update(skip_locked=True)
    statement = (update(OutboxMessage).where(OutboxMessage.id.in_(candidates))
                 .values(claimed_by=worker, claimed_at=now).returning(OutboxMessage.id)
                 .execution_options(synchronize_session=False))
    return sorted(session.scalars(statement).all())


def pending(session: Session, *, now: dt.datetime, limit: int = CLAIM_LIMIT) -> list[int]:
    """What :func:`claim` would take, without taking it (dry runs)."""
    return sorted(session.scalars(_due(now, limit)))


def _room_for_a_post(at: dt.datetime) -> Any:
    """The lease has at least :data:`IN_FLIGHT` left at ``at``."""
    return OutboxMessage.claimed_at > at - (LEASE - IN_FLIGHT)


def renew(session: Session, *, worker: str, at: dt.datetime) -> None:
    """Move the lease of ``worker``'s unfinished rows to ``at``; a lease with less than
    :data:`IN_FLIGHT` left is not renewed (its holder stalled: it is given up)."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.claimed_by == worker,
               OutboxMessage.status == OutboxStatus.PENDING, _room_for_a_post(at))
        .values(claimed_at=at).execution_options(synchronize_session=False))


def load(session: Session, ids: Sequence[int]) -> list[tuple[OutboxMessage, Token | None]]:
    """These rows, with the token of each expiry reminder."""
    out: list[tuple[OutboxMessage, Token | None]] = []
    ids = list(ids)
    for start in range(0, len(ids), 10_000):  # within every driver's parameter limit
        rows = session.execute(
            select(OutboxMessage, Token)
            .outerjoin(Token, Token.id == OutboxMessage.token_id)
            .where(OutboxMessage.id.in_(ids[start:start + 10_000]))
            .order_by(OutboxMessage.id)
        ).all()
        out.extend((message, token) for message, token in rows)
    return out


def _mine(ids: Sequence[int], worker: str) -> list[Any]:
    return [OutboxMessage.id.in_(list(ids)), OutboxMessage.claimed_by == worker,
            OutboxMessage.status == OutboxStatus.PENDING]


def mark_skipped(session: Session, *, reasons: dict[int, str], worker: str) -> None:
    """Close rows no longer wanted (never posted, whatever was attempted)."""
    by_reason: dict[str, list[int]] = {}
    for message_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(message_id)
    for reason, ids in by_reason.items():
        session.execute(
            update(OutboxMessage).where(*_mine(ids, worker))
            .values(status=OutboxStatus.SKIPPED, skip_reason=reason, claimed_at=None,
                    post_attempted_at=None)
            .execution_options(synchronize_session=False))


def release(session: Session, *, ids: Sequence[int], worker: str) -> None:
    """Give these rows back untouched (a kind this process does not know)."""
    if ids:
        session.execute(update(OutboxMessage).where(*_mine(ids, worker))
                        .values(claimed_by=None, claimed_at=None)
                        .execution_options(synchronize_session=False))


def mark_attempted(session: Session, *, ids: Sequence[int], worker: str,
                   at: dt.datetime) -> list[int]:
    """Record that a post of these rows is about to be made; returns those still leased
    to ``worker`` with room for the post (the only ones it may post)."""
    return sorted(session.scalars(
        update(OutboxMessage).where(*_mine(ids, worker), _room_for_a_post(at))
        .values(post_attempted_at=at).returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)).all())


def clear_attempt(session: Session, *, ids: Sequence[int], worker: str) -> None:
    """The attempted post did not happen (Slack's history lacks it): post afresh."""
    session.execute(update(OutboxMessage).where(*_mine(ids, worker))
                    .values(post_attempted_at=None)
                    .execution_options(synchronize_session=False))


def mark_sent(session: Session, *, ids: Sequence[int], worker: str, now: dt.datetime,
              channel: str | None, ts: str | None) -> int:
    """Slack accepted the message (``channel``/``ts``: where it is, when known)."""
    result = session.execute(
        update(OutboxMessage).where(*_mine(ids, worker))
        .values(status=OutboxStatus.SENT, sent_at=now, message_channel=channel,
                message_ts=ts, claimed_at=None, last_error=None, post_attempted_at=None)
        .execution_options(synchronize_session=False))
    return max(getattr(result, "rowcount", 0) or 0, 0)  # a CursorResult


def mark_failed(session: Session, *, ids: Sequence[int], worker: str, now: dt.datetime,
                error: str, uncertain: bool = False) -> dict[str, int]:
    """Release the lease and schedule a retry with exponential backoff. ``uncertain``:
    the post may have been made, so ``post_attempted_at`` stays for the retry to settle,
    which is not before the attempt is :data:`IN_FLIGHT` old. A row that certainly failed
    :data:`GIVE_UP_AFTER` times is closed (skipped, ``gave up``) instead of retried.
    Returns how many rows were given up, per kind."""
    cleared: dict[str, Any] = {} if uncertain else {"post_attempted_at": None}
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.attempts, OutboxMessage.post_attempted_at,
               OutboxMessage.kind)
        .where(*_mine(ids, worker))).all()
    by_retry: dict[tuple[int, dt.datetime], list[int]] = {}
    given_up: dict[str, int] = {}
    for message_id, attempts, attempted, kind in rows:
        retry = now + backoff(attempts + 1)
        if uncertain and attempted is not None:
            retry = max(retry, attempted + IN_FLIGHT)
        by_retry.setdefault((attempts + 1, retry), []).append(message_id)
        if not uncertain and attempts + 1 >= GIVE_UP_AFTER:
            given_up[kind] = given_up.get(kind, 0) + 1
    for (attempts, retry), group in by_retry.items():
        closed: dict[str, Any] = {}
        if not uncertain and attempts >= GIVE_UP_AFTER:
            closed = {"status": OutboxStatus.SKIPPED, "skip_reason": Closed.GAVE_UP}
        session.execute(  # still ours: a row taken over meanwhile is left to its taker
            update(OutboxMessage).where(*_mine(group, worker))
            .values(attempts=attempts, next_attempt_at=retry, claimed_by=None,
                    claimed_at=None, last_error=error[:200], **cleared, **closed)
            .execution_options(synchronize_session=False))
    return given_up


def purge(session: Session, *, now: dt.datetime) -> int:
    """Delete what nothing will read again: rows done :data:`KEEP` ago, and reminders of
    expiries longer ago than that; not the post of a departure still recorded (its
    buttons read it). Returns how many."""
    from bot.services.departed import posts_of_current_departures  # it queues through here

    old = now - KEEP
    result = session.execute(delete(OutboxMessage).where(or_(
        OutboxMessage.expires_at < old,
        (OutboxMessage.status != OutboxStatus.PENDING) & (OutboxMessage.created_at < old)
        & OutboxMessage.expires_at.is_(None)), ~posts_of_current_departures()))
    return max(getattr(result, "rowcount", 0) or 0, 0)
