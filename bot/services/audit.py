"""The audit log: who did what to which token, when; never a secret."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import JSON, String, bindparam, func, insert, select, true
from sqlalchemy.orm import Session

from bot.models import AuditAction, AuditEvent, Token, UTCDateTime

if TYPE_CHECKING:
    from bot.services.tokens import Actor

_EVENTS = AuditEvent.__table__
# Built once, the values bound at execution.
_INSERT = insert(_EVENTS)


def record(
    session: Session,
    *,
    actor: Actor,
    token: Token,
    action: AuditAction,
    now: dt.datetime,
    details: dict[str, Any],
) -> None:
    """Write one event now, in the caller's transaction (which commits or drops it with the
    change it describes). A plain INSERT: nothing reads the event back in that transaction,
    so the ORM would only add cost to every click."""
    session.connection().execute(
        _INSERT, _event(token.team_id, token.public_id, actor, action, now, details)
    )


def _event(team_id: str, public_id: str, actor: Actor, action: AuditAction,
           now: dt.datetime, details: dict[str, Any]) -> dict[str, Any]:
    return {"team_id": team_id, "token_public_id": public_id, "action": action,
            "actor": actor.user_id, "source": actor.source, "at": now, "details": details}


LABEL_DETAILS: Any = object()  # details: {"label": the changed token's label}


def update_recorded(
    session: Session,
    statement: Any,
    params: dict[str, Any],
    *,
    actor: Actor,
    action: AuditAction,
    now: dt.datetime,
    details: dict[str, Any] | Any,
    then: Then | None = None,
) -> Mapping[str, Any] | None:
    """Run ``statement`` (an ``UPDATE tokens ... RETURNING`` of at most one token) and, if
    it changed a token, record the event, in the caller's transaction; the changed row (by
    column), or None. ``details=LABEL_DETAILS`` records the changed token's label.

    On PostgreSQL both are one statement (a data-modifying CTE): one round trip instead of
    two on every click. Elsewhere the UPDATE, then the INSERT.

    ``then``: a read the caller makes right after (the page to redraw). On PostgreSQL the
    same statement runs it, on the snapshot the change started from, and its rows are put
    in ``then.rows``; elsewhere ``then`` is left alone and the caller reads as usual."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        event = {"event_action": action, "event_actor": actor.user_id,
                 "event_source": actor.source, "event_at": now}
        if details is not LABEL_DETAILS:
            event["event_details"] = details
        label_details = details is LABEL_DETAILS
        if then is None:
            recorded = _recorded(statement, label_details=label_details)
            changed = connection.execute(recorded, {**params, **event}).one_or_none()
            return changed._mapping if changed is not None else None
        recorded = _recorded(statement, label_details=label_details, then=then.statement)
        rows = connection.execute(recorded, {**params, **event, **then.params}).all()
        if not rows:
            return None
        width = len(statement.exported_columns)
        # One row per row read (or one with NULLs when it read none), each led by the change.
        then.rows = [row[width:] for row in rows if row[width] is not None]
        return dict(zip([c.key for c in statement.exported_columns], rows[0][:width]))
    row = connection.execute(statement, params).one_or_none()
    if row is None:
        return None
    details = {"label": row.label} if details is LABEL_DETAILS else details
    connection.execute(_INSERT, _event(row.team_id, row.public_id, actor, action, now, details))
    return row._mapping


@functools.lru_cache(maxsize=16)
def _recorded(statement: Any, *, label_details: bool, then: Any = None) -> Any:
    """WITH changed AS (UPDATE ... RETURNING *), event AS (INSERT INTO audit_events
    SELECT ... FROM changed) SELECT * FROM changed: the event exists exactly when the
    change does, as with two statements in one transaction. With ``then`` (a SELECT):
    ... SELECT changed.*, then.* FROM changed LEFT JOIN LATERAL (then) ON true."""
    changed = statement.cte("changed")
    details = (
        func.json_build_object("label", changed.c.label, type_=JSON)
        if label_details
        else bindparam("event_details", type_=_EVENTS.c.details.type)
    )
    event = insert(_EVENTS).from_select(
        ["team_id", "token_public_id", "action", "actor", "source", "at", "details"],
        select(
            changed.c.team_id,
            changed.c.public_id,
            bindparam("event_action", type_=String()),
            bindparam("event_actor", type_=String()),
            bindparam("event_source", type_=String()),
            bindparam("event_at", type_=UTCDateTime()),
            details,
        ),
    ).cte("event")
    if then is None:
        return select(changed).add_cte(event)
    read = then.lateral("then")
    return select(changed, read).select_from(changed.outerjoin(read, true())).add_cte(event)


class Then(Protocol):
    """A read to run with a change (see ``update_recorded``)."""

    statement: Any
    params: dict[str, Any]
    rows: list[Any] | None


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
