"""Dead secrets still presented to ``POST /introspect`` (disabled, expired, deleted, rotated
out): counted per token, caller, hour and secret presented (:func:`add_presentations`,
``count = count + n`` so every process's counts add up), and the daily alarm about them
(:func:`queue_alarm`, once per token and UTC day). Plain functions, ``now`` passed in,
no commit."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection, Row, delete, func, select
from sqlalchemy.orm import Session

from bot.models import (
    AuditAction,
    AuditEvent,
    DeadSecretUse,
    MessageKind,
    OutboxMessage,
    RetiredReason,
    RetiredSecret,
    Token,
    TokenStatus,
    is_usable,
)
from bot.services import outbox, tombstones
from bot.db import dialect_insert
from bot.services.verification import DeadReason

#: The window an alarm counts presentations over.
WINDOW: Final = dt.timedelta(hours=24)
#: Counts older than this are purged by the scheduled pass.
KEEP: Final = dt.timedelta(days=3)

_uses = DeadSecretUse.__table__


class UseKey(NamedTuple):
    """What a presentation is counted under: the token, the caller, the hour, and the
    secret presented (why it did not work then, its masked prefix)."""

    team_id: str
    public_id: str
    caller: str
    hour: dt.datetime
    reason: str  # a DeadReason
    masked: str


def hour_of(now: dt.datetime) -> dt.datetime:
    return now.replace(minute=0, second=0, microsecond=0)


_KEY_COLUMNS: Final = ["team_id", "token_public_id", "caller", "hour", "reason", "masked"]


def add_presentations(connection: Connection, *, counts: Mapping[UseKey, int]) -> None:
    """Add these counts (in key order: two processes adding to the same rows wait for
    each other instead of deadlocking)."""
    insert = dialect_insert(connection)
    rows = [
        {"team_id": k.team_id, "token_public_id": k.public_id, "caller": k.caller[:100],
         "hour": k.hour, "reason": str(k.reason)[:16], "masked": k.masked[:16], "count": n}
        for k, n in sorted(counts.items())
    ]
    # One statement for any number of rows, executed with many parameter sets: compiled
    # once and cached (a VALUES list of each size was compiled afresh on every flush,
    # tens of ms of Python that held up introspection: docs/BENCHMARKS.md).
    statement = insert(_uses)
    statement = statement.on_conflict_do_update(
        index_elements=_KEY_COLUMNS,
        set_={"count": _uses.c.count + statement.excluded.count},
    )
    if rows:
        connection.execute(statement, rows)


@dataclass
class DeadSecretReport:
    """One token whose dead secret was presented in the last 24 hours: the secret
    presented most (its masked prefix, why it did not work when presented), how often and
    by whom."""

    team_id: str
    public_id: str
    label: str
    owner: str
    masked: str
    state: str  # a DeadReason: disabled / expired / deleted / rotated out
    since: dt.datetime | None  # when it became so (None: unknown)
    presented: int
    callers: list[tuple[str, int]] = field(default_factory=list)  # most first
    alert_channel: str | None = None
    version: int | None = None  # the token's version (None: deleted)
    enable: bool = False  # the token is disabled now: the alarm offers Enable

    def to_payload(self) -> dict[str, Any]:
        """What the outbox keeps of it (never a secret: the masked prefix only)."""
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        data["callers"] = [list(caller) for caller in self.callers]
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> DeadSecretReport:
        since = data.get("since")
        return cls(**{**data, "since": dt.datetime.fromisoformat(since) if since else None,
                      "callers": [(str(n), int(c)) for n, c in data.get("callers") or []]})


def _since(session: Session, token: Token | None, *, team_id: str, public_id: str,
           reason: str, masked: str) -> dt.datetime | None:
    """When the presented secret stopped working: the token's last disable (audit log),
    its expiry, or its tombstone's time (None: not known)."""
    if reason == DeadReason.DISABLED:
        return session.scalar(select(func.max(AuditEvent.at)).where(
            AuditEvent.team_id == team_id, AuditEvent.token_public_id == public_id,
            AuditEvent.action == AuditAction.DISABLE))
    if reason == DeadReason.EXPIRED:
        return token.expires_at if token is not None else None
    buried = session.scalar(select(func.max(RetiredSecret.retired_at)).where(
        RetiredSecret.team_id == team_id, RetiredSecret.token_public_id == public_id,
        RetiredSecret.secret_masked == masked,
        RetiredSecret.reason == (RetiredReason.DELETED if reason == DeadReason.DELETED
                                 else RetiredReason.ROTATED)))
    if buried is None and token is not None and token.previous_secret_masked == masked:
        return token.rotation_until  # an overlap that ran out, not yet ended by a pass
    return buried


def _report(session: Session, team_id: str, public_id: str, rows: list[Row[Any]],
            now: dt.datetime) -> DeadSecretReport | None:
    """The alarm about these counts of one token (None: nothing to tell: the secrets
    presented work again, e.g. the token was re-enabled)."""
    token = session.scalars(
        select(Token).where(Token.team_id == team_id, Token.public_id == public_id)
    ).one_or_none()
    if token is not None and is_usable(token.status, token.expires_at, now):
        rows = [r for r in rows if r.reason not in (DeadReason.DISABLED, DeadReason.EXPIRED)]
    tomb = None if token is not None else tombstones.latest(
        session, team_id=team_id, public_id=public_id)
    if not rows or (token is None and tomb is None):
        return None
    by_secret: Counter[tuple[str, str]] = Counter()
    for row in rows:
        by_secret[(row.reason, row.masked)] += int(row.presented)
    reason, masked = max(by_secret, key=lambda k: (by_secret[k], k))
    callers: Counter[str] = Counter()
    for row in rows:
        if (row.reason, row.masked) == (reason, masked):
            callers[row.caller] += int(row.presented)
    report = DeadSecretReport(
        team_id=team_id, public_id=public_id, label="", owner="", masked=masked, state=reason,
        since=_since(session, token, team_id=team_id, public_id=public_id, reason=reason,
                     masked=masked),
        presented=by_secret[(reason, masked)],
        callers=sorted(callers.items(), key=lambda item: (-item[1], item[0])))
    if token is not None:
        report.label, report.owner = token.label, token.owner
        report.alert_channel, report.version = token.alert_channel, token.version
        report.enable = token.status == TokenStatus.DISABLED
    elif tomb is not None:
        report.label, report.owner = tomb.label, tomb.owner
    return report


def dead_secret_reports(session: Session, *, now: dt.datetime) -> list[DeadSecretReport]:
    """The tokens whose dead secrets were presented in the 24 hours before ``now`` and
    that have had no alarm yet today (UTC), with counts per caller."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    alarmed = select(OutboxMessage.token_public_id).where(
        OutboxMessage.kind == MessageKind.DEAD_SECRET_ALARM,
        OutboxMessage.team_id == _uses.c.team_id, OutboxMessage.created_at >= today)
    rows = session.execute(
        select(_uses.c.team_id, _uses.c.token_public_id, _uses.c.caller, _uses.c.reason,
               _uses.c.masked, func.sum(_uses.c.count).label("presented"))
        .where(_uses.c.hour > now - WINDOW, _uses.c.hour <= now,
               _uses.c.token_public_id.not_in(alarmed))
        .group_by(_uses.c.team_id, _uses.c.token_public_id, _uses.c.caller, _uses.c.reason,
                  _uses.c.masked)
    ).all()
    by_token: dict[tuple[str, str], list[Row[Any]]] = {}
    for row in rows:
        if row.presented:
            by_token.setdefault((row.team_id, row.token_public_id), []).append(row)
    reports = []
    for (team_id, public_id), token_rows in sorted(by_token.items()):
        report = _report(session, team_id, public_id, token_rows, now)
        if report is not None:
            reports.append(report)
    return reports


def queue_alarm(session: Session, *, report: DeadSecretReport, channel: str | None,
                now: dt.datetime) -> bool:
    """Queue today's alarm about ``report``'s token: to its owner, and to ``channel`` (its
    alert channel, else the default one) if any. At most once per token per UTC day,
    however many passes race (the outbox key); True when this call queued it."""
    return any(outbox.queue_owner_and_channel(
        session, owner=report.owner, channel=channel, kind=MessageKind.DEAD_SECRET_ALARM,
        team_id=report.team_id, now=now, token_public_id=report.public_id,
        payload=report.to_payload(), key=f"{MessageKind.DEAD_SECRET_ALARM}:{report.team_id}:"
                                         f"{report.public_id}:{now.date().isoformat()}"))


def purge(session: Session, *, now: dt.datetime) -> int:
    """Forget counts past :data:`KEEP`; returns how many rows."""
    return int(session.execute(delete(_uses).where(_uses.c.hour < now - KEEP)).rowcount or 0)
