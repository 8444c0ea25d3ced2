"""How the lifecycle pass's posts end, on SQLite and PostgreSQL: the owners' rotation DMs
from the outbox and the daily dead-secret alarms are each posted at most once. A post Slack
refused is tried again by a later pass; one whose outcome is unknown (a timeout, a dropped
connection, a 5xx, ``ok: false`` meaning Slack failed midway) counts as sent; a database
that fails while recording an outcome is retried in place and never stops the rest of the
pass."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.alerts import delivery
from bot.alerts.lifecycle import LifecycleReport, lifecycle_pass
from bot.config import Settings
from bot.db import Database
from bot.models import utcnow
from bot.services import rotation
from bot.services import tokens as svc
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from bot.slack.client import make_web_client
from tests.lifecycle_support import (
    ACTOR,
    OWNER,
    TEAM,
    alarm_posts,
    create,
    posts,
)
from tests.support.slack_standin import Failure, SlackStandIn

#: A pass after the claim of a notice whose pass died has run out.
LATER = rotation.NOTICE_LEASE + dt.timedelta(minutes=1)


def _pass(settings: Settings, database: Database, now: dt.datetime,
          worker: str = "w1") -> LifecycleReport:
    return lifecycle_pass(settings=settings, database=database,
                          client=make_web_client(settings), now=now, worker=worker)


def _notice_posts(standin: SlackStandIn) -> list[dict[str, Any]]:
    return [p for p in posts(standin)
            if any(b.get("block_id") == "rotation_notice" for b in p.get("blocks") or [])]


def _overdue_rotation(database: Database, now: dt.datetime, label: str = "nightly export"
                      ) -> str:
    """A rotation whose overlap ran out with the new secret unused: the next pass ends it
    and DMs the owner."""
    created = create(database, label=label)
    with database.sessions.begin() as session:
        svc.rotate_token(session, box=database.box, actor=ACTOR,
                         now=now - dt.timedelta(hours=2), public_id=created.token.public_id,
                         expected_version=created.token.version,
                         overlap=dt.timedelta(hours=1))
    return created.token.public_id


def _dead_secret_presented(database: Database, now: dt.datetime, label: str = "CI deploy"
                           ) -> str:
    created = create(database, label=label)
    with database.sessions.begin() as session:
        svc.disable_token(session, actor=ACTOR, public_id=created.token.public_id,
                          expected_version=created.token.version, now=now)
    with database.engine.begin() as connection:
        add_presentations(connection, counts={
            UseKey(TEAM, created.token.public_id, "ci-runner", hour_of(now), "disabled",
                   created.token.secret_masked): 3})
    return created.token.public_id


def _database_down(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Recording a sent notice fails ``times`` times (then works); the count left."""
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01, 0.01, 0.01))
    real, left = rotation.mark_sent, [times]

    def flaky(session, **kwargs):  # type: ignore[no-untyped-def]
        if left[0]:
            left[0] -= 1
            raise OperationalError("UPDATE lifecycle_notices", {},
                                   ConnectionError("server restarting"))
        return real(session, **kwargs)

    monkeypatch.setattr(rotation, "mark_sent", flaky)
    return left


def test_a_notice_whose_recording_fails_twice_is_recorded_and_sent_once(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    left = _database_down(monkeypatch, 2)
    report = _pass(lc_settings, lc_db, now)
    assert left == [0] and report.failed == 0
    assert [n["sent"] for n in report.notices] == [True]
    assert _pass(lc_settings, lc_db, now + LATER, worker="w2").notices == []
    assert len(_notice_posts(standin)) == 1


def test_a_database_down_after_a_notice_was_posted_does_not_stop_the_alarms(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    _dead_secret_presented(lc_db, now)
    _database_down(monkeypatch, 100)
    report = _pass(lc_settings, lc_db, now)
    assert report.failed == 1
    assert len(_notice_posts(standin)) == 1
    assert [a["label"] for a in report.alarms] == ["CI deploy"]
    assert {p["channel"] for p in alarm_posts(standin)} == {OWNER, "CALERTS"}


def test_a_notice_taken_over_by_another_pass_is_not_marked_sent_by_the_first(
    lc_db: Database,
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    with lc_db.sessions.begin() as session:
        assert rotation.end_overdue_rotations(session, now=now) == 1
    with lc_db.sessions.begin() as session:
        (first,) = rotation.claim_notices(session, worker="w1", now=now)
    with lc_db.sessions.begin() as session:  # w1 stalled past its claim: w2 takes it over
        (second,) = rotation.claim_notices(session, worker="w2", now=now + LATER)
    assert first.id == second.id
    with lc_db.sessions.begin() as session:
        assert rotation.mark_sent(session, notice_id=first.id, worker="w1", now=now) is False
        rotation.release(session, notice_id=first.id, worker="w1")
    with lc_db.sessions() as session:
        (pending,) = rotation.pending_notices(session)
        assert pending.claimed_by == "w2"
    with lc_db.sessions.begin() as session:
        assert rotation.mark_sent(session, notice_id=first.id, worker="w2", now=now) is True
    with lc_db.sessions() as session:
        assert rotation.pending_notices(session) == []


UNCERTAIN = {
    "HTTP 500": Failure(status=500, body={"ok": False, "error": "internal_error"}),
    "ok false, internal_error": Failure(status=200,
                                        body={"ok": False, "error": "internal_error"}),
    "HTTP 503 from a proxy": Failure(status=503, body=None),
}


@pytest.mark.parametrize("failure", list(UNCERTAIN.values()), ids=list(UNCERTAIN))
def test_a_notice_whose_post_is_uncertain_is_not_sent_again(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn, failure: Failure
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.fail_next("chat.postMessage", failure)
    report = _pass(lc_settings, lc_db, now)
    assert [(n["sent"], n["uncertain"]) for n in report.notices] == [(True, True)]
    assert _pass(lc_settings, lc_db, now + LATER, worker="w2").notices == []
    assert len(standin.calls_to("chat.postMessage")) == 1  # not retried blindly either


def test_a_notice_whose_connection_dropped_is_not_sent_again(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.drop_next("chat.postMessage")
    assert [n["uncertain"] for n in _pass(lc_settings, lc_db, now).notices] == [True]
    assert _pass(lc_settings, lc_db, now + LATER, worker="w2").notices == []
    assert len(standin.calls_to("chat.postMessage")) == 1


def test_a_notice_slack_refused_is_sent_by_a_later_pass(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow()
    _overdue_rotation(lc_db, now)
    standin.fail_next("chat.postMessage", Failure(status=200, body={
        "ok": False, "error": "ratelimited"}))
    first = _pass(lc_settings, lc_db, now)
    assert [n["sent"] for n in first.notices] == [False] and first.failed == 1
    again = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=1), worker="w2")
    assert [(n["sent"], n["uncertain"]) for n in again.notices] == [(True, False)]
    assert len(_notice_posts(standin)) == 2  # the refused try, then the one that went out
    assert _pass(lc_settings, lc_db, now + LATER, worker="w3").notices == []


def test_an_alarm_whose_posts_are_uncertain_is_not_posted_again_that_day(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow().replace(hour=10)
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage", UNCERTAIN["HTTP 500"])
    standin.drop_next("chat.postMessage")
    (alarm,) = _pass(lc_settings, lc_db, now).alarms
    assert (alarm["sent"], alarm["uncertain"]) == (True, True)
    assert _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2").alarms == []
    assert len(standin.calls_to("chat.postMessage")) == 2  # once to each, never again


def test_an_alarm_refused_everywhere_is_posted_by_a_later_pass_that_day(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow().replace(hour=10)
    _dead_secret_presented(lc_db, now)
    refused = Failure(status=200, body={"ok": False, "error": "channel_not_found"})
    standin.fail_next("chat.postMessage", refused, refused)
    first = _pass(lc_settings, lc_db, now)
    assert [a["sent"] for a in first.alarms] == [False] and first.failed == 1
    (again,) = _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2").alarms
    assert (again["sent"], again["uncertain"]) == (True, False)
    assert {p["channel"] for p in alarm_posts(standin)[2:]} == {OWNER, "CALERTS"}
    assert _pass(lc_settings, lc_db, now + dt.timedelta(minutes=60), worker="w3").alarms == []
    assert len(alarm_posts(standin)) == 4


@pytest.mark.slow  # real time: a post held for seconds while another pass runs
def test_a_pass_that_stalled_past_its_claims_does_not_post_what_another_pass_took_over(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    for label in ("first", "second"):
        _overdue_rotation(lc_db, now, label=label)
    monkeypatch.setattr(rotation, "NOTICE_LEASE", dt.timedelta(seconds=2))
    standin.delay_next("chat.postMessage", 3)  # the stalled pass's first post hangs 3 s
    stalled = threading.Thread(target=_pass, args=(lc_settings, lc_db, now, "w1"))
    stalled.start()
    standin.wait_for("chat.postMessage")
    # its claims have run out: another pass takes both over and sends them
    taken = _pass(lc_settings, lc_db, now + dt.timedelta(seconds=2.5), worker="w2")
    assert sorted(n["label"] for n in taken.notices) == ["first", "second"]
    stalled.join(timeout=30)
    assert not stalled.is_alive()
    texts = [p["text"] for p in _notice_posts(standin)]
    # the notice in flight in the stalled pass when it was taken over is posted twice (the
    # one window a claim cannot close); the other one, not yet posted then, once
    assert sorted(len([t for t in texts if f"*{label}*" in t])
                  for label in ("first", "second")) == [1, 2]


def test_an_alarm_the_owner_cannot_be_sent_tells_the_channel_so(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    """The owner left (their DM is refused): the channel's alarm says the owner was not
    told, so someone there can act; the alarm counts as sent for the day."""
    now = utcnow().replace(hour=10)
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage",
                      Failure(status=200, body={"ok": False, "error": "user_not_found"}))
    (alarm,) = _pass(lc_settings, lc_db, now).alarms
    assert alarm["sent"] is True
    (to_channel,) = [p for p in alarm_posts(standin) if p["channel"] == "CALERTS"]
    assert f"<@{OWNER}>, could not be sent a direct message" in to_channel["text"]
    assert f"<@{OWNER}>, could not be sent a direct message" in str(to_channel["blocks"])
    assert _pass(lc_settings, lc_db, now + dt.timedelta(minutes=30), worker="w2").alarms == []


def test_an_alarm_the_owner_was_sent_does_not_mention_the_dm(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    now = utcnow().replace(hour=10)
    _dead_secret_presented(lc_db, now)
    _pass(lc_settings, lc_db, now)
    assert {p["channel"] for p in alarm_posts(standin)} == {OWNER, "CALERTS"}
    assert not any("direct message" in p["text"] for p in alarm_posts(standin))


def test_an_alarm_whose_dm_is_uncertain_does_not_say_the_owner_was_not_told(
    lc_settings: Settings, lc_db: Database, standin: SlackStandIn
) -> None:
    """Slack failed midway on the DM: it may well have arrived, so the channel is not told
    otherwise."""
    now = utcnow().replace(hour=10)
    _dead_secret_presented(lc_db, now)
    standin.fail_next("chat.postMessage",
                      Failure(status=200, body={"ok": False, "error": "internal_error"}))
    (alarm,) = _pass(lc_settings, lc_db, now).alarms
    assert (alarm["sent"], alarm["uncertain"]) == (True, True)
    (to_channel,) = [p for p in alarm_posts(standin) if p["channel"] == "CALERTS"]
    assert "direct message" not in to_channel["text"]
