"""Alerts exactly once when a post's outcome is uncertain: the rules the next pass follows
(bot/outbox/delivery.py), on SQLite and PostgreSQL, with Slack played by the stand-in.

A "dead pass" is staged the way it leaves the database: alerts claimed by a worker that
recorded a post attempt and then vanished; whether Slack got the message is the stand-in's
to say (a message posted to it with the alerts' metadata, or none)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter

import pytest
from slack_sdk import WebClient
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from bot.outbox import delivery
from bot.alerts.scheduler import run_pass
from bot.outbox.run import Delivery
from bot.config import Settings
from bot.db import Database
from bot.models import Audience, MessageKind, OutboxMessage, OutboxStatus
from bot.services import alerts
from bot.services import outbox as service
from bot.services import tokens
from bot.slack.client import make_web_client
from tests.alerts_support import (
    ALERTS,
    TEAM,
    UTC,
    by_destination,
    cli_environment,
    posted_ids,
    seed_token,
)
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AFTER_LEASE = T0 + service.LEASE + dt.timedelta(minutes=1)


def _dead_pass(db: Database, *, attempted: bool = True) -> dict[str, int]:
    """Arm and claim as a pass that then died, having recorded its post attempts; returns
    destination -> alert id."""
    with db.sessions.begin() as session:
        alerts.arm(session, now=T0, alert_days=[30, 7, 1], default_channel=ALERTS)
    with db.sessions.begin() as session:
        ids = service.claim(session, now=T0, worker="dead")
        if attempted:
            service.mark_attempted(session, ids=ids, worker="dead", at=T0)
        rows = session.execute(select(OutboxMessage.destination, OutboxMessage.id)).all()
    return dict(rows)


def _slack_got(standin: SlackStandIn, client: WebClient, channel: str, alert_id: int,
               text: str = "the dead pass's digest") -> str:
    """What the dead pass's post left in Slack: a message naming ``alert_id``."""
    response = client.chat_postMessage(channel=channel, text=text,
                                       metadata=delivery.metadata([alert_id]))
    return str(response["ts"])


def _statuses(db: Database) -> dict[str, tuple[str, str | None, str | None]]:
    with db.sessions() as session:
        rows = session.execute(select(OutboxMessage.destination, OutboxMessage.status, OutboxMessage.message_channel,
                                      OutboxMessage.message_ts, OutboxMessage.post_attempted_at)).all()
    assert all(attempted is None for *_rest, attempted in rows)  # every outcome known
    return {dest: (status, channel, ts) for dest, status, channel, ts, _a in rows}


def _digests(standin: SlackStandIn) -> Counter[tuple[str, str]]:
    """(destination, token) of every digest that reached Slack."""
    return Counter((call.body["channel"], public_id)
                   for call in standin.calls_to("chat.postMessage")
                   if call.body.get("blocks") for public_id in posted_ids(call.body))


def test_every_digest_names_its_alerts_in_its_metadata(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=T0)
    assert report.sent == 2 and report.recovered == 0
    statuses = _statuses(adb)
    with adb.sessions() as session:
        ids = dict(session.execute(select(OutboxMessage.destination, OutboxMessage.id)).all())
    for destination in (ALERTS, "U1"):
        [message] = standin.posted(destination)
        assert message["metadata"] == {"event_type": "tokenbot_outbox",
                                       "event_payload": {"outbox_ids": [ids[destination]]}}
        assert statuses[destination] == (OutboxStatus.SENT, destination, message["ts"])
    assert by_destination(standin.calls_to("chat.postMessage")) == {
        ALERTS: [token.public_id], "U1": [token.public_id]}


def test_a_post_the_dead_pass_made_is_found_in_history_and_not_posted_again(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """The channel's digest reached Slack before the pass died, the owner's DM did not:
    the next pass marks the first sent (with the message Slack has, so its buttons work)
    and posts only the second."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    ids = _dead_pass(adb)
    client = make_web_client(asettings)
    ts = _slack_got(standin, client, ALERTS, ids[ALERTS])
    # In the owner's DM: a message naming another alert, and one naming this one from
    # before the attempt (a week ago): neither is taken for this attempt's post.
    _slack_got(standin, client, "U1", ids[ALERTS] + 1000)
    week_ago = (T0 - dt.timedelta(days=7)).timestamp()
    standin._keep("U1", f"{week_ago:.6f}", {"text": "old", "metadata": delivery.metadata([ids["U1"]])})
    report = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    assert (report.recovered, report.sent, report.messages) == (1, 1, 1)
    statuses = _statuses(adb)
    assert statuses[ALERTS] == (OutboxStatus.SENT, ALERTS, ts)
    assert statuses["U1"][0] == OutboxStatus.SENT
    assert _digests(standin) == Counter({("U1", token.public_id): 1})
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=AFTER_LEASE + dt.timedelta(hours=1)).messages == 0


def test_history_is_read_past_its_first_pages(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """The dead pass's message lies under 450 later ones: every page is read."""
    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    ids = _dead_pass(adb)
    client = make_web_client(asettings)
    ts = _slack_got(standin, client, ALERTS, ids[ALERTS])
    for number in range(450):  # the channel's chatter since (kept as Slack keeps it)
        standin._keep(ALERTS, f"{float(ts) + 1 + number:.6f}", {"text": f"hi {number}"})
    standin.clear()
    report = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    assert report.recovered == 1 and _statuses(adb)[ALERTS][2] == ts
    assert len(standin.calls_to("conversations.history")) >= 3  # 200 a page
    assert [c.body["channel"] for c in standin.calls_to("chat.postMessage")] == ["U1"]


def test_an_attempt_slack_never_got_is_posted_once(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    _dead_pass(adb)
    client = make_web_client(asettings)
    # While the lease holds, the dead pass might still be alive: nothing is touched.
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=T0 + dt.timedelta(minutes=5)).messages == 0
    report = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    assert (report.recovered, report.sent) == (0, 2)
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


def test_when_slack_cannot_be_asked_the_uncertain_alerts_wait(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """History answers an error that is no refusal: nothing is posted (it may be there);
    a later pass asks again and finds it."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    ids = _dead_pass(adb, attempted=False)
    with adb.sessions.begin() as session:  # only the channel's post is in doubt: only the
        # channel's history is read (destinations run side by side: two readers would race
        # for the one failure)
        service.mark_attempted(session, ids=[ids[ALERTS]], worker="dead", at=T0)
    client = make_web_client(asettings)
    _slack_got(standin, client, ALERTS, ids[ALERTS])
    standin.fail_next("conversations.history",
                      Failure(status=200, body={"ok": False, "error": "internal_error"}))
    first = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    channel = next(d for d in first.destinations if d.destination == ALERTS)
    assert (channel.uncertain, channel.failed, channel.sent) == (1, 1, 0)
    assert "history unreadable" in (channel.error or "")
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=AFTER_LEASE + dt.timedelta(minutes=5))
    assert later.recovered == 1 and later.messages == 0
    assert _digests(standin) == Counter({("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


def test_without_the_history_scopes_alerts_are_at_least_once_and_it_is_logged_once(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "_refusals_logged", set())
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    ids = _dead_pass(adb)
    client = make_web_client(asettings)
    _slack_got(standin, client, ALERTS, ids[ALERTS])
    refused = Failure(status=200, body={"ok": False, "error": "missing_scope",
                                        "needed": "channels:history"})
    standin.fail_next("conversations.history", refused)
    standin.fail_next("conversations.open", Failure(status=200, body={
        "ok": False, "error": "missing_scope", "needed": "im:write"}))
    with caplog.at_level(logging.WARNING, logger="bot.outbox"):
        report = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    assert report.sent == 2 and report.failed == 0
    # The channel's digest is there twice: the at-least-once the README states.
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert len(standin.posted(ALERTS)) == 2
    warnings = [r.getMessage() for r in caplog.records if "history" in r.getMessage()]
    assert len(warnings) == 1 and "missing_scope" in warnings[0]
    assert "at-least-once" in warnings[0] and "channels:history" in warnings[0]


def test_a_pass_that_lost_its_lease_posts_nothing(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """A pass stalled past its lease (another took its alerts over and posted them) wakes
    up and must not post them a second time."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    stalled = _stalled(asettings, adb, client)
    plans = stalled.prepare()
    assert run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE).sent == 2
    for plan in plans:
        assert stalled.step(plan, 0) is False
        assert plan.report.sent == 0 and plan.report.error.startswith("lease run out")
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})


def test_a_database_error_after_a_post_is_retried_in_place(
    asettings: Settings, adb: Database, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording the channel's post fails twice (a database restart): the pass records it
    on the third try instead of giving up, so nothing waits for a lease to run out."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01, 0.01, 0.01))
    real, failures = service.mark_sent, [2]

    def flaky(session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["channel"] == ALERTS and failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE alerts", {}, ConnectionError("server restarting"))
        return real(session, **kwargs)

    monkeypatch.setattr(service, "mark_sent", flaky)
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=T0)
    assert (report.sent, report.failed, failures[0]) == (2, 0, 0)
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})


def test_a_database_that_stays_down_after_a_post_holds_up_no_other_destination(
    asettings: Settings, adb: Database, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel's post is accepted but cannot be recorded through all the retries: the
    owner's DM still goes out, and the pass after the lease finds the channel's digest in
    its history instead of posting it again."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01, 0.01))
    real = service.mark_sent

    def down(session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["channel"] == ALERTS:
            raise OperationalError("UPDATE alerts", {}, ConnectionError("connection refused"))
        return real(session, **kwargs)

    monkeypatch.setattr(service, "mark_sent", down)
    client = make_web_client(asettings)
    first = run_pass(settings=asettings, database=adb, client=client, now=T0)
    channel = next(d for d in first.destinations if d.destination == ALERTS)
    assert channel.sent == 0 and channel.failed == 1 and "OperationalError" in channel.error
    assert first.sent == 1  # the owner's DM
    monkeypatch.setattr(service, "mark_sent", real)
    later = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    assert later.recovered == 1 and later.messages == 0
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


def test_a_5xx_answer_is_uncertain_and_settled_by_the_next_pass(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Slack answered 500 to the channel's post (it may have posted it: it did not here)
    and nothing is retried blindly; the next pass finds no such message and posts it."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings, max_retry_count=0)
    standin.fail_next("chat.postMessage", Failure(status=500))
    first = run_pass(settings=asettings, database=adb, client=client, now=T0)
    assert first.uncertain == 1 and first.sent == 1
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=T0 + dt.timedelta(minutes=5))
    assert later.sent == 1 and later.recovered == 0
    posts = standin.calls_to("chat.postMessage")[1:]  # the refused one is not a post
    assert Counter((c.body["channel"], i) for c in posts for i in posted_ids(c.body)) == Counter(
        {(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})


# -- destinations side by side (bot/outbox/dispatch.py) ---------------------------------


def test_a_slow_destination_holds_up_no_other() -> None:
    """One destination's post hangs until every other destination has posted all of its
    messages: they do, on the other thread."""
    from bot.outbox.dispatch import run_paced

    others_done = threading.Event()
    done: list[tuple[str, int]] = []

    def step(task: tuple[str, int], number: int) -> bool:
        name, _count = task
        if name == "slow":
            done.append((name, int(others_done.wait(timeout=10))))
            return True
        done.append((name, number))
        if sum(1 for n, _ in done if n != "slow") == 6:
            others_done.set()
        return True

    run_paced([("slow", 1), ("b", 3), ("c", 3)], steps=lambda task: task[1], step=step,
              threads=2, interval=0.01)
    assert ("slow", 1) in done  # it was released by the others finishing, not the timeout
    assert sorted(done) == [("b", 0), ("b", 1), ("b", 2), ("c", 0), ("c", 1), ("c", 2),
                            ("slow", 1)]


def test_every_destination_gets_its_first_message_before_any_gets_a_second() -> None:
    from bot.outbox.dispatch import run_paced

    order: list[tuple[str, int]] = []
    run_paced([("a", 3), ("b", 1), ("c", 2)], steps=lambda task: task[1],
              step=lambda task, number: order.append((task[0], number)) or True,
              threads=1, interval=0.01)
    assert order[:3] == [("a", 0), ("b", 0), ("c", 0)]
    assert sorted(order[3:]) == [("a", 1), ("a", 2), ("c", 1)]
    assert order.index(("a", 1)) < order.index(("a", 2))


def test_a_destination_that_fails_stops_alone() -> None:
    from bot.outbox.dispatch import run_paced

    order: list[tuple[str, int]] = []

    def step(task: tuple[str, int], number: int) -> bool:
        order.append((task[0], number))
        if task[0] == "raises":
            raise RuntimeError("a bug")
        return task[0] != "refused"

    run_paced([("refused", 3), ("raises", 3), ("fine", 3)], steps=lambda task: task[1],
              step=step, threads=2, interval=0.0)
    assert sorted(order) == [("fine", 0), ("fine", 1), ("fine", 2), ("raises", 0),
                             ("refused", 0)]


def test_the_operator_sees_what_was_uncertain_and_what_was_found_posted(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`tokenbot alerts run`: the pass after a dead one says what it found already posted
    (JSON and text); an uncertain post makes the pass exit 1 and says so."""
    from bot.cli import main

    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    ids = _dead_pass(adb)
    _slack_got(standin, make_web_client(asettings), ALERTS, ids[ALERTS])
    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    assert main(["alerts", "run", "--now", AFTER_LEASE.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["recovered"], report["sent"], report["uncertain"]) == (1, 1, 0)
    channel = next(d for d in report["destinations"] if d["destination"] == ALERTS)
    assert channel["recovered"] == 1 and channel["messages"] == 0

    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=2)).date(), owner="U2",
               label="late answer")
    standin.fail_next("chat.postMessage", Failure(status=503), Failure(status=503))
    later = (AFTER_LEASE + dt.timedelta(minutes=1)).isoformat()
    assert main(["alerts", "run", "--now", later]) == 1
    out = capsys.readouterr().out
    assert "1 failed (HTTP 503: fatal_error), retried later (1 maybe posted" in out
    assert "2 failed (retried on a later pass)" in out


def test_a_post_whose_connection_drops_unanswered_is_not_posted_again(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Slack accepts the first digest and the connection is cut before the answer: the
    client does not send it again (a reset connection is retried only for reads), and the
    next pass finds it in the history."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    standin.drop_next("chat.postMessage")
    first = run_pass(settings=asettings, database=adb, client=client, now=T0)
    assert (first.sent, first.uncertain) == (1, 1)
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=T0 + dt.timedelta(minutes=5))
    assert (later.recovered, later.messages) == (1, 0)
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


# -- the review's faults: stalls, long histories, Slack failing midway, unwanted alerts ----


def _stalled(asettings: Settings, adb: Database, client: WebClient) -> Delivery:
    """A delivery at T0 of what is armed then, to be driven step by step."""
    with adb.sessions.begin() as session:
        alerts.arm(session, now=T0, alert_days=asettings.tokenbot_alert_days,
                   default_channel=asettings.tokenbot_alert_channel)
    return Delivery(sessions=adb.sessions, client=client, now=T0, worker="stalled",
                    alert_days=asettings.tokenbot_alert_days, post_interval=0.0)


def _stall(run: Delivery, for_: dt.timedelta) -> None:
    """The pass is frozen for ``for_`` (a suspended VM, a long GC pause): its clock jumps."""
    run._started -= for_.total_seconds()
    run._renewed -= for_.total_seconds()


def test_a_pass_stalled_until_its_lease_is_nearly_out_posts_nothing_more(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Its lease has less left than a post may take (a post started now could still be in
    flight when another pass takes over): it neither renews nor posts, and the pass that
    takes over once the lease ran out posts each digest once."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    stalled = _stalled(asettings, adb, client)
    plans = stalled.prepare()
    _stall(stalled, service.LEASE - service.IN_FLIGHT + dt.timedelta(seconds=30))
    for plan in plans:
        assert stalled.step(plan, 0) is False
        assert plan.report.sent == 0 and plan.report.error.startswith("lease run out")
    assert standin.calls_to("chat.postMessage") == []
    assert run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE).sent == 2
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})


def test_a_429_asking_for_a_long_wait_is_not_slept_on_mid_post(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """A post must end within its budget, or it could land after its lease: a 429 whose
    Retry-After is longer than the post may wait is a refusal for now, retried later."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    standin.fail_next("chat.postMessage", Failure(
        status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "40"}))
    started = time.monotonic()
    first = run_pass(settings=asettings, database=adb, client=client, now=T0)
    assert time.monotonic() - started < 20  # did not wait the 40 s
    assert (first.sent, first.failed, first.uncertain) == (1, 1, 0)
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=T0 + dt.timedelta(minutes=2))
    assert later.sent == 1 and not standin.calls_to("conversations.history")
    assert [len(standin.posted(d)) for d in (ALERTS, "U1")] == [1, 1]  # the 429 posted nothing
    assert set(_digests(standin)) == {(ALERTS, token.public_id), ("U1", token.public_id)}


def test_an_uncertain_post_is_not_settled_while_it_may_still_be_in_flight(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Slack took the post but the answer timed out: a pass one backoff (a minute) later
    leaves it alone, as Slack may still be working on it; a pass after that finds it."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings, timeout=1)
    standin.delay_next("chat.postMessage", 1.5)
    first = run_pass(settings=asettings, database=adb, client=client, now=T0, post_interval=0.0)
    assert (first.sent, first.uncertain) == (1, 1)
    soon = run_pass(settings=asettings, database=adb, client=client,
                    now=T0 + dt.timedelta(minutes=2))
    assert (soon.messages, soon.recovered) == (0, 0)
    assert not standin.calls_to("conversations.history")
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=T0 + service.IN_FLIGHT + dt.timedelta(minutes=1))
    assert (later.recovered, later.messages) == (1, 0)
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


def test_a_history_too_long_to_read_to_the_attempt_leaves_the_alert_waiting(
    asettings: Settings, adb: Database, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More messages since the attempt than the pages a pass reads: not finding the
    digest proves nothing, so it is not posted again; once it can be read, it is found."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    ids = _dead_pass(adb)
    client = make_web_client(asettings)
    ts = _slack_got(standin, client, ALERTS, ids[ALERTS])
    for number in range(450):
        standin._keep(ALERTS, f"{float(ts) + 1 + number:.6f}", {"text": f"hi {number}"})
    monkeypatch.setattr(delivery, "HISTORY_PAGES", 2)  # 400 messages
    first = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    channel = next(d for d in first.destinations if d.destination == ALERTS)
    assert (channel.uncertain, channel.messages) == (1, 0)
    assert "history unreadable" in (channel.error or "")
    monkeypatch.setattr(delivery, "HISTORY_PAGES", 100)
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=AFTER_LEASE + service.IN_FLIGHT + dt.timedelta(minutes=1))
    assert (later.recovered, later.messages) == (1, 0)
    assert _digests(standin) == Counter({("U1", token.public_id): 1})
    assert _statuses(adb)[ALERTS] == (OutboxStatus.SENT, ALERTS, ts)


@pytest.mark.parametrize("code", ["fatal_error", "internal_error", "service_unavailable",
                                  "request_timeout"])
def test_slack_failing_midway_at_http_200_is_uncertain_not_a_refusal(
    code: str, asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """``ok: false`` with an error meaning Slack failed midway: the message may be there
    (here it is), so the next pass reads the history instead of posting it again."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    standin.fail_next("chat.postMessage", Failure(status=200, accepted=True,
                                                  body={"ok": False, "error": code}))
    first = run_pass(settings=asettings, database=adb, client=client, now=T0)
    assert (first.sent, first.uncertain) == (1, 1)
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=T0 + service.IN_FLIGHT + dt.timedelta(minutes=1))
    assert (later.recovered, later.messages) == (1, 0)
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1, ("U1", token.public_id): 1})
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SENT}


@pytest.mark.parametrize("change", ["disable", "extend"])
def test_an_uncertain_alert_no_longer_wanted_is_closed_without_asking_slack(
    change: str, asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """The token was disabled (or re-dated) after a dead pass's attempt: its alerts are
    never posted again whatever the history says, so it is not read; they are closed."""
    created = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    _dead_pass(adb)
    actor = tokens.Actor(TEAM, "U1")  # its owner: nobody else is told
    with adb.sessions.begin() as session:
        if change == "disable":
            tokens.disable_token(session, actor=actor, public_id=created.token.public_id,
                                 expected_version=created.token.version, now=T0)
        else:
            tokens.extend_token(session, actor=actor, public_id=created.token.public_id,
                                expected_version=created.token.version, now=T0, policy=NO_POLICY)
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=AFTER_LEASE)
    assert (report.skipped, report.failed, report.messages) == (2, 0, 0)
    # (the pass's weekly owner check, users.info, is another matter: tests/test_owners.py)
    assert [c.method for c in standin.calls if c.method != "users.info"] == []
    assert {s for s, _c, _t in _statuses(adb).values()} == {OutboxStatus.SKIPPED}


@pytest.mark.parametrize("code", ["user_not_found", "user_disabled", "cannot_dm_bot"])
def test_an_owner_who_takes_no_dm_closes_their_uncertain_alert(
    code: str, asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Their DM cannot be opened (account gone): the alert is closed, not retried for
    ever; the channel's is settled as usual."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    _dead_pass(adb)
    client = make_web_client(asettings)
    standin.fail_next("conversations.open", Failure(status=200, body={"ok": False, "error": code}))
    report = run_pass(settings=asettings, database=adb, client=client, now=AFTER_LEASE)
    owner = next(d for d in report.destinations if d.destination == "U1")
    assert (owner.skipped, owner.failed) == (1, 0) and code in (owner.error or "")
    assert report.failed == 0 and report.sent == 1
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=AFTER_LEASE + dt.timedelta(days=1)).messages == 0
    assert _digests(standin) == Counter({(ALERTS, token.public_id): 1})
    assert _statuses(adb)["U1"][0] == OutboxStatus.SKIPPED


def test_the_report_counts_every_failure_of_a_destination(
    asettings: Settings, adb: Database, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel has an uncertain alert Slack cannot be asked about and a new one whose
    post cannot be recorded (the database stays down): both are counted as failed."""
    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    _dead_pass(adb)
    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=2)).date(), owner="U2",
               label="second")
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01,))
    real = service.mark_sent

    def down(session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["channel"] == ALERTS:
            raise OperationalError("UPDATE alerts", {}, ConnectionError("connection refused"))
        return real(session, **kwargs)

    monkeypatch.setattr(service, "mark_sent", down)
    unreadable = Failure(status=200, body={"ok": False, "error": "internal_error"})
    standin.fail_next("conversations.history", unreadable, unreadable)  # the channel, U1's DM
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=AFTER_LEASE)
    channel = next(d for d in report.destinations if d.destination == ALERTS)
    assert (channel.uncertain, channel.failed, channel.sent) == (1, 2, 0), report.to_dict()


def test_a_post_refused_for_days_is_given_up_and_not_tried_again(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A destination that refuses every post (the bot was removed from the channel, the
    owner left) is tried with backoff for days, then its messages are closed as given up
    and never tried again; they are counted, and `alerts status` shows them with the
    last refusal."""
    from bot import metrics
    from bot.cli import main
    from tests.alerts_support import cli_environment
    from tests.support.scrape import moved, parse

    before = parse(metrics.exposition()[0].decode())
    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=29)).date())
    client = make_web_client(asettings)
    refusal = Failure(status=200, body={"ok": False, "error": "not_in_channel"})
    now = T0
    for _ in range(service.GIVE_UP_AFTER):
        standin.fail_next("chat.postMessage", refusal, refusal)  # the channel, the DM
        assert run_pass(settings=asettings, database=adb, client=client, now=now).failed == 2
        now += service.BACKOFF_MAX
    assert run_pass(settings=asettings, database=adb, client=client, now=now).messages == 0
    with adb.sessions() as session:
        rows = session.execute(select(OutboxMessage.status, OutboxMessage.skip_reason,
                                      OutboxMessage.attempts)).all()
    assert sorted(rows) == [(OutboxStatus.SKIPPED, service.Closed.GAVE_UP, service.GIVE_UP_AFTER)] * 2
    assert now - T0 < dt.timedelta(days=6)
    given_up = moved(before, parse(metrics.exposition()[0].decode()),
                     "tokenbot_outbox_given_up_total")
    assert sum(given_up.values()) == 2

    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    assert main(["alerts", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted((g["audience"], g["count"], g["last_error"]) for g in data["given_up"]) == [
        ("channel", 1, "HTTP 200: not_in_channel"), ("owner", 1, "HTTP 200: not_in_channel")]
    assert main(["alerts", "status"]) == 0
    shown = capsys.readouterr().out
    assert "Given up" in shown and f"#{ALERTS}" in shown and "not_in_channel" in shown


def test_a_message_its_builder_cannot_draw_is_closed_and_the_others_go_out(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A row whose payload its builder cannot read (written by another release, say) is
    closed once, logged, and holds up neither its destination's other messages nor later
    passes; a row of a kind this release does not know is left for one that does."""
    with adb.sessions.begin() as session:
        for payload in ({"label": "broken"}, {"label": "ci", "ending": "rotation_switched",
                                              "caller": "ci-runner", "at": T0.isoformat()}):
            service.queue(session, kind=MessageKind.ROTATION_NOTICE, team_id=TEAM,
                          audience=Audience.OWNER, destination="U1", now=T0,
                          token_public_id="tok_1", payload=payload)
        session.execute(insert(OutboxMessage).values(
            kind="from_a_newer_release", team_id=TEAM, audience="owner", destination="U1",
            payload={}, status="pending", attempts=0, next_attempt_at=T0, created_at=T0))
    client = make_web_client(asettings)
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        report = run_pass(settings=asettings, database=adb, client=client, now=T0)
    assert (report.sent, report.skipped) == (1, 1)
    assert any("could not be drawn" in r.getMessage() for r in caplog.records)
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=AFTER_LEASE).messages == 0
    with adb.sessions() as session:
        newer = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "from_a_newer_release")).one()
    assert (newer.status, newer.claimed_by) == (OutboxStatus.PENDING, None)
