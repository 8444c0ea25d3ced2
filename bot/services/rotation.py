"""Rotation with overlap: how the old secret of a rotation stops working, at the first of
the new secret's first presentation (:func:`retire_on_first_use`), the deadline
(:func:`end_overdue_rotations`), or a person (:func:`retire_now`, :func:`cancel_rotation`).
Each ending is one conditional ``UPDATE``, so one of any number of racers ends it and
alone keeps the tombstone, the audit event and the owner's DM. Plain functions, ``now``
passed in, no commit."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.errors import InvalidStateError, StaleTokenError
from bot.models import (
    Audience,
    AuditAction,
    AuditSource,
    MessageKind,
    RetiredReason,
    Token,
)
from bot.services import outbox
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.tokens import check_change
from bot.services.tombstones import bury

#: The actor of the scheduled pass in the audit log.
SCHEDULER_ACTOR: Final = "scheduler"

_tokens = Token.__table__


class RotationEnding(enum.StrEnum):
    """How a rotation with overlap ended, as its owner is told."""

    SWITCHED = "rotation_switched"  # the new secret was first used
    DEADLINE = "rotation_deadline"  # the overlap ran out, the new secret unused


def _end(
    session: Session,
    *,
    token: Token,
    old_digest: str,
    now: dt.datetime,
    expected_version: int | None = None,
    new_digest: str | None = None,
    restore: bool = False,
) -> bool:
    """Clear the rotation of ``token`` if its old secret is still ``old_digest`` (and its
    version ``expected_version``, its new secret ``new_digest``, when given). ``restore``:
    the old secret becomes the token's secret again (a cancelled rotation). True when this
    call ended it."""
    rules = [_tokens.c.id == token.id, _tokens.c.previous_secret_digest == old_digest]
    if expected_version is not None:
        rules.append(_tokens.c.version == expected_version)
    if new_digest is not None:
        rules.append(_tokens.c.secret_digest == new_digest)
    values: dict[str, object] = {
        "previous_secret_digest": None, "previous_secret_masked": None,
        "previous_secret_encrypted": None, "rotation_until": None,
        "version": _tokens.c.version + 1, "updated_at": now,
    }
    if restore:
        values.update(secret_digest=_tokens.c.previous_secret_digest,
                      secret_masked=_tokens.c.previous_secret_masked,
                      secret_encrypted=_tokens.c.previous_secret_encrypted)
    return session.execute(update(_tokens).where(*rules).values(**values)).rowcount == 1


def _retire(session: Session, *, token: Token, old_digest: str, actor: Actor, why: str,
            now: dt.datetime, extra: dict[str, str] | None = None, **rules: Any) -> bool:
    """:func:`_end` (``rules``: its conditions), then the old secret's tombstone and the
    audit event ``retire_old`` saying ``why``. True when this call ended it."""
    masked = token.previous_secret_masked or ""
    if not _end(session, token=token, old_digest=old_digest, now=now, **rules):
        return False
    bury(session, token=token, digest=old_digest, masked=masked,
         reason=RetiredReason.ROTATED, now=now)
    record(session, actor=actor, token=token, action=AuditAction.RETIRE_OLD, now=now,
           details={"masked": masked, "why": why, **(extra or {})})
    return True


def _notice(session: Session, token: Token, ending: RotationEnding, *, caller: str | None,
            now: dt.datetime) -> None:
    """The owner's direct message about how the rotation ended, into the outbox."""
    outbox.queue(session, kind=MessageKind.ROTATION_NOTICE, team_id=token.team_id,
                 audience=Audience.OWNER, destination=token.owner, now=now,
                 token_public_id=token.public_id,
                 payload={"label": token.label, "ending": ending.value, "caller": caller,
                          "at": now.isoformat()})


def retire_on_first_use(
    session: Session, *, token_id: int, old_digest: str, new_digest: str, caller: str,
    now: dt.datetime,
) -> bool:
    """The new secret of ``token_id`` (``new_digest``) was just presented by ``caller``: its
    old secret (``old_digest``) stops working. True when this call retired it (once,
    whoever races). Only while that secret is still the new one: a rotation cancelled and
    started again meanwhile has another new secret, and is left alone."""
    token = session.get(Token, token_id)
    if token is None or token.previous_secret_digest != old_digest:
        return False
    if not _retire(session, token=token, old_digest=old_digest, new_digest=new_digest,
                   actor=Actor(token.team_id, caller, source=AuditSource.API),
                   why="new secret first used", extra={"caller": caller}, now=now):
        return False
    _notice(session, token, RotationEnding.SWITCHED, caller=caller, now=now)
    return True


def end_overdue_rotations(session: Session, *, now: dt.datetime) -> int:
    """End the rotations whose deadline has come without the new secret being used (the
    owner is told); returns how many."""
    overdue = list(session.scalars(
        select(Token).where(Token.previous_secret_digest.is_not(None),
                            Token.rotation_until <= now)
    ))
    ended = 0
    for token in overdue:
        assert token.previous_secret_digest is not None
        until = token.rotation_until
        if not _retire(session, token=token, old_digest=token.previous_secret_digest,
                       actor=Actor(token.team_id, SCHEDULER_ACTOR, source=AuditSource.SCHEDULER),
                       why="deadline passed, new secret never used", now=now):
            continue
        ended += 1
        _notice(session, token, RotationEnding.DEADLINE, caller=None,
                now=until or now)
    return ended


def _rotating(session: Session, *, actor: Actor, public_id: str, expected_version: int,
              now: dt.datetime) -> tuple[Token, str]:
    """The token and its old secret, while that still works (as the table offers these
    actions): past the deadline, the old secret is already dead and the new one may be in
    use, so neither ending applies any more (the scheduled pass or the new secret's first
    use ends the rotation)."""
    token = check_change(session, actor=actor, public_id=public_id,
                         expected_version=expected_version, verb="rotate")
    if token.previous_secret_digest is None or not token.rotating(now):
        raise InvalidStateError("This token is not being rotated (any more).")
    return token, token.previous_secret_digest


def retire_now(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime,
    why: str = "retired by hand",
) -> Token:
    """"Retire old secret now": the old secret of the rotation stops working at once
    (``why``: as the audit event says it)."""
    token, old_digest = _rotating(session, actor=actor, public_id=public_id,
                                  expected_version=expected_version, now=now)
    if not _retire(session, token=token, old_digest=old_digest, actor=actor, why=why, now=now,
                   expected_version=expected_version):
        raise StaleTokenError()
    session.refresh(token)
    return token


def cancel_rotation(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> Token:
    """"Cancel rotation": the old secret stays the token's secret, the new one is discarded
    (and stops working at once)."""
    token, old_digest = _rotating(session, actor=actor, public_id=public_id,
                                  expected_version=expected_version, now=now)
    new_digest, new_masked = token.secret_digest, token.secret_masked
    old_masked = token.previous_secret_masked or ""
    if not _end(session, token=token, old_digest=old_digest, now=now,
                expected_version=expected_version, restore=True):
        raise StaleTokenError()
    bury(session, token=token, digest=new_digest, masked=new_masked,
         reason=RetiredReason.ROTATED, now=now)
    record(session, actor=actor, token=token, action=AuditAction.CANCEL_ROTATION, now=now,
           details={"kept": {"masked": old_masked}, "discarded": {"masked": new_masked}})
    session.refresh(token)
    return token
