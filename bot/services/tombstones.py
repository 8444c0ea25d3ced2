"""Tombstones of secrets that no longer belong to a token: rotated out, or their token
deleted. Kept :data:`bot.models.TOMBSTONE_DAYS` days so that a presentation of one can be
told to its owner (:mod:`bot.services.dead_secrets`); nothing secret is kept (the digest,
the masked prefix people already see, the public id, label and owner). Plain functions,
``now`` passed in, no commit."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.db import dialect_insert
from bot.models import TOMBSTONE_DAYS, RetiredReason, RetiredSecret, Token


def bury(
    session: Session,
    *,
    token: Token,
    digest: str,
    masked: str,
    reason: RetiredReason,
    now: dt.datetime,
) -> None:
    """Keep a tombstone of this secret of ``token`` (once per digest, whoever races)."""
    insert = dialect_insert(session)
    session.execute(
        insert(RetiredSecret.__table__)
        .values(secret_digest=digest, team_id=token.team_id, token_public_id=token.public_id,
                label=token.label, owner=token.owner, secret_masked=masked,
                reason=reason, retired_at=now)
        .on_conflict_do_nothing(index_elements=["secret_digest"])
    )


def purge(session: Session, *, now: dt.datetime) -> int:
    """Forget tombstones older than :data:`TOMBSTONE_DAYS`; returns how many."""
    cutoff = now - dt.timedelta(days=TOMBSTONE_DAYS)
    result = session.execute(
        delete(RetiredSecret).where(RetiredSecret.retired_at < cutoff),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount or 0)


def latest(session: Session, *, team_id: str, public_id: str) -> RetiredSecret | None:
    """The newest tombstone of this token, or None."""
    return session.scalars(
        select(RetiredSecret)
        .where(RetiredSecret.team_id == team_id, RetiredSecret.token_public_id == public_id)
        .order_by(RetiredSecret.retired_at.desc(), RetiredSecret.id.desc())
        .limit(1)
    ).first()
