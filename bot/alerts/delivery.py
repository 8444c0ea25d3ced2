"""Posting a message about alert records exactly once, whatever fails in between.

A post can end three ways: Slack accepted it, Slack refused it, or nobody knows (the
process died mid-post, the answer timed out, the connection dropped, a 5xx, or the
database failed after Slack accepted it). The third is resolved by asking Slack before
anything is posted again. Per message (its records are the ``alerts`` rows it is about):

1. **Attempt.** ``post_attempted_at`` is set on the records and committed *before* the
   post, only on records still leased to this pass (a pass that lost its lease posts
   nothing). A record that keeps it is a post whose outcome is not known.
2. **Post** with Slack message metadata: ``event_type`` ``tokenbot_alert`` and the record
   ids in ``event_payload.alert_ids``. The post is never retried blindly: the client
   retries only a 429 and a refused connection, which Slack did not act on.
3. **Mark.** Accepted: sent, with the message's channel and ts. Refused (Slack answered,
   below HTTP 500): failed, the attempt cleared, retried later with backoff. Anything
   else: *uncertain*, failed with the attempt kept. Each of these writes is retried in
   place with backoff (:data:`DB_RETRY_DELAYS`, about 6 s: a database restart), so a post
   Slack accepted is normally recorded by the same pass.
4. **Resolve before posting again.** A pass that claims records that still have
   ``post_attempted_at`` (an uncertain post after its backoff, a dead pass's after its
   lease ran out) first reads the destination's history from just before the earliest
   attempt (``conversations.history`` with ``include_all_metadata``, every page; an owner's
   DM is found with ``conversations.open``). Records a message's metadata names are marked
   sent with that message's ts; the others have their attempt cleared and are posted as
   usual. When Slack cannot be asked, they stay uncertain for a later pass. When the
   workspace does not let the bot read the history (``missing_scope``, ``not_allowed``,
   ``not_in_channel``…), they are posted again: at-least-once, logged once per process.

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
# History is read from this long before the earliest attempt (our clock against Slack's).
CLOCK_SKEW: Final = dt.timedelta(minutes=2)
HISTORY_PAGE: Final = 200
HISTORY_PAGES: Final = 100
# Slack's answers meaning "this bot may not read that history" (not "try again").
HISTORY_REFUSALS: Final = frozenset({
    "missing_scope", "not_allowed", "not_allowed_token_type", "not_in_channel",
    "channel_not_found", "no_permission", "access_denied", "team_access_not_granted",
})


class Outcome(enum.StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # Slack answered no: retried later
    UNCERTAIN = "uncertain"  # maybe posted: resolved from history by a later pass
    LOST = "lost"  # another pass took the records over: not posted by this one


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
    waiting: int = 0  # Slack could not be asked: still uncertain
    error: str | None = None


class HistoryRefused(Exception):
    """The workspace does not let the bot read this conversation's history."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


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


def _refused(error: Exception) -> bool:
    """Slack answered and said no (so it did not post): an API error below HTTP 500."""
    if not isinstance(error, SlackApiError):
        return False
    status = getattr(error.response, "status_code", None)
    return isinstance(status, int) and status < 500


def find_posted(
    client: WebClient, *, conversation: str, alert_ids: Collection[int], since: dt.datetime
) -> dict[int, str]:
    """alert id -> ts of the message in ``conversation`` since ``since`` that names it."""
    wanted, found = set(alert_ids), {}
    cursor: str | None = None
    for _page in range(HISTORY_PAGES):
        try:
            page = client.conversations_history(
                channel=conversation, oldest=f"{since.timestamp():.6f}",
                include_all_metadata=True, limit=HISTORY_PAGE, cursor=cursor,
            )
        except SlackApiError as error:
            if _code(error) in HISTORY_REFUSALS:
                raise HistoryRefused(str(_code(error))) from error
            raise
        for message in page.get("messages") or []:
            for alert_id in named_alerts(message) & wanted:
                found.setdefault(alert_id, str(message.get("ts")))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not page.get("has_more") or cursor is None or wanted <= found.keys():
            break
    return found


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
        self.poster = without_blind_retries(client)
        self.worker = worker
        self.now = now
        self.clock = clock

    def write(self, what: str, work: Callable[[Session], T]) -> T:
        """One transaction, tried again in place while the database is unreachable."""
        for delay in (*DB_RETRY_DELAYS, None):
            try:
                with self.sessions.begin() as session:
                    return work(session)
            except (OperationalError, InterfaceError) as error:
                if delay is None:
                    raise
                log.warning("database error while %s (%s); trying again in %.1fs",
                            what, type(error.orig).__name__, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

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
        if set(mine) != set(alert_ids):  # the lease ran out and another pass took over
            if mine:  # (not all of them: what is still ours was not posted after all)
                self.write("clearing post attempts", lambda s: service.clear_attempt(
                    s, ids=mine, worker=self.worker))
            return Delivery(Outcome.LOST)
        try:
            response = self.poster.chat_postMessage(
                channel=destination, text=text, blocks=blocks, metadata=metadata(mine),
                unfurl_links=False, unfurl_media=False,
            )
        except (SlackClientError, OSError) as error:
            uncertain = not _refused(error)
            self._fail(mine, error_text(error), uncertain=uncertain)
            return Delivery(Outcome.UNCERTAIN if uncertain else Outcome.REFUSED,
                            error=error_text(error))
        channel = str(response.get("channel") or destination)
        ts = str(response.get("ts") or "")
        return Delivery(Outcome.SENT, channel, ts, sent=self._sent(mine, channel, ts))

    def _conversation(self, kind: AlertKind, destination: str) -> str:
        if kind != AlertKind.OWNER:
            return destination
        try:  # a user id: history is read from the bot's DM with them
            opened = self.client.conversations_open(users=destination)
        except SlackApiError as error:
            if _code(error) in HISTORY_REFUSALS:
                raise HistoryRefused(str(_code(error))) from error
            raise
        return str(opened["channel"]["id"])

    def resolve(self, kind: AlertKind, destination: str, alerts: Sequence[Alert]) -> Resolution:
        """Settle the records among ``alerts`` whose post may have been made."""
        attempted = {a.id: a.post_attempted_at for a in alerts if a.post_attempted_at}
        if not attempted:
            return Resolution()
        since = min(attempted.values()) - CLOCK_SKEW  # type: ignore[type-var]
        result = Resolution()
        try:
            conversation = self._conversation(kind, destination)
            found = find_posted(self.client, conversation=conversation,
                                alert_ids=attempted, since=since)
        except HistoryRefused as refusal:
            _log_refusal_once(refusal.code)
            conversation, found = destination, {}
            result.error = f"history not readable ({refusal.code}): posted again"
        except (SlackClientError, OSError) as error:
            result.error = f"history unreadable ({error_text(error)}): retried later"
            self._fail(list(attempted), result.error, uncertain=True)
            result.waiting = len(attempted)
            return result
        by_message: dict[str, list[int]] = {}
        for alert_id, ts in found.items():
            by_message.setdefault(ts, []).append(alert_id)
        for ts, ids in by_message.items():
            result.found += self._sent(sorted(ids), conversation, ts)
        missing = sorted(set(attempted) - found.keys())
        if missing:
            self.write("clearing post attempts", lambda s: service.clear_attempt(
                s, ids=missing, worker=self.worker))
        if result.found:
            log.info("alerts to %s: %d found posted in Slack's history, marked sent",
                     destination, result.found)
        return result
