"""The scheduled pass and its schedule.

:func:`run_pass` is one pass: queue what has become due (expiry reminders, the owners'
notices of rotations whose overlap ran out, dead-secret alarms), forget what nothing will
read again, then deliver everything due in the outbox (``bot.outbox.run``); once a week
the owners are checked (``departures``) and any departure found is delivered too.
:func:`start_scheduler` runs it every ``TOKENBOT_ALERT_INTERVAL_MINUTES`` in an APScheduler
``BackgroundScheduler`` (coalesced, one at a time, a misfire grace of a day). Every
process may run it: the outbox's claims keep each message to one post.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot import metrics
from bot.config import Settings
from bot.alerts.departures import check_departed_owners
from bot.db import Database
from bot.models import utcnow
from bot.outbox.delivery import DestinationReport
from bot.outbox.run import (
    DESTINATION_THREADS,
    PER_CHANNEL_INTERVAL,
    Delivery,
    new_worker_id,
    preview,
)
from bot.services import alerts, dead_secrets, hygiene, outbox, rotation, tombstones
from bot.services.policy import policy_of
from bot.slack.views.hygiene import SECTION_LIMIT

log = logging.getLogger("bot.alerts")

JOB_ID = "tokenbot-expiry-alerts"
OWNER_JOB_ID = "tokenbot-owner-check"
MISFIRE_GRACE_SECONDS = 24 * 3600
FIRST_RUN_DELAY = dt.timedelta(seconds=10)


@dataclass
class PassReport:
    now: str
    worker: str
    dry_run: bool
    armed: int = 0  # expiry reminders queued
    rotations_ended: int = 0  # overlaps that ran out (their owners' notices queued)
    alarms: int = 0  # dead-secret alarms queued
    departed: int = 0  # deactivated owners found by the weekly users.info check
    hygiene_digests: int = 0  # hygiene digests queued (at most one a week per destination)
    dormant_disabled: int = 0  # dormant tokens disabled (TOKENBOT_DORMANT_ACTION=disable)
    purged: int = 0
    destinations: list[DestinationReport] = field(default_factory=list)
    slack_calls: int = 0
    seconds: float = 0.0

    def _total(self, name: str) -> int:
        return sum(getattr(d, name) for d in self.destinations)

    messages = property(lambda self: self._total("messages"))
    sent = property(lambda self: self._total("sent"))
    skipped = property(lambda self: self._total("skipped"))
    failed = property(lambda self: self._total("failed"))
    uncertain = property(lambda self: self._total("uncertain"))
    recovered = property(lambda self: self._total("recovered"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update({name: self._total(name) for name in
                     ("messages", "sent", "skipped", "failed", "uncertain", "recovered")})
        return data


def _queue_due(session: Session, settings: Settings, report: PassReport,
               now: dt.datetime) -> None:
    """Queue what has become due at ``now``, in the caller's transaction."""
    report.armed = alerts.arm(session, now=now, alert_days=settings.tokenbot_alert_days,
                              default_channel=settings.tokenbot_alert_channel)
    report.rotations_ended = rotation.end_overdue_rotations(session, now=now)
    for item in dead_secrets.dead_secret_reports(session, now=now):
        channel = item.alert_channel or settings.tokenbot_alert_channel
        report.alarms += dead_secrets.queue_alarm(session, report=item, channel=channel,
                                                  now=now)
    counts = hygiene.queue_digests(session, policy=policy_of(settings), now=now,
                                   channel=settings.tokenbot_alert_channel, limit=SECTION_LIMIT)
    report.hygiene_digests, report.dormant_disabled = counts.digests, counts.dormant_disabled


def _deliver(report: PassReport, settings: Settings, database: Database, client: WebClient,
             now: dt.datetime, post_interval: float, threads: int) -> None:
    delivery = Delivery(sessions=database.sessions, client=client, now=now,
                        worker=report.worker, alert_days=settings.tokenbot_alert_days,
                        post_interval=post_interval)
    report.destinations += delivery.run(threads)
    report.slack_calls += delivery.calls


def _post_pass(report: PassReport, settings: Settings, database: Database,
               client: WebClient, now: dt.datetime, post_interval: float, threads: int,
               owner_check: bool) -> None:
    with database.sessions.begin() as session:
        _queue_due(session, settings, report, now)
        outbox.take_queued(session)  # this pass delivers it, not the app's drain
    with database.sessions.begin() as session:
        report.purged = (outbox.purge(session, now=now) + tombstones.purge(session, now=now)
                         + dead_secrets.purge(session, now=now))
    _deliver(report, settings, database, client, now, post_interval, threads)
    # After the delivery, so a week's users.info calls hold no reminder up; the
    # departures found are delivered at once.
    if owner_check:
        report.departed = check_departed_owners(settings=settings, database=database,
                                                client=client, now=now)
    if report.departed:
        _deliver(report, settings, database, client, now, post_interval, threads)


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
    owner_check: bool = True,
) -> PassReport:
    """One pass at ``now``. ``dry_run`` posts nothing and writes nothing; ``owner_check``
    False leaves the weekly owner check out (the scheduler runs it as a job of its own;
    ``tokenbot alerts run`` keeps it in the pass)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = time.perf_counter()
    report = PassReport(now=now.isoformat(), worker=worker or new_worker_id(),
                        dry_run=dry_run)
    if dry_run:  # everything in one transaction, rolled back
        with database.sessions() as session:
            _queue_due(session, settings, report, now)
            report.destinations = preview(session, now=now,
                                          alert_days=settings.tokenbot_alert_days)
            session.rollback()
    else:
        if client is None:
            raise ValueError("a Slack client is needed to post")
        outcome = "error"  # unless the pass ends
        try:
            _post_pass(report, settings, database, client, now, post_interval, threads,
                       owner_check)
            outcome = "failed" if report.failed else "ok"
            metrics.alert_pass(time.perf_counter() - started)
        finally:
            metrics.alert_pass_ended(outcome)
    report.destinations = [d for d in report.destinations
                           if d.tokens or d.skipped or d.failed or d.recovered or d.error]
    report.seconds = round(time.perf_counter() - started, 3)
    _log(report)
    return report


def _log(report: PassReport) -> None:
    if (report.destinations or report.armed or report.rotations_ended or report.alarms
            or report.hygiene_digests or report.dormant_disabled):
        log.info(
            "pass%s: %d reminder(s), %d rotation(s) ended, %d alarm(s), %d hygiene digest(s) "
            "queued, %d dormant token(s) disabled; %d message(s), "
            "%d sent, %d skipped, %d failed (%d uncertain), %d found already posted, in %.2fs",
            " (dry run)" if report.dry_run else "", report.armed, report.rotations_ended,
            report.alarms, report.hygiene_digests, report.dormant_disabled, report.messages,
            report.sent, report.skipped, report.failed, report.uncertain, report.recovered,
            report.seconds)


def _job(settings: Settings, database: Database, client: WebClient) -> None:
    run_pass(settings=settings, database=database, client=client, now=utcnow(),
             owner_check=False)  # its own job: a week's users.info calls hold no pass up


def _owner_job(settings: Settings, database: Database, client: WebClient) -> None:
    """The weekly owner check (each team claimed for 7 days; most runs find none due).
    The departures it finds are queued; the next pass posts them."""
    check_departed_owners(settings=settings, database=database, client=client, now=utcnow())


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
    # The pass shortly after start (a restart catches up at once, not a whole interval
    # later: thresholds crossed while down are found by the date range); beside it, not in
    # it, the weekly owner check (a team of 6,000 owners takes an hour of users.info calls
    # at its rate tier).
    jobs = ((_job, JOB_ID, "expiry alerts", FIRST_RUN_DELAY),
            (_owner_job, OWNER_JOB_ID, "weekly owner check", 2 * FIRST_RUN_DELAY))
    for job, job_id, name, delay in jobs:
        scheduler.add_job(
            job,
            trigger=IntervalTrigger(minutes=settings.tokenbot_alert_interval_minutes,
                                    timezone=dt.timezone.utc),
            kwargs={"settings": settings, "database": database, "client": client},
            id=job_id, name=name, replace_existing=True, next_run_time=utcnow() + delay,
        )
    scheduler.start()
    log.info(
        "expiry alerts: every %d minute(s); thresholds %s day(s) and at expiry",
        settings.tokenbot_alert_interval_minutes,
        ",".join(str(d) for d in settings.tokenbot_alert_days),
    )
    return scheduler

