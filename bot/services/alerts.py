"""Expiry reminders: which are due (arming them into the outbox), and which of those
claimed are still wanted. Plain functions, ``now`` passed in, no Slack, no commits.

Arming is one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per threshold, over the tokens
whose *nearest* crossed threshold is that one (so after downtime only the nearest is
armed, never 30/7/1 at once); the unique key (token, threshold, expiry, audience) makes
concurrent passes harmless, and keying by the expiry re-arms a token whose date changed.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import Integer, String, func, literal, select, update
from sqlalchemy.orm import Session

from bot.db import dialect_insert
from bot.models import (
    Audience,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    Token,
    TokenStatus,
    UTCDateTime,
)

DAY: Final = dt.timedelta(days=1)
# How long after its expiry a token still gets its "expired" notice (downtime, first run).
EXPIRED_NOTICE_WINDOW: Final = dt.timedelta(days=7)


class SkipReason:
    DELETED = "deleted"
    DISABLED = "disabled"
    REDATED = "redated"  # expiry changed or cleared since the alert was armed
    SUPERSEDED = "superseded"  # a nearer threshold was crossed before this one went out


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


# -- arming -------------------------------------------------------------------


def arm(
    session: Session,
    *,
    now: dt.datetime,
    alert_days: Sequence[int],
    default_channel: str | None,
) -> int:
    """Queue the reminders now due; returns how many were new.

    Each statement reads only the tokens whose expiry lies in one threshold's band (an
    index range on ``expires_at``), so a pass over a million tokens touches only those
    expiring within the largest threshold (or expired within the notice window)."""
    insert = dialect_insert(session)
    bands: list[tuple[int, dt.datetime, dt.datetime]] = []
    low = now - EXPIRED_NOTICE_WINDOW
    for days in stages(alert_days):
        high = now + days * DAY
        bands.append((days, low, high))
        low = high
    default_channel = (default_channel or "").strip() or None  # blank means not set
    channel = func.coalesce(func.nullif(Token.alert_channel, ""), literal(default_channel, String))
    destinations: list[tuple[Audience, Any]] = [
        (Audience.CHANNEL, channel),
        (Audience.OWNER, Token.owner),
    ]
    created = 0
    for days, low, high in bands:
        for audience, destination in destinations:
            source = select(
                literal(MessageKind.EXPIRY.value, String),
                Token.public_id,
                Token.id,
                Token.team_id,
                literal(days, Integer),
                Token.expires_at,
                literal(audience.value, String),
                destination,
                literal(OutboxStatus.PENDING.value, String),
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
                insert(OutboxMessage.__table__)
                .from_select(
                    [
                        "kind",
                        "token_public_id",
                        "token_id",
                        "team_id",
                        "threshold_days",
                        "expires_at",
                        "audience",
                        "destination",
                        "status",
                        "attempts",
                        "next_attempt_at",
                        "created_at",
                    ],
                    source,
                )
                .on_conflict_do_nothing(
                    index_elements=["token_id", "threshold_days", "expires_at", "audience"]
                )
                # rowcount of INSERT … SELECT is not reported by every driver (psycopg: -1)
                .returning(OutboxMessage.__table__.c.id)
            )
            created += len(session.execute(statement).all())
    return created


def skip_reason(
    alert: OutboxMessage, token: Token | None, *, now: dt.datetime, alert_days: Sequence[int]
) -> str | None:
    """Why a due reminder must not go out any more, or None when it should."""
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


def select_for_posting(
    rows: Sequence[tuple[OutboxMessage, Token | None]], *, now: dt.datetime,
    alert_days: Sequence[int],
) -> tuple[list[tuple[OutboxMessage, Token]], dict[int, str]]:
    """Claimed alerts split into those to post and those to close without posting (row id
    -> why)."""
    skip: dict[int, str] = {}
    best: dict[int, tuple[OutboxMessage, Token]] = {}
    for alert, token in rows:
        reason = skip_reason(alert, token, now=now, alert_days=alert_days)
        if reason is not None or token is None:
            skip[alert.id] = reason or SkipReason.DELETED
            continue
        kept = best.get(token.id)
        if kept is None:
            best[token.id] = (alert, token)
        elif alert.threshold_days < kept[0].threshold_days:
            skip[kept[0].id] = SkipReason.SUPERSEDED
            best[token.id] = (alert, token)
        else:
            skip[alert.id] = SkipReason.SUPERSEDED
    return list(best.values()), skip


# -- the digest's actions -------------------------------------------------------


def message_alerts(
    session: Session, *, channel: str, ts: str
) -> list[tuple[OutboxMessage, Token | None]]:
    """The alerts one digest message carried, for redrawing it."""
    rows = session.execute(
        select(OutboxMessage, Token)
        .outerjoin(Token, Token.id == OutboxMessage.token_id)
        .where(OutboxMessage.message_channel == channel, OutboxMessage.message_ts == ts)
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
        update(OutboxMessage)
        .where(
            OutboxMessage.message_channel == channel,
            OutboxMessage.message_ts == ts,
            OutboxMessage.token_id == token.id,
        )
        .values(acted_action=action, acted_by=user_id, acted_at=now)
        .execution_options(synchronize_session=False)
    )
