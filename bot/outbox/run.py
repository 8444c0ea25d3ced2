"""Delivering what is due in the outbox, once: claim every due row (one statement, with a
lease), plan once (close the rows no longer wanted, cut the rest into messages per
destination), settle the rows whose earlier post may have been made from Slack's
history, then post, destinations side by side and paced (owners' direct messages
first). The scheduled pass and the drain after an acknowledgement both run it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.models import Audience, MessageKind, OutboxMessage, utcnow
from bot.outbox.delivery import Courier, DestinationReport, Outcome, error_text
from bot.outbox.dispatch import run_paced
from bot.outbox.kinds import KINDS, Context, Draft, Row
from bot.services import outbox as service

log = logging.getLogger("bot.outbox")

# Slack accepts about one message per second per channel.
PER_CHANNEL_INTERVAL = 1.0
# Messages posted at once, to different destinations.
DESTINATION_THREADS = 4
LEASE_LOST = "lease run out or taken over by another process: not posted by this one"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Plan:
    audience: Audience
    destination: str
    report: DestinationReport
    drafts: list[Draft] = field(default_factory=list)


def plan(rows: Sequence[Row], context: Context) -> tuple[list[_Plan], dict[int, str]]:
    """The messages each destination gets from these rows, and the rows to close without
    posting (with why)."""
    grouped: dict[tuple[Audience, str, MessageKind], list[Row]] = {}
    for row in rows:
        message = row[0]
        if message.kind not in KINDS:  # queued by a newer release: left to a process that knows it
            continue
        key = (Audience(message.audience), message.destination, MessageKind(message.kind))
        grouped.setdefault(key, []).append(row)
    plans: dict[tuple[Audience, str], _Plan] = {}
    skip: dict[int, str] = {}
    for (audience, destination, kind), group in sorted(grouped.items()):
        drafts, skipped = KINDS[kind].plan(group, context)
        drafts = [dataclasses.replace(draft, kind=kind.value) for draft in drafts]
        skip.update(skipped)
        target = plans.setdefault((audience, destination), _Plan(
            audience, destination, DestinationReport(kind=audience.value,
                                                     destination=destination)))
        target.drafts += drafts
        target.report.skipped += len(skipped)
    return list(plans.values()), skip


def preview(session: Session, *, now: dt.datetime,
            alert_days: Sequence[int]) -> list[DestinationReport]:
    """What a delivery would post now, claiming nothing (dry runs)."""
    rows = service.load(session, service.pending(session, now=now))
    plans, _ = plan(rows, Context(now=now, alert_days=alert_days))
    for each in plans:
        each.report.messages = len(each.drafts)
        each.report.tokens = [part.about for draft in each.drafts for part in draft.parts]
    return [each.report for each in plans]


class Delivery:
    """One delivery of what is due at ``now``, by ``worker``."""

    def __init__(self, *, sessions: sessionmaker[Session], client: WebClient, now: dt.datetime,
                 worker: str, alert_days: Sequence[int],
                 post_interval: float = PER_CHANNEL_INTERVAL) -> None:
        self.sessions = sessions
        self.now = now
        self.worker = worker
        self.alert_days = alert_days
        self.post_interval = post_interval
        self.calls = 0
        self.unreached: set[str] = set()
        self._lock = threading.Lock()
        self._started = self._renewed = time.monotonic()
        self.courier = Courier(sessions=sessions, client=client, worker=worker, now=now,
                               clock=self.clock)

    def clock(self) -> dt.datetime:
        """The delivery's time now: ``now`` plus the time it has taken so far."""
        return self.now + dt.timedelta(seconds=time.monotonic() - self._started)

    def renew(self, every: float = 60.0) -> None:
        """Keep the lease of a long delivery from running out while it still posts: at
        most once a minute."""
        with self._lock:
            if time.monotonic() - self._renewed < every:
                return
            self._renewed = time.monotonic()
        at = self.clock()
        self.courier.write("renewing the lease",
                           lambda s: service.renew(s, worker=self.worker, at=at))

    def run(self, threads: int = DESTINATION_THREADS) -> list[DestinationReport]:
        with ThreadPoolExecutor(max_workers=max(1, threads),
                                thread_name_prefix="tokenbot-outbox") as pool:
            plans = self.prepare(pool)
        for audience in (Audience.OWNER, Audience.CHANNEL):  # an owner is told first
            chosen = [p for p in plans if p.audience == audience]
            run_paced(chosen, steps=lambda p: len(p.drafts), step=self.step, threads=threads,
                      interval=self.post_interval)
        return [p.report for p in plans]

    def prepare(self, pool: ThreadPoolExecutor | None = None) -> list[_Plan]:
        """Claim what is due and plan once: close what is no longer wanted, settle what
        may have been posted (those rows are then left out of the plan)."""
        with self.sessions.begin() as session:
            ids = service.claim(session, now=self.now, worker=self.worker)
        if not ids:
            return []
        rows, plans, skip = self._plan(ids)
        uncertain = [m for m, _ in rows
                     if m.id not in skip and m.post_attempted_at and m.kind in KINDS]
        settled = self._settle(uncertain, plans, pool) if uncertain else set()
        for each in plans:
            each.drafts = [d for d in (d.without(settled) for d in each.drafts) if d]
            each.report.tokens = [part.about for draft in each.drafts for part in draft.parts]
        return plans

    def _plan(self, ids: Sequence[int]) -> tuple[list[Row], list[_Plan], dict[int, str]]:
        """The claimed rows and their plan; the rows no longer wanted closed, those of a
        kind this process does not know given back."""
        with self.sessions.begin() as session:
            rows = service.load(session, ids)
            plans, skip = plan(rows, Context(now=self.now, alert_days=self.alert_days))
            if skip:
                service.mark_skipped(session, reasons=skip, worker=self.worker)
            service.release(session, ids=[m.id for m, _ in rows if m.kind not in KINDS],
                            worker=self.worker)
            session.expunge_all()
        return rows, plans, skip

    def _settle(self, rows: Sequence[OutboxMessage], plans: list[_Plan],
                pool: ThreadPoolExecutor | None) -> set[int]:
        """Settle the uncertain rows from their destinations' history, side by side;
        returns the rows dealt with (not to be posted now)."""
        by_target: dict[tuple[Audience, str], list[OutboxMessage]] = {}
        for message in rows:
            by_target.setdefault((Audience(message.audience), message.destination),
                                 []).append(message)
        reports = {(p.audience, p.destination): p.report for p in plans}

        def settle(target: tuple[Audience, str]) -> set[int]:
            group, report = by_target[target], reports[target]
            rules = {m.id: KINDS[MessageKind(m.kind)].when_unknown for m in group}
            try:
                self.renew()  # reading many histories may take a while
                return self.courier.settle(target[0], target[1], group, rules, report)
            except SQLAlchemyError as error:  # the database stayed down: after the lease
                report.error = f"database: {type(error).__name__}: left to a later pass"
                report.failed = report.uncertain = len(group)
                return {m.id for m in group}

        settled: set[int] = set()
        for done in (pool.map if pool is not None else map)(settle, list(by_target)):
            settled |= done
        return settled

    def step(self, each: _Plan, number: int) -> bool:
        """Post the ``number``-th message of one destination; False stops the destination
        (only it: its later messages wait for a later delivery)."""
        try:
            self.renew()
            return self._post(each, number)
        except SQLAlchemyError as error:
            # The database stayed down through the retries: the rows keep their lease
            # (and a post's attempt), and a later delivery settles them once it runs out.
            each.report.error = f"{type(error).__name__}: left to a later pass"
            each.report.failed += sum(len(d.ids) for d in each.drafts[number:])
            log.warning("message to %s %s: %s (%s)", each.audience.value, each.destination,
                        each.report.error, error_text(error))
            return False

    def _post(self, each: _Plan, number: int) -> bool:
        draft, report = each.drafts[number], each.report
        context = Context(now=self.now, alert_days=self.alert_days,
                          unreached=frozenset(self.unreached))
        try:
            text, blocks = draft.drawn(context)
        except Exception:  # noqa: BLE001 - a row its builder cannot draw is closed, not retried
            log.exception("a message to %s could not be drawn: closed without posting",
                          each.destination)
            self.courier.write("closing rows that cannot be drawn", lambda s: service.mark_skipped(
                s, reasons=dict.fromkeys(draft.ids, service.Closed.UNDRAWABLE), worker=self.worker))
            report.skipped += len(draft.ids)
            return True
        with self._lock:
            self.calls += 1
        posted = self.courier.post(each.destination, ids=draft.ids, text=text, blocks=blocks)
        metrics.outbox_posted(draft.kind, posted.outcome.value)
        if posted.outcome == Outcome.SENT:
            report.sent += posted.sent
            report.messages += 1
            return True
        report.error = posted.error or LEASE_LOST
        if posted.outcome == Outcome.TAKEN_OVER:
            return False
        if posted.outcome == Outcome.FAILED and each.audience == Audience.OWNER:
            with self._lock:
                self.unreached.add(each.destination)
        rest = [i for later in each.drafts[number + 1:] for i in later.ids]
        if rest:
            self.courier.fail(rest, report.error or "", uncertain=False)
        report.failed += len(draft.ids) + len(rest)
        uncertain = posted.outcome == Outcome.UNCERTAIN
        if uncertain:
            report.uncertain += len(draft.ids)
        log.warning("message to %s %s %s (%s); %d row(s) retried later%s",
                    each.audience.value, each.destination,
                    "may not have been posted" if uncertain else "failed", report.error,
                    len(draft.ids) + len(rest),
                    ", after Slack's history is read" if uncertain else "")
        return False


class Drain:
    """Posts what was queued as soon as it is committed (an owner's notice after an
    action): one delivery at a time per process, run again if more was queued meanwhile.
    Whatever it cannot post now stays in the outbox for the next delivery."""

    def __init__(self, *, sessions: sessionmaker[Session], client: WebClient,
                 alert_days: Sequence[int], submit: Any) -> None:
        self.sessions = sessions
        self.client = client
        self.alert_days = alert_days
        self.submit = submit  # runs a callable in the background; False when it cannot
        self._lock = threading.Lock()
        self._running = self._again = False

    def kick(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        if not self.submit(self._run):
            with self._lock:
                self._running = False  # busy: the next kick or the scheduled pass posts it

    def _run(self) -> None:
        while True:
            try:
                Delivery(sessions=self.sessions, client=self.client, now=utcnow(),
                         worker=new_worker_id(), alert_days=self.alert_days).run()
            except Exception:  # noqa: BLE001 - logged; the rows stay for a later delivery
                log.exception("outbox drain failed; a later delivery posts what is queued")
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False
