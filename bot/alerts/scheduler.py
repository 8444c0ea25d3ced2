"""The alert pass and its schedule.

:func:`run_pass` is one pass: arm the alerts now due; claim every due alert (one
statement, with a lease); drop those no longer wanted (token deleted, disabled,
re-dated, or a nearer threshold came first); cut the rest into digest messages per
destination; post them in rounds across destinations (a few threads, at most one message
per second to any one channel); and mark each message's alerts sent once Slack accepted
it, or failed (retried by a later pass, with backoff).

:func:`start_scheduler` runs the pass every ``TOKENBOT_ALERT_INTERVAL_MINUTES`` in an
APScheduler ``BackgroundScheduler`` (coalesced, one instance at a time, and a misfire grace
of a day so a process that was suspended or restarted still runs the pass). Every process
may run it: the claims keep each alert to one post.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.alerts.lifecycle import lifecycle_pass
from bot.config import Settings
from bot.db import Database
from bot.models import Alert, AlertKind, Token, utcnow
from bot.services import alerts as service
from bot.services.alerts import select_for_posting
from bot.slack.views.digests import (
    DigestAudience,
    DigestItem,
    chunk_items,
    digest_blocks,
    digest_text,
    item_for,
)

log = logging.getLogger("bot.alerts")

JOB_ID = "tokenbot-expiry-alerts"
# Slack accepts about one message per second per channel.
PER_CHANNEL_INTERVAL = 1.0
# Messages posted at once, to different destinations.
DESTINATION_THREADS = 4
MISFIRE_GRACE_SECONDS = 24 * 3600
FIRST_RUN_DELAY = dt.timedelta(seconds=10)


@dataclass
class DestinationReport:
    kind: str
    destination: str
    tokens: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None


@dataclass
class PassReport:
    now: str
    worker: str
    dry_run: bool
    armed: int = 0
    destinations: list[DestinationReport] = field(default_factory=list)
    slack_calls: int = 0
    seconds: float = 0.0
    lifecycle: dict[str, Any] = field(default_factory=dict)  # bot.alerts.lifecycle

    @property
    def messages(self) -> int:
        return sum(d.messages for d in self.destinations)

    @property
    def sent(self) -> int:
        return sum(d.sent for d in self.destinations)

    @property
    def skipped(self) -> int:
        return sum(d.skipped for d in self.destinations)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.destinations)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(messages=self.messages, sent=self.sent, skipped=self.skipped,
                    failed=self.failed)
        return data


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _audience(kind: AlertKind) -> DigestAudience:
    return DigestAudience.OWNER if kind == AlertKind.OWNER else DigestAudience.CHANNEL


def _describe(item: DigestItem) -> dict[str, Any]:
    return {
        "id": item.public_id,
        "label": item.label,
        "masked": item.masked,
        "threshold_days": item.threshold_days,
        "expires_at": item.expires_at.isoformat(),
    }


def _error_text(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", None)
        code = error.response.get("error") if hasattr(error.response, "get") else None
        return f"HTTP {status}: {code or 'error'}"
    return f"{type(error).__name__}: {error}"[:200]


class _Pacer:
    """At most one message per ``interval`` seconds to one destination: the next request
    leaves ``interval`` after the previous one was answered, so it also reaches Slack at
    least ``interval`` after the previous one did."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: float | None = None

    def wait(self) -> None:
        if self.last is not None:
            delay = self.last + self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def done(self) -> None:
        self.last = time.monotonic()


class _Pass:
    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        client: WebClient | None,
        now: dt.datetime,
        worker: str,
        post_interval: float,
    ) -> None:
        self.settings = settings
        self.sessions = database.sessions
        self.client = client
        self.now = now
        self.worker = worker
        self.post_interval = post_interval
        self.alert_days = settings.tokenbot_alert_days
        self._calls = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._renewed = self._started

    def renew(self, every: float = 60.0) -> None:
        """Keep the lease of a long pass (thousands of messages, long Retry-After waits)
        from running out while it still posts: at most once a minute."""
        if time.monotonic() - self._renewed < every:
            return
        self._renewed = time.monotonic()
        at = self.now + dt.timedelta(seconds=self._renewed - self._started)
        with self.sessions.begin() as session:
            service.renew(session, worker=self.worker, at=at)

    def arm(self) -> int:
        with self.sessions.begin() as session:
            created = service.arm(
                session,
                now=self.now,
                alert_days=self.alert_days,
                default_channel=self.settings.tokenbot_alert_channel,
            )
        with self.sessions.begin() as session:
            service.prune(session, now=self.now)
        return created

    def prepare(self) -> list[_Plan]:
        """Claim every due alert at once (one statement), close those no longer wanted,
        and cut the rest into digest messages per destination."""
        with self.sessions.begin() as session:
            ids = service.claim(session, now=self.now, worker=self.worker)
        if not ids:
            return []  # nothing due, or another process took it
        with self.sessions.begin() as session:
            rows = service.load_claimed(session, worker=self.worker, now=self.now)
            plans, skip = _plans(rows, now=self.now, alert_days=self.alert_days,
                                 post_interval=self.post_interval)
            if skip:
                service.mark_skipped(session, reasons=skip, worker=self.worker, now=self.now)
        return plans

    def post(self, plan: _Plan, number: int) -> None:
        """Post one digest message of ``plan``; mark its alerts sent, or on failure mark
        it and the destination's later messages failed (retried by a later pass)."""
        assert self.client is not None
        chunk = plan.chunks[number]
        target, report = plan.target, plan.report
        audience = _audience(target.kind)
        plan.pacer.wait()
        try:
            with self._lock:
                self._calls += 1
            response = self.client.chat_postMessage(
                channel=target.destination,
                text=digest_text(chunk, audience, self.now),
                blocks=digest_blocks(chunk, audience=audience, now=self.now),
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackClientError, OSError) as error:
            plan.pacer.done()
            # Slack refused or was unreachable (the retry handlers already tried).
            rest = [plan.alert_of[item.public_id] for later in plan.chunks[number:]
                    for item in later]
            plan.failed = True
            report.failed = len(rest)
            report.error = _error_text(error)
            log.warning(
                "alert digest to %s %s failed (%s); %d alert(s) retried later",
                target.kind.value, target.destination, report.error, len(rest),
            )
            with self.sessions.begin() as session:
                service.mark_failed(session, ids=rest, worker=self.worker, now=self.now,
                                    error=report.error)
            return
        plan.pacer.done()
        channel = str(response.get("channel") or target.destination)
        ts = str(response.get("ts") or "")
        with self.sessions.begin() as session:
            report.sent += service.mark_sent(
                session, ids=[plan.alert_of[item.public_id] for item in chunk],
                worker=self.worker, now=self.now, channel=channel, ts=ts,
            )
        report.messages += 1


@dataclass
class _Plan:
    target: service.Destination
    report: DestinationReport
    chunks: list[list[DigestItem]] = field(default_factory=list)
    alert_of: dict[str, int] = field(default_factory=dict)
    pacer: _Pacer = field(default_factory=lambda: _Pacer(PER_CHANNEL_INTERVAL))
    failed: bool = False


def _deliver_all(run: _Pass, threads: int) -> list[_Plan]:
    """Post in rounds: round *k* posts the *k*-th message of every destination that has
    one, in parallel. A destination's next message waits at least the per-channel
    interval, so a channel needing five messages costs about four seconds whatever the
    number of channels."""
    plans = run.prepare()
    if not plans:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(plans))),
                            thread_name_prefix="tokenbot-alerts") as pool:
        rounds = max(len(plan.chunks) for plan in plans)
        for number in range(rounds):
            run.renew()
            active = [p for p in plans if len(p.chunks) > number and not p.failed]
            list(pool.map(lambda plan: run.post(plan, number), active))
    return plans


def _plans(
    rows: Sequence[tuple[Alert, Token | None]], *, now: dt.datetime, alert_days: Sequence[int],
    post_interval: float = PER_CHANNEL_INTERVAL,
) -> tuple[list[_Plan], dict[int, str]]:
    """The digest messages each destination gets from these alerts, and the alerts to close
    without posting (with why)."""
    grouped: dict[service.Destination, list[tuple[Alert, Token | None]]] = {}
    for alert, token in rows:
        target = service.Destination(AlertKind(alert.kind), alert.destination)
        grouped.setdefault(target, []).append((alert, token))
    plans: list[_Plan] = []
    skip: dict[int, str] = {}
    for target in sorted(grouped):
        selection = select_for_posting(grouped[target], now=now, alert_days=alert_days)
        skip.update(selection.skip)
        chunks = chunk_items([item_for(a, t) for a, t in selection.post])
        report = DestinationReport(
            kind=target.kind.value, destination=target.destination,
            tokens=[_describe(item) for chunk in chunks for item in chunk],
            skipped=len(selection.skip),
        )
        plans.append(_Plan(target=target, report=report, chunks=chunks,
                           alert_of={t.public_id: a.id for a, t in selection.post},
                           pacer=_Pacer(post_interval)))
    return plans, skip


def _preview_destinations(run: _Pass) -> tuple[int, list[DestinationReport]]:
    """Dry run: arm inside a transaction that is rolled back; claim nothing."""
    with run.sessions() as session:
        armed = service.arm(session, now=run.now, alert_days=run.alert_days,
                            default_channel=run.settings.tokenbot_alert_channel)
        rows = service.load(session, service.pending(session, now=run.now))
        plans, _ = _plans(rows, now=run.now, alert_days=run.alert_days)
        session.rollback()
    for plan in plans:
        plan.report.messages = len(plan.chunks)
    return armed, [plan.report for plan in plans]


def run_pass(
    *,
    settings: Settings,
    database: Database,
    client: WebClient | None,
    now: dt.datetime,
    dry_run: bool = False,
    post_interval: float = PER_CHANNEL_INTERVAL,
    threads: int = DESTINATION_THREADS,
    worker: str | None = None,
) -> PassReport:
    """One alert pass at ``now``. ``dry_run`` posts nothing and writes nothing."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = time.perf_counter()
    run = _Pass(settings=settings, database=database, client=client, now=now,
                worker=worker or new_worker_id(), post_interval=post_interval)
    report = PassReport(now=now.isoformat(), worker=run.worker, dry_run=dry_run)
    if dry_run:
        report.armed, report.destinations = _preview_destinations(run)
    else:
        if client is None:
            raise ValueError("a Slack client is needed to post alerts")
        report.armed = run.arm()
        report.destinations = [plan.report for plan in _deliver_all(run, threads)]
        report.slack_calls = run._calls
    report.destinations = [d for d in report.destinations if d.tokens or d.skipped or d.failed]
    report.lifecycle = lifecycle_pass(settings=settings, database=database, client=client,
                                      now=now, worker=run.worker, dry_run=dry_run).to_dict()
    report.seconds = round(time.perf_counter() - started, 3)
    if report.destinations or report.armed:
        log.info(
            "alert pass%s: %d armed, %d message(s), %d sent, %d skipped, %d failed in %.2fs",
            " (dry run)" if dry_run else "", report.armed, report.messages, report.sent,
            report.skipped, report.failed, report.seconds,
        )
    return report


def _job(settings: Settings, database: Database, client: WebClient) -> None:
    run_pass(settings=settings, database=database, client=client, now=utcnow())


def start_scheduler(
    *, settings: Settings, database: Database, client: WebClient
) -> BackgroundScheduler | None:
    """Start the alert pass every TOKENBOT_ALERT_INTERVAL_MINUTES in a background thread;
    None when TOKENBOT_SCHEDULER=off. The caller stops it with ``shutdown()``."""
    if not settings.scheduler_enabled:
        log.info("expiry alerts: scheduler off in this process (TOKENBOT_SCHEDULER=off)")
        return None
    scheduler = BackgroundScheduler(
        timezone=dt.timezone.utc,
        job_defaults={
            "coalesce": True,  # after a stall, one catch-up pass, not a burst
            "max_instances": 1,  # never two passes at once in one process
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
    )
    scheduler.add_job(
        _job,
        trigger=IntervalTrigger(minutes=settings.tokenbot_alert_interval_minutes,
                                timezone=dt.timezone.utc),
        kwargs={"settings": settings, "database": database, "client": client},
        id=JOB_ID,
        name="expiry alerts",
        replace_existing=True,
        # First pass shortly after start: a restart catches up at once, not a whole
        # interval later (thresholds crossed while down are found by the date range).
        next_run_time=utcnow() + FIRST_RUN_DELAY,
    )
    scheduler.start()
    log.info(
        "expiry alerts: every %d minute(s); thresholds %s day(s) and at expiry",
        settings.tokenbot_alert_interval_minutes,
        ",".join(str(d) for d in settings.tokenbot_alert_days),
    )
    return scheduler

