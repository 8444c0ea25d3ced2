"""Every kind of message Tokenbot posts on its own: how its rows of one destination become
messages, and what an uncertain post of it becomes when Slack's history cannot be read.
Adding a kind is its builder (a Slack view) and one line in :data:`KINDS`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import Block

from bot.models import Audience, MessageKind, OutboxMessage, Token
from bot.outbox.delivery import WhenUnknown
from bot.services.alerts import select_for_posting
from bot.services.dead_secrets import DeadSecretReport
from bot.services.departed import post_of
from bot.services.hygiene import listed_ids
from bot.slack.views.digests import chunk_items, digest_blocks, digest_text, item_for
from bot.slack.views.hygiene import dormant_disabled_post, hygiene_blocks, hygiene_text, shown
from bot.slack.views.leaks import leak_notice_post
from bot.slack.views.alarms import dead_secret_post
from bot.slack.views.rotation import rotation_notice_post
from bot.slack.views.messages import owner_notice_message
from bot.slack.views.owners import departed_post, reassign_notice

Row = tuple[OutboxMessage, Token | None]


@dataclass(frozen=True)
class Context:
    """What a message is drawn with when it is posted."""

    now: dt.datetime
    alert_days: Sequence[int]
    # Owners whose direct message Slack refused earlier in this pass (the dead-secret
    # alarm's channel copy says so).
    unreached: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Part:
    """One row of a message: its id, what drawing it needs, what the report says of it."""

    id: int
    item: Any
    about: dict[str, Any]


@dataclass(frozen=True)
class Draft:
    """One message to post: its rows, and how to draw them."""

    parts: list[Part]
    draw: Callable[[list[Any], Context], tuple[str, list[Block]]]
    kind: str = ""  # set by the delivery's plan (what its counts are labelled with)

    @property
    def ids(self) -> list[int]:
        return [part.id for part in self.parts]


    def without(self, ids: set[int]) -> Draft | None:
        """This message less the rows ``ids`` (None: nothing left to post)."""
        parts = [part for part in self.parts if part.id not in ids]
        return Draft(parts, self.draw, self.kind) if parts else None

    def drawn(self, context: Context) -> tuple[str, list[Block]]:
        return self.draw([part.item for part in self.parts], context)


# A kind's plan: the rows of one destination -> the messages, and the rows to close
# without posting (row id -> why).
Plan = Callable[[Sequence[Row], Context], tuple[list[Draft], dict[int, str]]]


@dataclass(frozen=True)
class Kind:
    plan: Plan
    when_unknown: WhenUnknown


def _described(message: OutboxMessage) -> dict[str, Any]:
    """What the pass's report says of a message: its kind, token and payload."""
    return {"kind": str(message.kind), "id": message.token_public_id,
            **(message.payload or {})}


def _expiry(rows: Sequence[Row], context: Context) -> tuple[list[Draft], dict[int, str]]:
    """Expiry reminders: one digest per destination, as few messages as fit."""
    post, skip = select_for_posting(rows, now=context.now, alert_days=context.alert_days)
    by_token = {token.public_id: message for message, token in post}
    audience = Audience(rows[0][0].audience)

    def draw(items: list[Any], c: Context) -> tuple[str, list[Block]]:
        return digest_text(items, audience, c.now), digest_blocks(items, audience=audience,
                                                                  now=c.now)

    drafts = []
    for chunk in chunk_items([item_for(m, t) for m, t in post]):
        drafts.append(Draft([Part(by_token[item.public_id].id, item, {
            "kind": MessageKind.EXPIRY.value, "id": item.public_id, "label": item.label,
            "masked": item.masked, "threshold_days": item.threshold_days,
            "expires_at": item.expires_at.isoformat()}) for item in chunk], draw))
    return drafts, skip


def _one_each(draw: Callable[[OutboxMessage, Context], tuple[str, list[Block]]],
              described: Callable[[OutboxMessage], dict[str, Any]] = _described) -> Plan:
    """A kind whose every row is one message of its own."""

    def plan(rows: Sequence[Row], context: Context) -> tuple[list[Draft], dict[int, str]]:
        return [Draft([Part(m.id, m, described(m))], lambda ms, c: draw(ms[0], c))
                for m, _ in rows], {}

    return plan


def _owner_notice(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    p = message.payload or {}
    drawn = owner_notice_message(
        actor=p.get("actor", ""), source=p.get("source", ""), action=p.get("action", ""),
        label=p.get("label", ""), masked=p.get("masked", ""),
        public_id=message.token_public_id or "", before=p.get("before"), after=p.get("after"))
    return drawn.text, list(drawn.blocks)


def _rotation_notice(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    p = message.payload or {}
    post = rotation_notice_post(label=p.get("label", ""), public_id=message.token_public_id or "",
                                ending=p.get("ending", ""), caller=p.get("caller"),
                                at=dt.datetime.fromisoformat(p["at"]))
    return post.text, post.blocks


def _alarm(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    report = DeadSecretReport.from_payload(message.payload or {})
    unreached = message.audience == Audience.CHANNEL and report.owner in context.unreached
    post = dead_secret_post(report, now=context.now, counted_at=message.created_at,
                            owner_unreached=unreached)
    return post.text, post.blocks


def _leak_notice(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    p = message.payload or {}
    post = leak_notice_post(
        audience=message.audience, label=p.get("label", ""), masked=p.get("masked", ""),
        owner=p.get("owner", ""), poster=p.get("poster", ""), channel=p.get("channel", ""),
        permalink=p.get("permalink"), disabled=bool(p.get("disabled")),
        public_id=message.token_public_id or "", channel_type=p.get("channel_type", ""),
        by_bot=bool(p.get("by_bot")), bot_name=p.get("bot_name"),
        old_secret=bool(p.get("old_secret")), retired=bool(p.get("retired")))
    return post.text, post.blocks


def _reassign_notice(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    p = message.payload or {}
    post = reassign_notice(recipient=message.destination, actor=p.get("actor", ""),
                           source=p.get("source", ""), label=p.get("label", ""),
                           masked=p.get("masked", ""), public_id=message.token_public_id or "",
                           before=p.get("before", ""), after=p.get("after", ""))
    return post.text, post.blocks


def _departed(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    post = departed_post(post_of(message.payload or {}))
    return post.text, post.blocks


def _hygiene(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    return hygiene_blocks(message.payload or {}, audience=Audience(message.audience))


def _hygiene_described(message: OutboxMessage) -> dict[str, Any]:
    """The report's line: what each section lists (public ids), not the whole payload."""
    payload = message.payload or {}
    audience = Audience(message.audience)
    return {"kind": MessageKind.HYGIENE.value, "id": None, "sections": listed_ids(payload),
            "label": hygiene_text(shown(payload, None), audience, payload)}


def _dormant_disabled(message: OutboxMessage, context: Context) -> tuple[str, list[Block]]:
    p = message.payload or {}
    return dormant_disabled_post(label=p.get("label", ""), masked=p.get("masked", ""),
                                 public_id=message.token_public_id or "",
                                 dormant_days=int(p.get("dormant_days", 0)),
                                 last_used_at=p.get("last_used_at"))


KINDS: dict[MessageKind, Kind] = {
    # A reminder is never lost: posted again if the history cannot tell (may be twice).
    MessageKind.EXPIRY: Kind(_expiry, WhenUnknown.POST_AGAIN),
    MessageKind.OWNER_NOTICE: Kind(_one_each(_owner_notice), WhenUnknown.COUNT_AS_SENT),
    MessageKind.ROTATION_NOTICE: Kind(_one_each(_rotation_notice), WhenUnknown.COUNT_AS_SENT),
    MessageKind.DEAD_SECRET_ALARM: Kind(_one_each(_alarm), WhenUnknown.COUNT_AS_SENT),
    MessageKind.HYGIENE: Kind(_one_each(_hygiene, _hygiene_described),
                              WhenUnknown.COUNT_AS_SENT),
    MessageKind.DORMANT_DISABLED: Kind(_one_each(_dormant_disabled), WhenUnknown.COUNT_AS_SENT),
    MessageKind.LEAK_NOTICE: Kind(_one_each(_leak_notice), WhenUnknown.COUNT_AS_SENT),
    MessageKind.REASSIGN_NOTICE: Kind(_one_each(_reassign_notice), WhenUnknown.COUNT_AS_SENT),
    # Posted once per departed user (its key); the weekly digest lists them anyway.
    MessageKind.DEPARTED_OWNER: Kind(_one_each(_departed), WhenUnknown.COUNT_AS_SENT),
}
