"""The token registry's changes: create, edit, extend, disable, enable, delete, rotate,
reveal. Plain functions: keyword-only arguments, ``now`` passed in, domain exceptions, no
Slack, and no commits (the caller owns the transaction). Each change is checked against
the rules (this team, owner or admin, the version the user saw, the token's state) and
recorded in the audit log in the same transaction."""

from __future__ import annotations

import datetime as dt
import secrets as _random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bot import crypto, dates
from bot.errors import (
    InvalidStateError,
    NotFoundError,
    NotOwnerError,
    PastExpiryError,
    PermissionDeniedError,
    StaleTokenError,
    ValidationError,
)
from bot.models import AuditAction, RetiredReason, Token, TokenStatus, is_usable
from bot.services.actor import Actor
from bot.services import policy as lifetime
from bot.services.audit import record
from bot.services.listing import search_key
from bot.services.tombstones import bury

LABEL_MAX = 100
# Cc/Cs: control characters and lone surrogates; Zl/Zp: U+2028/U+2029 line breaks.
NOT_IN_LABELS: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})
ADMIN_SCOPE: Final = "admin"
PUBLIC_ID_PREFIX: Final = "tok_"
EXTEND_DAYS: Final = 30
#: The longest a rotation may keep the old secret working.
MAX_OVERLAP: Final = dt.timedelta(days=30)
_PUBLIC_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


@dataclass(frozen=True)
class CreatedToken:
    token: Token
    secret: str

    def __repr__(self) -> str:  # keep the secret out of reprs and logs
        return f"CreatedToken(token={self.token!r}, secret=<hidden>)"


@dataclass(frozen=True)
class EditResult:
    token: Token
    changes: dict[str, tuple[Any, Any]]


# -- validation --------------------------------------------------------------


def clean_label(label: str | None) -> str:
    text = (label or "").strip()
    if not text:
        raise ValidationError("Give the token a label.", field="label")
    if len(text) > LABEL_MAX:
        raise ValidationError(
            f"The label is {len(text)} characters; keep it to {LABEL_MAX} or fewer.",
            field="label",
        )
    if any(unicodedata.category(ch) in NOT_IN_LABELS for ch in text):
        raise ValidationError(
            "The label cannot contain line breaks or control characters.", field="label"
        )
    return text


def clean_scope(scope: str | None, *, scopes: Sequence[str], actor: Actor) -> str:
    if not scope:
        raise ValidationError("Choose a scope.", field="scope")
    if scope not in scopes:
        raise ValidationError(
            f"Unknown scope; choose one of: {', '.join(scopes)}.", field="scope"
        )
    if not may_grant(scope, actor):
        raise PermissionDeniedError(
            "Only a workspace admin can grant the admin scope.", field="scope"
        )
    return scope


def may_grant(scope: str, actor: Actor) -> bool:
    """Only a workspace admin may grant the admin scope."""
    return scope != ADMIN_SCOPE or actor.is_admin


def grantable_scopes(*, scopes: Sequence[str], actor: Actor,
                     current: str | None = None) -> list[str]:
    """The scopes ``actor`` may choose, and the token's ``current`` one (an admin-scope
    token edited by its owner keeps its value listed)."""
    return [scope for scope in scopes if may_grant(scope, actor) or scope == current]


def clean_expiry(expires_on: dt.date | None, *, now: dt.datetime) -> dt.datetime | None:
    """A date later than today (UTC) becomes 00:00 UTC of that date; None clears expiry."""
    if expires_on is None:
        return None
    if isinstance(expires_on, dt.datetime):
        expires_on = expires_on.date()
    if expires_on <= dates.today(now):
        raise PastExpiryError()
    return dt.datetime.combine(expires_on, dt.time(0, 0), tzinfo=dt.timezone.utc)


def _new_public_id() -> str:
    return PUBLIC_ID_PREFIX + "".join(_random.choice(_PUBLIC_ALPHABET) for _ in range(12))


# -- reading one token ---------------------------------------------------------


def get_token(session: Session, *, team_id: str, public_id: str) -> Token:
    token = session.scalars(
        select(Token).where(Token.team_id == team_id, Token.public_id == public_id)
    ).one_or_none()
    if token is None:
        raise NotFoundError()
    return token


def _authorize(token: Token, actor: Actor, verb: str) -> None:
    if not actor.may_manage(token.owner):
        raise NotOwnerError(owner=token.owner, verb=verb)


def check_change(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, verb: str
) -> Token:
    """The token a change is about to be confirmed for: of this team, the actor may
    ``verb`` it, and it is the version they saw (checked before a confirmation is shown,
    and again by the change itself)."""
    token = get_token(session, team_id=actor.team_id, public_id=public_id)
    _authorize(token, actor, verb)
    if token.version != expected_version:
        raise StaleTokenError()
    return token


def load_for_edit(
    session: Session, *, actor: Actor, public_id: str, expected_version: int,
    verb: str = "edit",
) -> Token:
    """The token as an edit form shows it: the actor may edit it, the version is the one
    they saw, and it is not disabled (checked before a form is even opened)."""
    token = check_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version, verb=verb
    )
    if token.status == TokenStatus.DISABLED:
        raise InvalidStateError(
            f"A disabled token cannot be {verb}ed. Enable it first, then {verb} it.")
    return token


def _flush(session: Session) -> None:
    """Write now, so a concurrent change shows up as a stale version here."""
    try:
        session.flush()
    except StaleDataError:
        raise StaleTokenError() from None


# -- changes -------------------------------------------------------------------


def create_token(
    session: Session,
    *,
    box: crypto.SecretBox,
    actor: Actor,
    label: str,
    scope: str,
    scopes: Sequence[str],
    now: dt.datetime,
    expires_on: dt.date | None = None,
    alert_channel: str | None = None,
    owner: str | None = None,
    policy: lifetime.Policy,
    exception: str | None = None,
) -> CreatedToken:
    """``owner`` (default: the actor) owns it; the actor created it (``created_by``, whom
    the audit names). Only an admin may create one for someone else, or (giving an
    ``exception``: the reason) one that expires beyond the scope's lifetime cap."""
    if owner and owner != actor.user_id and not actor.is_admin:
        raise PermissionDeniedError("Only a workspace admin can create a token for someone else.")
    label = clean_label(label)
    scope = clean_scope(scope, scopes=scopes, actor=actor)
    expires_at = clean_expiry(expires_on, now=now)
    kept = lifetime.check_lifetime(policy, actor=actor, scope=scope, expires_at=expires_at,
                                   exception=exception, now=now)
    secret = crypto.generate_secret()
    token = Token(
        public_id=_new_public_id(),
        team_id=actor.team_id,
        label=label,
        label_search=search_key(label),
        scope=scope,
        status=TokenStatus.ACTIVE,
        secret_digest=crypto.digest(secret),
        secret_masked=crypto.mask(secret),
        secret_encrypted=box.encrypt(secret),
        created_at=now,
        created_by=actor.user_id,
        owner=owner or actor.user_id,
        updated_at=now,
        expires_at=expires_at,
        alert_channel=alert_channel,
        policy_exception=kept,
    )
    session.add(token)
    session.flush()
    expires_text = dates.expiry_date(expires_at).isoformat() if expires_at else None
    record(session, actor=actor, token=token, action=AuditAction.CREATE, now=now,
           details={"label": label, "scope": scope, "expires_on": expires_text,
                    **({"policy_exception": kept} if kept else {})})
    return CreatedToken(token=token, secret=secret)


def edit_token(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    expected_version: int,
    scopes: Sequence[str],
    now: dt.datetime,
    label: str | _Unchanged = UNCHANGED,
    scope: str | _Unchanged = UNCHANGED,
    expires_on: dt.date | None | _Unchanged = UNCHANGED,
    alert_channel: str | None | _Unchanged = UNCHANGED,
    policy: lifetime.Policy,
    exception: str | None | _Unchanged = UNCHANGED,
) -> EditResult:
    """Change label, scope, expiry (None clears it), alert channel or policy exception; a
    disabled token cannot be edited. Checks every value first; returns (before, after)."""
    token = load_for_edit(session, actor=actor, public_id=public_id,
                          expected_version=expected_version)
    new: dict[str, Any] = {}  # the token's attributes that change, with their new values
    changes: dict[str, tuple[Any, Any]] = {}  # the audit's names, before and after
    if not isinstance(label, _Unchanged) and (cleaned := clean_label(label)) != token.label:
        new.update(label=cleaned, label_search=search_key(cleaned))
        changes["label"] = (token.label, cleaned)
    if not isinstance(scope, _Unchanged) and scope != token.scope:
        new["scope"] = clean_scope(scope, scopes=scopes, actor=actor)
        changes["scope"] = (token.scope, scope)
    if not isinstance(expires_on, _Unchanged) and expires_on != token.expires_on:
        new["expires_at"] = clean_expiry(expires_on, now=now)
        changes["expires_on"] = (_iso(token.expires_on), _iso(expires_on))
    if not isinstance(alert_channel, _Unchanged) and alert_channel != token.alert_channel:
        new["alert_channel"] = alert_channel
        changes["alert_channel"] = (token.alert_channel, alert_channel)
    kept = lifetime.lifetime_after_edit(
        policy, token=token, actor=actor, scope=new.get("scope", token.scope),
        expires_at=new.get("expires_at", token.expires_at), now=now,
        exception=None if isinstance(exception, _Unchanged) else exception,
        exception_given=not isinstance(exception, _Unchanged),
        rechecked=bool({"scope", "expires_on"} & changes.keys()))
    if kept != token.policy_exception:
        new["policy_exception"] = kept
        changes["policy_exception"] = (token.policy_exception, kept)
    if changes:
        for name, value in {**new, "updated_at": now}.items():
            setattr(token, name, value)
        _flush(session)  # the UPDATE applies at the version read (version_id_col)
        record(session, actor=actor, token=token, action=AuditAction.EDIT, now=now,
               details={"before": {name: before for name, (before, _) in changes.items()},
                        "after": {name: after for name, (_, after) in changes.items()}})
    return EditResult(token=token, changes=changes)


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def extended_date(expires_at: dt.datetime | None, *, now: dt.datetime,
                  days: int = EXTEND_DAYS) -> dt.date:
    """``days`` after the current expiry, or after today for a token already expired."""
    if expires_at is None:
        raise InvalidStateError("This token no longer expires; there is nothing to extend.")
    return max(dates.expiry_date(expires_at), dates.today(now)) + dt.timedelta(days=days)


def extend_token(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    expected_version: int,
    now: dt.datetime,
    days: int = EXTEND_DAYS,
    policy: lifetime.Policy,
) -> EditResult:
    """Move the expiry ``days`` later: an edit of the expiry, under the same rules (a
    refusal names the extension; the lifetime cap included)."""
    token = load_for_edit(session, actor=actor, public_id=public_id,
                          expected_version=expected_version, verb="extend")
    return edit_token(session, actor=actor, public_id=public_id,
                      expected_version=expected_version, scopes=(), now=now, policy=policy,
                      expires_on=extended_date(token.expires_at, now=now, days=days))


def _set_status(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    expected_version: int,
    now: dt.datetime,
    status: TokenStatus,
) -> Token:
    verb, action = (("disable", AuditAction.DISABLE) if status == TokenStatus.DISABLED
                    else ("enable", AuditAction.ENABLE))
    # One statement that applies only where every rule holds (this team, owner or admin,
    # the version the user saw, the other status); no row back: find out which rule failed.
    rules = [
        Token.team_id == actor.team_id,
        Token.public_id == public_id,
        Token.version == expected_version,
        Token.status != status,
    ]
    if not actor.is_admin:
        rules.append(Token.owner == actor.user_id)
    token = session.scalars(
        update(Token)
        .where(*rules)
        .values(status=status, updated_at=now, version=Token.version + 1,
                enabled_at=now if status == TokenStatus.ACTIVE else Token.enabled_at)
        .returning(Token),
        execution_options={"populate_existing": True},
    ).one_or_none()
    if token is None:
        current = check_change(session, actor=actor, public_id=public_id,
                               expected_version=expected_version, verb=verb)
        if current.status == status:
            raise InvalidStateError(
                "This token is already disabled."
                if status == TokenStatus.DISABLED
                else "This token is already active."
            )
        raise StaleTokenError()  # it changed between the two statements
    record(session, actor=actor, token=token, action=action, now=now,
           details={"label": token.label})
    return token


def disable_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> Token:
    """Any process using the token loses access at once; enabling reverses it."""
    return _set_status(session, actor=actor, public_id=public_id,
                       expected_version=expected_version, now=now, status=TokenStatus.DISABLED)


def enable_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> Token:
    """The token is active again immediately."""
    return _set_status(session, actor=actor, public_id=public_id,
                       expected_version=expected_version, now=now, status=TokenStatus.ACTIVE)


def delete_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> str:
    """Delete for good; returns the label. A disabled token must be enabled first."""
    token = check_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version,
        verb="delete",
    )
    if token.status == TokenStatus.DISABLED:
        raise InvalidStateError(
            "A disabled token cannot be deleted. Enable it first, then delete it."
        )
    label = token.label
    record(session, actor=actor, token=token, action=AuditAction.DELETE, now=now,
           details={"label": label, "scope": token.scope})
    secrets = [(token.secret_digest, token.secret_masked)]
    if token.previous_secret_digest is not None:
        secrets.append((token.previous_secret_digest, token.previous_secret_masked or ""))
    session.delete(token)
    _flush(session)
    # Tombstones: a deleted token's secrets (both, during a rotation) that are still
    # presented can be told to its owner.
    for digest, masked in secrets:
        bury(session, token=token, digest=digest, masked=masked,
             reason=RetiredReason.DELETED, now=now)
    return label


def clean_overlap(overlap: dt.timedelta | None) -> dt.timedelta | None:
    """None (an immediate rotation) or a positive overlap of at most :data:`MAX_OVERLAP`."""
    if overlap is None:
        return None
    if overlap <= dt.timedelta(0):
        raise ValidationError("The overlap must be longer than zero.", field="overlap")
    if overlap > MAX_OVERLAP:
        raise ValidationError(
            f"The overlap can be at most {MAX_OVERLAP.days} days.", field="overlap"
        )
    return overlap


def rotate_token(
    session: Session,
    *,
    box: crypto.SecretBox,
    actor: Actor,
    public_id: str,
    expected_version: int,
    now: dt.datetime,
    overlap: dt.timedelta | None = None,
) -> CreatedToken:
    """A new secret for the same token. Without ``overlap`` the old one stops working at
    once; with it, the old one keeps working until the new one is first presented or
    ``overlap`` has passed, whichever comes first (:mod:`bot.services.rotation`). The old
    secret of a rotation still in progress stops at once either way (the audit event names
    it). A secret that stops working keeps a tombstone."""
    overlap = clean_overlap(overlap)
    token = check_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version,
        verb="rotate",
    )
    if overlap is not None and not is_usable(token.status, token.expires_at, now):
        raise InvalidStateError(
            "Only a working token can keep its old secret during a rotation; "
            "rotate it immediately instead."
        )
    # A rotation still overlapping ends: its old secret stops now (tombstoned, audited below).
    retired: list[tuple[str, str]] = []
    earlier = token.previous_secret_masked if token.previous_secret_digest else None
    if token.previous_secret_digest is not None:
        retired.append((token.previous_secret_digest, token.previous_secret_masked or ""))
    old = (token.secret_digest, token.secret_masked, token.secret_encrypted)
    if overlap is None:
        retired.append((old[0], old[1]))
        token.previous_secret_digest = token.previous_secret_masked = None
        token.previous_secret_encrypted = token.rotation_until = None
    else:
        token.previous_secret_digest, token.previous_secret_masked = old[0], old[1]
        token.previous_secret_encrypted, token.rotation_until = old[2], now + overlap
    secret = crypto.generate_secret()
    token.secret_digest = crypto.digest(secret)
    token.secret_masked = crypto.mask(secret)
    token.secret_encrypted = box.encrypt(secret)
    token.updated_at = now
    _flush(session)
    for digest, masked in retired:
        bury(session, token=token, digest=digest, masked=masked, reason=RetiredReason.ROTATED,
             now=now)
    details: dict[str, Any] = {"before": {"masked": old[1]},
                               "after": {"masked": token.secret_masked}}
    if token.old_secret_until is not None:
        details["old_works_until"] = token.old_secret_until.isoformat()
    if earlier is not None:  # the masked old secret of the rotation this one ended
        details["also_retired"] = earlier
    record(session, actor=actor, token=token, action=AuditAction.ROTATE, now=now,
           details=details)
    return CreatedToken(token=token, secret=secret)


def reveal_token(
    session: Session, *, box: crypto.SecretBox, actor: Actor, public_id: str, now: dt.datetime
) -> tuple[Token, str]:
    """The full secret, for its owner or an admin; every reveal is audited."""
    token = get_token(session, team_id=actor.team_id, public_id=public_id)
    _authorize(token, actor, "copy")
    secret = box.decrypt(token.secret_encrypted)
    record(session, actor=actor, token=token, action=AuditAction.REVEAL, now=now,
           details={"masked": token.secret_masked})
    return token, secret
