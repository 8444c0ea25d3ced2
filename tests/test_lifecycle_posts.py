"""How the posts of rotation notices and dead-secret alarms end, on SQLite and PostgreSQL:
each goes through the one outbox (issue 19), so each is posted exactly once where Slack's
history is readable. A post Slack refused is tried again by a later pass; one whose outcome
is unknown (a timeout, a dropped connection, a 5xx, ``ok: false`` meaning Slack failed
midway) is settled from the destination's history before anything is posted again (it was
"counted as sent" before issue 19); a database that fails while recording an outcome is
retried in place and never stops the other destinations."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.alerts.scheduler import PassReport, run_pass
from bot.config import Settings
from bot.db import Database
from bot.models import MessageKind, OutboxMessage, utcnow
from bot.outbox import delivery
from bot.services import outbox, rotation
from bot.services import tokens
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from bot.slack.client import make_web_client
from tests.lifecycle_support import (
    ACTOR,
    OWNER,
    TEAM,
    Cli,
    alarm_posts,
    alerts_run,
    create,
    posts,
)
from tests.support.slack_standin import Failure, SlackStandIn

#: A pass after the lease of a pass that died has run out.
LATER = outbox.LEASE + dt.timedelta(minutes=1)
#: A pass late enough to settle an uncertain post (its attempt is no longer in flight).
SETTLED = outbox.IN_FLIGHT + dt.timedelta(minutes=1)


def _morning() -> dt.datetime:
    """10:00 UTC yesterday: passes an hour apart stay on one day (alarms are once a day),
    and the stand-in's timestamps (the real time, as Slack's are) come after the pass's
    clock, as in production, whatever the hour the suite runs."""
    return (utcnow() - dt.timedelta(days=1)).replace(hour=10, minute=0, second=0,
                                                     microsecond=0)


def _pass(settings: Settings, database: Database, now: dt.datetime,
          worker: str = "w1") -> PassReport:
    return run_pass(settings=settings, database=database, client=make_web_client(settings),
                    now=now, worker=worker, post_interval=0.0)


def _told(report: PassReport, kind: MessageKind) -> list[tuple[str, str]]:
    """(destination, label) of the messages of ``kind`` the pass had to post."""
    return [(each.destination, entry["label"]) for each in report.destinations
            for entry in each.tokens if entry["kind"] == kind]


def _in_slack(standin: SlackStandIn, block_id: str) -> list[dict[str, Any]]:
    """The messages Slack holds with that block, whether their poster read the answer."""
    return [m for m in standin.posted()
            if any(b.get("block_id") == block_id for b in m.get("blocks") or [])]


def _notice_posts(standin: SlackStandIn) -> list[dict[str, Any]]:
    return [p for p in posts(standin)
            if any(b.get("block_id") == "rotation_notice" for b in p.get("blocks") or [])]


def _overdue_rotation(database: Database, now: dt.datetime, label: str = "nightly export"
                      ) -> str:
    """A rotation whose overlap ran out with the new secret unused: the next pass ends it
    and DMs the owner."""
    created = create(database, label=label)
    with database.sessions.begin() as session:
        tokens.rotate_token(session, box=database.box, actor=ACTOR,
                            now=now - dt.timedelta(hours=2), public_id=created.token.public_id,
                            expected_version=created.token.version,
                            overlap=dt.timedelta(hours=1))
    return created.token.public_id


def _dead_secret_presented(database: Database, now: dt.datetime, label: str = "CI deploy"
                           ) -> str:
    created = create(database, label=label)
    with database.sessions.begin() as session:
        tokens.disable_token(session, actor=ACTOR, public_id=created.token.public_id,
                             expected_version=created.token.version, now=now)
    with database.engine.begin() as connection:
        add_presentations(connection, counts={
            UseKey(TEAM, created.token.public_id, "ci-runner", hour_of(now), "disabled",
                   created.token.secret_masked): 3})
    return created.token.public_id


def _database_down(monkeypatch: pytest.MonkeyPatch, times: int,
                   kind: MessageKind | None = None) -> list[int]:
    """Recording a sent message (of ``kind``, or any) fails ``times`` times (then works);
    returns the count left."""
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01, 0.01, 0.01))
    real, left = outbox.mark_sent, [times]

    def flaky(session, **kwargs):  # type: ignore[no-untyped-def]
        of_kind = kind is None or session.get(OutboxMessage, kwargs["ids"][0]).kind == kind
        if left[0] and of_kind:
            left[0] -= 1
            raise OperationalError("UPDATE outbox", {}, ConnectionError("server restarting"))
        return real(session, **kwargs)

    monkeypatch.setattr(outbox, "mark_sent", flaky)
    return left


def test_a_notice_whose_recording_fails_twice_is_recorded_and_sent_once(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    left = _database_down(monkeypatch, 2)
    report = _pass(lc_settings, lc_db, now)
    assert left == [0] and (report.sent, report.failed) == (1, 0)
    assert _told(report, MessageKind.ROTATION_NOTICE) == [(OWNER, "nightly export")]
    assert _pass(lc_settings, lc_db, now + LATER, worker="w2").destinations == []
    assert len(_notice_posts(standin)) == 1


def test_a_database_down_after_a_notice_was_posted_does_not_stop_the_alarms(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rewritten for the outbox: the notice's post cannot be recorded (its destination,
    the owner's DMs, stops there); the alarm is posted to the owner and the channel all
    the same. Once the lease runs out, a later pass finds the notice in the owner's
    history instead of posting it again: each message is in Slack exactly once."""
    now = _morning()
    _overdue_rotation(lc_db, now)
    _dead_secret_presented(lc_db, now)
    _database_down(monkeypatch, 100, kind=MessageKind.ROTATION_NOTICE)
    report = _pass(lc_settings, lc_db, now)
    dm = next(d for d in report.destinations if d.destination == OWNER)
    assert dm.error is not None and "OperationalError" in dm.error and report.failed >= 1
    assert len(_notice_posts(standin)) == 1
    assert sorted(p["channel"] for p in alarm_posts(standin)) == ["CALERTS", OWNER]
    monkeypatch.undo()
    later = _pass(lc_settings, lc_db, now + LATER, worker="w2")
    assert (later.recovered, later.sent, later.failed) == (1, 0, 0)
    assert len(_in_slack(standin, "rotation_notice")) == 1
    assert sorted(p["channel"] for p in _in_slack(standin, "dead_secret")) == ["CALERTS", OWNER]
    assert _pass(lc_settings, lc_db, now + 2 * LATER, worker="w3").destinations == []


def test_a_notice_taken_over_by_another_pass_is_not_marked_sent_by_the_first(
    lc_db: Database,
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    with lc_db.sessions.begin() as session:
        assert rotation.end_overdue_rotations(session, now=now) == 1
    with lc_db.sessions.begin() as session:
        (first,) = outbox.claim(session, worker="w1", now=now)
    with lc_db.sessions.begin() as session:  # w1 stalled past its lease: w2 takes it over
        (second,) = outbox.claim(session, worker="w2", now=now + LATER)
    assert first == second
    with lc_db.sessions.begin() as session:
        assert outbox.mark_sent(session, ids=[first], worker="w1", now=now, channel=None,
                                ts=None) == 0
    with lc_db.sessions() as session:
        assert session.get(OutboxMessage, first).claimed_by == "w2"
    with lc_db.sessions.begin() as session:
        assert outbox.mark_sent(session, ids=[first], worker="w2", now=now, channel=None,
                                ts=None) == 1
    with lc_db.sessions() as session:
        assert outbox.pending(session, now=now + 2 * LATER) == []


# Slack failed midway: "accepted" is whether it had posted the message all the same.
UNCERTAIN = {
    "HTTP 500, not posted": Failure(status=500, body={"ok": False, "error": "internal_error"}),
    "HTTP 500, posted": Failure(status=500, body={"ok": False, "error": "internal_error"},
                                accepted=True),
    "ok false, internal_error": Failure(status=200,
                                        body={"ok": False, "error": "internal_error"}),
    "HTTP 503 from a proxy, posted": Failure(status=503, body=None, accepted=True),
}


@pytest.mark.parametrize("failure", list(UNCERTAIN.values()), ids=list(UNCERTAIN))
def test_a_notice_whose_post_is_uncertain_is_in_slack_once(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn, failure: Failure
) -> None:
    """Rewritten for the outbox: an uncertain notice is no longer counted as sent (and
    lost when Slack had not posted it): the next pass reads the owner's history and posts
    it only if it is not there."""
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.fail_next("chat.postMessage", failure)
    first = _pass(lc_settings, lc_db, now)
    assert (first.sent, first.uncertain) == (0, 1)
    again = _pass(lc_settings, lc_db, now + SETTLED, worker="w2")
    assert (again.recovered, again.sent) == ((1, 0) if failure.accepted else (0, 1))
    assert again.failed == 0
    assert len(_in_slack(standin, "rotation_notice")) == 1
    assert _pass(lc_settings, lc_db, now + LATER + SETTLED, worker="w3").destinations == []


def test_a_notice_whose_connection_dropped_is_not_sent_again(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.drop_next("chat.postMessage")
    assert _pass(lc_settings, lc_db, now).uncertain == 1
    assert _pass(lc_settings, lc_db, now + SETTLED, worker="w2").recovered == 1
    assert _pass(lc_settings, lc_db, now + LATER + SETTLED, worker="w3").destinations == []
    assert len(standin.calls_to("chat.postMessage")) == 1


def test_a_notice_slack_refused_is_sent_by_a_later_pass(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.fail_next("chat.postMessage", Failure(status=200, body={
        "ok": False, "error": "ratelimited"}))
    first = _pass(lc_settings, lc_db, now)
    assert (first.sent, first.failed, first.uncertain) == (0, 1, 0)
    again = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=1), worker="w2")
    assert (again.sent, again.uncertain, again.recovered) == (1, 0, 0)
    assert len(_notice_posts(standin)) == 2  # the refused try, then the one that went out
    assert _pass(lc_settings, lc_db, now + LATER, worker="w3").destinations == []


def test_an_alarm_whose_posts_are_uncertain_is_in_slack_once_each(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    """Rewritten for the outbox: the owner's DM failed midway without being posted, the
    channel's copy was posted and its answer lost. Neither counts as sent any more: the
    next pass reads both histories, finds the channel's and posts the DM."""
    now = _morning()
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage", UNCERTAIN["HTTP 500, not posted"])
    standin.drop_next("chat.postMessage")
    first = _pass(lc_settings, lc_db, now)
    assert (first.alarms, first.sent, first.uncertain) == (1, 0, 2)
    again = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2")
    assert (again.alarms, again.recovered, again.sent, again.failed) == (0, 1, 1, 0)
    assert sorted(p["channel"] for p in _in_slack(standin, "dead_secret")) == ["CALERTS", OWNER]
    assert _pass(lc_settings, lc_db, now + dt.timedelta(minutes=60),
                 worker="w3").destinations == []


def test_an_alarm_refused_everywhere_is_posted_by_a_later_pass_that_day(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = _morning()
    _dead_secret_presented(lc_db, now)
    refused = Failure(status=200, body={"ok": False, "error": "channel_not_found"})
    standin.fail_next("chat.postMessage", refused, refused)
    first = _pass(lc_settings, lc_db, now)
    assert (first.sent, first.failed, first.uncertain) == (0, 2, 0)
    again = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2")
    assert (again.alarms, again.sent, again.uncertain) == (0, 2, 0)
    assert {p["channel"] for p in alarm_posts(standin)[2:]} == {OWNER, "CALERTS"}
    assert _pass(lc_settings, lc_db, now + dt.timedelta(minutes=60),
                 worker="w3").destinations == []
    assert len(alarm_posts(standin)) == 4
    assert all("in the last 24 hours by ci-runner" in p["text"] for p in alarm_posts(standin))


def test_an_alarm_posted_hours_late_names_the_24_hours_it_counted(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = _morning()
    _dead_secret_presented(lc_db, now)
    refused = Failure(status=200, body={"ok": False, "error": "channel_not_found"})
    standin.fail_next("chat.postMessage", refused, refused)
    assert _pass(lc_settings, lc_db, now).failed == 2
    assert _pass(lc_settings, lc_db, now + dt.timedelta(hours=5), worker="w2").sent == 2
    late = alarm_posts(standin)[2:]
    assert [p["text"].split(" was presented ")[1] for p in late] == [
        f"3 times in the 24 hours to {now:%Y-%m-%d} 10:00 UTC by ci-runner"] * 2


@pytest.mark.slow  # real time: a post held for seconds while another pass runs
def test_a_pass_that_stalled_past_its_lease_does_not_post_what_another_pass_took_over(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rewritten for the outbox (shortened lease and in-flight time): the stalled pass's
    first notice is in flight when another pass takes both over; that one finds it in the
    history and posts the second; the stalled pass, back, posts nothing more. Each notice
    is in Slack once (before issue 19 the one in flight was posted twice)."""
    now = utcnow()
    for label in ("first", "second"):
        _overdue_rotation(lc_db, now, label=label)
    monkeypatch.setattr(outbox, "LEASE", dt.timedelta(seconds=4))
    monkeypatch.setattr(outbox, "IN_FLIGHT", dt.timedelta(seconds=2))
    monkeypatch.setattr(outbox, "CLOCK_SKEW", dt.timedelta(seconds=1))
    standin.delay_next("chat.postMessage", 3)  # the stalled pass's first post hangs 3 s
    stalled = threading.Thread(target=_pass, args=(lc_settings, lc_db, now, "w1"))
    stalled.start()
    standin.wait_for("chat.postMessage")
    taken = _pass(lc_settings, lc_db, now + dt.timedelta(seconds=5), worker="w2")
    stalled.join(timeout=30)
    assert not stalled.is_alive()
    assert (taken.recovered, taken.sent) == (1, 1)
    texts = [m["text"] for m in _in_slack(standin, "rotation_notice")]
    assert sorted(len([t for t in texts if f"*{label}*" in t])
                  for label in ("first", "second")) == [1, 1]


def test_an_alarm_the_owner_cannot_be_sent_tells_the_channel_so(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    """The owner left (their DM is refused): the channel's alarm says the owner was not
    told, so someone there can act. Rewritten for the outbox: the refused DM is retried
    by a later pass (no longer released for the day); the channel's is not posted again."""
    now = _morning()
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage",
                      Failure(status=200, body={"ok": False, "error": "user_not_found"}))
    first = _pass(lc_settings, lc_db, now)
    assert (first.sent, first.failed) == (1, 1)
    (to_channel,) = [p for p in alarm_posts(standin) if p["channel"] == "CALERTS"]
    assert f"<@{OWNER}>, could not be sent a direct message" in to_channel["text"]
    assert f"<@{OWNER}>, could not be sent a direct message" in str(to_channel["blocks"])
    again = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2")
    assert _told(again, MessageKind.DEAD_SECRET_ALARM) == [(OWNER, "CI deploy")]
    assert [p["channel"] for p in alarm_posts(standin)].count("CALERTS") == 1


def test_an_alarm_the_owner_was_sent_does_not_mention_the_dm(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = _morning()
    _dead_secret_presented(lc_db, now)
    _pass(lc_settings, lc_db, now)
    assert {p["channel"] for p in alarm_posts(standin)} == {OWNER, "CALERTS"}
    assert not any("direct message" in p["text"] for p in alarm_posts(standin))


def test_an_alarm_whose_dm_is_uncertain_does_not_say_the_owner_was_not_told(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    """Slack failed midway on the DM: it may well have arrived, so the channel is not told
    otherwise."""
    now = _morning()
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage",
                      Failure(status=200, body={"ok": False, "error": "internal_error"}))
    report = _pass(lc_settings, lc_db, now)
    assert (report.sent, report.uncertain) == (1, 1)
    (to_channel,) = [p for p in alarm_posts(standin) if p["channel"] == "CALERTS"]
    assert "direct message" not in to_channel["text"]


def test_the_cli_reports_posts_to_an_unreachable_slack_as_failed_not_sent(
    lc_db: Database, run: Cli, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SLACK_API_URL=http://127.0.0.1:9/ tokenbot alerts run --json`` (nothing listens
    there): before issue 19 a rotation notice and an alarm were reported sent and
    uncertain, and lost. Now every message is failed (exit 1) and posted once Slack is
    back."""
    now = _morning()
    _overdue_rotation(lc_db, now)
    _dead_secret_presented(lc_db, now)
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/")
    # (a refused connection is tried again twice, a second or two each: not here, to keep
    # the fast loop fast; the fault suite keeps the retries)
    monkeypatch.setattr(outbox, "POST_RETRIES", 0)
    away = alerts_run(run, now, code=1)
    assert (away["messages"], away["sent"], away["uncertain"]) == (0, 0, 0)
    assert away["failed"] == 3  # the notice, and the alarm to the owner and the channel
    assert all("Connection refused" in each["error"] for each in away["destinations"])
    assert standin.calls == []
    monkeypatch.setenv("SLACK_API_URL", standin.api_url)
    back = alerts_run(run, now + dt.timedelta(minutes=5))
    assert (back["sent"], back["failed"], back["uncertain"]) == (3, 0, 0)
    assert len(_notice_posts(standin)) == 1 and len(alarm_posts(standin)) == 2
