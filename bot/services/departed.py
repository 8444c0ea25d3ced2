"""Owners who leave: a Slack user found deactivated (a ``user_change`` event, or the weekly
check) is recorded once, and their active tokens are posted once per departure to the
alert channel (outbox kind ``departed_owner``) with Reassign and Disable. No Slack here: the weekly
check is given ``lookup`` (user id -> deactivated?)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select, String, cast, delete, exists, literal, select
from sqlalchemy.orm import Session

from bot.db import dialect_insert
from bot.models import (
    Audience,
    DepartedOwner,
    DisplayStatus,
    MessageKind,
    OutboxMessage,
    OwnerCheck,
    Token,
    TokenStatus,
    status_clause,
)
from bot.services import outbox
from bot.services.turns import claim_turn

#: How often a team's owners are checked with ``users.info`` (the weekly hygiene pass).
CHECK_EVERY: Final = dt.timedelta(days=7)
#: At most this many tokens are listed, each with its actions, in one post (Slack's 50
#: blocks: a header, two blocks per token, a last line naming the rest).
LISTED_MAX: Final = 23


class Acted:
    """What was done from a departure post, per token (shown when it is redrawn)."""

    REASSIGNED = "reassigned"
    DISABLED = "disabled"


KEY_PREFIX: Final = "departed_owner:"


def key(departure_id: int, noticed_at: dt.datetime) -> str:
    """The post's outbox key: one post per departure (a ``departed_owners`` row, whose id
    SQLite may give again once a returning user's row is deleted: hence the time too),
    whatever noticed it; a user who returns and leaves again is a new departure."""
    return f"{KEY_PREFIX}{departure_id}:{noticed_at.isoformat()}"


def posts_of_current_departures() -> Any:
    """SQL: the outbox rows that are the post of a departure still recorded (kept past
    the outbox's purge while it lasts, so that the post's buttons keep working)."""
    return (OutboxMessage.kind == MessageKind.DEPARTED_OWNER) & exists().where(
        OutboxMessage.key.like(literal(KEY_PREFIX) + cast(DepartedOwner.id, String) + ":%"))


def note_departure(session: Session, *, team_id: str, user_id: str, now: dt.datetime,
                   channel: str | None) -> bool:
    """Record that ``user_id`` is deactivated and, when this is a new departure (not
    already recorded), queue the post of their active tokens to ``channel`` (none without
    tokens or a channel). True when the post was queued by this call."""
    insert = dialect_insert(session)(DepartedOwner.__table__).values(
        team_id=team_id, user_id=user_id, noticed_at=now)
    departure = session.execute(
        insert.on_conflict_do_nothing(index_elements=["team_id", "user_id"])
        .returning(DepartedOwner.__table__.c.id)).scalar()
    if departure is None:  # already recorded: its post (if any) was queued then
        return False
    tokens = list(session.scalars(  # the tokens they own that work now, newest first
        select(Token).where(Token.team_id == team_id, Token.owner == user_id,
                            status_clause(DisplayStatus.ACTIVE, now))
        .order_by(Token.created_at.desc(), Token.id.desc())))
    if not tokens or not channel:
        return False
    listed = [{"id": t.public_id, "label": t.label, "masked": t.secret_masked,
               "scope": t.scope, "version": t.version} for t in tokens[:LISTED_MAX]]
    return outbox.queue(session, kind=MessageKind.DEPARTED_OWNER, team_id=team_id,
                        audience=Audience.CHANNEL, destination=channel, now=now,
                        key=key(departure, now),
                        payload={"user": user_id, "total": len(tokens), "tokens": listed})


def who_left(team_id: str) -> Select[tuple[str]]:
    """The users of ``team_id`` recorded as departed (a select of their ids)."""
    return select(DepartedOwner.user_id).where(DepartedOwner.team_id == team_id)


def is_departed(session: Session, *, team_id: str, user_id: str) -> bool:
    """Whether ``user_id`` was found deactivated."""
    return session.scalar(select(DepartedOwner.id).where(
        DepartedOwner.team_id == team_id, DepartedOwner.user_id == user_id)) is not None


def note_return(session: Session, *, team_id: str, user_id: str) -> None:
    """A reactivated user is no longer listed as departed. (Every profile edit sends a
    ``user_change``: only a known departure is written.)"""
    if is_departed(session, team_id=team_id, user_id=user_id):
        session.execute(delete(DepartedOwner).where(DepartedOwner.team_id == team_id,
                                                    DepartedOwner.user_id == user_id))


def everyone_departed(session: Session) -> set[str]:
    """Every user recorded as departed, in any team (what ``user_change`` checks a
    reactivation against)."""
    return set(session.scalars(select(DepartedOwner.user_id).distinct()))


def owners_to_check(session: Session, *, team_id: str, now: dt.datetime) -> list[str]:
    """The distinct owners of active tokens not already known to have left."""
    return sorted(session.scalars(
        select(Token.owner).distinct().where(Token.team_id == team_id,
                                            status_clause(DisplayStatus.ACTIVE, now),
                                            Token.owner.not_in(who_left(team_id)))))


def check_owners(session: Session, *, team_id: str, lookup: Callable[[str], bool],
                 now: dt.datetime, channel: str | None) -> list[str]:
    """Ask ``lookup`` about each owner of active tokens not yet known to have left; a
    deactivated one is treated as a ``user_change`` event would be (once). Returns who
    was found gone."""
    gone = [user for user in owners_to_check(session, team_id=team_id, now=now)
            if lookup(user)]
    for user in gone:
        note_departure(session, team_id=team_id, user_id=user, now=now, channel=channel)
    return gone


def teams(session: Session) -> list[str]:
    """Every team with tokens."""
    return sorted(session.scalars(select(Token.team_id).distinct()))


def claim_check(session: Session, *, team_id: str, now: dt.datetime) -> bool:
    """Take this week's owner check of ``team_id`` (True: this caller runs it; at most one
    caller per :data:`CHECK_EVERY`, across processes)."""
    return claim_turn(session, OwnerCheck, OwnerCheck.checked_at, every=CHECK_EVERY, now=now,
                      team_id=team_id)


# -- the post, as it was made and as it is now -------------------------------------------


@dataclass(frozen=True)
class DepartedItem:
    """One token of a departure post: as listed, what became of it, and by whom."""

    public_id: str
    label: str
    masked: str
    scope: str
    version: int
    outcome: str | None = None  # Acted.*, or "deleted"
    by: str | None = None
    to: str | None = None  # the new owner

    @property
    def actionable(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True)
class DepartedPost:
    user: str
    total: int
    items: list[DepartedItem]


def post_of(payload: dict[str, Any]) -> DepartedPost:
    """The post as it was queued (its first drawing)."""
    items = [DepartedItem(public_id=str(t.get("id", "")), label=str(t.get("label", "")),
                          masked=str(t.get("masked", "")), scope=str(t.get("scope", "")),
                          version=int(t.get("version", 1)))
             for t in payload.get("tokens") or [] if isinstance(t, dict)]
    return DepartedPost(user=str(payload.get("user", "")),
                        total=int(payload.get("total", len(items))), items=items)


def posted(session: Session, *, channel: str, ts: str, lock: bool = False
           ) -> OutboxMessage | None:
    """The departure post Slack shows at (``channel``, ``ts``)."""
    query = select(OutboxMessage).where(OutboxMessage.message_channel == channel,
                                        OutboxMessage.message_ts == ts,
                                        OutboxMessage.kind == MessageKind.DEPARTED_OWNER)
    if lock:
        query = query.with_for_update()
    return session.scalars(query.limit(1)).one_or_none()


def record_action(*, message: OutboxMessage, public_id: str, action: str, user_id: str,
                  to: str | None = None) -> None:
    """Remember on the post what was done to one of its tokens, and by whom."""
    payload = dict(message.payload or {})
    acted = dict(payload.get("acted") or {})
    acted[public_id] = {"action": action, "by": user_id, "to": to}
    payload["acted"] = acted
    message.payload = payload


def current_post(session: Session, *, message: OutboxMessage) -> DepartedPost:
    """The post as it now is: each token with what was done from the post, or what became
    of it elsewhere (deleted, disabled, another owner)."""
    post = post_of(message.payload or {})
    acted = (message.payload or {}).get("acted") or {}
    ids = [item.public_id for item in post.items]
    tokens = {t.public_id: t for t in session.scalars(
        select(Token).where(Token.team_id == message.team_id, Token.public_id.in_(ids)))}
    items = [_now(item, tokens.get(item.public_id), acted.get(item.public_id), post.user)
             for item in post.items]
    return DepartedPost(user=post.user, total=post.total, items=items)


def _now(item: DepartedItem, token: Token | None, acted: Any, user: str) -> DepartedItem:
    """The token as it now is; what was done from the post is credited (by whom) only
    while it still holds: a token re-enabled or reassigned since shows as it now is."""
    done = acted if isinstance(acted, dict) else {}
    if token is None:
        return DepartedItem(**{**item.__dict__, "outcome": "deleted"})
    fields: dict[str, Any] = {**item.__dict__, "version": token.version, "label": token.label}
    if token.owner != user:
        still = done.get("action") == Acted.REASSIGNED and done.get("to") == token.owner
        fields.update(outcome=Acted.REASSIGNED, to=token.owner,
                      by=done.get("by") if still else None)
    elif token.status == TokenStatus.DISABLED:
        still = done.get("action") == Acted.DISABLED
        fields.update(outcome=Acted.DISABLED, by=done.get("by") if still else None)
    return DepartedItem(**fields)
