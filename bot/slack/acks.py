"""How a request is acknowledged, and how listeners are registered: each listener module's
``register(app)`` calls these with its listeners and its error surface. A command, a click
or an event is acknowledged at once and its listener runs on the work pool; a modal
submission's listener runs before the acknowledgement and returns what to draw after it.
When the pool has no room, the user is told "busy" where they look and nothing is done.
Why this is not Bolt's ``lazy=``: docs/ARCHITECTURE.md, "Where a click goes"."""

from __future__ import annotations

import enum
import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.logs import LogLimiter
from bot.slack.background import Task
from bot.slack.observed import REFUSED, ended, in_request
from bot.slack.listeners.common import Deps, deps_of
from bot.slack.listeners.errors import BUSY_TEXT, Busy, Surface, report, reporting, tell
from bot.slack.views.modals import notice_modal

log = logging.getLogger("bot.slack.acks")
_busy_log = LogLimiter()

Listener = Callable[..., None]
# The acknowledgement's own content, which ends the request, or None: from the payload and
# what the app holds (the database, a cache kept per app).
Answer = Callable[[dict[str, Any], Deps], dict[str, Any] | None]
Submission = Callable[..., Task | None]
# A modal's surface answers in the acknowledgement while ``ack`` is given.
SubmissionSurface = Callable[[Exception, dict[str, Any], Deps, WebClient, Ack | None], None]
_ACTION_IDS: weakref.WeakKeyDictionary[App, set[str]] = weakref.WeakKeyDictionary()


class Kind(enum.StrEnum):
    """A request kind, named as the listener's argument that carries its payload."""

    COMMAND = "command"
    ACTION = "action"
    EVENT = "event"
    VIEW = "view"


def on_command(app: App, command: str, listener: Listener, *, answer: Answer) -> None:
    """``answer(command, deps)`` may give the acknowledgement's content instead, which ends
    the request (``/tokens help``); errors are told in one ephemeral line (``tell``)."""
    app.command(command)(_ack_then_run(listener, Kind.COMMAND, tell, answer))


def on_event(app: App, event: str, listener: Listener, *, surface: Surface,
             answer: Answer | None = None) -> None:
    """``answer(event, deps)`` may end the request in the acknowledgement (``{}``: nothing
    to do), so that no room on the pool is taken (a chat message with no secret, a profile
    edit)."""
    app.event(event)(_ack_then_run(listener, Kind.EVENT, surface, answer))


def on_actions(app: App, ids: Iterable[str], listener: Listener, *, surface: Surface) -> None:
    for action_id in ids:
        app.action(action_id)(_ack_then_run(listener, Kind.ACTION, surface))
        _ACTION_IDS.setdefault(app, set()).add(str(action_id))


def action_ids(app: App) -> set[str]:
    """The action ids registered through ``on_actions``."""
    return set(_ACTION_IDS.get(app, ()))


def on_submission(app: App, callback_id: str, listener: Submission, *,
                  surface: SubmissionSurface) -> None:
    app.view(callback_id)(_run_then_draw(listener, surface))


def _ack_then_run(listener: Listener, kind: Kind, surface: Surface,
                  immediate: Answer | None = None) -> Listener:
    def acknowledge(ack: Ack, body: dict[str, Any], payload: dict[str, Any],
                    context: BoltContext, client: WebClient) -> None:
        content = immediate(payload, deps_of(context)) if immediate is not None else None
        if content is not None:
            ack(**content)
            return
        work = deps_of(context).work
        if not work.reserve():
            _busy(ack, kind, body, context, client, surface)
            return
        try:
            ack()
        except BaseException:
            work.release()
            raise
        work.run(in_request(reporting(listener, surface, body=body, context=context,
                                      client=client, **{kind.value: payload})))

    return acknowledge


def _run_then_draw(listener: Submission, surface: SubmissionSurface) -> Listener:
    def acknowledge(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                    context: BoltContext, client: WebClient) -> None:
        work = deps_of(context).work
        if not work.reserve():
            _busy(ack, Kind.VIEW, body, context, client, functools.partial(surface, ack=None))
            return
        try:
            then = listener(ack=ack, body=body, view=view, context=context, client=client)
        except Exception as error:
            work.release()
            report(error, functools.partial(surface, ack=ack), body=body, context=context,
                   client=client)
            return
        if ack.response is None:  # a listener that returned without answering Slack
            work.release()
            raise RuntimeError(f"{listener.__name__} did not acknowledge the submission")
        if then is None:
            work.release()
        else:
            work.run(in_request(reporting(lambda **_: then(),
                                          functools.partial(surface, ack=None),
                                          body=body, context=context, client=client)))

    return acknowledge


def _busy(ack: Ack, kind: Kind, body: dict[str, Any], context: BoltContext,
          client: WebClient, surface: Surface) -> None:
    """Nothing is done; the user is told where they look."""
    ended(REFUSED)
    if _busy_log.allow(kind.value):
        log.warning("Busy: a %s was refused, the work pool is full (logged at most once a "
                    "minute)", kind.value)
    if kind == Kind.COMMAND:
        ack(response_type="ephemeral", text=f":warning: {BUSY_TEXT}")
    elif kind == Kind.VIEW:
        # Pushed on top: closing it returns to the form, with what was typed.
        ack(response_action="push", view=notice_modal(f":warning: {BUSY_TEXT}"))
    else:
        ack()
        told = deps_of(context).work.notices.submit(lambda: report(
            Busy(BUSY_TEXT), surface, body=body, context=context, client=client))
        if not told and _busy_log.allow("notice"):
            log.warning("Busy: users could not be told either (logged at most once a minute)")
