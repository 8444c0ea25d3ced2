"""The weekly token hygiene pass (part of the scheduled pass): dormant tokens disabled
when TOKENBOT_DORMANT_ACTION=disable, and the hygiene digest queued for each destination
(the alert channel: the team's tokens; each owner by DM: their own) at most once per 7
days, when it has something to say. The rules are ``bot.services.policy``'s. Plain
functions, ``now`` passed in, no Slack, no commits.

"At most once per 7 days per destination" is a chain of keys: a destination's digest is
queued only when its previous one is older than 7 days, under the key
``hygiene:{team}:{audience}:{destination}:after:{previous id}``; passes racing on the
same previous digest compute the same key, so one of them queues it."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from bot.models import (
    Audience,
    AuditAction,
    AuditSource,
    DepartedOwner,
    DisplayStatus,
    HygieneScan,
    MessageKind,
    OutboxMessage,
    Token,
    TokenStatus,
    status_clause,
)
from bot.services import outbox
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.departed import who_left
from bot.services.policy import DORMANT_NOTICE_EVERY, DormantAction, Policy
from bot.services.turns import claim_turn, recent

#: A destination gets at most one hygiene digest in this long.
EVERY: Final = dt.timedelta(days=7)
#: The registry is scanned at most this often (by whichever pass comes first), so a digest
#: goes out within this long of becoming due and the other passes cost one statement.
SCAN_EVERY: Final = dt.timedelta(hours=1)
#: Who the policy acts as in the audit log (source ``policy``).
POLICY_ACTOR: Final = "token policy"
#: At most this many tokens of each section are read per pass and team (a digest lists
#: at most ``limit`` of them, and counts the rest up to this).
READ_LIMIT: Final = 5_000


class Section(enum.StrEnum):
    """The digest's sections, in order."""

    DORMANT = "dormant"
    OVER_POLICY = "over_policy"
    DEPARTED = "departed"  # active tokens whose owner was deactivated (alert channel only)


@dataclass(frozen=True)
class HygieneItem:
    """One token as a hygiene digest lists it (the outbox payload; never a secret)."""

    public_id: str
    version: int
    label: str
    masked: str
    scope: str
    owner: str
    status: str  # "active", or "disabled" (by the policy, or since)
    last_used_at: str | None  # ISO 8601
    created_at: str
    expires_on: str | None  # the calendar date
    also: tuple[str, ...] = ()  # the later sections it belongs to (listed once, here)

    @classmethod
    def of(cls, token: Token, also: Sequence[str] = ()) -> HygieneItem:
        return cls(public_id=token.public_id, version=token.version, label=token.label,
                   also=tuple(also),
                   masked=token.secret_masked, scope=token.scope, owner=token.owner,
                   status=str(token.status),
                   last_used_at=token.last_used_at.isoformat() if token.last_used_at else None,
                   created_at=token.created_at.isoformat(),
                   expires_on=token.expires_on.isoformat() if token.expires_on else None)


@dataclass
class Found:
    """What one team's digests may list: per section, the tokens (a destination keeps its
    own ones: :meth:`for_destination`)."""

    sections: dict[Section, list[Token]] = field(default_factory=dict)

    def for_destination(self, audience: Audience, destination: str,
                        previous: dt.datetime | None, now: dt.datetime,
                        ) -> dict[Section, list[Token]]:
        mine = {section: [t for t in tokens
                          if audience == Audience.CHANNEL or t.owner == destination]
                for section, tokens in self.sections.items()
                if audience == Audience.CHANNEL or section != Section.DEPARTED}
        # (an owner was told of a token the policy disabled by its own DM)
        mine[Section.DORMANT] = [t for t in mine.get(Section.DORMANT, [])
                                 if _unseen(t.dormant_noticed_at, previous, now)
                                 and (audience == Audience.CHANNEL
                                      or t.status != TokenStatus.DISABLED)]
        return {section: tokens for section, tokens in mine.items() if tokens}


def _unseen(noticed_at: dt.datetime | None, previous: dt.datetime | None,
            now: dt.datetime) -> bool:
    """A dormant token this destination has not been told of: never noticed, noticed 30
    days ago or more, or noticed (elsewhere) since this destination's previous digest."""
    return (not recent(noticed_at, DORMANT_NOTICE_EVERY, now)
            or previous is None or noticed_at > previous)


@dataclass
class HygieneCounts:
    digests: int = 0  # hygiene digests queued
    dormant_disabled: int = 0  # dormant tokens disabled (their owners' DMs queued)


def disable_dormant(session: Session, *, policy: Policy, now: dt.datetime) -> int:
    """TOKENBOT_DORMANT_ACTION=disable: each dormant token a digest warned of at least
    7 days ago (``DISABLE_WARNING``) and still dormant is disabled (one conditional
    UPDATE: of racing passes, one disables it), audited with source ``policy``, and its
    owner's DM queued. Returns how many."""
    disabled = session.scalars(
        update(Token)
        .where(Token.id.in_(select(Token.id).where(policy.dormant_warned_clause(now))
                            .order_by(Token.id).limit(READ_LIMIT)),
               policy.dormant_warned_clause(now))
        .values(status=TokenStatus.DISABLED, updated_at=now, dormant_noticed_at=now,
                version=Token.version + 1)
        .returning(Token),
        execution_options={"populate_existing": True, "synchronize_session": False},
    ).all()
    for token in disabled:
        actor = Actor(team_id=token.team_id, user_id=POLICY_ACTOR, is_admin=True,
                      source=AuditSource.POLICY)
        unused = (token.last_used_at or token.created_at).isoformat()
        record(session, actor=actor, token=token, action=AuditAction.DISABLE, now=now,
               details={"label": token.label, "reason": "dormant",
                        "dormant_days": policy.dormant_days, "unused_since": unused})
        outbox.queue(session, kind=MessageKind.DORMANT_DISABLED, team_id=token.team_id,
                     audience=Audience.OWNER, destination=token.owner, now=now,
                     token_public_id=token.public_id,
                     key=f"dormant_disabled:{token.public_id}:{now.isoformat()}",
                     payload={"label": token.label, "masked": token.secret_masked,
                              "dormant_days": policy.dormant_days,
                              "last_used_at": token.last_used_at.isoformat()
                              if token.last_used_at else None})
    return len(disabled)


def _read(session: Session, *where: Any, order: Sequence[Any] = ()) -> dict[str, list[Token]]:
    """Per team, the first :data:`READ_LIMIT` tokens ``where`` holds (each team its own
    share: a big team does not crowd the others out), in ``order``, then oldest first."""
    teams = session.scalars(select(Token.team_id).where(*where).distinct()
                            .order_by(Token.team_id)).all()
    return {team: list(session.scalars(
        select(Token).where(Token.team_id == team, *where)
        .order_by(*order, Token.created_at, Token.id).limit(READ_LIMIT)))
        for team in teams}


def find(session: Session, *, policy: Policy, now: dt.datetime) -> dict[str, Found]:
    """Per team, what the digests may list: dormant tokens (with DISABLE: also those the
    policy disabled in the last 30 days), tokens over policy, and the active tokens of owners
    found deactivated (``services/departed.py``). Dormant tokens come never noticed
    first, then those noticed longest ago, so every one gets its turn."""
    unnoticed_first = (Token.dormant_noticed_at.is_not(None), Token.dormant_noticed_at)
    dormant_where = policy.dormant_clause(now)
    if policy.dormant_action == DormantAction.DISABLE:  # the warnings, and those disabled
        dormant_where = or_(dormant_where, and_(
            Token.status == TokenStatus.DISABLED,
            Token.dormant_noticed_at > now - DORMANT_NOTICE_EVERY))
    dormant = _read(session, dormant_where, order=unnoticed_first)
    over = _read(session, policy.over_clause(now)) if policy.capped else {}
    # Driven by the few departures (the owner index), not a scan of every token.
    gone = session.execute(select(DepartedOwner.team_id, DepartedOwner.user_id)).all()
    departed = _read(session, status_clause(DisplayStatus.ACTIVE, now), tuple_(
        Token.team_id, Token.owner).in_([tuple(row) for row in gone])) if gone else {}
    teams: dict[str, Found] = {}
    for section, found in ((Section.DORMANT, dormant), (Section.OVER_POLICY, over),
                           (Section.DEPARTED, departed)):
        for team_id, tokens in found.items():
            teams.setdefault(team_id, Found()).sections[section] = tokens
    return teams


@dataclass(frozen=True)
class Previous:
    """A destination's latest hygiene digest: its id (the next one's key) and when."""

    id: int
    created_at: dt.datetime


def _previous(session: Session, team_id: str) -> dict[tuple[str, str], Previous]:
    """Each destination's latest hygiene digest of ``team_id`` (ids and times only)."""
    latest = (select(func.max(OutboxMessage.id))
              .where(OutboxMessage.kind == MessageKind.HYGIENE,
                     OutboxMessage.team_id == team_id)
              .group_by(OutboxMessage.audience, OutboxMessage.destination))
    rows = session.execute(select(OutboxMessage.id, OutboxMessage.created_at,
                                  OutboxMessage.audience, OutboxMessage.destination)
                           .where(OutboxMessage.id.in_(latest)))
    return {(str(audience), destination): Previous(id, created_at)
            for id, created_at, audience, destination in rows}


def payload_of(sections: dict[Section, list[Token]], *, policy: Policy,
               limit: int) -> dict[str, Any]:
    """What a digest carries: per section its first ``limit`` tokens and how many more. A
    token is listed once, in the first section it belongs to, naming the others."""
    also: dict[int, list[str]] = {}
    once: dict[Section, list[Token]] = {}
    for section, tokens in sections.items():
        for token in tokens:
            if token.id in also:
                also[token.id].append(str(section))
            else:
                also[token.id] = []
                once.setdefault(section, []).append(token)
    sections = once
    return {
        "sections": {str(s): [asdict(HygieneItem.of(t, also[t.id])) for t in tokens[:limit]]
                     for s, tokens in sections.items()},
        "more": {str(s): max(0, len(tokens) - limit) for s, tokens in sections.items()},
        "dormant_days": policy.dormant_days,
        "dormant_action": str(policy.dormant_action),
        "caps": dict(policy.caps),
    }


def listed_ids(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Per section of a digest's payload (:func:`payload_of`), the public ids it lists."""
    return {section: [item["public_id"] for item in items]
            for section, items in (payload.get("sections") or {}).items()}


def queue_digests(session: Session, *, policy: Policy, now: dt.datetime,
                  channel: str | None, limit: int) -> HygieneCounts:
    """At most once per :data:`SCAN_EVERY`: dormant tokens disabled (if so configured),
    then each destination's digest queued when its previous one is 7 days old or more and
    it has something to list; the dormant tokens listed are marked noticed. ``limit``:
    tokens per section a digest lists."""
    counts = HygieneCounts()
    if not claim_turn(session, HygieneScan, HygieneScan.scanned_at, every=SCAN_EVERY, now=now,
                      id=1):  # of racing passes, one scans
        return counts
    if policy.dormant_action == DormantAction.DISABLE:
        counts.dormant_disabled = disable_dormant(session, policy=policy, now=now)
    noticed: set[int] = set()
    for team_id, found in find(session, policy=policy, now=now).items():
        counts.digests += _queue_team(session, team_id, found, policy=policy, now=now,
                                      channel=channel, limit=limit, noticed=noticed)
    _mark_noticed(session, noticed, now,
                  warned=policy.dormant_action == DormantAction.DISABLE)
    return counts


def _queue_team(session: Session, team_id: str, found: Found, *, policy: Policy,
                now: dt.datetime, channel: str | None, limit: int, noticed: set[int]) -> int:
    """One team's digests that are due (no DM to an owner who left: nobody reads it);
    adds the dormant tokens they tell of to ``noticed``. Returns how many were queued."""
    previous = _previous(session, team_id)
    left = set(session.scalars(who_left(team_id)))
    owners = sorted({t.owner for tokens in found.sections.values() for t in tokens} - left)
    destinations = [(Audience.OWNER, owner) for owner in owners]
    if channel:
        destinations.append((Audience.CHANNEL, channel))
    queued = 0
    for audience, destination in destinations:
        last = previous.get((audience.value, destination))
        if last is not None and recent(last.created_at, EVERY, now):
            continue
        sections = found.for_destination(audience, destination,
                                         last.created_at if last else None, now)
        if not sections:
            continue
        key = f"hygiene:{team_id}:{audience}:{destination}:after:{last.id if last else 0}"
        if outbox.queue(session, kind=MessageKind.HYGIENE, team_id=team_id,
                        audience=audience, destination=destination, now=now, key=key,
                        payload=payload_of(sections, policy=policy, limit=limit)):
            queued += 1
            noticed.update(t.id for t in sections.get(Section.DORMANT, [])[:limit]
                           if not recent(t.dormant_noticed_at, DORMANT_NOTICE_EVERY, now))
    return queued


def _mark_noticed(session: Session, ids: Iterable[int], now: dt.datetime, *,
                  warned: bool) -> None:
    """The dormant tokens listed are noticed (and, under ``disable``, warned of)."""
    ids = sorted(ids)
    values = {"dormant_noticed_at": now, **({"dormant_warned_at": now} if warned else {})}
    for start in range(0, len(ids), 1_000):
        session.execute(update(Token).where(Token.id.in_(ids[start:start + 1_000]))
                        .values(**values)
                        .execution_options(synchronize_session=False))


def digest_tokens(session: Session, *, team_id: str,
                  public_ids: Sequence[str]) -> dict[str, Token]:
    """The tokens a posted digest names, as they are now (a deleted one is missing)."""
    if not public_ids:
        return {}
    rows = session.scalars(select(Token).where(Token.team_id == team_id,
                                               Token.public_id.in_(list(public_ids))))
    return {token.public_id: token for token in rows}


def digest_at(session: Session, *, channel: str, ts: str) -> OutboxMessage | None:
    """The hygiene digest posted as ``ts`` in ``channel`` (for its redraw)."""
    return session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == MessageKind.HYGIENE, OutboxMessage.message_channel == channel,
        OutboxMessage.message_ts == ts)).first()
