"""How each kind of request is acknowledged: at once, in the thread that received it,
before any Web API call. ``bot.slack.app`` registers every listener through one of these.

- A command, a click or an event: ``ack()`` (or, for ``/tokens help``, the help itself),
  then the listener runs on the background pool (``bot.slack.background``).
- A modal submission: the listener runs here, because its answer depends on the database
  (errors inline on the fields, or the modal closed); it returns what to draw afterwards,
  which runs on the pool.

Room on the pool is taken before the acknowledgement, so a request acknowledged as
accepted always gets its work done. When there is none, the user is told "busy, try
again" where they look, and nothing was done.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.logs import LogLimiter
from bot.slack.background import Background, Task
from bot.slack.listeners.errors import BUSY_TEXT, Busy, reporting
from bot.slack.views.modals import notice_modal

log = logging.getLogger("bot.slack.acks")
_busy_log = LogLimiter()

Listener = Callable[..., None]
Answer = Callable[[dict[str, Any]], dict[str, Any] | None]
Submission = Callable[..., Task | None]


class Kind(enum.StrEnum):
    """A request kind, named as the listener's argument that carries its payload."""

    COMMAND = "command"
    ACTION = "action"
    EVENT = "event"
    VIEW = "view"


def ack_then_run(listener: Listener, *, kind: Kind, work: Background,
                 answer: Answer | None = None) -> Listener:
    """A Bolt listener that acknowledges at once and runs ``listener`` on ``work``.
    ``answer(payload)`` may give the acknowledgement's content instead, which ends the
    request (``/tokens help``)."""

    def acknowledge(ack: Ack, body: dict[str, Any], payload: dict[str, Any],
                    context: BoltContext, client: WebClient) -> None:
        immediate = answer(payload) if answer is not None else None
        if immediate is not None:
            ack(**immediate)
            return
        slot = work.reserve()
        if slot is None:
            _busy(ack, kind, body, context, client, work)
            return
        try:
            ack()
        except BaseException:
            slot.release()
            raise
        slot.run(reporting(listener, body=body, context=context, client=client,
                           **{kind.value: payload}))

    return acknowledge


def run_then_draw(listener: Submission, *, work: Background) -> Listener:
    """A Bolt listener for a modal submission: ``listener`` acknowledges (inline errors or
    closing the modal) and returns what to draw afterwards, which runs on ``work``."""

    def acknowledge(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                    context: BoltContext, client: WebClient) -> None:
        slot = work.reserve()
        if slot is None:
            _busy(ack, Kind.VIEW, body, context, client, work)
            return
        try:
            then = listener(ack=ack, body=body, view=view, context=context, client=client)
        except BaseException:
            slot.release()
            raise
        if ack.response is None:  # a listener that returned without answering Slack
            slot.release()
            raise RuntimeError(f"{listener.__name__} did not acknowledge the submission")
        if then is None:
            slot.release()
        else:
            slot.run(reporting(lambda **_: then(), body=body, context=context, client=client))

    return acknowledge


def _busy(ack: Ack, kind: Kind, body: dict[str, Any], context: BoltContext,
          client: WebClient, work: Background) -> None:
    """Nothing is done; the user is told where they look."""
    if _busy_log.allow(kind.value):
        log.warning("Busy: a %s was refused, the background pool is full (logged at most "
                    "once a minute)", kind.value)
    if kind == Kind.COMMAND:
        ack(response_type="ephemeral", text=f":warning: {BUSY_TEXT}")
    elif kind == Kind.VIEW:
        # Pushed on top: closing it returns to the form, with what was typed.
        ack(response_action="push", view=notice_modal(f":warning: {BUSY_TEXT}"))
    else:
        ack()
        told = work.notify(reporting(_raise_busy, body=body, context=context, client=client))
        if not told and _busy_log.allow("notice"):
            log.warning("Busy: users could not be told either (logged at most once a minute)")


def _raise_busy(**_: Any) -> None:
    raise Busy(BUSY_TEXT)
