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

from bot.models import Audience
from bot.services import hygiene
from bot.services import tokens
from bot.slack.acks import on_actions
from bot.slack.ids import ActionId
from bot.slack.listeners.digests import (
    Body,
    DigestRedraw,
    Where,
    act_on_post,
    disable_from_post,
    handle_edit,
    post_surface,
    ref_of,
)
from bot.slack.views.hygiene import hygiene_blocks


def redraw_hygiene(session: Session, where: Where, text: str | None = None) -> DigestRedraw:
    """The hygiene digest as its tokens now are (nothing to update when it is unknown)."""
    message = hygiene.digest_at(session, channel=where.channel, ts=where.ts)
    if message is None:
        return DigestRedraw(where=where, text=text)
    payload = message.payload or {}
    listed = {i for ids in hygiene.listed_ids(payload).values() for i in ids}
    current = hygiene.digest_tokens(session, team_id=message.team_id, public_ids=sorted(listed))
    headline, blocks = hygiene_blocks(payload, audience=Audience(message.audience),
                                      current=current)
    return DigestRedraw(where=where, headline=headline, blocks=blocks, text=text)


def handle_disable(body: Body, action: dict[str, Any], context: BoltContext,
                   client: WebClient) -> None:
    ref = ref_of(action)

    def change(session: Session, actor: tokens.Actor, where: Where, now: dt.datetime) -> str:
        return disable_from_post(session, actor, ref, now)[1]

    act_on_post(body, context, client, missing="That hygiene message could not be found.",
                change=change, redraw=redraw_hygiene)


answer_error = post_surface(redraw_hygiene)


def register(app: App) -> None:
    on_actions(app, [ActionId.HYGIENE_DISABLE], handle_disable, surface=answer_error)
    # Edit: the expiry digest's (the table's modal; its submission redraws this digest,
    # ``digests.after_edit``)
    on_actions(app, [ActionId.HYGIENE_EDIT], handle_edit, surface=answer_error)
