"""Expiry alerts, end to end through the pass: SQLite and PostgreSQL, time driven by
time-machine, Slack played by the local stand-in (which counts every post)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
import time_machine
from sqlalchemy import func, select

from bot.services import alerts
from bot.services import outbox as service
from bot.alerts.scheduler import run_pass
from bot.config import Settings
from bot.db import Database
from bot.models import Audience, OutboxMessage, OutboxStatus
from bot.services import tokens
from bot.slack.client import make_web_client
from tests.alerts_support import (
    ALERTS,
    TEAM,
    UTC,
    alert_settings,
    by_destination,
    posted_ids,
    seed_token,
    successful_posts,
)
from tests.slack.conftest import mrkdwn_texts
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Passes:
    """Runs passes at time-machine's current time; remembers which pass posted what."""

    def __init__(self, settings: Settings, db: Database, standin: SlackStandIn) -> None:
        self.settings, self.db, self.standin = settings, db, standin
        self.client = make_web_client(settings)
        self.log: list[tuple[dt.datetime, str, list[str], str]] = []

    def run(self) -> None:
        now = dt.datetime.now(UTC)
        before = len(self.standin.calls_to("chat.postMessage"))
        run_pass(settings=self.settings, database=self.db, client=self.client, now=now,
                 post_interval=0.0)
        for call in self.standin.calls_to("chat.postMessage")[before:]:
            self.log.append((now, call.body["channel"], posted_ids(call.body), call.body["text"]))

    def at(self, channel: str) -> list[tuple[dt.datetime, str]]:
        """(moment of the pass, fallback text) of each post to ``channel``."""
        return [(when, text) for when, where, _ids, text in self.log if where == channel]


def _alert_times(passes: Passes, channel: str) -> list[dt.datetime]:
    return [when for when, _text in passes.at(channel)]


@pytest.mark.slow
def test_a_token_is_reminded_at_30_7_1_days_and_at_expiry_once_each(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Hour by hour through a token's life (expiring in 40 days): one reminder per
    threshold, each in the first pass at or after the moment it is crossed."""
    created = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=40)).date(),
                         channel=None, owner="U1")
    expires = dt.datetime(2027, 1, 6, tzinfo=UTC)
    passes = Passes(asettings, adb, standin)
    with time_machine.travel(T0, tick=False) as traveller:
        while dt.datetime.now(UTC) < expires + dt.timedelta(days=2):
            passes.run()
            traveller.shift(dt.timedelta(hours=1))
    expected = [expires - dt.timedelta(days=d) for d in (30, 7, 1, 0)]
    for destination in (ALERTS, "U1"):
        assert _alert_times(passes, destination) == expected
        texts = [text for _when, text in passes.at(destination)]
        assert "1 expiring within 30 days" in texts[0]  # not "soon": the badge's 7 days
        assert all("1 expiring soon" in text for text in texts[1:3])
        assert "expired and no longer working" in texts[3]
    assert {tuple(ids) for _w, _c, ids, _t in passes.log} == {(created.token.public_id,)}
    bodies = [call.body for call in successful_posts(standin)]
    how_far = [json.dumps(body["blocks"]) for body in bodies if body["channel"] == ALERTS]
    assert "in 30 days" in how_far[0] and "in 7 days" in how_far[1]
    assert "in 1 day" in how_far[2] and "this token no longer works" in how_far[3]


def test_extending_after_the_7_day_reminder_rearms_the_thresholds_for_the_new_date(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    old = dt.datetime(2026, 12, 7, tzinfo=UTC)
    created = seed_token(adb, now=T0, expires_on=old.date())
    passes = Passes(asettings, adb, standin)
    with time_machine.travel(T0, tick=False) as traveller:
        while not any("in 7 days" in json.dumps(c.body["blocks"])
                      for c in standin.calls_to("chat.postMessage")):
            passes.run()
            traveller.shift(dt.timedelta(hours=6))
        assert _alert_times(passes, ALERTS) == [T0, old - dt.timedelta(days=7)]
        actor = tokens.Actor(team_id=TEAM, user_id="U1")
        with adb.sessions.begin() as session:
            result = tokens.extend_token(
                session, actor=actor, public_id=created.token.public_id,
                expected_version=created.token.version, now=dt.datetime.now(UTC), policy=NO_POLICY,
            )
        new = result.token.expires_at
        assert new == old + dt.timedelta(days=30)
        while dt.datetime.now(UTC) < new + dt.timedelta(days=1):
            passes.run()
            traveller.shift(dt.timedelta(hours=6))
    rearmed = [new - dt.timedelta(days=d) for d in (30, 7, 1, 0)]
    # Nothing more for the old date (its 1-day and expiry reminders are gone).
    assert _alert_times(passes, ALERTS) == [T0, old - dt.timedelta(days=7), *rearmed]
    assert _alert_times(passes, "U1") == _alert_times(passes, ALERTS)


def test_after_downtime_only_the_nearest_threshold_is_posted(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    expires = dt.datetime(2027, 1, 6, tzinfo=UTC)
    seed_token(adb, now=T0, expires_on=expires.date())
    passes = Passes(asettings, adb, standin)
    # The first pass ever runs 5 days before expiry: 30 and 7 are both crossed.
    with time_machine.travel(expires - dt.timedelta(days=5), tick=False) as traveller:
        passes.run()
        passes.run()
        traveller.move_to(expires + dt.timedelta(hours=3))  # down again across 1 day
        passes.run()
    texts = [json.dumps(c.body["blocks"]) for c in successful_posts(standin)
             if c.body["channel"] == ALERTS]
    assert len(texts) == 2
    assert "in 5 days" in texts[0]
    assert "this token no longer works" in texts[1]
    with adb.sessions() as session:
        thresholds = sorted(session.scalars(select(OutboxMessage.threshold_days).distinct()))
    assert thresholds == [0, 7]


def test_a_token_without_expiry_or_disabled_never_alerts(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    seed_token(adb, now=T0, expires_on=None)
    disabled = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    with adb.sessions.begin() as session:
        tokens.disable_token(session, actor=tokens.Actor(TEAM, "U1"),
                             public_id=disabled.token.public_id,
                             expected_version=disabled.token.version, now=T0)
    passes = Passes(asettings, adb, standin)
    with time_machine.travel(T0, tick=False) as traveller:
        for _ in range(8):
            passes.run()
            traveller.shift(dt.timedelta(days=1))
    assert standin.calls_to("chat.postMessage") == []


@pytest.mark.slow
def test_digests_group_tokens_per_channel_soonest_first_within_the_block_limit(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """250 tokens for the alert channel (two messages, paced one second apart), 3 with a
    per-token channel override, owners split over two people: one digest per channel."""
    ids_by_day: dict[str, int] = {}
    for number in range(250):
        days = 2 + number % 5
        created = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=days)).date(),
                             label=f"<!channel> & job {number}",
                             owner="U1" if number % 2 else "U2")
        ids_by_day[created.token.public_id] = days
    team_ids = [
        seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=d)).date(),
                   label=f"team {d}", owner="U3", channel="CTEAM").token.public_id
        for d in (6, 3, 5)
    ]
    client = make_web_client(asettings)
    report = run_pass(settings=asettings, database=adb, client=client, now=T0)
    calls = successful_posts(standin)
    per = by_destination(calls)
    assert per["CTEAM"] == [team_ids[1], team_ids[2], team_ids[0]]  # soonest first
    assert sorted(per[ALERTS]) == sorted(ids_by_day)
    days_in_order = [ids_by_day[i] for i in per[ALERTS]]
    assert days_in_order == sorted(days_in_order)
    assert len(per["U1"]) == 125 and len(per["U2"]) == 125 and len(per["U3"]) == 3
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.body["channel"]] = counts.get(call.body["channel"], 0) + 1
        assert len(call.body["blocks"]) <= 50
        mrkdwn = "\n".join(mrkdwn_texts(call.body["blocks"]))
        assert "<!channel>" not in mrkdwn  # labels are escaped where Slack parses them
        assert "&lt;!channel&gt; &amp; job" in mrkdwn or call.body["channel"] in ("CTEAM", "U3")
    assert counts == {ALERTS: 2, "CTEAM": 1, "U1": 1, "U2": 1, "U3": 1}
    assert report.messages == 6 and report.sent == 2 * 253
    alerts_posts = [c for c in calls if c.body["channel"] == ALERTS]
    assert alerts_posts[1].at - alerts_posts[0].at >= 1.0  # one message per second
    # the small digest shows every field and three buttons per token
    team_post = next(c for c in calls if c.body["channel"] == "CTEAM")
    raw = json.dumps(team_post.body["blocks"])
    assert "<@U3>" in raw and "`write`" in raw and "Expires 20" in raw
    assert "<!date^" not in raw  # an expiry is a calendar date, not an instant
    actions = [b for b in team_post.body["blocks"] if b["type"] == "actions"]
    assert [[e["text"]["text"] for e in b["elements"]] for b in actions] == [
        ["Extend 30 days", "Edit", "Disable"]] * 3
    disable = actions[0]["elements"][2]["confirm"]
    assert disable["confirm"]["text"] == "Disable Token"
    assert "immediately lose access" in disable["text"]["text"]
    assert actions[0]["elements"][0]["confirm"]["confirm"]["text"] == "Extend 30 days"
    # nothing is posted twice
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=T0 + dt.timedelta(minutes=15)).messages == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "failure, retried_in_same_pass",
    [
        (Failure(status=429, headers={"Retry-After": "1"},
                 body={"ok": False, "error": "ratelimited"}), True),
        (Failure(status=500), False),
        (Failure(status=200, body={"ok": False, "error": "internal_error"}), False),
    ],
    ids=["429-retry-after", "500", "ok-false"],
)
def test_failed_posts_are_retried_and_arrive_exactly_once(
    asettings: Settings, adb: Database, standin: SlackStandIn, failure: Failure,
    retried_in_same_pass: bool,
) -> None:
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    client = make_web_client(asettings)
    # 429 once: the retry handler waits Retry-After and tries again in the same pass.
    # 500 once per destination (channel, DM): never retried blindly, as Slack may have
    # posted it; the next pass reads the history first (nothing there) and posts.
    # ok:false once: never retried by the handlers; one destination fails, the other not.
    failures = {429: 1, 500: 2, 200: 1}[failure.status]
    standin.fail_next("chat.postMessage", *[failure] * failures)
    with time_machine.travel(T0, tick=False) as traveller:
        first = run_pass(settings=asettings, database=adb, client=client, now=T0)
        if retried_in_same_pass:
            assert first.failed == 0 and first.sent == 2
        else:
            failed = 2 if failure.status == 500 else 1
            assert first.failed == failed and first.sent == 2 - failed
            traveller.shift(dt.timedelta(seconds=30))  # before the backoff: nothing
            assert run_pass(settings=asettings, database=adb, client=client,
                            now=dt.datetime.now(UTC)).messages == 0
            traveller.shift(dt.timedelta(minutes=15))
            later = run_pass(settings=asettings, database=adb, client=client,
                             now=dt.datetime.now(UTC))
            assert later.sent == failed and later.failed == 0
        traveller.shift(dt.timedelta(minutes=15))
        assert run_pass(settings=asettings, database=adb, client=client,
                        now=dt.datetime.now(UTC)).messages == 0
    per = by_destination(successful_posts(standin, failures))
    assert per == {ALERTS: [token.public_id], "U1": [token.public_id]}
    with adb.sessions() as session:
        statuses = session.execute(select(OutboxMessage.status, OutboxMessage.attempts)).all()
    assert sorted(s for s, _a in statuses) == [OutboxStatus.SENT, OutboxStatus.SENT]
    attempts = {429: [0, 0], 500: [1, 1], 200: [0, 1]}[failure.status]
    assert sorted(a for _s, a in statuses) == attempts


def test_a_pass_killed_between_claiming_and_posting_is_completed_by_a_later_pass(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=6)).date()).token
    with adb.sessions.begin() as session:  # what the dead pass managed to do
        alerts.arm(session, now=T0, alert_days=[30, 7, 1], default_channel=ALERTS)
    with adb.sessions.begin() as session:
        claimed = service.claim(session, now=T0, worker="dead")
    assert len(claimed) == 2  # the channel's and the owner's
    client = make_web_client(asettings)
    # While the lease holds, nobody else posts them (the pass might still be alive).
    for minutes in (0, 5):
        report = run_pass(settings=asettings, database=adb, client=client,
                          now=T0 + dt.timedelta(minutes=minutes))
        assert report.messages == 0
    later = T0 + service.LEASE + dt.timedelta(minutes=1)
    assert run_pass(settings=asettings, database=adb, client=client, now=later).sent == 2
    assert run_pass(settings=asettings, database=adb, client=client,
                    now=later + dt.timedelta(minutes=15)).messages == 0
    assert by_destination(successful_posts(standin)) == {
        ALERTS: [token.public_id], "U1": [token.public_id]}


@pytest.mark.parametrize("change", ["disable", "delete", "extend"])
def test_a_pending_alert_is_not_posted_once_its_token_is_disabled_deleted_or_extended(
    asettings: Settings, adb: Database, standin: SlackStandIn, change: str
) -> None:
    created = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=6)).date())
    client = make_web_client(asettings)
    refused = Failure(status=200, body={"ok": False, "error": "service_unavailable"})
    standin.fail_next("chat.postMessage", refused, refused)
    assert run_pass(settings=asettings, database=adb, client=client, now=T0).failed == 2
    actor = tokens.Actor(team_id=TEAM, user_id="U1")
    with adb.sessions.begin() as session:
        if change == "disable":
            tokens.disable_token(session, actor=actor, public_id=created.token.public_id,
                                 expected_version=created.token.version, now=T0)
        elif change == "delete":
            tokens.delete_token(session, actor=actor, public_id=created.token.public_id,
                                expected_version=created.token.version, now=T0)
        else:
            tokens.extend_token(session, actor=actor, public_id=created.token.public_id,
                                expected_version=created.token.version, now=T0, policy=NO_POLICY)
    report = run_pass(settings=asettings, database=adb, client=client,
                      now=T0 + dt.timedelta(minutes=15))
    assert successful_posts(standin, failures=2) == []
    assert report.messages == 0
    with adb.sessions() as session:
        rows = session.execute(select(OutboxMessage.status, OutboxMessage.skip_reason)).all()
    if change == "delete":
        assert rows == []  # the records went with the token
    else:
        expected = "disabled" if change == "disable" else "redated"
        assert sorted(rows) == [(OutboxStatus.SKIPPED, expected)] * 2


def test_a_pass_over_tokens_nowhere_near_expiry_writes_nothing(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    for days in (45, 400):
        seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=days)).date())
    seed_token(adb, now=T0 - dt.timedelta(days=30), expires_on=(T0 - dt.timedelta(days=10)).date())
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=T0)
    assert report.armed == 0 and report.messages == 0
    with adb.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.slow
def test_slack_unreachable_is_retried_later(
    make_settings: Callable[..., Settings], asettings: Settings, adb: Database,
    standin: SlackStandIn,
) -> None:
    """Connection refused (slack_sdk's connection retry handler gives up): both
    reminders wait, then arrive once when Slack answers again."""
    token = seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date()).token
    down = make_web_client(alert_settings(make_settings, standin,
                                          SLACK_API_URL="http://127.0.0.1:9/api/"))
    first = run_pass(settings=asettings, database=adb, client=down, now=T0)
    assert first.failed == 2 and first.sent == 0
    assert {d.error.split(":")[0] for d in first.destinations if d.error} == {"URLError"}
    later = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                     now=T0 + dt.timedelta(minutes=15))
    assert later.sent == 2
    assert by_destination(successful_posts(standin)) == {
        ALERTS: [token.public_id], "U1": [token.public_id]}


def test_a_long_pass_keeps_its_lease(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """A pass still posting when its lease would run out renews it, so another process
    does not take its alerts over and post them a second time."""
    from bot.outbox.run import Delivery

    seed_token(adb, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date())
    with adb.sessions.begin() as session:
        alerts.arm(session, now=T0, alert_days=[30, 7, 1], default_channel=ALERTS)
    run = Delivery(sessions=adb.sessions, client=make_web_client(asettings), now=T0,
                   worker="slow", alert_days=[30, 7, 1], post_interval=0.0)
    assert len(run.prepare()) == 2  # claimed, not yet posted
    for _minute in range(11):  # eleven minutes later, still going (renewing as it goes)
        run._started -= 60
        run.renew(every=0)
    other = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                     now=T0 + dt.timedelta(minutes=11))
    assert other.messages == 0  # the lease was renewed: nothing taken over
    later = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                     now=T0 + dt.timedelta(minutes=22))
    assert later.sent == 2  # the slow pass died after all: taken over once its lease ran out


@pytest.mark.parametrize(
    "count, messages, blocks",
    [(1, 1, [3]), (24, 1, [49]), (25, 1, [7]), (240, 1, [49]), (241, 2, [27, 25]),
     (500, 3, [35, 35, 35])],
)
def test_digest_messages_fill_up_to_the_50_block_limit(
    count: int, messages: int, blocks: list[int]
) -> None:
    """Pure views: how many messages a destination needs, and that each is valid Block
    Kit within 50 blocks (the longest labels, escaped, in the compact layout too)."""
    from bot.slack.views.digests import DigestItem, chunk_items, digest_blocks
    from tests.support.blockkit import validate_message_blocks

    items = [
        DigestItem(public_id=f"tok_{n:012d}", version=1, label="<&>" * 33 + "x",
                   masked="tkb_AbCdEf…", scope="write", owner="U1",
                   expires_at=T0 + dt.timedelta(days=7, minutes=n), threshold_days=7)
        for n in range(count)
    ]
    chunks = chunk_items(items)
    assert len(chunks) == messages
    drawn = [[b.to_dict() for b in digest_blocks(c, audience=Audience.CHANNEL, now=T0)]
             for c in chunks]
    assert [len(d) for d in drawn] == blocks
    for d in drawn:
        validate_message_blocks(d)
    assert [i.public_id for c in chunks for i in c] == [i.public_id for i in items]


def test_without_an_alert_channel_owners_are_still_told_and_overrides_still_apply(
    make_settings: Callable[..., Settings], standin: SlackStandIn,
) -> None:
    settings = alert_settings(make_settings, standin, TOKENBOT_ALERT_CHANNEL="")
    database = Database(settings, auto_upgrade=False)
    try:
        plain = seed_token(database, now=T0, expires_on=(T0 + dt.timedelta(days=3)).date(),
                           owner="U1").token
        routed = seed_token(database, now=T0, expires_on=(T0 + dt.timedelta(days=4)).date(),
                            owner="U2", channel="CTEAM").token
        run_pass(settings=settings, database=database, client=make_web_client(settings),
                 now=T0)
    finally:
        database.dispose()
    assert by_destination(successful_posts(standin)) == {
        "U1": [plain.public_id], "U2": [routed.public_id], "CTEAM": [routed.public_id]}


def test_thresholds_come_from_the_setting(
    make_settings: Callable[..., Settings], standin: SlackStandIn,
) -> None:
    settings = alert_settings(make_settings, standin, TOKENBOT_ALERT_DAYS="14,3")
    database = Database(settings, auto_upgrade=False)
    expires = dt.datetime(2026, 12, 27, tzinfo=UTC)
    try:
        seed_token(database, now=T0, expires_on=expires.date())
        passes = Passes(settings, database, standin)
        with time_machine.travel(T0, tick=False) as traveller:
            while dt.datetime.now(UTC) <= expires:
                passes.run()
                traveller.shift(dt.timedelta(hours=12))
    finally:
        database.dispose()
    assert _alert_times(passes, ALERTS) == [
        expires - dt.timedelta(days=14), expires - dt.timedelta(days=3), expires]
