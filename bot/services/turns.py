"""Periodic turns: a stamp that counts as recent, and the one conditional write that takes
a turn whose stamp is not (the hygiene scan, a team's owner check). No Slack, no commits."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from bot.db import dialect_insert

#: A stored moment further ahead of a pass's ``now`` than this (written by a pass run
#: with a ``--now`` in the future) does not hold back the passes at the real time: a claim
#: or notice stamped then counts as not taken.
FUTURE_SLACK: Final = dt.timedelta(minutes=5)


def recent(stamp: dt.datetime | None, every: dt.timedelta, now: dt.datetime) -> bool:
    """Stamped within the last ``every`` and no more than :data:`FUTURE_SLACK` ahead."""
    return stamp is not None and now - every < stamp <= now + FUTURE_SLACK


def claim_turn(session: Session, model: Any, stamp: Any, *, every: dt.timedelta,
               now: dt.datetime, **key: Any) -> bool:
    """Take the turn that ``model``'s row ``key`` stamps in ``stamp``: True (stamped
    ``now``) for a new row, or one whose stamp is not :func:`recent`. One conditional
    write: of racing callers, one takes it."""
    column = model.__table__.c[stamp.key]
    if session.execute(dialect_insert(session)(model.__table__).values(**key, **{stamp.key: now})
                       .on_conflict_do_nothing(index_elements=list(key))
                       .returning(column)).first() is not None:
        return True
    # (the row's stamp is not recent(stamp, every, now), in SQL)
    return session.execute(
        update(model).where(*(getattr(model, name) == value for name, value in key.items()),
                            or_(stamp <= now - every, stamp > now + FUTURE_SLACK))
        .values({stamp.key: now}).returning(column)
        .execution_options(synchronize_session=False)).first() is not None
