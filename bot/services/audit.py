"""The audit log: who did what to which token, when; never a secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import Audience, AuditAction, AuditEvent, AuditSource, MessageKind, Token
from bot.services import outbox
from bot.services.actor import Actor

# What a person may do to someone else's token that its owner is told about (a leak has
# its own notice: services/leaks.py; a reassignment tells the old and the new owner its
# own way: services/owners.py).
_TOLD: frozenset[AuditAction] = frozenset(AuditAction) - {
    AuditAction.CREATE, AuditAction.LEAK, AuditAction.REASSIGN}


def record(
    session: Session,
    *,
    actor: Actor,
    token: Token,
    action: AuditAction,
    now: dt.datetime,
    details: dict[str, Any],
) -> None:
    """Add one event to the caller's transaction, which commits or drops it together with
    the change it describes; when a person other than the token's owner made the change,
    the owner's direct message about it goes into the outbox in the same transaction."""
    if (action in _TOLD and actor.source in (AuditSource.SLACK, AuditSource.CLI)
            and actor.user_id != token.owner):
        edited = action == AuditAction.EDIT  # what an edit changed is told too
        outbox.queue(session, kind=MessageKind.OWNER_NOTICE, team_id=token.team_id,
                     audience=Audience.OWNER, destination=token.owner, now=now,
                     token_public_id=token.public_id,
                     payload={"actor": actor.user_id, "source": actor.source.value,
                              "action": action.value, "label": token.label,
                              "masked": token.secret_masked,
                              "before": details.get("before") if edited else None,
                              "after": details.get("after") if edited else None})
    session.add(
        AuditEvent(
            team_id=token.team_id,
            token_public_id=token.public_id,
            action=action,
            actor=actor.user_id,
            source=actor.source,
            at=now,
            details=details,
        )
    )


def list_events(
    session: Session, *, team_id: str, token_public_id: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent).where(AuditEvent.team_id == team_id)
    if token_public_id:
        query = query.where(AuditEvent.token_public_id == token_public_id)
    return list(
        session.scalars(query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit))
    )


# The events that change a token (its version; a copy or a creation is not one): what
# "changed since you looked" names.
CHANGES = (AuditAction.EDIT, AuditAction.DISABLE, AuditAction.ENABLE, AuditAction.DELETE,
           AuditAction.ROTATE, AuditAction.RETIRE_OLD, AuditAction.CANCEL_ROTATION,
           AuditAction.REASSIGN)


def last_change(session: Session, *, team_id: str, token_public_id: str) -> AuditEvent | None:
    """The latest change of a token (also of one deleted since), or None."""
    return session.scalars(
        select(AuditEvent)
        .where(AuditEvent.team_id == team_id, AuditEvent.token_public_id == token_public_id,
               AuditEvent.action.in_([action.value for action in CHANGES]))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    ).one_or_none()
