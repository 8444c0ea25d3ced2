"""The usage-aware lifecycle's part of the scheduled pass (``run_pass`` calls
:func:`lifecycle_pass`; ``tokenbot alerts run`` too, with ``--now`` / ``--dry-run`` /
``--json``):

1. end the rotations whose overlap ran out with the new secret unused
   (:func:`bot.services.rotation.end_overdue_rotations`);
2. send the owners' direct messages waiting in the outbox (a rotation switched, or ran
   out), each claimed first so it goes out once however many passes race; the claim is
   renewed just before each post, so a pass that stalled past it (and lost it to another
   pass) posts nothing more;
3. the dead-secret alarms (:mod:`bot.services.dead_secrets`): for each token whose dead
   secret was presented in the last 24 hours, claim today's alarm (a unique row), then
   post it to the owner (DM) and the token's alert channel (else the default one);
4. forget what is no longer needed: counts and alarm claims after 3 days, sent notices
   after 30, tombstones after 90.

A post ends one of three ways (the rules of :mod:`bot.alerts.delivery`): **sent**;
**refused** (Slack answered no, so nothing was posted): the notice, or today's alarm when
every destination refused it, is released and a later pass tries again; **uncertain** (a
timeout, a dropped connection, a 5xx, or an ``ok: false`` meaning Slack failed midway): it
may have been posted, so it counts as sent and is never posted again (logged as
uncertain). A duplicated message is worse than a rare missing one: each notice, and each
token's alarm per UTC day, goes out at most once. Posts are never retried blindly (only a
refused connection or a short 429). Recording the outcome is retried in place while the
database is unreachable; if it still fails, the error is logged and counted and the rest
of the pass goes on. Never the secret: masked prefixes only."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from bot.alerts.delivery import (
    MAX_RETRY_AFTER,
    POST_RETRIES,
    POST_TIMEOUT,
    refused,
    write_retrying,
    error_text,
)
from bot.config import Settings
from bot.db import Database
from bot.models import LifecycleNotice
from bot.services import dead_secrets, rotation, tombstones
from bot.slack.client import without_blind_retries
from bot.slack.views.lifecycle import Post, dead_secret_post, rotation_notice_post

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Sent notices are kept this long (then purged).
NOTICES_KEPT = dt.timedelta(days=30)


@dataclass
class LifecycleReport:
    rotations_ended: int = 0
    notices: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    purged: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Outcome(enum.StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # Slack answered no: nothing was posted, a later pass tries again
    UNCERTAIN = "uncertain"  # it may have been posted: counts as sent, never posted again


def _post(client: WebClient, channel: str, post: Post) -> tuple[Outcome, str | None]:
    """Post once (``client`` retries only what Slack did not act on): the outcome and,
    unless sent, the error's text."""
    try:
        client.chat_postMessage(channel=channel, text=post.text,
                                blocks=[block.to_dict() for block in post.blocks],
                                unfurl_links=False, unfurl_media=False)
    except (SlackClientError, OSError) as exc:
        return (Outcome.REFUSED if refused(exc) else Outcome.UNCERTAIN), error_text(exc)
    return Outcome.SENT, None


def _write(database: Database, what: str, work: Callable[[Any], T]) -> T:
    return write_retrying(database.sessions, what, work)


def _notice_row(notice: LifecycleNotice, outcome: Outcome | None) -> dict[str, Any]:
    """``outcome`` None: a dry run, nothing posted."""
    return {"token_id": notice.token_public_id, "label": notice.label, "owner": notice.owner,
            "kind": str(notice.kind), "caller": notice.caller,
            "sent": outcome in (Outcome.SENT, Outcome.UNCERTAIN),
            "uncertain": outcome == Outcome.UNCERTAIN}


def _send_notices(database: Database, client: WebClient | None, now: dt.datetime,
                  worker: str, report: LifecycleReport) -> None:
    if client is None:  # a dry run: what would be sent
        with database.sessions() as session:
            report.notices = [_notice_row(n, None) for n in rotation.pending_notices(session)]
        return

    def claim(session: Any) -> list[LifecycleNotice]:
        claimed = rotation.claim_notices(session, worker=worker, now=now)
        session.expunge_all()
        return claimed

    started = time.monotonic()
    try:
        claimed = _write(database, "claiming rotation notices", claim)
    except SQLAlchemyError as exc:
        report.failed += 1
        log.error("could not claim rotation notices (%s): a later pass sends them",
                  type(exc).__name__)
        return
    for notice in claimed:
        # the pass's clock (``now`` may be given): its start plus the time taken so far
        at = now + dt.timedelta(seconds=time.monotonic() - started)
        try:
            _send_notice(database, client, notice, worker=worker, now=now, at=at,
                         report=report)
        except SQLAlchemyError as exc:
            report.failed += 1
            log.error("could not record the rotation notice %d to %s (%s): it may be sent "
                      "again after its claim runs out", notice.id, notice.owner,
                      type(exc).__name__)


def _send_notice(database: Database, client: WebClient, notice: LifecycleNotice, *,
                 worker: str, now: dt.datetime, at: dt.datetime,
                 report: LifecycleReport) -> None:
    """Post one claimed notice, if the claim is still this pass's (renewed at ``at``: a
    pass that stalled past its claim, which another pass took over, posts nothing)."""
    if not _write(database, "renewing a rotation notice's claim", lambda s: rotation.renew_claim(
            s, notice_id=notice.id, worker=worker, at=at)):
        log.info("the rotation notice %d was taken over by another pass: not sent by this one",
                 notice.id)
        return
    outcome, error = _post(client, notice.owner, rotation_notice_post(notice))
    if outcome == Outcome.REFUSED:
        report.failed += 1
        log.warning("could not send a rotation notice to %s: %s", notice.owner, error)
    elif outcome == Outcome.UNCERTAIN:
        log.warning("a rotation notice to %s may or may not have been sent (%s): counted "
                    "as sent, not sent again", notice.owner, error)
    report.notices.append(_notice_row(notice, outcome))
    _settle_notice(database, notice, outcome, worker=worker, now=now)


def _settle_notice(database: Database, notice: LifecycleNotice, outcome: Outcome, *,
                   worker: str, now: dt.datetime) -> None:
    """Record how posting ``notice`` ended: sent (or maybe sent), or released."""
    if outcome == Outcome.REFUSED:
        _write(database, "releasing a rotation notice", lambda s: rotation.release(
            s, notice_id=notice.id, worker=worker))
        return
    if not _write(database, "recording a rotation notice", lambda s: rotation.mark_sent(
            s, notice_id=notice.id, worker=worker, now=now)):
        log.warning("the rotation notice %d was taken over by another pass while it was "
                    "being sent", notice.id)


def _alarm_row(item: dead_secrets.DeadSecretReport, destinations: list[str],
               outcomes: list[Outcome] | None) -> dict[str, Any]:
    """``outcomes``: one per destination (None: a dry run, nothing posted)."""
    done = outcomes or []
    return {"token_id": item.public_id, "label": item.label, "masked": item.masked,
            "state": item.state, "presented": item.presented,
            "callers": [{"caller": name, "presented": count} for name, count in item.callers],
            "destinations": destinations,
            "sent": any(o != Outcome.REFUSED for o in done),
            "uncertain": Outcome.UNCERTAIN in done}


def _send_alarm(database: Database, client: WebClient, item: dead_secrets.DeadSecretReport,
                destinations: list[str], *, now: dt.datetime, worker: str,
                report: LifecycleReport) -> None:
    """Claim today's alarm for ``item``'s token, post it (to the owner first: when the
    owner's DM is refused, the channel's copy says so), and release the claim only if
    every destination refused it (nothing was posted: a later pass may try again today).
    A post that may have been made keeps the claim: at most once per token per day."""
    if not _write(database, "claiming a dead-secret alarm", lambda s: dead_secrets.claim_alarm(
            s, report=item, worker=worker, now=now)):
        return  # another pass has it
    owner, *channels = destinations
    results = [(owner, *_post(client, owner, dead_secret_post(item, now=now)))]
    post = dead_secret_post(item, now=now, owner_unreached=results[0][1] == Outcome.REFUSED)
    results += [(where, *_post(client, where, post)) for where in channels]
    outcomes = [outcome for _, outcome, _ in results]
    for where, outcome, error in results:
        if outcome == Outcome.REFUSED:
            log.warning("dead-secret alarm for %s to %s refused: %s", item.public_id, where,
                        error)
        elif outcome == Outcome.UNCERTAIN:
            log.warning("dead-secret alarm for %s to %s may or may not have been posted (%s):"
                        " counted as posted, not posted again today", item.public_id, where,
                        error)
    if Outcome.REFUSED in outcomes:
        report.failed += 1
    if all(outcome == Outcome.REFUSED for outcome in outcomes):
        _write(database, "releasing a dead-secret alarm", lambda s: dead_secrets.release_alarm(
            s, report=item, worker=worker, now=now))
    report.alarms.append(_alarm_row(item, destinations, outcomes))


def _send_alarms(settings: Settings, database: Database, client: WebClient | None,
                 now: dt.datetime, worker: str, report: LifecycleReport) -> None:
    with database.sessions() as session:
        items = dead_secrets.dead_secret_reports(session, now=now)
    for item in items:
        channel = item.alert_channel or settings.tokenbot_alert_channel
        destinations = [item.owner] + ([channel] if channel else [])
        if client is None:
            report.alarms.append(_alarm_row(item, destinations, None))
            continue
        try:
            _send_alarm(database, client, item, destinations, now=now, worker=worker,
                        report=report)
        except SQLAlchemyError as exc:
            report.failed += 1
            log.error("dead-secret alarm for %s: the database failed (%s)", item.public_id,
                      type(exc).__name__)


def lifecycle_pass(*, settings: Settings, database: Database, client: WebClient | None,
                   now: dt.datetime, worker: str, dry_run: bool = False) -> LifecycleReport:
    """One lifecycle pass at ``now`` (``dry_run``: report what would happen; nothing is
    posted or written)."""
    report = LifecycleReport()
    with database.sessions.begin() as session:
        report.rotations_ended = rotation.end_overdue_rotations(session, now=now,
                                                                dry_run=dry_run)
    poster = None if dry_run or client is None else without_blind_retries(
        client, timeout=POST_TIMEOUT, max_retry_after=MAX_RETRY_AFTER,
        max_retry_count=POST_RETRIES)
    _send_notices(database, poster, now, worker, report)
    _send_alarms(settings, database, poster, now, worker, report)
    if not dry_run:
        with database.sessions.begin() as session:
            report.purged = tombstones.purge(session, now=now) + dead_secrets.purge(
                session, now=now)
            report.purged += session.execute(
                delete(LifecycleNotice).where(LifecycleNotice.sent_at < now - NOTICES_KEPT),
                execution_options={"synchronize_session": False},
            ).rowcount or 0
    if report.rotations_ended or report.notices or report.alarms:
        log.info("lifecycle pass%s: %d rotation(s) ended, %d notice(s), %d dead-secret "
                 "alarm(s), %d failed", " (dry run)" if dry_run else "",
                 report.rotations_ended, len(report.notices), len(report.alarms),
                 report.failed)
    return report
