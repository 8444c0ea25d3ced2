"""Is this secret a working token, and what may it do? The one verification: ``verify``
for one secret; ``POST /introspect`` takes the same steps (``lookup_key``, then
``fetch_by_digests`` for the keys of concurrent requests together, then ``active_token``).

A malformed secret costs no query (the checksum first); then one indexed read by the
secret's SHA-256 digest, of the few columns an answer needs. Nothing is decrypted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from bot import crypto
from bot.models import Token, is_usable

TOKEN_TYPE: Final = "access_token"

_t = Token.__table__


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

    def claims(self) -> dict[str, Any]:
        """The RFC 7662 response members for this token."""
        claims: dict[str, Any] = {"active": True, "scope": self.scope}
        if self.expires_at is not None:
            claims["exp"] = int(self.expires_at.timestamp())
        claims["iat"] = int(self.created_at.timestamp())
        claims["token_type"] = TOKEN_TYPE
        claims["sub"] = self.owner
        claims["client_id"] = self.public_id
        claims["team_id"] = self.team_id
        return claims


# Introspection runs this for every request: built once, it is compiled once and run with
# its digests bound (building it anew costs about as much as an in-process SQLite read).
_BY_DIGESTS: Final = select(
    _t.c.secret_digest, _t.c.id, _t.c.public_id, _t.c.team_id, _t.c.scope, _t.c.status,
    _t.c.created_by, _t.c.created_at, _t.c.expires_at, _t.c.last_used_at,
).where(_t.c.secret_digest.in_(bindparam("digests", expanding=True)))


def fetch_by_digests(
    connection: Connection | Session, *, digests: Sequence[str]
) -> dict[str, Row[Any]]:
    """The rows whose secret digest is one of ``digests`` (one indexed read), by digest."""
    if not digests:
        return {}
    rows = connection.execute(_BY_DIGESTS, {"digests": list(digests)})
    return {row.secret_digest: row for row in rows}


def active_token(row: Row[Any] | None, *, now: dt.datetime) -> ActiveToken | None:
    """The row as an :class:`ActiveToken` when the token is usable at ``now``."""
    if row is None or not is_usable(row.status, row.expires_at, now):
        return None
    return ActiveToken(
        id=row.id,
        public_id=row.public_id,
        team_id=row.team_id,
        scope=row.scope,
        owner=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


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
    return active_token(fetch_by_digests(connection, digests=[key]).get(key), now=now)
