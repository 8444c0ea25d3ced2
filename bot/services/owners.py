"""A token's owner: who answers for it (rights, reminders and notices follow the owner,
not the creator). An admin reassigns it; the old and the new owner are told (unless they
have left)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bot.errors import PermissionDeniedError, StaleTokenError, ValidationError
from bot.models import Audience, AuditAction, MessageKind, Token
from bot.services import outbox
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.departed import is_departed
from bot.services.tokens import get_token

#: The field (and modal block) a refused new owner is reported on.
FIELD = "new_owner"


@dataclass(frozen=True)
class Reassigned:
    token: Token
    before: str
    after: str
    told: tuple[str, ...] = ()  # who gets a direct message about it


def may_reassign(actor: Actor) -> bool:
    """Only a workspace admin reassigns tokens."""
    return actor.is_admin


def check_reassign(session: Session, *, actor: Actor, public_id: str,
                   expected_version: int | None = None) -> Token:
    """The token a reassignment is about to be asked for: of this team, the actor is an
    admin, and (when given) it is the version they saw."""
    if not may_reassign(actor):
        raise PermissionDeniedError("Only a workspace admin can reassign a token.")
    token = get_token(session, team_id=actor.team_id, public_id=public_id)
    if expected_version is not None and token.version != expected_version:
        raise StaleTokenError()
    return token


def check_new_owner(session: Session, *, actor: Actor, public_id: str, new_owner: str,
                    expected_version: int | None = None) -> Token:
    """Every refusal of a reassignment, without changing anything: not an admin, another
    version than the one seen, no owner chosen, the same owner, a user known to be
    deactivated."""
    token = check_reassign(session, actor=actor, public_id=public_id,
                           expected_version=expected_version)
    if not new_owner:
        raise ValidationError("Choose the new owner.", field=FIELD)
    if new_owner == token.owner:
        raise ValidationError("That person already owns this token; choose someone else.",
                              field=FIELD)
    if is_departed(session, team_id=actor.team_id, user_id=new_owner):
        raise ValidationError("That account is deactivated; choose someone who is still "
                              "in the workspace.", field=FIELD)
    return token


def reassign(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    new_owner: str,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Reassigned:
    """Make ``new_owner`` the token's owner (an admin only; any status), refused as
    :func:`check_new_owner` says. Audited as ``reassign`` with before/after; the old and
    the new owner each get a direct message (not the actor about their own act, nor an
    owner who has left: ``Reassigned.told`` names who does)."""
    new_owner = (new_owner or "").strip()
    token = check_new_owner(session, actor=actor, public_id=public_id, new_owner=new_owner,
                            expected_version=expected_version)
    before = token.owner
    token.owner, token.updated_at = new_owner, now
    try:
        session.flush()  # at the version read (version_id_col): a concurrent change is stale
    except StaleDataError:
        raise StaleTokenError() from None
    record(session, actor=actor, token=token, action=AuditAction.REASSIGN, now=now,
           details={"label": token.label, "before": {"owner": before},
                    "after": {"owner": new_owner}})
    told = tuple(recipient for recipient in dict.fromkeys((before, new_owner))
                 if recipient != actor.user_id
                 and not is_departed(session, team_id=token.team_id, user_id=recipient))
    for recipient in told:
        outbox.queue(session, kind=MessageKind.REASSIGN_NOTICE, team_id=token.team_id,
                     audience=Audience.OWNER, destination=recipient, now=now,
                     token_public_id=token.public_id,
                     payload={"actor": actor.user_id, "source": actor.source.value,
                              "label": token.label, "masked": token.secret_masked,
                              "before": before, "after": new_owner})
    return Reassigned(token=token, before=before, after=new_owner, told=told)
