"""Is this secret a working token, and what may it do? The one verification: ``verify`` for
one secret; ``POST /introspect`` takes the same steps for concurrent requests together
(``lookup_key``, ``fetch_by_digests``, ``judge``). The checksum first, then one indexed
read by digest, then the old secrets of rotations and the tombstones; nothing decrypted."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row, bindparam, literal, null, select, union_all
from sqlalchemy.orm import Session

from bot import crypto
from bot.models import (
    RetiredReason,
    RetiredSecret,
    Token,
    TokenStatus,
    is_usable,
    old_secret_until,
    secret_is_usable,
)

TOKEN_TYPE: Final = "access_token"
#: The extension member the old secret's answer carries during a rotation's overlap.
SUPERSEDED: Final = "superseded"

# The tables, for Core statements.
_tokens = Token.__table__
_retired = RetiredSecret.__table__


@dataclass(frozen=True, slots=True)
class ActiveToken:
    """What a working token's answer needs (never the secret)."""

    id: int
    public_id: str
    team_id: str
    scope: str
    owner: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    # The old secret of a rotation with overlap: works until this deadline at the latest.
    superseded_until: dt.datetime | None = None

    def claims(self) -> dict[str, Any]:
        """The RFC 7662 response members for this token (the old secret of a rotation:
        ``exp`` is the overlap's deadline if that comes first, plus ``rotation``)."""
        claims: dict[str, Any] = {"active": True, "scope": self.scope}
        ends = old_secret_until(self.expires_at, self.superseded_until) or self.expires_at
        if ends is not None:
            claims["exp"] = int(ends.timestamp())
        claims["iat"] = int(self.created_at.timestamp())
        claims["token_type"] = TOKEN_TYPE
        claims["sub"] = self.owner
        claims["client_id"] = self.public_id
        claims["team_id"] = self.team_id
        if self.superseded_until is not None:
            claims["rotation"] = SUPERSEDED
        return claims


class Match(enum.Enum):
    """Which secret of a row a digest is."""

    CURRENT = "current"
    PREVIOUS = "previous"  # the old secret of a rotation with overlap
    RETIRED = "retired"  # a tombstone (rotated out, or its token deleted)


@dataclass(frozen=True, slots=True)
class Found:
    match: Match
    row: Row[Any]


class DeadReason(enum.StrEnum):
    """Why a presented secret of a known token does not work (as the alarm says it)."""

    DISABLED = "disabled"
    EXPIRED = "expired"
    DELETED = "deleted"
    ROTATED_OUT = "rotated out"


@dataclass(frozen=True, slots=True)
class DeadToken:
    """A known token whose presented secret no longer works, why, and the masked prefix
    of the secret presented (never the secret)."""

    team_id: str
    public_id: str
    reason: DeadReason
    masked: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a presented secret is: ``token`` when it works; ``retire`` (the old secret's
    digest) when it is the first use of a rotated-in secret; ``dead`` when it is a dead
    secret of a known token. All None: unknown."""

    token: ActiveToken | None = None
    retire: str | None = None
    dead: DeadToken | None = None


UNKNOWN: Final = Verdict()


# Introspection runs this for every request: built once, it is compiled once and run with
# its digests bound (building it anew costs about as much as an in-process SQLite read).
# The hot read: the current secrets (one indexed IN lookup), with what tells whether a
# rotation's old secret is to be retired.
_BY_DIGESTS: Final = select(
    _tokens.c.secret_digest, _tokens.c.previous_secret_digest, _tokens.c.rotation_until,
    _tokens.c.id, _tokens.c.public_id, _tokens.c.team_id, _tokens.c.scope, _tokens.c.status,
    _tokens.c.owner, _tokens.c.created_at, _tokens.c.expires_at, _tokens.c.last_used_at,
    _tokens.c.secret_masked.label("masked"),
).where(_tokens.c.secret_digest.in_(bindparam("digests", expanding=True)))
# Only for the digests not found there: a rotation's old secret, or a tombstone (one
# statement, two indexed lookups; the tombstone rows carry only who they were).
_BY_OTHER_DIGESTS: Final = union_all(
    select(
        _tokens.c.previous_secret_digest.label("digest"), literal(False).label("retired"),
        _tokens.c.rotation_until, _tokens.c.id, _tokens.c.public_id, _tokens.c.team_id,
        _tokens.c.scope, _tokens.c.status, _tokens.c.owner, _tokens.c.created_at,
        _tokens.c.expires_at, _tokens.c.last_used_at,
        _tokens.c.previous_secret_masked.label("masked"), null().label("reason"),
    ).where(_tokens.c.previous_secret_digest.in_(bindparam("digests", expanding=True))),
    select(
        _retired.c.secret_digest, literal(True), null(), null(), _retired.c.token_public_id,
        _retired.c.team_id, null(), null(), null(), null(), null(), null(),
        _retired.c.secret_masked, _retired.c.reason,
    ).where(_retired.c.secret_digest.in_(bindparam("digests", expanding=True))),
)


def fetch_by_digests(
    connection: Connection | Session, *, digests: Sequence[str]
) -> dict[str, Found]:
    """What each of ``digests`` is, by digest (absent: unknown): one indexed read of the
    current secrets, then (only if some were not found) one of old and retired secrets."""
    if not digests:
        return {}
    wanted = list(digests)
    found = {row.secret_digest: Found(Match.CURRENT, row)
             for row in connection.execute(_BY_DIGESTS, {"digests": wanted})}
    missing = [digest for digest in wanted if digest not in found]
    if missing:
        for row in connection.execute(_BY_OTHER_DIGESTS, {"digests": missing}):
            found[row.digest] = Found(Match.RETIRED if row.retired else Match.PREVIOUS, row)
    return found


def _active(row: Row[Any], superseded_until: dt.datetime | None) -> ActiveToken:
    return ActiveToken(
        id=row.id,
        public_id=row.public_id,
        team_id=row.team_id,
        scope=row.scope,
        owner=row.owner,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        superseded_until=superseded_until,
    )


def _dead(found: Found, now: dt.datetime) -> DeadToken:
    """Why the presented secret (``found``, not usable at ``now``) does not work."""
    row = found.row
    if found.match == Match.RETIRED:
        reason = (DeadReason.ROTATED_OUT if row.reason == RetiredReason.ROTATED
                  else DeadReason.DELETED)
    elif row.status == TokenStatus.DISABLED:
        reason = DeadReason.DISABLED
    elif not is_usable(row.status, row.expires_at, now):
        reason = DeadReason.EXPIRED
    else:  # the old secret of a rotation whose deadline has come
        reason = DeadReason.ROTATED_OUT
    return DeadToken(row.team_id, row.public_id, reason, row.masked or "")


def judge(found: Found | None, *, now: dt.datetime) -> Verdict:
    """What the presented secret is at ``now`` (see :class:`Verdict`)."""
    if found is None:
        return UNKNOWN
    row = found.row
    if found.match == Match.RETIRED:
        return Verdict(dead=_dead(found, now))
    superseded_until = row.rotation_until if found.match == Match.PREVIOUS else None
    if not secret_is_usable(row.status, row.expires_at, now, superseded_until=superseded_until):
        return Verdict(dead=_dead(found, now))
    retire = None
    if found.match == Match.CURRENT and row.previous_secret_digest is not None:
        # The new secret's first use ends the rotation (its old one stops now), also when
        # the deadline came first but no pass has ended it yet: it was used after all.
        retire = row.previous_secret_digest
    return Verdict(token=_active(row, superseded_until), retire=retire)


def lookup_key(secret: str) -> str | None:
    """The key to look a presented secret up by (its digest), or None when it cannot be a
    token at all (wrong shape or checksum): no read needed."""
    return crypto.digest(secret) if crypto.has_valid_checksum(secret) else None


def verify(
    connection: Connection | Session, *, secret: str, now: dt.datetime
) -> ActiveToken | None:
    """The working token with this secret, or None."""
    key = lookup_key(secret)
    if key is None:
        return None
    return judge(fetch_by_digests(connection, digests=[key]).get(key), now=now).token
