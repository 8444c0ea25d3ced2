"""Plain-data forms of tokens and audit events, shared by every machine-readable output
(the CLI's ``--json``; an HTTP or Slack surface may reuse them). Never a secret."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from bot.models import AuditEvent, Token

if TYPE_CHECKING:
    from bot.services.listing import Listed


def timestamp(value: dt.datetime | str | None) -> str | None:
    """The one form of a moment in JSON output: UTC, whole seconds, ``Z``
    (``2026-12-07T21:00:00Z``); None stays None. An ISO 8601 string (as stored in audit
    details or built by the alert pass) is read first; a naive moment is taken as UTC."""
    if value is None:
        return None
    utc = moment(value).replace(tzinfo=None)
    return utc.isoformat(timespec="seconds") + "Z"


def moment(value: dt.datetime | str) -> dt.datetime:
    """An ISO 8601 moment (``Z`` or an offset; naive is UTC) as an aware UTC datetime;
    ValueError (or OverflowError at the ends of time) when it is none."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _is_moment_key(key: object) -> bool:
    return isinstance(key, str) and (key in ("at", "now", "since")
                                     or key.endswith(("_at", "_until")))


def timestamps(value: Any) -> Any:
    """``value`` (a JSON-ready dict or list) with every moment written by
    :func:`timestamp`: a datetime anywhere, and a string under a key that names a moment
    (``now``, ``at``, ``since``, ``…_at``, ``…_until``); other strings (labels) are left as they are.
    Audit details and the alert pass report go through it before they are printed."""
    if isinstance(value, dict):
        return {key: _moment(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [timestamps(item) for item in value]
    if isinstance(value, dt.datetime):
        return timestamp(value)
    return value


def _moment(key: object, item: Any) -> Any:
    if isinstance(item, str) and _is_moment_key(key):
        try:
            return timestamp(item)
        except ValueError:
            return item
    return timestamps(item)


def token_summary(token: Token | Listed, now: dt.datetime, *,
                  over_policy: bool) -> dict[str, Any]:
    """A token as a JSON row: public id, label, masked secret, scope, displayed status
    (``active`` / ``disabled`` / ``expired`` at ``now``), its timestamps, its expiry
    date, the caller that last used it, and a rotation's old secret while it still works
    (else null)."""
    rotation = None
    if token.rotating(now):
        rotation = {"old_masked": token.previous_secret_masked,
                    "old_works_until": timestamp(token.old_secret_until)}
    return {
        "id": token.public_id,
        "label": token.label,
        "masked": token.secret_masked,
        "scope": token.scope,
        "status": str(token.display_status(now)),
        "created_at": timestamp(token.created_at),
        "created_by": token.created_by,
        "owner": token.owner,
        "expires_at": timestamp(token.expires_at),
        # the calendar date picked (it stops working at 00:00 UTC of it), as Slack shows it
        "expires_on": token.expires_on.isoformat() if token.expires_on else None,
        "last_used_at": timestamp(token.last_used_at),
        "last_used_by": token.last_used_by if token.last_used_at else None,
        "rotation": rotation,
        # the lifetime policy: an admin's reason for going beyond it; breaking it (a cap
        # set after the token got its expiry)
        "policy_exception": token.policy_exception,
        "over_policy": over_policy,
    }


def audit_summary(event: AuditEvent) -> dict[str, Any]:
    """An audit event as a JSON row."""
    return {
        "at": timestamp(event.at),
        "actor": event.actor,
        "source": str(event.source),
        "action": str(event.action),
        "token_id": event.token_public_id,
        "details": timestamps(event.details or {}),
    }
