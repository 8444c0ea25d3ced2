"""The usage-aware lifecycle's part of the scheduled pass (``run_pass`` calls
:func:`lifecycle_pass`; ``tokenbot alerts run`` too, with ``--now`` / ``--dry-run`` /
``--json``):

1. end the rotations whose overlap ran out with the new secret unused
   (:func:`bot.services.rotation.end_overdue_rotations`);
2. send the owners' direct messages waiting in the outbox (a rotation switched, or ran
   out), each claimed first so it goes out once however many passes race;
3. the dead-secret alarms (:mod:`bot.services.dead_secrets`): for each token whose dead
   secret was presented in the last 24 hours, claim today's alarm (a unique row), then
   post it to the owner (DM) and the token's alert channel (else the default one);
4. forget old counts, claims, sent notices and tombstones past 90 days.

A failed post is logged and counted; the notice or today's alarm is released, so a later
pass tries again. Never the secret: masked prefixes only."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import delete

from bot.config import Settings
from bot.db import Database
from bot.models import LifecycleNotice
from bot.services import dead_secrets, rotation, tombstones
from bot.slack.views.lifecycle import Post, dead_secret_post, rotation_notice_post

log = logging.getLogger(__name__)

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


def _post(client: WebClient, channel: str, post: Post) -> str | None:
    """Post; the error text on failure (None: posted)."""
    try:
        client.chat_postMessage(channel=channel, text=post.text,
                                blocks=[block.to_dict() for block in post.blocks])
    except SlackApiError as exc:
        return str(exc.response.get("error") or "slack_error")
    except (SlackClientError, OSError) as exc:
        return type(exc).__name__
    return None


def _notice_row(notice: LifecycleNotice, sent: bool) -> dict[str, Any]:
    return {"token_id": notice.token_public_id, "label": notice.label, "owner": notice.owner,
            "kind": str(notice.kind), "caller": notice.caller, "sent": sent}


def _send_notices(database: Database, client: WebClient | None, now: dt.datetime,
                  worker: str, report: LifecycleReport) -> None:
    if client is None:  # a dry run: what would be sent
        with database.sessions() as session:
            report.notices = [_notice_row(n, False) for n in rotation.pending_notices(session)]
        return
    with database.sessions.begin() as session:
        claimed = rotation.claim_notices(session, worker=worker, now=now)
        session.expunge_all()
    for notice in claimed:
        error = _post(client, notice.owner, rotation_notice_post(notice))
        with database.sessions.begin() as session:
            if error is None:
                rotation.mark_sent(session, notice_id=notice.id, now=now)
            else:
                rotation.release(session, notice_id=notice.id)
        if error is not None:
            report.failed += 1
            log.warning("could not send a rotation notice to %s: %s", notice.owner, error)
        report.notices.append(_notice_row(notice, error is None))


def _alarm_row(item: dead_secrets.DeadSecretReport, destinations: list[str],
               sent: bool) -> dict[str, Any]:
    return {"token_id": item.public_id, "label": item.label, "masked": item.masked,
            "state": item.state, "presented": item.presented,
            "callers": [{"caller": name, "presented": count} for name, count in item.callers],
            "destinations": destinations, "sent": sent}


def _send_alarms(settings: Settings, database: Database, client: WebClient | None,
                 now: dt.datetime, worker: str, report: LifecycleReport) -> None:
    with database.sessions() as session:
        items = dead_secrets.dead_secret_reports(session, now=now)
    for item in items:
        channel = item.alert_channel or settings.tokenbot_alert_channel
        destinations = [item.owner] + ([channel] if channel else [])
        if client is None:
            report.alarms.append(_alarm_row(item, destinations, False))
            continue
        with database.sessions.begin() as session:
            if not dead_secrets.claim_alarm(session, report=item, worker=worker, now=now):
                continue  # another pass has it
        post = dead_secret_post(item, now=now)
        errors = [e for e in (_post(client, where, post) for where in destinations) if e]
        if len(errors) == len(destinations):  # nobody was told: a later pass tries again
            with database.sessions.begin() as session:
                dead_secrets.release_alarm(session, report=item, now=now)
        if errors:
            report.failed += 1
            log.warning("dead-secret alarm for %s: %d post(s) failed (%s)", item.public_id,
                        len(errors), errors[0])
        report.alarms.append(_alarm_row(item, destinations, len(errors) < len(destinations)))


def lifecycle_pass(*, settings: Settings, database: Database, client: WebClient | None,
                   now: dt.datetime, worker: str, dry_run: bool = False) -> LifecycleReport:
    """One lifecycle pass at ``now`` (``dry_run``: report what would happen; nothing is
    posted or written)."""
    report = LifecycleReport()
    with database.sessions.begin() as session:
        report.rotations_ended = rotation.end_overdue_rotations(session, now=now,
                                                                dry_run=dry_run)
    poster = None if dry_run else client
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
