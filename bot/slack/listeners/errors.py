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
from slack_sdk.errors import SlackApiError

from bot.errors import NotFoundError, NotOwnerError, StaleTokenError, TokenbotError
from bot.logs import LogLimiter
from bot.models import utcnow
from bot.services.audit import last_change
from bot.slack.actions import Place, place_of
from bot.slack.ids import ActionId
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
from bot.slack.views.messages import change_text, notice_message
from bot.slack.views.modals import notice_modal
from bot.slack.state import (FIRST_PAGE, NOWHERE, MenuChoice, ModalMetadata, OriginKind,
                             RowRef, TableState, mapping)
from bot.slack.views.table import Notice, NoticeKind

log = logging.getLogger("bot.errors")
_untold = LogLimiter()

BUSY_TEXT = "Tokenbot is busy right now and did not do this. Please try again in a minute."
SLOW_SLACK_TEXT = (
    "Slack took too long to answer, so the form could not be opened. Please try again."
)
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


class Busy(TokenbotError):
    """The work after an acknowledgement could not be taken on (``bot.slack.acks``)."""


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
    if isinstance(error, SlackApiError) and error.response.get("error") == "expired_trigger_id":
        return SLOW_SLACK_TEXT
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


def _row_of_action(body: dict[str, Any]) -> RowRef | None:
    """The row a button (or a "More…" choice) was on, if it was on one."""
    action = _first_action(body)
    try:
        if action.get("action_id") == ActionId.ROW_MORE:
            return MenuChoice.decode(mapping(action.get("selected_option")).get("value")).ref
        return RowRef.decode(action.get("value"))
    except NotFoundError:
        return None


def _state_of_action(body: dict[str, Any]) -> TableState:
    row = _row_of_action(body)
    if row is not None:
        return row.state
    return TableState.decode(_first_action(body).get("value"), otherwise=FIRST_PAGE)


TABLE_TAIL = "Nothing was changed; here is the current table."
FORM_TAIL = (
    "Nothing was saved. Below: what you changed, and the current value of every field "
    "you left alone."
)


def what_changed(d: Deps, error: Exception, *, team_id: str, public_id: str | None,
                 tail: str = TABLE_TAIL) -> str:
    """For a stale or missing token: the notice naming what changed, who changed it and
    when, from the audit log ("<@U2> disabled it 2 minutes ago"), then ``tail``; else the
    error's text."""
    text = user_text(error, on_table=tail == TABLE_TAIL)
    if public_id is None or not isinstance(error, (StaleTokenError, NotFoundError)):
        return text
    with d.sessions.begin() as session:
        event = last_change(session, team_id=team_id, token_public_id=public_id)
        said = change_text(event) if event is not None else None
    if said is None:
        return text
    head = (
        "This token changed since you looked"
        if isinstance(error, StaleTokenError)
        else "That token was not found"
    )
    return f"{head}: {said}. {tail}"


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
    d = deps(context)
    if response is None or kind == "view_submission":  # a submission answers in its ack
        return answer(error, body, d, client, response)
    # Still acknowledging (Bolt would answer 500): acknowledge, and tell the user after.
    d.work.notify(lambda: answer(error, body, d, client, None))
    return BoltResponse(status=200, body="")


def _on_submission(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
                   response: BoltResponse | None) -> BoltResponse | None:
    """A modal: the table (or digest) behind it redrawn when the token changed or went;
    the answer inside the modal while it is still open."""
    text = user_text(error)
    metadata = ModalMetadata.decode(mapping(body.get("view")).get("private_metadata"),
                                    otherwise=NOWHERE)
    if isinstance(error, (StaleTokenError, NotFoundError)):
        actor = actor_from(body, d.settings)
        text = what_changed(d, error, team_id=actor.team_id, public_id=metadata.public_id)

        def redraw_behind() -> None:
            if metadata.origin.kind == OriginKind.DIGEST:
                with d.sessions.begin() as session:
                    digest = after_edit(session, origin=metadata.origin, actor=actor,
                                        result=None, now=utcnow())
                digest.show(client)
            else:
                redraw(d, client, actor=actor, origin=metadata.origin,
                       notice=Notice(text, NoticeKind.ERROR))

        # Still acknowledging: what is drawn behind the modal waits for no Slack call.
        if not d.work.submit(redraw_behind):
            log.warning("Busy: the table behind a refused submission was not redrawn")
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
        _tell(body.get("response_url"), user_text(error, on_table=False), client)
        return None
    if place == Place.DIGEST:
        text = user_text(error, on_table=False)
        where = where_clicked(body)
        if where is None:
            _tell(body.get("response_url"), text, client)
            return None
        client.chat_postEphemeral(channel=where.channel, user=where.user_id,
                                  text=f":warning: {text}")
        if domain:
            with d.sessions.begin() as session:
                redraw_digest(session, where=where, now=utcnow()).show(client)
        return None
    origin = origin_of_action(body, _state_of_action(body))
    if domain and (place is not None or origin.kind == OriginKind.HOME):
        actor = actor_from(body, d.settings)
        row = _row_of_action(body)
        text = what_changed(d, error, team_id=actor.team_id,
                            public_id=row.public_id if row is not None else None)
        redraw(d, client, actor=actor, origin=origin, notice=Notice(text, NoticeKind.ERROR))
    elif origin.kind == OriginKind.HOME:
        user = mapping(body.get("user")).get("id")
        if isinstance(user, str) and user:
            notice = Notice(user_text(error), NoticeKind.ERROR)
            client.views_publish(user_id=user, view=home_notice_view(notice))
    else:
        _tell(origin.response_url, user_text(error), client)
    return None


def _on_command(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
                response: BoltResponse | None) -> None:
    _tell(body.get("response_url"), user_text(error), client)


def _on_event(error: Exception, body: dict[str, Any], d: Deps, client: WebClient,
              response: BoltResponse | None) -> None:
    event = mapping(body.get("event"))
    home = event.get("type") == "app_home_opened" and event.get("tab", "home") == "home"
    if home and isinstance(event.get("user"), str):
        notice = Notice(user_text(error), NoticeKind.ERROR)
        client.views_publish(user_id=event["user"], view=home_notice_view(notice))


_ANSWERS: dict[str, Callable[..., BoltResponse | None]] = {
    "view_submission": _on_submission,
    "block_actions": _on_action,
    "slash_command": _on_command,
    "event_callback": _on_event,
}


def _tell(response_url: object, text: str, client: WebClient) -> None:
    respond = respond_to(response_url, client)
    if respond is not None:
        send(respond, notice_message(text), replace_original=False)


def reporting(listener: Callable[..., None], **kwargs: Any) -> Callable[[], None]:
    """``listener(**kwargs)`` as a task for the background pool, after the request was
    acknowledged: what it raises goes to ``handle_error`` (no Bolt response is waiting
    for it any more). ``kwargs`` hold ``body``, ``context`` and ``client``."""

    def run() -> None:
        try:
            listener(**kwargs)
        except Exception as error:  # not swallowed: routed to the one error handler
            try:
                handle_error(error, body=kwargs["body"], context=kwargs["context"],
                             client=kwargs["client"], response=None)
            except Exception:  # the error path itself failed (e.g. Slack unreachable)
                if _untold.allow("untold"):
                    log.exception("Could not tell a user about an error (logged at most "
                                  "once a minute)")

    functools.update_wrapper(run, listener)
    return run
