"""Rotation with overlap: how the old secret of a rotation stops working.

``tokens.rotate_token(overlap=...)`` starts it: the old secret moves to
``previous_secret_*`` and keeps working (same token, same scope; its introspection answer
says ``rotation: superseded``) until ``rotation_until``. It stops at the first of:

- the new secret's first presentation (:func:`retire_on_first_use`, run by
  ``POST /introspect`` before it answers, so the old one fails from the next request on;
  also when the deadline came first but no pass has ended the rotation yet: the owner is
  then told the new secret was used, not that it never was);
- the deadline (:func:`end_overdue_rotations`, the scheduled pass; the old secret already
  fails at the deadline itself: ``bot.models.secret_is_usable``);
- a person: :func:`retire_now` ("Retire old secret now") or :func:`cancel_rotation` (keeps
  the old secret, discards the new one), while the old secret still works.

Each ending is one conditional ``UPDATE`` (where the old digest is still the one
expected), so however many requests and processes race, one of them ends it: it alone
keeps the tombstone, writes the audit event and, for the first two, the owner's direct
message into the outbox (``lifecycle_notices``), sent once by the scheduled pass
(:func:`claim_notices`). Plain functions, ``now`` passed in, no commit."""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.errors import InvalidStateError, StaleTokenError
from bot.models import (
    AuditAction,
    AuditSource,
    LifecycleNotice,
    LifecycleNoticeKind,
    RetiredReason,
    Token,
)
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.tokens import check_change
from bot.services.tombstones import bury

#: A claimed notice whose pass died is taken over after this long.
NOTICE_LEASE: Final = dt.timedelta(minutes=10)
#: The actor of the scheduled pass in the audit log.
SCHEDULER_ACTOR: Final = "scheduler"

_t = Token.__table__


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
    rules = [_t.c.id == token.id, _t.c.previous_secret_digest == old_digest]
    if expected_version is not None:
        rules.append(_t.c.version == expected_version)
    if new_digest is not None:
        rules.append(_t.c.secret_digest == new_digest)
    values: dict[str, object] = {
        "previous_secret_digest": None, "previous_secret_masked": None,
        "previous_secret_encrypted": None, "rotation_until": None,
        "version": _t.c.version + 1, "updated_at": now,
    }
    if restore:
        values.update(secret_digest=_t.c.previous_secret_digest,
                      secret_masked=_t.c.previous_secret_masked,
                      secret_encrypted=_t.c.previous_secret_encrypted)
    result = session.execute(update(_t).where(*rules).values(**values))
    if result.rowcount != 1:
        return False
    return True


def _notice(session: Session, token: Token, kind: LifecycleNoticeKind, *, caller: str | None,
            now: dt.datetime) -> None:
    session.add(LifecycleNotice(
        team_id=token.team_id, token_public_id=token.public_id, owner=token.created_by,
        label=token.label, kind=kind, caller=caller, at=now,
    ))


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
    masked = token.previous_secret_masked or ""
    if not _end(session, token=token, old_digest=old_digest, new_digest=new_digest, now=now):
        return False
    bury(session, token=token, digest=old_digest, masked=masked,
         reason=RetiredReason.ROTATED, now=now)
    record(session, actor=Actor(token.team_id, caller, source=AuditSource.API), token=token,
           action=AuditAction.RETIRE_OLD, now=now,
           details={"masked": masked, "why": "new secret first used", "caller": caller})
    _notice(session, token, LifecycleNoticeKind.ROTATION_SWITCHED, caller=caller, now=now)
    return True


def end_overdue_rotations(session: Session, *, now: dt.datetime, dry_run: bool = False) -> int:
    """End the rotations whose deadline has come without the new secret being used (the
    owner is told); returns how many (``dry_run``: would end, nothing written)."""
    overdue = list(session.scalars(
        select(Token).where(Token.previous_secret_digest.is_not(None),
                            Token.rotation_until <= now)
    ))
    if dry_run:
        return len(overdue)
    ended = 0
    for token in overdue:
        old_digest, masked = token.previous_secret_digest, token.previous_secret_masked or ""
        assert old_digest is not None
        until = token.rotation_until
        if not _end(session, token=token, old_digest=old_digest, now=now):
            continue
        ended += 1
        bury(session, token=token, digest=old_digest, masked=masked,
             reason=RetiredReason.ROTATED, now=now)
        record(session, actor=Actor(token.team_id, SCHEDULER_ACTOR,
                                    source=AuditSource.SCHEDULER),
               token=token, action=AuditAction.RETIRE_OLD, now=now,
               details={"masked": masked, "why": "deadline passed, new secret never used"})
        _notice(session, token, LifecycleNoticeKind.ROTATION_DEADLINE, caller=None,
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
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> Token:
    """"Retire old secret now": the old secret of the rotation stops working at once."""
    token, old_digest = _rotating(session, actor=actor, public_id=public_id,
                                  expected_version=expected_version, now=now)
    masked = token.previous_secret_masked or ""
    if not _end(session, token=token, old_digest=old_digest, now=now,
                expected_version=expected_version):
        raise StaleTokenError()
    bury(session, token=token, digest=old_digest, masked=masked,
         reason=RetiredReason.ROTATED, now=now)
    record(session, actor=actor, token=token, action=AuditAction.RETIRE_OLD, now=now,
           details={"masked": masked, "why": "retired by hand"})
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


def claim_notices(
    session: Session, *, worker: str, now: dt.datetime, limit: int = 200
) -> list[LifecycleNotice]:
    """The unsent notices this pass takes (claimed for :data:`NOTICE_LEASE`); the caller
    commits the claim, renews it just before each post (:func:`renew_claim`) and calls
    :func:`mark_sent` (or :func:`release`) after."""
    stale = now - NOTICE_LEASE
    candidates = session.scalars(
        select(LifecycleNotice.id)
        .where(LifecycleNotice.sent_at.is_(None),
               or_(LifecycleNotice.claimed_at.is_(None), LifecycleNotice.claimed_at < stale))
        .order_by(LifecycleNotice.id).limit(limit)
    ).all()
    claimed: list[int] = []
    table = LifecycleNotice.__table__
    for notice_id in candidates:
        result = session.execute(
            update(table)
            .where(table.c.id == notice_id, table.c.sent_at.is_(None),
                   or_(table.c.claimed_at.is_(None), table.c.claimed_at < stale))
            .values(claimed_by=worker, claimed_at=now)
        )
        if result.rowcount == 1:
            claimed.append(notice_id)
    if not claimed:
        return []
    return list(session.scalars(
        select(LifecycleNotice).where(LifecycleNotice.id.in_(claimed))
        .order_by(LifecycleNotice.id)
        .execution_options(populate_existing=True)
    ))


def pending_notices(session: Session) -> list[LifecycleNotice]:
    """Every unsent notice (what a dry run would send)."""
    return list(session.scalars(
        select(LifecycleNotice).where(LifecycleNotice.sent_at.is_(None))
        .order_by(LifecycleNotice.id)
    ))


def renew_claim(session: Session, *, notice_id: int, worker: str, at: dt.datetime) -> bool:
    """Just before posting: True when the notice is still unsent and ``worker``'s, its claim
    not run out by ``at``; its :data:`NOTICE_LEASE` then starts again at ``at``. (Another
    pass takes a claim over only once it ran out: at most one of them gets True.)"""
    table = LifecycleNotice.__table__
    result = session.execute(update(table)
                             .where(table.c.id == notice_id, table.c.claimed_by == worker,
                                    table.c.sent_at.is_(None),
                                    table.c.claimed_at >= at - NOTICE_LEASE)
                             .values(claimed_at=at))
    return bool(result.rowcount == 1)


def mark_sent(session: Session, *, notice_id: int, worker: str, now: dt.datetime) -> bool:
    """The notice was sent (or may have been) by ``worker``; False (nothing written) when
    its claim is no longer ``worker``'s."""
    table = LifecycleNotice.__table__
    result = session.execute(update(table)
                             .where(table.c.id == notice_id, table.c.claimed_by == worker,
                                    table.c.sent_at.is_(None))
                             .values(sent_at=now))
    return bool(result.rowcount == 1)


def release(session: Session, *, notice_id: int, worker: str) -> None:
    """Slack refused it: a later pass tries again (only if ``worker`` still holds it)."""
    table = LifecycleNotice.__table__
    session.execute(update(table)
                    .where(table.c.id == notice_id, table.c.claimed_by == worker,
                           table.c.sent_at.is_(None))
                    .values(claimed_by=None, claimed_at=None))
