"""The alert records: arming, claiming, and recording what happened to them.

Plain functions in the project's service style: keyword-only arguments, ``now`` passed in,
no Slack, and no commits (the caller owns each transaction).

Exactly once, across processes:

1. **Arm.** For each threshold, one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` creates a
   pending record for every active token whose *nearest* crossed threshold is that one
   (so after downtime only the nearest is armed, never 30/7/1 at once). The unique key
   (token, threshold, expiry, kind) makes concurrent passes harmless, and keying by the
   expiry re-arms a token whose date changed.
2. **Claim.** One ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id``
   takes a lease (``claimed_by``, ``claimed_at``) on the due records (all of them, or one
   destination's). On PostgreSQL claims take turns under an advisory lock, so one pass
   gets all of a destination's alerts; on SQLite the statement holds the database's
   write lock, which is as atomic. A long pass renews its lease while it posts.
3. **Attempt, post, then mark.** Just before posting, :func:`mark_attempted` sets
   ``post_attempted_at`` on the message's records, only those still leased to the pass
   with at least :data:`IN_FLIGHT` of the lease left, so the post ends before any other
   pass may take them over (a pass that stalled posts nothing more; renewals are fenced
   the same way). Records are marked sent only after Slack
   accepted the message; a refusal releases the lease and sets ``next_attempt_at`` with
   exponential backoff. A post whose outcome is unknown keeps ``post_attempted_at``; a
   pass killed in between leaves a lease that runs out after :data:`LEASE`. The pass
   that takes such records over asks Slack what was posted before posting anything
   again (bot/alerts/delivery.py), then :func:`mark_sent` or :func:`clear_attempt`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Integer, String, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.models import Alert, AlertKind, AlertStatus, Token, TokenStatus, UTCDateTime

DAY: Final = dt.timedelta(days=1)
# How long after its expiry a token still gets its "expired" notice (downtime, first run).
EXPIRED_NOTICE_WINDOW: Final = dt.timedelta(days=7)
# A claim older than this is presumed abandoned (its pass died) and may be taken over.
LEASE: Final = dt.timedelta(minutes=10)
# The longest one post may take, its retries and Retry-After waits included (the Slack
# client of bot/alerts/delivery.py is sized to fit).
POST_BUDGET: Final = dt.timedelta(minutes=2)
# How far the hosts' clocks may disagree (leases and attempts are stamped by each
# pass's clock, history is read by Slack's).
CLOCK_SKEW: Final = dt.timedelta(minutes=2)
# A post starts only with this much of its lease left, and an attempt younger than this
# may still be in flight (not resolved yet).
IN_FLIGHT: Final = POST_BUDGET + CLOCK_SKEW
BACKOFF_BASE: Final = dt.timedelta(minutes=1)
BACKOFF_MAX: Final = dt.timedelta(hours=6)
# Records of expiries longer ago than this are deleted (nothing will ever read them).
KEEP_AFTER_EXPIRY: Final = dt.timedelta(days=90)
# At most this many records per pass (a backlog beyond it waits for the next pass).
CLAIM_LIMIT: Final = 50_000
CLAIM_LOCK_KEY: Final = 0x746B6E62_616C7274  # "tknbalrt": PostgreSQL advisory lock id


class SkipReason:
    DELETED = "deleted"
    DISABLED = "disabled"
    REDATED = "redated"  # expiry changed or cleared since the alert was armed
    SUPERSEDED = "superseded"  # a nearer threshold was crossed before this one went out
    UNREACHABLE = "unreachable"  # the owner's account is gone or takes no DM from the bot


class ActedAction(enum.StrEnum):
    """What was done from a digest message (shown when it is redrawn)."""

    EXTENDED = "extended"
    EDITED = "edited"
    DISABLED = "disabled"


def stages(alert_days: Iterable[int]) -> list[int]:
    """Thresholds in days, nearest first, with 0 (the moment of expiry) always included."""
    return sorted({0, *(int(day) for day in alert_days)})


def current_stage(
    expires_at: dt.datetime | None, *, now: dt.datetime, alert_days: Iterable[int]
) -> int | None:
    """The nearest threshold crossed at ``now`` (0 once expired), or None when none is."""
    if expires_at is None:
        return None
    for days in stages(alert_days):
        if expires_at <= now + days * DAY:
            return days
    return None


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try after ``attempts`` failures: 1, 2, 4 … minutes, capped."""
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


def _insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"alerts need PostgreSQL or SQLite, not {name}")


# -- arming -------------------------------------------------------------------


def arm(
    session: Session,
    *,
    now: dt.datetime,
    alert_days: Sequence[int],
    default_channel: str | None,
) -> int:
    """Create the pending records now due; returns how many were new.

    Each statement reads only the tokens whose expiry lies in one threshold's band (an
    index range on ``expires_at``), so a pass over a million tokens touches only those
    expiring within the largest threshold (or expired within the notice window)."""
    insert = _insert(session)
    bands: list[tuple[int, dt.datetime, dt.datetime]] = []
    low = now - EXPIRED_NOTICE_WINDOW
    for days in stages(alert_days):
        high = now + days * DAY
        bands.append((days, low, high))
        low = high
    default_channel = (default_channel or "").strip() or None  # blank means not set
    channel = func.coalesce(func.nullif(Token.alert_channel, ""), literal(default_channel, String))
    destinations: list[tuple[AlertKind, Any]] = [
        (AlertKind.CHANNEL, channel),
        (AlertKind.OWNER, Token.created_by),
    ]
    created = 0
    for days, low, high in bands:
        for kind, destination in destinations:
            source = select(
                Token.id,
                Token.team_id,
                literal(days, Integer),
                Token.expires_at,
                literal(kind.value, String),
                destination,
                literal(AlertStatus.PENDING.value, String),
                literal(0, Integer),
                literal(now, UTCDateTime()),
                literal(now, UTCDateTime()),
            ).where(
                Token.status == TokenStatus.ACTIVE,
                Token.expires_at > low,
                Token.expires_at <= high,
                destination.is_not(None),
            ).order_by(Token.id)  # one insertion order in every process: no lock cycles
            statement = (
                insert(Alert.__table__)
                .from_select(
                    [
                        "token_id",
                        "team_id",
                        "threshold_days",
                        "expires_at",
                        "kind",
                        "destination",
                        "status",
                        "attempts",
                        "next_attempt_at",
                        "created_at",
                    ],
                    source,
                )
                .on_conflict_do_nothing(
                    index_elements=["token_id", "threshold_days", "expires_at", "kind"]
                )
                # rowcount of INSERT … SELECT is not reported by every driver (psycopg: -1)
                .returning(Alert.__table__.c.id)
            )
            created += len(session.execute(statement).all())
    return created


def prune(session: Session, *, now: dt.datetime) -> int:
    result = session.execute(
        delete(Alert).where(Alert.expires_at < now - KEEP_AFTER_EXPIRY)
    )
    return max(getattr(result, "rowcount", 0) or 0, 0)  # a CursorResult


# -- claiming -----------------------------------------------------------------


def _due(now: dt.datetime) -> list[Any]:
    return [
        Alert.status == AlertStatus.PENDING,
        Alert.next_attempt_at <= now,
        or_(Alert.claimed_at.is_(None), Alert.claimed_at <= now - LEASE),
    ]


@dataclass(frozen=True, order=True)
class Destination:
    kind: AlertKind
    destination: str


def claim(
    session: Session,
    *,
    now: dt.datetime,
    worker: str,
    limit: int = CLAIM_LIMIT,
) -> list[int]:
    """Lease the due records to ``worker``; returns their ids.
    Records that another process holds (row-locked or leased) are not returned."""
    if session.get_bind().dialect.name == "postgresql":
        # Claims take turns (for the few milliseconds of this transaction), so one pass
        # gets all of a destination's due alerts: one digest per channel, not two halves.
        # SQLite's write lock does the same.
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
    candidates = (
        select(Alert.id)
        .where(*_due(now))
        .order_by(Alert.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Alert)
        .where(Alert.id.in_(candidates))
        .values(claimed_by=worker, claimed_at=now)
        .returning(Alert.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(statement).all())


def _room_for_a_post(at: dt.datetime) -> Any:
    """The lease has at least :data:`IN_FLIGHT` left at ``at``."""
    return Alert.claimed_at > at - (LEASE - IN_FLIGHT)


def renew(session: Session, *, worker: str, at: dt.datetime) -> None:
    """Move the lease of ``worker``'s unfinished records to ``at``; a lease with less
    than :data:`IN_FLIGHT` left is not renewed (the pass stalled: it is given up)."""
    session.execute(
        update(Alert)
        .where(Alert.claimed_by == worker, Alert.status == AlertStatus.PENDING,
               _room_for_a_post(at))
        .values(claimed_at=at)
        .execution_options(synchronize_session=False)
    )


def pending(session: Session, *, now: dt.datetime, limit: int = CLAIM_LIMIT) -> list[int]:
    """What :func:`claim` would take, without taking it (dry runs)."""
    return sorted(
        session.scalars(select(Alert.id).where(*_due(now)).order_by(Alert.id).limit(limit))
    )


def load_claimed(session: Session, *, worker: str) -> list[tuple[Alert, Token | None]]:
    """The unfinished records leased to ``worker`` (a pass: its id is its own), with
    their tokens."""
    rows = session.execute(
        select(Alert, Token)
        .outerjoin(Token, Token.id == Alert.token_id)
        .where(Alert.claimed_by == worker, Alert.status == AlertStatus.PENDING)
    ).all()
    return [(alert, token) for alert, token in rows]


def load_uncertain(session: Session, *, worker: str) -> list[Alert]:
    """Of the records leased to ``worker``, those whose earlier post may have been made
    (``post_attempted_at`` is set): usually none."""
    return list(session.scalars(
        select(Alert).where(
            Alert.claimed_by == worker,
            Alert.status == AlertStatus.PENDING,
            Alert.post_attempted_at.is_not(None),
        )
    ))


def load(session: Session, ids: Sequence[int]) -> list[tuple[Alert, Token | None]]:
    out: list[tuple[Alert, Token | None]] = []
    ids = list(ids)
    for start in range(0, len(ids), 10_000):  # within every driver's parameter limit
        rows = session.execute(
            select(Alert, Token)
            .outerjoin(Token, Token.id == Alert.token_id)
            .where(Alert.id.in_(ids[start : start + 10_000]))
        ).all()
        out.extend((alert, token) for alert, token in rows)
    return out


def skip_reason(
    alert: Alert, token: Token | None, *, now: dt.datetime, alert_days: Sequence[int]
) -> str | None:
    """Why a due alert must not go out any more, or None when it should."""
    if token is None:
        return SkipReason.DELETED
    if token.status == TokenStatus.DISABLED:
        return SkipReason.DISABLED
    if token.expires_at is None or token.expires_at != alert.expires_at:
        return SkipReason.REDATED
    stage = current_stage(token.expires_at, now=now, alert_days=alert_days)
    if stage is not None and stage < alert.threshold_days:
        return SkipReason.SUPERSEDED
    return None


@dataclass
class Selection:
    """Claimed alerts split into those to post and those to close without posting."""

    post: list[tuple[Alert, Token]] = field(default_factory=list)
    skip: dict[int, str] = field(default_factory=dict)


def select_for_posting(
    rows: Sequence[tuple[Alert, Token | None]], *, now: dt.datetime, alert_days: Sequence[int]
) -> Selection:
    selection = Selection()
    best: dict[int, tuple[Alert, Token]] = {}
    for alert, token in rows:
        reason = skip_reason(alert, token, now=now, alert_days=alert_days)
        if reason is not None or token is None:
            selection.skip[alert.id] = reason or SkipReason.DELETED
            continue
        kept = best.get(token.id)
        if kept is None:
            best[token.id] = (alert, token)
        elif alert.threshold_days < kept[0].threshold_days:
            selection.skip[kept[0].id] = SkipReason.SUPERSEDED
            best[token.id] = (alert, token)
        else:
            selection.skip[alert.id] = SkipReason.SUPERSEDED
    selection.post = list(best.values())
    return selection


# -- outcomes -----------------------------------------------------------------


def _mine(ids: Sequence[int], worker: str) -> list[Any]:
    return [Alert.id.in_(list(ids)), Alert.claimed_by == worker, Alert.status == AlertStatus.PENDING]


def mark_skipped(
    session: Session, *, reasons: dict[int, str], worker: str, now: dt.datetime
) -> None:
    by_reason: dict[str, list[int]] = {}
    for alert_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(alert_id)
    for reason, ids in by_reason.items():
        session.execute(
            update(Alert)
            .where(*_mine(ids, worker))
            .values(status=AlertStatus.SKIPPED, skip_reason=reason, claimed_at=None,
                    post_attempted_at=None)
            .execution_options(synchronize_session=False)
        )


def mark_attempted(
    session: Session, *, ids: Sequence[int], worker: str, at: dt.datetime
) -> list[int]:
    """Record that a post of these records is about to be made; returns those still
    leased to ``worker`` with room for the post (the only ones it may post)."""
    return sorted(session.scalars(
        update(Alert)
        .where(*_mine(ids, worker), _room_for_a_post(at))
        .values(post_attempted_at=at)
        .returning(Alert.id)
        .execution_options(synchronize_session=False)
    ).all())


def clear_attempt(session: Session, *, ids: Sequence[int], worker: str) -> None:
    """The attempted post did not happen (Slack's history lacks it): post afresh."""
    session.execute(
        update(Alert)
        .where(*_mine(ids, worker))
        .values(post_attempted_at=None)
        .execution_options(synchronize_session=False)
    )


def mark_sent(
    session: Session,
    *,
    ids: Sequence[int],
    worker: str,
    now: dt.datetime,
    channel: str,
    ts: str,
) -> int:
    result = session.execute(
        update(Alert)
        .where(*_mine(ids, worker))
        .values(
            status=AlertStatus.SENT,
            sent_at=now,
            message_channel=channel,
            message_ts=ts,
            claimed_at=None,
            last_error=None,
            post_attempted_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return max(getattr(result, "rowcount", 0) or 0, 0)  # a CursorResult


def mark_failed(
    session: Session, *, ids: Sequence[int], worker: str, now: dt.datetime, error: str,
    uncertain: bool = False,
) -> None:
    """Release the lease and schedule a retry with exponential backoff. ``uncertain``:
    the post may have been made, so ``post_attempted_at`` stays for the retry to check,
    which is not before the attempt is :data:`IN_FLIGHT` old."""
    cleared: dict[str, Any] = {} if uncertain else {"post_attempted_at": None}
    rows = session.execute(
        select(Alert.id, Alert.attempts, Alert.post_attempted_at).where(*_mine(ids, worker))
    ).all()
    by_retry: dict[tuple[int, dt.datetime], list[int]] = {}
    for alert_id, attempts, attempted in rows:
        retry = now + backoff(attempts + 1)
        if uncertain and attempted is not None:
            retry = max(retry, attempted + IN_FLIGHT)
        by_retry.setdefault((attempts + 1, retry), []).append(alert_id)
    for (attempts, retry), group in by_retry.items():
        session.execute(
            update(Alert)
            .where(Alert.id.in_(group))
            .values(
                attempts=attempts,
                next_attempt_at=retry,
                claimed_by=None,
                claimed_at=None,
                last_error=error[:200],
                **cleared,
            )
            .execution_options(synchronize_session=False)
        )


# -- the digest's actions -------------------------------------------------------


def message_alerts(
    session: Session, *, channel: str, ts: str
) -> list[tuple[Alert, Token | None]]:
    """The alerts one digest message carried, for redrawing it."""
    rows = session.execute(
        select(Alert, Token)
        .outerjoin(Token, Token.id == Alert.token_id)
        .where(Alert.message_channel == channel, Alert.message_ts == ts)
    ).all()
    return [(alert, token) for alert, token in rows]


def record_action(
    session: Session,
    *,
    channel: str,
    ts: str,
    token: Token,
    action: str,
    user_id: str,
    now: dt.datetime,
) -> None:
    """Remember on the message's alert what was done from it, and by whom."""
    session.execute(
        update(Alert)
        .where(
            Alert.message_channel == channel,
            Alert.message_ts == ts,
            Alert.token_id == token.id,
        )
        .values(acted_action=action, acted_by=user_id, acted_at=now)
        .execution_options(synchronize_session=False)
    )
