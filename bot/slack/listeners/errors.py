"""The error path's common pieces: what a user reads for an error (``user_text``,
``what_changed``), the one line where no surface of its own answers (``tell``), and
``reporting``, which hands an error to the surface the request was registered with
(each listener module defines its own: the table, Home, a digest, a modal)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import NotFoundError, NotOwnerError, StaleTokenError, TokenbotError
from bot.logs import LogLimiter
from bot.services.audit import last_change
from bot.slack.observed import ERROR, REFUSED, ended
from bot.slack.listeners.common import Deps, deps_of, respond_to, send
from bot.slack.views.formatting import mention
from bot.slack.views.messages import change_text, notice_message

log = logging.getLogger("bot.errors")
_untold = LogLimiter()

Body = dict[str, Any]
# Tells the user about an error where they look: (error, body, deps, client).
Surface = Callable[[Exception, Body, Deps, WebClient], None]

BUSY_TEXT = "Tokenbot is busy right now and did not do this. Please try again in a minute."
SLOW_SLACK_TEXT = (
    "Slack took too long to answer, so the form could not be opened. Please try again."
)
GENERIC_ERROR = (
    "Something went wrong on Tokenbot's side and your request may not have been carried out. "
    "Please try again; if it keeps failing, tell a workspace admin."
)
TABLE_TAIL = "Nothing was changed; here is the current table."
# A stale or missing token under a table: how the notice begins, and what it says changed
# when the audit log does not tell (``what_changed``).
STALE = ("This token changed since you looked", "someone edited, disabled, rotated or deleted it")
GONE = ("That token was not found", "it may have been deleted since you looked")


class Busy(TokenbotError):
    """The work after an acknowledgement could not be taken on (``bot.slack.acks``)."""


def user_text(error: Exception, *, on_table: bool = True) -> str:
    """What the user reads: the domain error's own message (for a stale or missing token
    under a table, that the table shows the current state), or a generic apology."""
    if on_table and isinstance(error, (StaleTokenError, NotFoundError)):
        head, what = STALE if isinstance(error, StaleTokenError) else GONE
        return f"{head}: {what}. {TABLE_TAIL}"
    if isinstance(error, NotOwnerError):
        return error.naming(mention(error.owner))
    if isinstance(error, TokenbotError):
        return str(error)
    if isinstance(error, SlackApiError) and error.response.get("error") == "expired_trigger_id":
        return SLOW_SLACK_TEXT
    return GENERIC_ERROR


FORM_TAIL = (
    "Nothing was saved. Below: what you changed, and the current value of every field "
    "you left alone."
)


def what_changed(deps: Deps, error: Exception, *, team_id: str, public_id: str | None,
                 tail: str = TABLE_TAIL) -> str:
    """For a stale or missing token: the notice naming what changed, who changed it and
    when, from the audit log ("<@U2> disabled it 2 minutes ago"), then ``tail``; else the
    error's text."""
    text = user_text(error, on_table=tail == TABLE_TAIL)
    if public_id is None or not isinstance(error, (StaleTokenError, NotFoundError)):
        return text
    with deps.sessions.begin() as session:
        event = last_change(session, team_id=team_id, token_public_id=public_id)
        said = change_text(event) if event is not None else None
    if said is None:
        return text
    head, _ = STALE if isinstance(error, StaleTokenError) else GONE
    return f"{head}: {said}. {tail}"


def logged(error: Exception, body: Body) -> None:
    """A refusal in one line; anything else with its traceback. Nothing from the payload
    is logged (it may carry a secret)."""
    kind = body.get("type") if isinstance(body.get("type"), str) else (
        "slash_command" if "command" in body else "unknown")
    if isinstance(error, TokenbotError):
        log.info("Refused %s: %s", kind, type(error).__name__)
    else:
        log.error("Unexpected error while handling a %s", kind, exc_info=error)


def tell(error: Exception, body: Body, deps: Deps, client: WebClient) -> None:
    """The surface of a command (and the fallback): one ephemeral line."""
    tell_line(body.get("response_url"), user_text(error), client)


def tell_nobody(error: Exception, body: Body, deps: Deps, client: WebClient) -> None:
    """The surface of an event: nobody asked for anything, so nobody is told; the error is
    only logged (``reporting``: its type and traceback, never the message); notices it
    already queued are posted anyway."""


def tell_line(response_url: object, text: str, client: WebClient) -> None:
    respond = respond_to(response_url, client)
    if respond is not None:
        send(respond, notice_message(text), replace_original=False)


def reporting(listener: Callable[..., None], surface: Surface, **kwargs: Any
              ) -> Callable[[], None]:
    """``listener(**kwargs)`` as a task for the work pool, after the request was
    acknowledged: what it raises is logged and told by ``surface``. ``kwargs`` hold
    ``body``, ``context`` and ``client``."""

    def run() -> None:
        try:
            listener(**kwargs)
        except Exception as error:  # not swallowed: told where the user looks
            report(error, surface, body=kwargs["body"], context=kwargs["context"],
                   client=kwargs["client"])

    return run


def report(error: Exception, surface: Surface, *, body: Body, context: BoltContext,
           client: WebClient) -> None:
    logged(error, body)
    ended(REFUSED if isinstance(error, TokenbotError) else ERROR)
    try:
        surface(error, body, deps_of(context), client)
    except Exception:  # the error path itself failed (e.g. Slack unreachable)
        if _untold.allow("untold"):
            log.exception("Could not tell a user about an error (logged at most once a "
                          "minute)")


def handle_error(error: Exception, body: Body, context: BoltContext, client: WebClient,
                 response: BoltResponse | None) -> BoltResponse | None:
    """Bolt's ``app.error``, for what no surface caught (an acknowledgement that failed):
    logged, acknowledged, and told in one line (``bot.slack.acks`` hands the listeners'
    own errors to their surface)."""
    logged(error, body)
    ended(ERROR)
    if response is None or body.get("type") == "view_submission":
        return response
    deps = deps_of(context)
    deps.work.notices.submit(lambda: tell(error, body, deps, client))
    return BoltResponse(status=200, body="")
