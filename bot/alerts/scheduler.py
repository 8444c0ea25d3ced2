"""The alert pass and its schedule.

:func:`run_pass` is one pass: arm the alerts now due; claim every due alert (one
statement, with a lease); drop those no longer wanted (token deleted, disabled,
re-dated, or a nearer threshold came first: never posted again, whatever was attempted);
settle those whose earlier post may have been made, from the destination's Slack
history; cut the rest into digest messages per
destination; and post each destination's messages in order, destinations side by side (a
few threads, at most one message per second to any one channel, a failing destination
stops only itself). Each message goes through :class:`bot.alerts.delivery.Courier`, which
posts it exactly once (the protocol is in that module): sent once Slack accepted it,
failed (retried by a later pass, with backoff) when Slack refused it, uncertain (resolved
from history by a later pass) when nobody knows.

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
from sqlalchemy.exc import SQLAlchemyError

from bot.alerts.delivery import Courier, Outcome, error_text
from bot.alerts.dispatch import run_paced
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
LEASE_LOST = "lease run out or taken over by another pass: not posted by this one"


@dataclass
class DestinationReport:
    kind: str
    destination: str
    tokens: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0  # retried by a later pass (includes the uncertain ones)
    uncertain: int = 0  # maybe posted: a later pass reads Slack's history first
    recovered: int = 0  # an earlier uncertain post found in Slack's history: marked sent
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

    @property
    def uncertain(self) -> int:
        return sum(d.uncertain for d in self.destinations)

    @property
    def recovered(self) -> int:
        return sum(d.recovered for d in self.destinations)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(messages=self.messages, sent=self.sent, skipped=self.skipped,
                    failed=self.failed, uncertain=self.uncertain, recovered=self.recovered)
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
        self.courier = None if client is None else Courier(
            sessions=self.sessions, client=client, worker=self.worker, now=now,
            clock=self.clock)

    def clock(self) -> dt.datetime:
        """The pass's time now: ``now`` plus the time the pass has taken so far."""
        return self.now + dt.timedelta(seconds=time.monotonic() - self._started)

    def renew(self, every: float = 60.0) -> None:
        """Keep the lease of a long pass (thousands of messages, long Retry-After waits)
        from running out while it still posts: at most once a minute."""
        with self._lock:
            if time.monotonic() - self._renewed < every:
                return
            self._renewed = time.monotonic()
        at = self.clock()
        if self.courier is not None:  # retried in place while the database restarts
            self.courier.write("renewing the lease",
                               lambda s: service.renew(s, worker=self.worker, at=at))

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

    def prepare(self, pool: ThreadPoolExecutor | None = None) -> list[_Plan]:
        """Claim every due alert at once (one statement), close those no longer wanted,
        settle those whose earlier post may have been made, and cut the rest into digest
        messages per destination."""
        with self.sessions.begin() as session:
            ids = service.claim(session, now=self.now, worker=self.worker)
        if not ids:
            return []  # nothing due, or another process took it
        plans = self._plan()
        with self.sessions() as session:
            uncertain = service.load_uncertain(session, worker=self.worker)
        if not uncertain:
            return plans
        settled = self._settle(uncertain, pool)  # found ones are sent, gone ones skipped
        return _with_settled(self._plan(), plans, settled)

    def _plan(self) -> list[_Plan]:
        """Close the leased alerts no longer wanted; plan the digests of the others."""
        with self.sessions.begin() as session:
            rows = service.load_claimed(session, worker=self.worker)
            plans, skip = _plans(rows, now=self.now, alert_days=self.alert_days)
            if skip:
                service.mark_skipped(session, reasons=skip, worker=self.worker, now=self.now)
        return plans

    def _settle(
        self, alerts: Sequence[Alert], pool: ThreadPoolExecutor | None
    ) -> dict[service.Destination, DestinationReport]:
        """Resolve the claimed alerts whose post was attempted (uncertain) from their
        destinations' history, destinations side by side."""
        uncertain: dict[service.Destination, list[Alert]] = {}
        for alert in alerts:
            target = service.Destination(AlertKind(alert.kind), alert.destination)
            uncertain.setdefault(target, []).append(alert)
        if not uncertain or self.courier is None:
            return {}
        courier = self.courier

        def settle(target: service.Destination) -> DestinationReport:
            report = DestinationReport(kind=target.kind.value, destination=target.destination)
            try:
                self.renew()  # reading many histories may take a while
                found = courier.resolve(target.kind, target.destination, uncertain[target])
            except SQLAlchemyError as error:  # the database stayed down: after the lease
                report.error = f"database: {type(error).__name__}: left to a later pass"
                report.failed = report.uncertain = len(uncertain[target])
                return report
            report.recovered, report.error = found.found, found.error
            report.failed = report.uncertain = found.waiting
            report.skipped = found.gone
            return report

        mapper = pool.map if pool is not None else map
        return dict(zip(uncertain, mapper(settle, list(uncertain))))

    def step(self, plan: _Plan, number: int) -> bool:
        """Post the ``number``-th message of one destination; False stops the destination
        (only it: its later messages wait for a later pass)."""
        try:
            self.renew()
            return self.post(plan, number)
        except SQLAlchemyError as error:
            # The database stayed down through the retries: the alerts keep their lease
            # (and a post's attempt), and a later pass settles them once it runs out.
            plan.report.error = f"{type(error).__name__}: left to a later pass"
            plan.report.failed += sum(len(chunk) for chunk in plan.chunks[number:])
            log.warning("alert digest to %s %s: %s (%s)", plan.target.kind.value,
                        plan.target.destination, plan.report.error, error_text(error))
            return False

    def post(self, plan: _Plan, number: int) -> bool:
        """Post the ``number``-th digest message of ``plan``; False when the destination
        must stop (its unsent alerts are then marked failed, retried by a later pass)."""
        assert self.courier is not None
        chunk = plan.chunks[number]
        target, report = plan.target, plan.report
        audience = _audience(target.kind)
        ids = [plan.alert_of[item.public_id] for item in chunk]
        with self._lock:
            self._calls += 1
        delivery = self.courier.post(
            target.destination, alert_ids=ids, text=digest_text(chunk, audience, self.now),
            blocks=digest_blocks(chunk, audience=audience, now=self.now),
        )
        if delivery.outcome == Outcome.SENT:
            report.sent += delivery.sent
            report.messages += 1
            return True
        report.error = delivery.error or LEASE_LOST
        if delivery.outcome == Outcome.TAKEN_OVER:
            return False
        rest = [plan.alert_of[item.public_id] for later in plan.chunks[number + 1:]
                for item in later]
        if rest:
            self.courier.write("recording unsent alerts", lambda s: service.mark_failed(
                s, ids=rest, worker=self.worker, now=self.now, error=report.error or ""))
        report.failed += len(ids) + len(rest)
        if delivery.outcome == Outcome.UNCERTAIN:
            report.uncertain += len(ids)
        log.warning(
            "alert digest to %s %s %s (%s); %d alert(s) retried later%s",
            target.kind.value, target.destination,
            "may not have been posted" if delivery.outcome == Outcome.UNCERTAIN else "failed",
            report.error, len(ids) + len(rest),
            ", after Slack's history is read" if delivery.outcome == Outcome.UNCERTAIN else "",
        )
        return False


@dataclass
class _Plan:
    target: service.Destination
    report: DestinationReport
    chunks: list[list[DigestItem]] = field(default_factory=list)
    alert_of: dict[str, int] = field(default_factory=dict)


def _with_settled(
    plans: list[_Plan], before: list[_Plan],
    settled: dict[service.Destination, DestinationReport],
) -> list[_Plan]:
    """Fold what was skipped before settling (the reports of ``before``, the plans then:
    nothing else had happened) and what the history said into each destination's report (a destination whose alerts were all
    settled gets a plan with nothing left to post)."""
    by_target = {plan.target: plan for plan in plans}
    for target, found in [*((p.target, p.report) for p in before), *settled.items()]:
        plan = by_target.get(target)
        if plan is None:
            plan = by_target[target] = _Plan(target=target, report=DestinationReport(
                kind=target.kind.value, destination=target.destination))
            plans.append(plan)
        plan.report.skipped += found.skipped
        plan.report.recovered += found.recovered
        plan.report.failed += found.failed
        plan.report.uncertain += found.uncertain
        plan.report.error = found.error or plan.report.error
    return plans


def _deliver_all(run: _Pass, threads: int) -> list[_Plan]:
    """Destinations side by side, each one's messages in order (bot/alerts/dispatch.py):
    a destination's next message waits at least the per-channel interval, the interval is
    paid once per pass, and a slow or failing destination holds up no other."""
    with ThreadPoolExecutor(max_workers=max(1, threads),
                            thread_name_prefix="tokenbot-alerts") as pool:
        plans = run.prepare(pool)
    run_paced(plans, steps=lambda plan: len(plan.chunks), step=run.step, threads=threads,
              interval=run.post_interval)
    return plans


def _plans(
    rows: Sequence[tuple[Alert, Token | None]], *, now: dt.datetime, alert_days: Sequence[int],
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
                           alert_of={t.public_id: a.id for a, t in selection.post}))
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
    report.destinations = [d for d in report.destinations
                           if d.tokens or d.skipped or d.failed or d.recovered or d.error]
    report.lifecycle = lifecycle_pass(settings=settings, database=database, client=client,
                                      now=now, worker=run.worker, dry_run=dry_run).to_dict()
    report.seconds = round(time.perf_counter() - started, 3)
    if report.destinations or report.armed:
        log.info(
            "alert pass%s: %d armed, %d message(s), %d sent, %d skipped, %d failed "
            "(%d uncertain), %d found already posted, in %.2fs",
            " (dry run)" if dry_run else "", report.armed, report.messages, report.sent,
            report.skipped, report.failed, report.uncertain, report.recovered,
            report.seconds,
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

