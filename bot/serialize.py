"""Plain-data forms of tokens and audit events, shared by every machine-readable output
(the CLI's ``--json``; an HTTP or Slack surface may reuse them). Never a secret."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from bot.models import AuditEvent, Token

if TYPE_CHECKING:
    from bot.services.listing import Listed


def iso_utc(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (``2026-11-27T12:00:00Z``), or None."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def token_summary(token: Token | Listed, now: dt.datetime) -> dict[str, Any]:
    """A token as a JSON row: public id, label, masked secret, scope, displayed status
    (``active`` / ``disabled`` / ``expired`` at ``now``), its timestamps, its expiry
    date, the caller that last used it, and a rotation's old secret while it still works
    (else null)."""
    rotation = None
    if token.rotating(now):
        rotation = {"old_masked": token.previous_secret_masked,
                    "old_works_until": iso_utc(token.old_secret_until)}
    return {
        "id": token.public_id,
        "label": token.label,
        "masked": token.secret_masked,
        "scope": token.scope,
        "status": str(token.display_status(now)),
        "created_at": iso_utc(token.created_at),
        "created_by": token.created_by,
        "expires_at": iso_utc(token.expires_at),
        # the calendar date picked (it stops working at 00:00 UTC of it), as Slack shows it
        "expires_on": token.expires_on.isoformat() if token.expires_on else None,
        "last_used_at": iso_utc(token.last_used_at),
        "last_used_by": token.last_used_by if token.last_used_at else None,
        "rotation": rotation,
    }


def audit_summary(event: AuditEvent) -> dict[str, Any]:
    """An audit event as a JSON row."""
    return {
        "at": iso_utc(event.at),
        "actor": event.actor,
        "source": str(event.source),
        "action": str(event.action),
        "token_id": event.token_public_id,
        "details": event.details or {},
    }
