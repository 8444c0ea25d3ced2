"""The token hygiene rules, in one place: the lifetime cap per scope (and an admin's
exception to it), the expiry a new token starts with, "over policy", and "dormant".
Each rule in Python and, where a query needs it, in SQL, side by side. Plain functions
and values: no Slack, no commits."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, false, func, or_, true
from sqlalchemy.sql.elements import ColumnElement

from bot import dates
from bot.config import Settings
from bot.errors import PermissionDeniedError, ValidationError
from bot.models import DisplayStatus, Token, status_clause
from bot.services.actor import Actor

#: The longest reason an admin may give for an exception.
EXCEPTION_MAX: Final = 500
#: A dormant token is noticed (listed, or disabled) at most once in this long.
DORMANT_NOTICE_EVERY: Final = dt.timedelta(days=30)
#: TOKENBOT_DORMANT_ACTION=disable: a dormant token is disabled only once a digest
#: listed it (warned of it) at least this long before, and it stayed dormant since.
DISABLE_WARNING: Final = dt.timedelta(days=7)
#: Every scope: the key of a cap given as one number.
EVERY_SCOPE: Final = ""


class DormantAction(enum.StrEnum):
    NOTIFY = "notify"  # listed in the hygiene digest with a Disable button
    DISABLE = "disable"  # also disabled, its owner told why and how to re-enable it


class PolicyError(ValidationError):
    """An expiry beyond the scope's cap (or none under a cap), without an exception."""

    def __init__(self, *, scope: str, days: int, latest: dt.date) -> None:
        super().__init__(
            f"{scope} tokens must expire within {days} days: on or before "
            f"{dates.date_text(latest)}",
            field="expires",
        )
        self.latest = latest


def cap_of(caps: Mapping[str, int], scope: str) -> int | None:
    """The cap of ``scope`` in ``caps`` (a :attr:`Policy.caps`, or a payload's copy), or
    None (no cap)."""
    return caps.get(scope, caps.get(EVERY_SCOPE))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Policy:
    """A team's hygiene settings: made by ``policy_of(settings)`` only (the defaults are
    the settings'), so no caller can forget the cap by leaving it out."""

    caps: Mapping[str, int]  # scope (or EVERY_SCOPE) -> days; empty: no cap
    default_expiry_days: int
    dormant_days: int
    dormant_action: DormantAction

    @property
    def capped(self) -> bool:
        return bool(self.caps)

    def cap(self, scope: str) -> int | None:
        """The most days a token of ``scope`` may live from today, or None (no cap)."""
        return cap_of(self.caps, scope)

    def latest(self, scope: str, now: dt.datetime) -> dt.date | None:
        """The latest expiry date a token of ``scope`` may be given today, or None."""
        days = self.cap(scope)
        return None if days is None else dates.today(now) + dt.timedelta(days=days)

    def allows(self, scope: str, expires_on: dt.date | None, now: dt.datetime) -> bool:
        latest = self.latest(scope, now)
        return latest is None or (expires_on is not None and expires_on <= latest)

    def refusal(self, scope: str, now: dt.datetime) -> PolicyError:
        days, latest = self.cap(scope), self.latest(scope, now)
        assert days is not None and latest is not None
        return PolicyError(scope=scope, days=days, latest=latest)

    def never_allowed(self, scopes: Iterable[str]) -> list[str]:
        """Which of ``scopes`` may have no expiry at all (no cap applies to them)."""
        return [scope for scope in scopes if self.cap(scope) is None]

    def default_expiry(self, scopes: Iterable[str], now: dt.datetime) -> dt.date:
        """What a create form starts with: TOKENBOT_DEFAULT_EXPIRY_DAYS from today, capped
        by the tightest cap among the ``scopes`` it offers."""
        days = min([self.default_expiry_days,
                    *(cap for s in scopes if (cap := self.cap(s)) is not None)])
        return dates.today(now) + dt.timedelta(days=days)

    # -- "over policy": a token that breaks a cap set after it was given its expiry ------

    def over(self, *, scope: str, expires_at: dt.datetime | None, exception: str | None,
             status: str, now: dt.datetime) -> bool:
        """A working token without an exception whose expiry is later than its scope's cap
        allows today (or that never expires under a cap)."""
        latest = self.latest(scope, now)
        if latest is None or exception or status != DisplayStatus.ACTIVE:
            return False
        return expires_at is None or expires_at > _midnight(latest)

    def breaks(self, token: Any, now: dt.datetime) -> bool:
        """:meth:`over` for a ``Token`` (or a listed row with the same fields)."""
        return self.over(scope=token.scope, expires_at=token.expires_at, now=now,
                         exception=token.policy_exception, status=token.display_status(now))

    def over_clause(self, now: dt.datetime) -> ColumnElement[bool]:
        """:meth:`over` in SQL, over the tokens table (working tokens only)."""
        if not self.caps:
            return false()
        beyond = []
        named = [scope for scope in self.caps if scope != EVERY_SCOPE]
        for scope in named:
            beyond.append(and_(Token.scope == scope, self._beyond(scope, now)))
        if EVERY_SCOPE in self.caps:
            beyond.append(and_(Token.scope.not_in(named) if named else true(),
                               self._beyond(EVERY_SCOPE, now)))
        return and_(status_clause(DisplayStatus.ACTIVE, now), Token.policy_exception.is_(None),
                    or_(*beyond))

    def _beyond(self, scope: str, now: dt.datetime) -> ColumnElement[bool]:
        latest = _midnight(dates.today(now) + dt.timedelta(days=self.caps[scope]))
        return or_(Token.expires_at.is_(None), Token.expires_at > latest)

    # -- dormant -------------------------------------------------------------------------

    def dormant_clause(self, now: dt.datetime) -> ColumnElement[bool]:
        """Dormant, in SQL over the tokens table: working, and not used (or, never used,
        created) nor enabled again since ``dormant_days`` ago."""
        before = now - dt.timedelta(days=self.dormant_days)
        return and_(status_clause(DisplayStatus.ACTIVE, now),
                    func.coalesce(Token.last_used_at, Token.created_at) <= before,
                    or_(Token.enabled_at.is_(None), Token.enabled_at <= before))

    def dormant_warned_clause(self, now: dt.datetime) -> ColumnElement[bool]:
        """Dormant, and warned of (listed in a digest under ``disable``) at least
        :data:`DISABLE_WARNING` ago while dormant: after its last use, its creation and its
        last enable. (A listing under ``notify`` said nothing of disabling: no warning.)"""
        warned = Token.dormant_warned_at
        return and_(self.dormant_clause(now), warned.is_not(None),
                    warned <= now - DISABLE_WARNING,
                    warned > func.coalesce(Token.last_used_at, Token.created_at),
                    or_(Token.enabled_at.is_(None), warned > Token.enabled_at))


def policy_of(settings: Settings) -> Policy:
    return Policy(caps=dict(settings.tokenbot_max_lifetime_days),
                  default_expiry_days=settings.tokenbot_default_expiry_days,
                  dormant_days=settings.tokenbot_dormant_days,
                  dormant_action=DormantAction(settings.tokenbot_dormant_action))


def clean_exception(reason: str | None) -> str | None:
    text = " ".join((reason or "").split())
    if len(text) > EXCEPTION_MAX:
        raise ValidationError(
            f"The reason is {len(text)} characters; keep it to {EXCEPTION_MAX} or fewer.",
            field="exception")
    return text or None


def check_lifetime(policy: Policy, *, actor: Actor, scope: str,
                   expires_at: dt.datetime | None, exception: str | None,
                   now: dt.datetime, given: bool = True) -> str | None:
    """The lifetime rule at create, edit and extend: an expiry within the scope's cap, or
    beyond it with an admin's reason. Returns the exception to keep (None within the cap).
    A reason the user ``given`` for an expiry that needs none is refused on its field
    rather than dropped unsaid (a kept one that is no longer needed just goes)."""
    reason = clean_exception(exception)
    if policy.allows(scope, dates.expiry_date(expires_at) if expires_at else None, now):
        if reason is not None and given:
            latest = policy.latest(scope, now)
            why = (f"{scope} tokens have no lifetime cap" if latest is None else
                   f"{scope} tokens may expire on or before {dates.date_text(latest)} without one")
            raise ValidationError(f"No exception is needed: {why}. Leave the reason empty.",
                                  field="exception")
        return None
    if reason is None:
        raise policy.refusal(scope, now)
    if not actor.is_admin:
        raise PermissionDeniedError(
            "Only a workspace admin can make an exception to the lifetime policy.",
            field="exception")
    return reason


def lifetime_after_edit(policy: Policy, *, token: Token, actor: Actor, scope: str,
                        expires_at: dt.datetime | None, exception: str | None,
                        exception_given: bool, rechecked: bool, now: dt.datetime) -> str | None:
    """The token's exception after an edit: checked again when the edit changes its scope
    or expiry (``rechecked``) or gives another reason. An admin's edit that gives none
    keeps the token's reason."""
    given = clean_exception(exception) if exception_given else (
        token.policy_exception if actor.is_admin else None)
    if not (rechecked or (exception_given and given != token.policy_exception)):
        return token.policy_exception
    return check_lifetime(policy, actor=actor, scope=scope, expires_at=expires_at,
                          exception=given, now=now,
                          given=exception_given and given != token.policy_exception)
