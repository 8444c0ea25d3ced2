"""A live Tokenbot secret seen in a chat message: which tokens it is (the one verification,
``services/verification``), and once per token and message the owner's and the alert
channel's notices (the outbox), the audit event ``leak`` and, if so configured, the token
disabled at once. Plain functions, ``now`` passed in, no commit; never the message text,
never the secret (its digest is the lookup key, its masked prefix what is said)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import Audience, AuditAction, AuditSource, MessageKind, Token
from bot.services import outbox
from bot.services import tokens as token_service
from bot.services.actor import Actor
from bot.services.audit import record
from bot.services.verification import fetch_by_digests, judge, lookup_key

#: Who disables a leaked token in ``disable`` mode, as the audit log names it.
LEAK_ACTOR: Final = "tokenbot"


class LeakAction(enum.StrEnum):
    """``TOKENBOT_LEAK_ACTION``."""

    NOTIFY = "notify"
    DISABLE = "disable"


@dataclass(frozen=True)
class Where:
    """The message a secret was seen in: its conversation, its ts (an edit keeps it), who
    posted it, and its permalink (None: not known)."""

    channel: str
    message_ts: str
    poster: str
    permalink: str | None = None


@dataclass(frozen=True)
class Leak:
    """A token whose live secret was seen, as it is after this (never the secret)."""

    public_id: str
    label: str
    masked: str  # the masked prefix of the secret that was seen
    owner: str
    version: int
    disabled: bool  # disabled just now (``disable`` mode)


def live_tokens(session: Session, *, team_id: str, secrets: Sequence[str],
                now: dt.datetime) -> dict[int, str]:
    """The tokens of ``team_id`` whose secret in ``secrets`` works at ``now``: token id ->
    the masked prefix of the secret seen. A secret of another workspace, a dead one, one
    with a wrong checksum or nobody's is left out."""
    keys = [key for key in dict.fromkeys(lookup_key(secret) for secret in secrets) if key]
    found = fetch_by_digests(session, digests=keys)
    live: dict[int, str] = {}
    for key in keys:
        token = judge(found.get(key), now=now).token
        if token is not None and token.team_id == team_id:
            live.setdefault(token.id, found[key].row.masked or "")
    return live


def _key(token: Token, where: Where, audience: Audience) -> str:
    return (f"{MessageKind.LEAK_NOTICE}:{token.team_id}:{token.public_id}:{where.channel}:"
            f"{where.message_ts}:{audience}")


def record_leaks(session: Session, *, team_id: str, secrets: Sequence[str], where: Where,
                 action: LeakAction, default_channel: str | None,
                 now: dt.datetime) -> list[Leak]:
    """For each live token of ``secrets`` not yet noticed in this message: its owner's DM
    and its alert channel's post (its own, else ``default_channel``) queued, the audit
    event ``leak`` (by the poster) and, with ``LeakAction.DISABLE``, the token disabled.
    Returns those noticed now (a redelivered or edited message: none again)."""
    live = live_tokens(session, team_id=team_id, secrets=secrets, now=now)
    if not live:
        return []
    leaks = []
    for token in session.scalars(select(Token).where(Token.id.in_(live)).order_by(Token.id)):
        masked = live[token.id]
        disable = action == LeakAction.DISABLE
        payload = {"label": token.label, "masked": masked, "owner": token.created_by,
                   "poster": where.poster, "channel": where.channel,
                   "permalink": where.permalink, "disabled": disable, "at": now.isoformat()}
        channel = token.alert_channel or default_channel
        targets = [(Audience.OWNER, token.created_by)] + (
            [(Audience.CHANNEL, channel)] if channel else [])
        queued = [outbox.queue(session, kind=MessageKind.LEAK_NOTICE, team_id=team_id,
                               audience=audience, destination=destination, now=now,
                               token_public_id=token.public_id, payload=payload,
                               key=_key(token, where, audience))
                  for audience, destination in targets]
        if not queued[0]:  # the owner's: noticed before (a redelivery, an edit keeping it)
            continue
        record(session, actor=Actor(team_id, where.poster), token=token,
               action=AuditAction.LEAK, now=now,
               details={"label": token.label, "masked": masked, "channel": where.channel,
                        "message_ts": where.message_ts, "permalink": where.permalink,
                        "action": action.value})
        if disable:
            token = token_service.disable_token(
                session, actor=Actor(team_id, LEAK_ACTOR, is_admin=True,
                                     source=AuditSource.LEAK_SCAN),
                public_id=token.public_id, expected_version=token.version, now=now)
        leaks.append(Leak(public_id=token.public_id, label=token.label, masked=masked,
                          owner=token.created_by, version=token.version, disabled=disable))
    return leaks
