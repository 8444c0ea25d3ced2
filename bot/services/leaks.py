"""A live Tokenbot secret seen in a chat message: which tokens it is (the one verification,
``services/verification``), and once per token and message the owner's and the alert
channel's notices (the outbox), the audit event ``leak`` and, if so configured, the token
disabled at once (the old secret of a rotation in progress: that secret retired, the new one
kept). Plain functions, ``now`` passed in, no commit; never the message text, never the
secret (its digest is the lookup key, its masked prefix what is said)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import AuditAction, AuditSource, MessageKind, Token
from bot.services import outbox, rotation
from bot.services import tokens as token_service
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.verification import Match, fetch_by_digests, judge, lookup_key

#: Who disables a leaked token in ``disable`` mode, as the audit log names it.
LEAK_ACTOR: Final = "tokenbot"


class LeakAction(enum.StrEnum):
    """``TOKENBOT_LEAK_ACTION``."""

    NOTIFY = "notify"
    DISABLE = "disable"


@dataclass(frozen=True)
class Where:
    """The message a secret was seen in: its conversation (and its kind, Slack's
    ``channel_type``: ``channel``, ``group``, ``im``, ``mpim``), its ts (an edit keeps it),
    who posted it (a person's or a bot user's id; a bot without one: its bot id, with
    ``bot_name``), and its permalink (None: not known)."""

    channel: str
    message_ts: str
    poster: str
    permalink: str | None = None
    channel_type: str = "channel"
    by_bot: bool = False
    bot_name: str | None = None


@dataclass(frozen=True)
class Leak:
    """A token whose live secret was seen, as it is after this (never the secret)."""

    public_id: str
    label: str
    masked: str  # the masked prefix of the secret that was seen
    owner: str
    version: int
    disabled: bool  # the token disabled just now (``disable`` mode, its current secret)
    old_secret: bool = False  # the secret seen is the old one of a rotation in progress
    retired: bool = False  # that old secret retired just now (``disable`` mode)


@dataclass(frozen=True)
class Seen:
    """A live secret of a token seen in a message: its masked prefix, and whether it is
    the old secret of a rotation in progress (the new one was not seen)."""

    masked: str
    old_secret: bool = False


def live_tokens(session: Session, *, team_id: str, secrets: Sequence[str],
                now: dt.datetime) -> dict[int, Seen]:
    """The tokens of ``team_id`` whose secret in ``secrets`` works at ``now``, by token id.
    When both secrets of a rotation are seen, the current one is what counts. A secret of
    another workspace, a dead one, one with a wrong checksum or nobody's is left out."""
    keys = [key for key in dict.fromkeys(lookup_key(secret) for secret in secrets) if key]
    found = fetch_by_digests(session, digests=keys)
    live: dict[int, Seen] = {}
    for key in keys:
        token = judge(found.get(key), now=now).token
        if token is None or token.team_id != team_id:
            continue
        seen = Seen(masked=found[key].row.masked or "",
                    old_secret=found[key].match == Match.PREVIOUS)
        if token.id not in live or live[token.id].old_secret and not seen.old_secret:
            live[token.id] = seen
    return live


def _stop(session: Session, token: Token, *, old_secret: bool, now: dt.datetime) -> Token:
    """``disable`` mode: the leaked secret stops at once, as Tokenbot (source ``leak_scan``):
    the old secret of a rotation is retired (the new one keeps working), a current secret
    disables the token."""
    actor = Actor(token.team_id, LEAK_ACTOR, is_admin=True, source=AuditSource.LEAK_SCAN)
    if old_secret:
        return rotation.retire_now(session, actor=actor, public_id=token.public_id,
                                   expected_version=token.version, now=now,
                                   why="posted in Slack")
    return token_service.disable_token(session, actor=actor, public_id=token.public_id,
                                       expected_version=token.version, now=now)


def record_leaks(session: Session, *, team_id: str, secrets: Sequence[str], where: Where,
                 action: LeakAction, default_channel: str | None,
                 now: dt.datetime) -> list[Leak]:
    """For each live token of ``secrets`` not yet noticed in this message: its owner's DM
    and its alert channel's post (its own, else ``default_channel``) queued, the audit
    event ``leak`` (by the poster) and, with ``LeakAction.DISABLE``, the token disabled
    (or, for the old secret of a rotation in progress, that secret retired). Returns those
    noticed now (a redelivered or edited message: none again)."""
    live = live_tokens(session, team_id=team_id, secrets=secrets, now=now)
    if not live:
        return []
    leaks = []
    for token in session.scalars(select(Token).where(Token.id.in_(live)).order_by(Token.id)):
        masked, old_secret = live[token.id].masked, live[token.id].old_secret
        stop = action == LeakAction.DISABLE
        payload = {"label": token.label, "masked": masked, "owner": token.owner,
                   "poster": where.poster, "by_bot": where.by_bot,
                   "bot_name": where.bot_name, "channel": where.channel,
                   "channel_type": where.channel_type, "permalink": where.permalink,
                   "disabled": stop and not old_secret, "old_secret": old_secret,
                   "retired": stop and old_secret, "at": now.isoformat()}
        queued = outbox.queue_owner_and_channel(
            session, owner=token.owner, channel=token.alert_channel or default_channel,
            kind=MessageKind.LEAK_NOTICE, team_id=team_id, now=now,
            token_public_id=token.public_id, payload=payload,
            key=f"{MessageKind.LEAK_NOTICE}:{token.team_id}:{token.public_id}:{where.channel}:"
                f"{where.message_ts}")
        if not queued[0]:  # the owner's: noticed before (a redelivery, an edit keeping it)
            continue
        record(session, actor=Actor(team_id, where.poster), token=token,
               action=AuditAction.LEAK, now=now,
               details={"label": token.label, "masked": masked, "channel": where.channel,
                        "message_ts": where.message_ts, "permalink": where.permalink,
                        "action": action.value, "old_secret": old_secret})
        if stop:
            token = _stop(session, token, old_secret=old_secret, now=now)
        leaks.append(Leak(public_id=token.public_id, label=token.label, masked=masked,
                          owner=token.owner, version=token.version,
                          disabled=stop and not old_secret, old_secret=old_secret,
                          retired=stop and old_secret))
    return leaks
