"""The hygiene digest's Disable (a button, or a menu in the compact layout) and Edit (the
expiry digest's, on a token over policy): the token
disabled, the digest redrawn in place (``chat.update``) as its tokens now are, and the
clicker told ephemerally; ``answer_error`` is this surface's error path (an ephemeral
reason, the digest redrawn)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.errors import NotFoundError
from bot.models import Audience, utcnow
from bot.services import hygiene
from bot.services import tokens as svc
from bot.slack.acks import on_actions
from bot.slack.ids import ActionId
from bot.slack.listeners.common import Deps, actor_from, deps
from bot.slack.listeners.digests import (
    DigestRedraw,
    Where,
    answer_on_post,
    handle_edit,
    where_clicked,
)
from bot.slack.state import RowRef, mapping
from bot.slack.views.formatting import escape
from bot.slack.views.hygiene import hygiene_blocks
from bot.texts import DISABLED_REPLY, ENABLE_ELSEWHERE

Body = dict[str, Any]


def redraw_hygiene(session: Session, *, where: Where, text: str | None = None) -> DigestRedraw:
    """The hygiene digest as its tokens now are (nothing to update when it is unknown)."""
    message = hygiene.digest_at(session, channel=where.channel, ts=where.ts)
    if message is None:
        return DigestRedraw(where=where, update={}, text=text)
    payload = message.payload or {}
    listed = {item["public_id"] for items in (payload.get("sections") or {}).values()
              for item in items}
    current = hygiene.digest_tokens(session, team_id=message.team_id, public_ids=sorted(listed))
    headline, blocks = hygiene_blocks(payload, audience=Audience(message.audience),
                                      current=current)
    update = {"channel": where.channel, "ts": where.ts, "text": headline, "blocks": blocks}
    return DigestRedraw(where=where, update=update, text=text)


def handle_disable(body: Body, action: dict[str, Any], context: BoltContext,
                   client: WebClient) -> None:
    d = deps(context)
    actor, where = actor_from(body, d.settings), where_clicked(body)
    value = action.get("value")
    if value is None:  # a menu of the compact layout
        value = mapping(action.get("selected_option")).get("value")
    ref = RowRef.decode(value)
    if where is None:
        raise NotFoundError("That hygiene message could not be found.")
    now: dt.datetime = utcnow()
    with d.sessions.begin() as session:
        token = svc.disable_token(session, actor=actor, public_id=ref.public_id,
                                  expected_version=ref.version, now=now)
        text = DISABLED_REPLY.format(label=escape(token.label), where=ENABLE_ELSEWHERE)
        redrawn = redraw_hygiene(session, where=where, text=text)
    redrawn.show(client)


def answer_error(error: Exception, body: Body, d: Deps, client: WebClient) -> None:
    """Ephemerally in the digest's channel; after a refusal the digest is redrawn."""

    def redraw(where: Where) -> None:
        with d.sessions.begin() as session:
            redraw_hygiene(session, where=where).show(client)

    answer_on_post(error, body, client, redraw)


def register(app: App) -> None:
    on_actions(app, [ActionId.HYGIENE_DISABLE], handle_disable, surface=answer_error)
    # Edit: the expiry digest's (the table's modal; its submission redraws this digest,
    # ``digests.after_edit``)
    on_actions(app, [ActionId.HYGIENE_EDIT], handle_edit, surface=answer_error)
