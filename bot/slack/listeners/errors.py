"""The one error path: domain errors become text where the user looks (the redrawn table,
the modal, an ephemeral message); anything else is logged with its traceback and the user
gets a generic message. Registered by ``bot.slack.app.create_app`` with ``app.error``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltResponse
from slack_sdk import WebClient

from bot.errors import NotFoundError, NotOwnerError, StaleTokenError, TokenbotError
from bot.models import utcnow
from bot.slack.actions import Place, place_of
from bot.slack.listeners.common import (
    Deps,
    actor_from,
    deps,
    origin_of_action,
    redraw,
    respond_to,
    send,
)
from bot.slack.listeners.digests import after_edit, redraw_digest, where_clicked
from bot.slack.views.formatting import mention
from bot.slack.views.home import home_notice_view
from bot.slack.views.messages import notice_message
from bot.slack.views.modals import notice_modal
from bot.slack.state import ModalMetadata, OriginKind, RowRef, TableState, mapping
from bot.slack.views.table import Notice, NoticeKind

log = logging.getLogger("bot.errors")

GENERIC_ERROR = (
    "Something went wrong on Tokenbot's side and your request may not have been carried out. "
    "Please try again; if it keeps failing, tell a workspace admin."
)
STALE_TEXT = (
    "This token changed since you looked: someone edited, disabled, rotated or deleted it. "
    "Nothing was changed; here is the current table."
)
GONE_TEXT = (
    "That token was not found: it may have been deleted since you looked. "
    "Nothing was changed; here is the current table."
)


def user_text(error: Exception, *, on_table: bool = True) -> str:
    """What the user reads: the domain error's own message (for a stale or missing token
    under a table, that the table shows the current state), or a generic apology."""
    if on_table and isinstance(error, StaleTokenError):
        return STALE_TEXT
    if on_table and isinstance(error, NotFoundError):
        return GONE_TEXT
    if isinstance(error, NotOwnerError):
        return error.naming(mention(error.owner))
    if isinstance(error, TokenbotError):
        return str(error)
    return GENERIC_ERROR


def _payload_kind(body: dict[str, Any]) -> str:
    if isinstance(body.get("type"), str):
        return str(body["type"])
    if "command" in body:
        return "slash_command"
    return "unknown"


def _first_action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return actions[0]
    return {}


def _state_of_action(body: dict[str, Any]) -> TableState:
    value = _first_action(body).get("value")
    try:
        return RowRef.decode(value).state
    except NotFoundError:
        return TableState.decode(value)


def handle_error(
    error: Exception,
    body: dict[str, Any],
    context: BoltContext,
    client: WebClient,
    response: BoltResponse | None,
) -> BoltResponse | None:
    """Domain errors become the user's text where they look (the redrawn table or digest,
    the modal, an ephemeral message); anything else is logged with its traceback and the
    user gets a generic message. Nothing from the payload is logged (it may carry a
    secret)."""
    kind = _payload_kind(body)
    domain = isinstance(error, TokenbotError)
    if domain:
        log.info("Refused %s: %s", kind, type(error).__name__)
    else:
        log.error("Unexpected error while handling a %s", kind, exc_info=error)
    answer = _ANSWERS.get(kind)
    if answer is None:
        return None
    return answer(error, body, deps(context), client, response)


def _on_submission(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
                   response: BoltResponse | None) -> BoltResponse | None:
    """A modal: the table (or digest) behind it redrawn when the token changed or went;
    the answer inside the modal while it is still open."""
    text = user_text(error)
    metadata = ModalMetadata.decode(mapping(body.get("view")).get("private_metadata"))
    if isinstance(error, (StaleTokenError, NotFoundError)):
        actor = actor_from(body, d.settings)
        if metadata.origin.kind == OriginKind.DIGEST:
            with d.sessions.begin() as session:
                digest = after_edit(session, origin=metadata.origin, actor=actor,
                                    result=None, now=utcnow())
            digest.show(client)
        else:
            redraw(d, client, actor=actor, origin=metadata.origin,
                   notice=Notice(text, NoticeKind.ERROR))
    if response is None:
        return None
    view = notice_modal(f":warning: {text}")
    return BoltResponse(status=200, body={"response_action": "update", "view": view.to_dict()})


def _on_action(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
               response: BoltResponse | None) -> None:
    """A button or menu: a refusal redraws the table (or digest) it was on, with the
    reason; anything else is told where the user looks."""
    domain = isinstance(error, TokenbotError)
    place = place_of(_first_action(body).get("action_id"))
    if place == Place.ALARM:  # a message to many: the answer goes to the clicker only
        _tell(body.get("response_url"), user_text(error, on_table=False))
        return None
    if place == Place.DIGEST:
        text = user_text(error, on_table=False)
        where = where_clicked(body)
        if where is None:
            _tell(body.get("response_url"), text)
            return None
        client.chat_postEphemeral(channel=where.channel, user=where.user_id,
                                  text=f":warning: {text}")
        if domain:
            with d.sessions.begin() as session:
                redraw_digest(session, where=where, now=utcnow()).show(client)
        return None
    text = user_text(error)
    origin = origin_of_action(body, _state_of_action(body))
    notice = Notice(text, NoticeKind.ERROR)
    if domain and (place is not None or origin.kind == OriginKind.HOME):
        redraw(d, client, actor=actor_from(body, d.settings), origin=origin, notice=notice)
    elif origin.kind == OriginKind.HOME:
        user = mapping(body.get("user")).get("id")
        if isinstance(user, str) and user:
            client.views_publish(user_id=user, view=home_notice_view(notice))
    else:
        _tell(origin.response_url, text)
    return None


def _on_command(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
                response: BoltResponse | None) -> None:
    _tell(body.get("response_url"), user_text(error))


def _on_event(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
              response: BoltResponse | None) -> None:
    event = mapping(body.get("event"))
    if event.get("type") == "app_home_opened" and isinstance(event.get("user"), str):
        notice = Notice(user_text(error), NoticeKind.ERROR)
        client.views_publish(user_id=event["user"], view=home_notice_view(notice))


_ANSWERS: dict[str, Callable[..., BoltResponse | None]] = {
    "view_submission": _on_submission,
    "block_actions": _on_action,
    "slash_command": _on_command,
    "event_callback": _on_event,
}


def _tell(response_url: object, text: str) -> None:
    respond = respond_to(response_url)
    if respond is not None:
        send(respond, notice_message(text), replace_original=False)


def reporting(listener: Callable[..., None]) -> Callable[..., None]:
    """Send what a listener raises *after* ack() to ``handle_error`` directly.

    Bolt (1.30, ``process_before_response=False``) resets the acknowledgement to None
    when a listener fails after ack(); if that happens within the 10 ms its dispatching
    thread polls, the request waits 3 s and is answered 404. Errors before ack() still go
    through Bolt, which answers Slack with what ``handle_error`` returns (e.g. a modal
    update). The listener must take ``body``, ``context`` and ``client``; ``bot.slack.app``
    wraps every listener it registers.
    """

    @functools.wraps(listener)
    def run(**kwargs: Any) -> None:
        try:
            listener(**kwargs)
        except Exception as error:  # not swallowed: routed to the one error handler
            context: BoltContext = kwargs["context"]
            if context.ack is not None and context.ack.response is None:
                raise
            try:
                handle_error(error, body=kwargs["body"], context=context,
                             client=kwargs["client"], response=None)
            except Exception:  # the error path itself failed (e.g. Slack unreachable)
                log.exception("Could not tell the user about an error")

    return run
