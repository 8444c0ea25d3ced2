"""What the outbox holds now, for operators (``tokenbot alerts status``) and for the
metrics' gauges: per kind and destination, how many rows are queued, leased, failing
(waiting for a retry), sent or skipped; the oldest pending; the next retry; the last
error. And how many tokens show each status. Read-only; ``now`` passed in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from bot.models import DisplayStatus, MessageKind, OutboxMessage, OutboxStatus, Token, status_clause
from bot.services.outbox import LEASE, Closed

#: A row's state: pending rows are queued (never tried), leased (a delivery holds them
#: now) or failing (tried, waiting for their retry); the others are done.
QUEUED, LEASED, FAILING, SENT, SKIPPED = "queued", "leased", "failing", "sent", "skipped"
STATES = (QUEUED, LEASED, FAILING, SENT, SKIPPED)
PENDING_STATES = (QUEUED, LEASED, FAILING)


@dataclass
class DestinationStatus:
    kind: str
    audience: str
    destination: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    oldest_pending: dt.datetime | None = None
    next_retry: dt.datetime | None = None  # the soonest retry of a failing row
    last_error: str | None = None  # of its most recently failed pending row
    attempts: int = 0  # that row's failed tries


@dataclass
class KindStatus:
    kind: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    oldest_pending: dt.datetime | None = None
    next_retry: dt.datetime | None = None

    @property
    def pending(self) -> int:
        return sum(self.counts[state] for state in PENDING_STATES)


@dataclass
class GivenUp:
    """Messages to one destination closed unsent after too many refusals (kept until
    the outbox's purge): how many, and the last refusal."""

    kind: str
    audience: str
    destination: str
    count: int = 0
    last_error: str | None = None
    attempts: int = 0


@dataclass
class OutboxReport:
    now: dt.datetime
    kinds: dict[str, KindStatus]
    destinations: list[DestinationStatus]
    given_up: list[GivenUp] = field(default_factory=list)


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def outbox_report(session: Session, *, now: dt.datetime) -> OutboxReport:
    """Every kind (those with no rows too) and every destination with rows."""
    pending = OutboxMessage.status == OutboxStatus.PENDING
    leased = and_(OutboxMessage.claimed_at.is_not(None), OutboxMessage.claimed_at > now - LEASE)
    state = case(
        (OutboxMessage.status == OutboxStatus.SENT, SENT),
        (OutboxMessage.status == OutboxStatus.SKIPPED, SKIPPED),
        (leased, LEASED),
        (OutboxMessage.attempts > 0, FAILING),
        else_=QUEUED,
    ).label("state")
    grouped = session.execute(
        select(OutboxMessage.kind, OutboxMessage.audience, OutboxMessage.destination, state,
               func.count(), func.min(OutboxMessage.created_at),
               func.min(OutboxMessage.next_attempt_at))
        .group_by(OutboxMessage.kind, OutboxMessage.audience, OutboxMessage.destination,
                  state)).all()
    kinds = {kind.value: KindStatus(kind.value) for kind in MessageKind}
    places: dict[tuple[str, str, str], DestinationStatus] = {}
    for kind, audience, destination, row_state, count, created, retry in grouped:
        place = places.setdefault((kind, audience, destination),
                                  DestinationStatus(kind, audience, destination))
        total = kinds.setdefault(kind, KindStatus(kind))
        place.counts[row_state] += count
        total.counts[row_state] += count
        if row_state in PENDING_STATES:
            place.oldest_pending = _earliest(place.oldest_pending, created)
            total.oldest_pending = _earliest(total.oldest_pending, created)
        if row_state == FAILING:
            place.next_retry = _earliest(place.next_retry, retry)
            total.next_retry = _earliest(total.next_retry, retry)
    failed = session.execute(
        select(OutboxMessage.kind, OutboxMessage.audience, OutboxMessage.destination,
               OutboxMessage.last_error, OutboxMessage.attempts)
        .where(pending, OutboxMessage.last_error.is_not(None))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)).all()
    for kind, audience, destination, error, attempts in failed:  # the latest wins
        # A row may have been queued (and failed) since the first read: reported all the same.
        place = places.setdefault((kind, audience, destination),
                                  DestinationStatus(kind, audience, destination))
        place.last_error, place.attempts = error, attempts
    ordered = sorted(places.values(), key=lambda p: (p.kind, p.audience, p.destination))
    return OutboxReport(now=now, kinds=kinds, destinations=ordered,
                        given_up=_given_up(session))


def _given_up(session: Session) -> list[GivenUp]:
    rows = session.execute(
        select(OutboxMessage.kind, OutboxMessage.audience, OutboxMessage.destination,
               OutboxMessage.last_error, OutboxMessage.attempts)
        .where(OutboxMessage.status == OutboxStatus.SKIPPED,
               OutboxMessage.skip_reason == Closed.GAVE_UP)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)).all()
    places: dict[tuple[str, str, str], GivenUp] = {}
    for kind, audience, destination, error, attempts in rows:  # the latest wins
        place = places.setdefault((kind, audience, destination),
                                  GivenUp(kind, audience, destination))
        place.count += 1
        place.last_error, place.attempts = error, attempts
    return sorted(places.values(), key=lambda p: (p.kind, p.audience, p.destination))


def pending_by_kind(session: Session) -> dict[str, tuple[int, dt.datetime | None]]:
    """For the metrics' gauges: per kind (every kind), how many rows are pending and when
    the oldest was queued. One grouped read of the pending rows alone (``ix_outbox_due``)."""
    found: dict[str, tuple[int, dt.datetime | None]] = {
        kind.value: (0, None) for kind in MessageKind}
    for kind, count, oldest in session.execute(
            select(OutboxMessage.kind, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status == OutboxStatus.PENDING)
            .group_by(OutboxMessage.kind)):
        found[kind] = (count, oldest)
    return found


def token_counts(session: Session, *, now: dt.datetime) -> dict[str, int]:
    """How many tokens show each status at ``now`` (every team): one grouped read."""
    shown = case(*((status_clause(status, now), status.value) for status in DisplayStatus),
                 else_=None).label("shown")
    rows = select(shown).select_from(Token).subquery()
    counts = dict.fromkeys((status.value for status in DisplayStatus), 0)
    for status, count in session.execute(
            select(rows.c.shown, func.count()).group_by(rows.c.shown)):
        if status is not None:
            counts[status] = count
    return counts
