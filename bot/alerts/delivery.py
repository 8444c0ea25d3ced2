"""Posting a message about alert records exactly once, whatever fails in between.

A post can end three ways: Slack accepted it, Slack refused it, or nobody knows (the
process died mid-post, the answer timed out, the connection dropped, a 5xx, or the
database failed after Slack accepted it). The third is resolved by asking Slack before
anything is posted again. Per message (its records are the ``alerts`` rows it is about):

1. **Attempt.** ``post_attempted_at`` is set on the records and committed *before* the
   post, only on records still leased to this pass with room for the post (the lease
   has :data:`~bot.services.alerts.IN_FLIGHT` left: a pass that stalled or lost its
   lease posts nothing). A record that keeps it is a post whose outcome is not known.
2. **Post** with Slack message metadata: ``event_type`` ``tokenbot_alert`` and the record
   ids in ``event_payload.alert_ids``. The post is never retried blindly: the client
   retries only a refused connection and a 429 asking for a short wait, which Slack did
   not act on, and ends within :data:`~bot.services.alerts.POST_BUDGET`.
3. **Mark.** Accepted: sent, with the message's channel and ts. Refused (Slack answered
   with an error code, below HTTP 500, other than one meaning it failed midway):
   failed, the attempt cleared, retried later with backoff. Anything else: *uncertain*,
   failed with the attempt kept. Each of these writes is retried in
   place with backoff (:data:`DB_RETRY_DELAYS`, about 6 s: a database restart), so a post
   Slack accepted is normally recorded by the same pass.
4. **Resolve before posting again.** A pass that claims records that still have
   ``post_attempted_at`` (an uncertain post after its backoff, a dead pass's after its
   lease ran out) first reads the destination's history from just before the earliest
   attempt (``conversations.history`` with ``include_all_metadata``, every page; an owner's
   DM is found with ``conversations.open``). Records a message's metadata names are marked
   sent with that message's ts; the others have their attempt cleared and are posted as
   usual. An attempt younger than :data:`~bot.services.alerts.IN_FLIGHT` may still be
   in flight, and a history that could not be read to its end (an error, or more pages
   than :data:`HISTORY_PAGES`) proves nothing: those stay uncertain for a later pass.
   When the workspace does not let the bot read the history (``missing_scope``,
   ``not_allowed``, ``not_in_channel``…), they are posted again: at-least-once, logged
   once per process. An owner whose account is gone (``conversations.open``:
   ``user_not_found``, ``user_disabled``, ``cannot_dm_bot``) gets nothing: skipped.

Records no longer wanted (token deleted, disabled, re-dated) are closed by the caller
before any of this: they are never posted again, so their history is not read.

:class:`Courier` does all of this for any message about alert records; what the message
says (a digest) is the caller's.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.models import Alert, AlertKind
from bot.services import alerts as service
from bot.slack.client import without_blind_retries

log = logging.getLogger("bot.alerts")

T = TypeVar("T")

EVENT_TYPE: Final = "tokenbot_alert"
# Waits between tries of one database write (then the error is raised).
DB_RETRY_DELAYS: Final = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
# One post: each try waits at most POST_TIMEOUT seconds for the answer; a refused
# connection or a 429 asking for at most MAX_RETRY_AFTER seconds is tried again, twice.
POST_TIMEOUT: Final = 10
MAX_RETRY_AFTER: Final = 25
POST_RETRIES: Final = 2
assert (POST_RETRIES + 1) * POST_TIMEOUT + POST_RETRIES * (MAX_RETRY_AFTER + 1) \
    <= service.POST_BUDGET.total_seconds(), "a post must end within its budget"
HISTORY_PAGE: Final = 200
HISTORY_PAGES: Final = 100
# Slack's answers meaning "this bot may not read that history" (not "try again").
HISTORY_REFUSALS: Final = frozenset({
    "missing_scope", "not_allowed", "not_allowed_token_type", "not_in_channel",
    "channel_not_found", "no_permission", "access_denied", "team_access_not_granted",
})
# conversations.open's answers meaning "this user takes no DM from the bot, ever".
USER_GONE: Final = frozenset({"user_not_found", "user_disabled", "cannot_dm_bot"})
# ok:false answers meaning Slack failed midway: the post may have been made.
MAYBE_DONE: Final = frozenset({
    "fatal_error", "internal_error", "service_unavailable", "request_timeout",
})


class Outcome(enum.StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # Slack answered no: retried later
    UNCERTAIN = "uncertain"  # maybe posted: resolved from history by a later pass
    TAKEN_OVER = "taken_over"  # the lease ran out or another pass took the records: not posted


@dataclass
class Delivery:
    outcome: Outcome
    channel: str | None = None
    ts: str | None = None
    sent: int = 0
    error: str | None = None


@dataclass
class Resolution:
    """What a destination's history said about its uncertain records."""

    found: int = 0  # posted after all: now marked sent (the others are posted as usual)
    waiting: int = 0  # in flight, or Slack could not be asked: still uncertain
    gone: int = 0  # the owner takes no DM from the bot: skipped
    error: str | None = None


class HistoryRefused(Exception):
    """The workspace does not let the bot read this conversation's history."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class HistoryIncomplete(Exception):
    """The history was not read to its end: what it lacks proves nothing."""


def metadata(alert_ids: Sequence[int]) -> dict[str, Any]:
    """The message metadata naming the alert records a message is about."""
    return {"event_type": EVENT_TYPE, "event_payload": {"alert_ids": [int(i) for i in alert_ids]}}


def named_alerts(message: dict[str, Any]) -> set[int]:
    """The alert record ids a message's metadata names (none for other messages)."""
    data = message.get("metadata")
    if not isinstance(data, dict) or data.get("event_type") != EVENT_TYPE:
        return set()
    payload = data.get("event_payload")
    ids = payload.get("alert_ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list):
        return set()
    return {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}


def error_text(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", None)
        return f"HTTP {status}: {_code(error) or 'error'}"
    return f"{type(error).__name__}: {error}"[:200]


def _code(error: SlackApiError) -> str | None:
    response = error.response
    return response.get("error") if hasattr(response, "get") else None


def refused(error: Exception) -> bool:
    """Slack answered and said no, so it did not post: a 429, or an error code below
    HTTP 500 other than one meaning Slack failed midway (:data:`MAYBE_DONE`). A 4xx
    without Slack's error code is a proxy's, which may have passed the post on."""
    if not isinstance(error, SlackApiError):
        return False
    status, code = getattr(error.response, "status_code", None), _code(error)
    if not isinstance(status, int) or status >= 500:
        return False
    return status == 429 or (bool(code) and code not in MAYBE_DONE)


def _reading(call: Callable[[], T]) -> T:
    """A read of Slack; the workspace's refusal to show it raises :class:`HistoryRefused`."""
    try:
        return call()
    except SlackApiError as error:
        if _code(error) in HISTORY_REFUSALS | USER_GONE:
            raise HistoryRefused(str(_code(error))) from error
        raise


def find_posted(
    client: WebClient, *, conversation: str, alert_ids: Collection[int], since: dt.datetime
) -> dict[int, str]:
    """alert id -> ts of the message in ``conversation`` since ``since`` that names it.
    Raises :class:`HistoryIncomplete` when more than :data:`HISTORY_PAGES` pages would be
    needed to tell."""
    wanted, found = set(alert_ids), {}
    cursor: str | None = None
    for _page in range(HISTORY_PAGES):
        page = _reading(lambda: client.conversations_history(
            channel=conversation, oldest=f"{since.timestamp():.6f}",
            include_all_metadata=True, limit=HISTORY_PAGE, cursor=cursor,
        ))
        for message in page.get("messages") or []:
            for alert_id in named_alerts(message) & wanted:
                found.setdefault(alert_id, str(message.get("ts")))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not page.get("has_more") or cursor is None or wanted <= found.keys():
            return found
    raise HistoryIncomplete(f"more than {HISTORY_PAGES * HISTORY_PAGE} messages since the attempt")


_refusals_logged: set[str] = set()
_refusals_lock = threading.Lock()


def _log_refusal_once(code: str) -> None:
    with _refusals_lock:
        if code in _refusals_logged:
            return
        _refusals_logged.add(code)
    log.warning(
        "Slack refused to show the bot a conversation's history (%s): alerts whose post "
        "was uncertain are posted again and may appear twice (at-least-once). Grant the "
        "channels:history, groups:history, im:history and im:write scopes for exactly once.",
        code,
    )


def write_retrying(sessions: sessionmaker[Session], what: str,
                   work: Callable[[Session], T]) -> T:
    """One transaction, tried again in place while the database is unreachable (then the
    error is raised): a post Slack accepted is recorded by the same pass."""
    for delay in (*DB_RETRY_DELAYS, None):
        try:
            with sessions.begin() as session:
                return work(session)
        except (OperationalError, InterfaceError) as error:
            if delay is None:
                raise
            log.warning("database error while %s (%s); trying again in %.1fs",
                        what, type(error.orig).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Courier:
    """Posts messages about alert records and resolves uncertain posts (see the module).
    Shared by the pass's threads."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        client: WebClient,
        worker: str,
        now: dt.datetime,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.sessions = sessions
        self.client = client  # reads: history, conversations.open (retried as usual)
        self.poster = without_blind_retries(client, timeout=POST_TIMEOUT,
                                            max_retry_after=MAX_RETRY_AFTER,
                                            max_retry_count=POST_RETRIES)
        self.worker = worker
        self.now = now
        self.clock = clock

    def write(self, what: str, work: Callable[[Session], T]) -> T:
        return write_retrying(self.sessions, what, work)

    def _fail(self, ids: Sequence[int], error: str, *, uncertain: bool) -> None:
        self.write("recording a failed post", lambda s: service.mark_failed(
            s, ids=ids, worker=self.worker, now=self.now, error=error, uncertain=uncertain))

    def _sent(self, ids: Sequence[int], channel: str, ts: str) -> int:
        return self.write("recording a post", lambda s: service.mark_sent(
            s, ids=ids, worker=self.worker, now=self.now, channel=channel, ts=ts))

    def post(
        self, destination: str, *, alert_ids: Sequence[int], text: str, blocks: Sequence[Any]
    ) -> Delivery:
        """Post one message about ``alert_ids`` to ``destination`` (a channel or a user)."""
        mine = self.write("recording a post attempt", lambda s: service.mark_attempted(
            s, ids=alert_ids, worker=self.worker, at=self.clock()))
        if set(mine) != set(alert_ids):  # the lease ran (nearly) out, or another pass took over
            if mine:  # (not all of them: what is still ours was not posted after all)
                self.write("clearing post attempts", lambda s: service.clear_attempt(
                    s, ids=mine, worker=self.worker))
            return Delivery(Outcome.TAKEN_OVER)
        try:
            response = self.poster.chat_postMessage(
                channel=destination, text=text, blocks=blocks, metadata=metadata(mine),
                unfurl_links=False, unfurl_media=False,
            )
        except (SlackClientError, OSError) as error:
            uncertain = not refused(error)
            self._fail(mine, error_text(error), uncertain=uncertain)
            return Delivery(Outcome.UNCERTAIN if uncertain else Outcome.REFUSED,
                            error=error_text(error))
        channel = str(response.get("channel") or destination)
        ts = str(response.get("ts") or "")
        return Delivery(Outcome.SENT, channel, ts, sent=self._sent(mine, channel, ts))

    def _conversation(self, kind: AlertKind, destination: str) -> str:
        if kind != AlertKind.OWNER:
            return destination
        # a user id: history is read from the bot's DM with them
        opened = _reading(lambda: self.client.conversations_open(users=destination))
        return str(opened["channel"]["id"])

    def resolve(self, kind: AlertKind, destination: str, alerts: Sequence[Alert]) -> Resolution:
        """Settle the records among ``alerts`` whose post may have been made."""
        result = Resolution()
        attempted = self._settled_in_time(alerts, result)
        if not attempted:
            return result
        since = min(attempted.values()) - service.CLOCK_SKEW  # type: ignore[type-var]
        try:
            conversation = self._conversation(kind, destination)
            found = find_posted(self.client, conversation=conversation,
                                alert_ids=attempted, since=since)
        except HistoryRefused as refusal:
            if kind == AlertKind.OWNER and refusal.code in USER_GONE:
                return self._gone(list(attempted), refusal.code, result)
            _log_refusal_once(refusal.code)
            conversation, found = destination, {}
            result.error = f"history not readable ({refusal.code}): posted again"
        except (HistoryIncomplete, SlackClientError, OSError) as error:
            why = str(error) if isinstance(error, HistoryIncomplete) else error_text(error)
            result.error = f"history unreadable ({why}): retried later"
            self._fail(list(attempted), result.error, uncertain=True)
            result.waiting += len(attempted)
            return result
        result.found = self._record(conversation, found, missing=set(attempted) - found.keys())
        if result.found:
            log.info("alerts to %s: %d found posted in Slack's history, marked sent",
                     destination, result.found)
        return result

    def _settled_in_time(
        self, alerts: Sequence[Alert], result: Resolution
    ) -> dict[int, dt.datetime]:
        """The attempts old enough to be settled now (alert id -> when); the younger ones
        may still be on their way to Slack: they wait for a later pass."""
        attempted = {a.id: a.post_attempted_at for a in alerts if a.post_attempted_at}
        young = [i for i, at in attempted.items() if at > self.clock() - service.IN_FLIGHT]
        if young:
            self._fail(young, "a post may still be in flight: retried later", uncertain=True)
            result.waiting = len(young)
        return {i: at for i, at in attempted.items() if i not in young}

    def _record(self, conversation: str, found: dict[int, str], *, missing: set[int]) -> int:
        """Mark sent what the history showed (with its message); clear the attempts of
        the ``missing`` (posted as usual). Returns how many were marked sent."""
        by_message: dict[str, list[int]] = {}
        for alert_id, ts in found.items():
            by_message.setdefault(ts, []).append(alert_id)
        marked = sum(self._sent(sorted(ids), conversation, ts) for ts, ids in by_message.items())
        if missing:
            self.write("clearing post attempts", lambda s: service.clear_attempt(
                s, ids=sorted(missing), worker=self.worker))
        return marked

    def _gone(self, ids: list[int], code: str, result: Resolution) -> Resolution:
        """The owner takes no DM from the bot (deactivated, deleted): nothing will reach
        them, so their alerts are closed instead of retried for ever."""
        self.write("closing alerts to a gone user", lambda s: service.mark_skipped(
            s, reasons=dict.fromkeys(ids, service.SkipReason.UNREACHABLE),
            worker=self.worker, now=self.now))
        result.gone, result.error = len(ids), f"no DM possible ({code}): skipped"
        return result
