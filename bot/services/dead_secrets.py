"""Dead secrets still in use: presentations to ``POST /introspect`` of a secret that no
longer works (its token disabled, expired or deleted, or the secret rotated out), counted
per token, caller and hour, and the daily alarm about them.

Counting stays off the request path: each process adds up presentations in memory and
:func:`add_presentations` writes them in one statement per batch, ``count = count + n``
(an upsert on the (token, caller, hour) row), so the counts of several processes add up.
The alarm is claimed before it is posted (:func:`claim_alarm`: one row per token and UTC
day under a unique constraint), so it goes out at most once per token per day however many
passes race; the claim is released (:func:`release_alarm`) only when Slack refused every
post of it. Plain functions, ``now`` passed in, no commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from bot.models import (
    DeadSecretAlarm,
    DeadSecretUse,
    DisplayStatus,
    RetiredReason,
    Token,
    is_usable,
)
from bot.services import tombstones
from bot.services.tombstones import dialect_insert

#: The window an alarm counts presentations over.
WINDOW: Final = dt.timedelta(hours=24)
#: Rows per upsert statement (SQLite allows 32,766 bound values in one statement).
UPSERT_ROWS: Final = 1000
#: Counts and alarm claims older than this are purged by the scheduled pass.
KEEP: Final = dt.timedelta(days=3)

_uses = DeadSecretUse.__table__
_alarms = DeadSecretAlarm.__table__


class UseKey(NamedTuple):
    """What a presentation is counted under."""

    team_id: str
    public_id: str
    caller: str
    hour: dt.datetime


def hour_of(now: dt.datetime) -> dt.datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def add_presentations(connection: Connection, *, counts: Mapping[UseKey, int]) -> None:
    """Add these counts (one upsert per :data:`UPSERT_ROWS` keys)."""
    insert = dialect_insert(connection)
    rows = [
        {"team_id": k.team_id, "token_public_id": k.public_id, "caller": k.caller[:100],
         "hour": k.hour, "count": n}
        for k, n in counts.items()
    ]
    for start in range(0, len(rows), UPSERT_ROWS):
        statement = insert(_uses).values(rows[start:start + UPSERT_ROWS])
        statement = statement.on_conflict_do_update(
            index_elements=["team_id", "token_public_id", "caller", "hour"],
            set_={"count": _uses.c.count + statement.excluded.count},
        )
        connection.execute(statement)


@dataclass
class DeadSecretReport:
    """One token whose dead secret was presented in the last 24 hours."""

    team_id: str
    public_id: str
    label: str
    owner: str
    masked: str
    state: str  # disabled / expired / deleted / rotated out
    since: dt.datetime | None  # when it became so (None: unknown)
    presented: int
    callers: list[tuple[str, int]] = field(default_factory=list)  # most first
    alert_channel: str | None = None
    version: int | None = None  # the token's version (None: deleted)

    @property
    def disabled(self) -> bool:
        return self.state == DisplayStatus.DISABLED


def _describe(session: Session, report: DeadSecretReport, now: dt.datetime) -> bool:
    """Fill in what the token is now; False when there is nothing to tell (the token
    works again and none of its secrets was rotated out)."""
    token = session.scalars(
        select(Token).where(Token.team_id == report.team_id,
                            Token.public_id == report.public_id)
    ).one_or_none()
    tomb = tombstones.latest(session, team_id=report.team_id, public_id=report.public_id)
    if token is not None:
        report.label, report.owner = token.label, token.created_by
        report.alert_channel, report.version = token.alert_channel, token.version
        report.masked = token.secret_masked
        if token.status == DisplayStatus.DISABLED:
            report.state, report.since = "disabled", token.updated_at
            return True
        if not is_usable(token.status, token.expires_at, now):
            report.state, report.since = "expired", token.expires_at
            return True
        if tomb is None or tomb.reason != RetiredReason.ROTATED:
            return False
        report.state, report.since, report.masked = "rotated out", tomb.retired_at, (
            tomb.secret_masked)
        return True
    if tomb is None:
        return False
    report.label, report.owner, report.masked = tomb.label, tomb.owner, tomb.secret_masked
    report.state, report.since = "deleted", tomb.retired_at
    return True


def dead_secret_reports(session: Session, *, now: dt.datetime) -> list[DeadSecretReport]:
    """The tokens whose dead secrets were presented in the 24 hours before ``now`` and
    that have had no alarm yet today (UTC), with counts per caller."""
    day = now.date().isoformat()
    alarmed = select(_alarms.c.token_public_id).where(
        _alarms.c.team_id == _uses.c.team_id, _alarms.c.day == day
    )
    rows = session.execute(
        select(_uses.c.team_id, _uses.c.token_public_id, _uses.c.caller,
               func.sum(_uses.c.count).label("presented"))
        .where(_uses.c.hour > now - WINDOW, _uses.c.hour <= now,
               _uses.c.token_public_id.not_in(alarmed))
        .group_by(_uses.c.team_id, _uses.c.token_public_id, _uses.c.caller)
    ).all()
    reports: dict[tuple[str, str], DeadSecretReport] = {}
    for row in rows:
        key = (row.team_id, row.token_public_id)
        report = reports.get(key)
        if report is None:
            report = reports[key] = DeadSecretReport(
                team_id=row.team_id, public_id=row.token_public_id, label="", owner="",
                masked="", state="", since=None, presented=0)
        report.presented += int(row.presented)
        report.callers.append((row.caller, int(row.presented)))
    described = []
    for report in reports.values():
        if report.presented and _describe(session, report, now):
            report.callers.sort(key=lambda item: (-item[1], item[0]))
            described.append(report)
    return sorted(described, key=lambda r: (r.team_id, r.public_id))


def claim_alarm(
    session: Session, *, report: DeadSecretReport, worker: str, now: dt.datetime
) -> bool:
    """Take today's alarm for this token; True for exactly one claimer."""
    insert = dialect_insert(session)
    statement = insert(_alarms).values(
        team_id=report.team_id, token_public_id=report.public_id, day=now.date().isoformat(),
        claimed_by=worker, claimed_at=now, presented=report.presented,
    ).on_conflict_do_nothing(
        index_elements=["team_id", "token_public_id", "day"]
    ).returning(_alarms.c.id)
    # RETURNING, not rowcount: the row comes back only to the one that inserted it.
    return session.execute(statement).first() is not None


def release_alarm(
    session: Session, *, report: DeadSecretReport, worker: str, now: dt.datetime
) -> None:
    """Slack refused every post of it (nothing was posted): a later pass may try again
    today. Only ``worker``'s own claim is released."""
    session.execute(delete(_alarms).where(
        _alarms.c.team_id == report.team_id, _alarms.c.token_public_id == report.public_id,
        _alarms.c.day == now.date().isoformat(), _alarms.c.claimed_by == worker,
    ))


def purge(session: Session, *, now: dt.datetime) -> int:
    """Forget counts and claims past :data:`KEEP`; returns how many rows."""
    cutoff = now - KEEP
    gone = session.execute(delete(_uses).where(_uses.c.hour < cutoff)).rowcount or 0
    gone += session.execute(delete(_alarms).where(_alarms.c.claimed_at < cutoff)).rowcount or 0
    return int(gone)
