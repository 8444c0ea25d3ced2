"""Posting one outbox message exactly once, whatever fails in between (the protocol is
in docs/ARCHITECTURE.md, "Messages Tokenbot posts on its own"): record the attempt, post
with metadata naming the rows, mark the outcome; settle an uncertain post from the
destination's history before anything is posted again."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.models import Audience, OutboxMessage
from bot.services import outbox as service
from bot.slack.client import without_blind_retries

log = logging.getLogger("bot.outbox")

T = TypeVar("T")

EVENT_TYPE: Final = "tokenbot_outbox"
# Waits between tries of one database write (then the error is raised).
DB_RETRY_DELAYS: Final = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
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
    """How one post ended."""

    SENT = "sent"
    FAILED = "failed"  # it never reached Slack, or Slack refused it: retried with backoff
    UNCERTAIN = "uncertain"  # maybe posted: settled from history before posting again
    TAKEN_OVER = "taken_over"  # the lease ran out or another process took the rows: not posted


class WhenUnknown(enum.StrEnum):
    """What an uncertain post becomes when the destination's history cannot be read
    (the workspace refuses it: ``missing_scope``, ``not_in_channel``…)."""

    POST_AGAIN = "post again"  # at least once: never lost, may appear twice
    COUNT_AS_SENT = "count as sent"  # at most once: never twice, may be lost


@dataclass
class Posted:
    """How one post ended: how many rows it marked sent, or why not."""

    outcome: Outcome
    sent: int = 0
    error: str | None = None


@dataclass
class DestinationReport:
    kind: str  # the audience: channel or owner
    destination: str
    tokens: list[dict[str, Any]] = field(default_factory=list)  # what its messages are about
    messages: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0  # retried later (includes the uncertain ones)
    uncertain: int = 0  # maybe posted: Slack's history is read before posting again
    recovered: int = 0  # an earlier uncertain post found in Slack's history: marked sent
    error: str | None = None

    def count_waiting(self, rows: int) -> None:
        """``rows`` may have been posted: retried later, after Slack's history is read."""
        self.failed += rows
        self.uncertain += rows


class HistoryRefused(Exception):
    """The workspace does not let the bot read this conversation's history."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class HistoryIncomplete(Exception):
    """The history was not read to its end: what it lacks proves nothing."""


def metadata(ids: Sequence[int]) -> dict[str, Any]:
    """The message metadata naming the outbox rows a message is about."""
    return {"event_type": EVENT_TYPE, "event_payload": {"outbox_ids": [int(i) for i in ids]}}


def named_rows(message: dict[str, Any]) -> set[int]:
    """The outbox row ids a message's metadata names (none for other messages)."""
    data = message.get("metadata")
    if not isinstance(data, dict) or data.get("event_type") != EVENT_TYPE:
        return set()
    payload = data.get("event_payload")
    ids = payload.get("outbox_ids") if isinstance(payload, dict) else None
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


def never_sent(error: Exception) -> bool:
    """The request never left for Slack: the connection was refused, the name did not
    resolve, or TLS failed (urllib wraps only the errors of connecting and sending)."""
    reason = error.reason if isinstance(error, URLError) else None
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror, ssl.SSLError))


def refused(error: Exception) -> bool:
    """Certainly not posted: it never reached Slack (:func:`never_sent`), or Slack
    answered no: a 429, or an error code below HTTP 500 other than one meaning Slack
    failed midway (:data:`MAYBE_DONE`). A 4xx without Slack's error code is a proxy's,
    which may have passed the post on."""
    if never_sent(error):
        return True
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
    client: WebClient, *, conversation: str, ids: Collection[int], since: dt.datetime
) -> dict[int, str]:
    """row id -> ts of the message in ``conversation`` since ``since`` that names it.
    Raises :class:`HistoryIncomplete` when more than :data:`HISTORY_PAGES` pages would be
    needed to tell."""
    wanted, found = set(ids), {}
    cursor: str | None = None
    for _page in range(HISTORY_PAGES):
        page = _reading(lambda: client.conversations_history(
            channel=conversation, oldest=f"{since.timestamp():.6f}",
            include_all_metadata=True, limit=HISTORY_PAGE, cursor=cursor,
        ))
        for message in page.get("messages") or []:
            for row_id in named_rows(message) & wanted:
                found.setdefault(row_id, str(message.get("ts")))
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
        "Slack refused to show the bot a conversation's history (%s): expiry reminders whose "
        "post was uncertain are posted again and may appear twice (at-least-once); other "
        "messages are counted as sent. Grant the channels:history, groups:history, "
        "im:history and im:write scopes for exactly once.",
        code,
    )


class Courier:
    """Posts outbox messages and settles uncertain posts; shared by a pass's threads."""

    def __init__(self, *, sessions: sessionmaker[Session], client: WebClient, worker: str,
                 now: dt.datetime, clock: Callable[[], dt.datetime]) -> None:
        self.sessions = sessions
        self.client = client  # reads: history, conversations.open (retried as usual)
        self.poster = without_blind_retries(client, timeout=service.POST_TIMEOUT,
                                            max_retry_after=service.MAX_RETRY_AFTER,
                                            max_retry_count=service.POST_RETRIES)
        self.worker = worker
        self.now = now
        self.clock = clock

    def write(self, what: str, work: Callable[[Session], T]) -> T:
        """One transaction, tried again in place while the database is unreachable (then
        the error is raised): a post Slack accepted is recorded by the same pass."""
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

    def fail(self, ids: Sequence[int], error: str, *, uncertain: bool) -> None:
        given_up = self.write("recording a failed post", lambda s: service.mark_failed(
            s, ids=ids, worker=self.worker, now=self.now, error=error, uncertain=uncertain))
        metrics.outbox_given_up(given_up)

    def _sent(self, ids: Sequence[int], channel: str | None, ts: str | None) -> int:
        return self.write("recording a post", lambda s: service.mark_sent(
            s, ids=ids, worker=self.worker, now=self.now, channel=channel, ts=ts))

    def post(self, destination: str, *, ids: Sequence[int], text: str,
             blocks: Sequence[Any]) -> Posted:
        """Post one message about the rows ``ids`` to ``destination`` (a channel or a user)."""
        mine = self.write("recording a post attempt", lambda s: service.mark_attempted(
            s, ids=ids, worker=self.worker, at=self.clock()))
        if set(mine) != set(ids):  # the lease ran (nearly) out, or another process took over
            if mine:  # (not all of them: what is still ours was not posted after all)
                self.write("clearing post attempts", lambda s: service.clear_attempt(
                    s, ids=mine, worker=self.worker))
            return Posted(Outcome.TAKEN_OVER)
        try:
            response = self.poster.chat_postMessage(
                channel=destination, text=text, blocks=blocks, metadata=metadata(mine),
                unfurl_links=False, unfurl_media=False)
        except (SlackClientError, OSError) as error:
            uncertain = not refused(error)
            self.fail(mine, error_text(error), uncertain=uncertain)
            return Posted(Outcome.UNCERTAIN if uncertain else Outcome.FAILED,
                          error=error_text(error))
        channel = str(response.get("channel") or destination)
        ts = str(response.get("ts") or "")
        return Posted(Outcome.SENT, sent=self._sent(mine, channel, ts))

    def _conversation(self, audience: Audience, destination: str) -> str:
        if audience != Audience.OWNER:
            return destination
        # a user id: history is read from the bot's DM with them
        opened = _reading(lambda: self.client.conversations_open(users=destination))
        return str(opened["channel"]["id"])

    def settle(self, audience: Audience, destination: str, rows: Sequence[OutboxMessage],
               when_unknown: dict[int, WhenUnknown], report: DestinationReport) -> set[int]:
        """Settle the rows among ``rows`` whose post may have been made (``when_unknown``:
        each row's rule for a history the workspace will not show), counted in ``report``;
        returns the rows dealt with (not to be posted now)."""
        attempted, settled = self._settled_in_time(rows, report)
        if not attempted:
            return settled
        since = min(attempted.values()) - service.CLOCK_SKEW
        try:
            conversation = self._conversation(audience, destination)
            found = find_posted(self.client, conversation=conversation, ids=attempted,
                                since=since)
        except HistoryRefused as refusal:
            if audience == Audience.OWNER and refusal.code in USER_GONE:
                return settled | self._gone(list(attempted), refusal.code, report)
            _log_refusal_once(refusal.code)
            counted = [i for i in attempted if when_unknown[i] == WhenUnknown.COUNT_AS_SENT]
            conversation, found = destination, {}
            if counted:
                self._sent(counted, None, None)
                settled.update(counted)
            report.error = f"history not readable ({refusal.code}): " + (
                "counted as sent" if len(counted) == len(attempted) else "posted again")
        except (HistoryIncomplete, SlackClientError, OSError) as error:
            why = str(error) if isinstance(error, HistoryIncomplete) else error_text(error)
            report.error = f"history unreadable ({why}): retried later"
            self.fail(list(attempted), report.error, uncertain=True)
            report.count_waiting(len(attempted))
            return settled | attempted.keys()
        report.recovered = self._record(conversation, found,
                                        missing=set(attempted) - found.keys() - settled)
        if report.recovered:
            log.info("messages to %s: %d found posted in Slack's history, marked sent",
                     destination, report.recovered)
        return settled | found.keys()

    def _settled_in_time(self, rows: Sequence[OutboxMessage], report: DestinationReport
                         ) -> tuple[dict[int, dt.datetime], set[int]]:
        """The attempts old enough to be settled now (row id -> when), and the younger
        ones, which may still be on their way to Slack: they wait for a later pass."""
        attempted = {r.id: r.post_attempted_at for r in rows if r.post_attempted_at}
        young = {i for i, at in attempted.items() if at > self.clock() - service.IN_FLIGHT}
        if young:
            self.fail(sorted(young), "a post may still be in flight: retried later",
                      uncertain=True)
            report.count_waiting(len(young))
        return {i: at for i, at in attempted.items() if i not in young}, young

    def _record(self, conversation: str, found: dict[int, str], *, missing: set[int]) -> int:
        """Mark sent what the history showed (with its message); clear the attempts of
        the ``missing`` (posted as usual). Returns how many were marked sent."""
        by_message: dict[str, list[int]] = {}
        for row_id, ts in found.items():
            by_message.setdefault(ts, []).append(row_id)
        marked = sum(self._sent(sorted(ids), conversation, ts) for ts, ids in by_message.items())
        if missing:
            self.write("clearing post attempts", lambda s: service.clear_attempt(
                s, ids=sorted(missing), worker=self.worker))
        return marked

    def _gone(self, ids: list[int], code: str, report: DestinationReport) -> set[int]:
        """The owner takes no DM from the bot (deactivated, deleted): nothing will reach
        them, so their rows are closed instead of retried for ever."""
        self.write("closing messages to a gone user", lambda s: service.mark_skipped(
            s, reasons=dict.fromkeys(ids, service.Closed.UNREACHABLE), worker=self.worker))
        report.skipped += len(ids)
        report.error = f"no DM possible ({code}): skipped"
        return set(ids)
