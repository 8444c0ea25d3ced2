"""Where every Slack request passes (HTTP and Socket Mode alike: Bolt's ``dispatch``): its
context for the log lines (``bot.logs.RequestContext``: kind, action id, team, user, the
token once known), the time to its acknowledgement (from the request's arrival at the HTTP
server; in Socket Mode from ``dispatch``), and how it ended (ok, refused,
error) once its work after the acknowledgement is done too (``in_request``)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse

from bot import metrics
from bot.logs import RequestContext, current_request, enter_request, leave_request
from bot.slack.state import mapping

COMMAND, CLICK, SUBMISSION, EVENT, OTHER = "command", "click", "submission", "event", "other"
#: In a ``BoltRequest``'s context: the ``time.perf_counter()`` when the HTTP server took
#: the request (before its body, signature check and wait for a thread); the ack time
#: counts from there. Without it (Socket Mode), from ``dispatch``.
ARRIVED = "tokenbot_arrived"
REFUSED, ERROR = "refused", "error"


def _text(value: object) -> str | None:
    return value[:100] if isinstance(value, str) and value else None


def describe(body: dict[str, Any]) -> RequestContext:
    """What a payload says of itself (read defensively: it reached Bolt, nothing more)."""
    kind = body.get("type")
    user = mapping(body.get("user"))
    team = _text(body.get("team_id")) or _text(mapping(body.get("team")).get("id"))
    if "command" in body:
        return RequestContext(COMMAND, _text(body.get("command")), team,
                              _text(body.get("user_id")))
    if kind == "block_actions":
        actions = body.get("actions")
        first = mapping(actions[0]) if isinstance(actions, list) and actions else {}
        return RequestContext(CLICK, _text(first.get("action_id")), team,
                              _text(user.get("id")))
    if kind in ("view_submission", "view_closed"):
        return RequestContext(SUBMISSION, _text(mapping(body.get("view")).get("callback_id")),
                              team, _text(user.get("id")))
    if kind == "event_callback":
        event = mapping(body.get("event"))
        return RequestContext(EVENT, _text(event.get("type")), team, _text(event.get("user")))
    return RequestContext(OTHER, _text(kind), team, _text(user.get("id")))


def _finish(request: RequestContext) -> None:
    if request.release():
        metrics.slack_request(request.kind, request.outcome)


class ObservedApp(App):
    """Bolt's ``App``, with every request's context, acknowledgement time and outcome."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        request = describe(mapping(req.body))
        arrived = req.context.get(ARRIVED)
        if isinstance(arrived, float):
            request.started = arrived
        entered = enter_request(request)
        try:
            response = super().dispatch(req)
        except BaseException:
            request.outcome = ERROR
            raise
        else:
            if response.status >= 500:
                request.outcome = ERROR
            elif response.status >= 400 and request.outcome != ERROR:
                request.outcome = REFUSED  # nothing handles it (404)
            return response
        finally:
            metrics.slack_ack(request.kind, request.seconds())
            leave_request(entered)
            _finish(request)


def in_request(task: Callable[[], None]) -> Callable[[], None]:
    """``task``, work after the acknowledgement, run in this request's context (its log
    lines carry it; its errors set the outcome); the request is counted once it ends."""
    request = current_request()
    if request is None:
        return task
    request.hold()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            context.run(task)
        finally:
            _finish(request)

    return run


def ended(outcome: str) -> None:
    """The current request was refused (a domain error, "busy") or failed."""
    request = current_request()
    if request is not None and request.outcome != ERROR:
        request.outcome = outcome
