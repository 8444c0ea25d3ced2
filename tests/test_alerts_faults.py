"""The fault suite of the outbox (issue 19): whatever breaks mid-pass, each message of every
kind (expiry digest, owner notice, rotation notice, dead-secret alarm, hygiene digest,
dormant-disabled DM, leak notice, reassign notice, departed-owner post: every
``MessageKind``, a test says so) is in Slack exactly once where its history is readable.
A pass killed with SIGKILL at each step of its run, a PostgreSQL restart while it posts
(expiry digests; the database errors of every kind are monkeypatched OperationalErrors,
never a restart of the shared server), a post Slack accepts but answers after the client's
timeout, and Slack unreachable (the post is failed, not uncertain, and posted once Slack
is back).

Expiry: ten destinations (five channels, five owners' DMs), one digest each. Owner notices:
an admin disabled then enabled a token of each of five owners (two DMs each). Rotation
notices: five overlaps ran out (one DM each). Alarms: five disabled tokens presented (to
the owner and the token's channel). Hygiene: five owners' dormant tokens (the weekly
digest to each owner and to the alert channel). Dormant disabled: the same, warned of 8
days before under TOKENBOT_DORMANT_ACTION=disable and no alert channel (one DM each).
Leak notices: three live secrets pasted in a message (each owner's DM, three posts to the
alert channel). Reassign notices: three tokens given to new owners (the old and the new
owner told). Departed owners: four owners of dormant tokens deactivated a day after the
weekly digest (four posts to the alert channel). What a seed's earlier pass posted is left
out of the checks. The stand-in keeps every message it accepted, including those whose
caller died before the answer."""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.outbox import delivery
from bot.outbox.delivery import named_rows
from bot.alerts.scheduler import run_pass
from bot.config import Settings, load_settings
from bot.db import Database, make_engine, upgrade
from bot.models import MessageKind, OutboxMessage, OutboxStatus
from bot.services import departed, leaks, owners
from bot.services import outbox as service
from bot.slack.client import make_web_client
from bot.services import tokens
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from tests.alerts_support import (
    ADMIN,
    ALERTS,
    TEAM,
    UTC,
    cli_environment,
    posted_ids,
    seed_token,
)
from tests.conftest import TEST_KEY
from tests.support.slack_standin import Failure, SlackStandIn

pytestmark = pytest.mark.slow

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AFTER_LEASE = NOW + service.LEASE + dt.timedelta(minutes=1)
OWNERS = [f"U{n}" for n in range(1, 6)]
NEW_OWNERS = [f"U{n}" for n in range(6, 9)]
DAY = dt.timedelta(days=1)
CHANNELS = [f"C{n}" for n in range(1, 6)]
ANSWER = 0.2  # Slack answers each post this late


def _seed(db: Database, settings: Settings) -> Counter[tuple[str, str]]:
    """Five tokens due a reminder, each to its own channel and owner: ten digests."""
    expected: Counter[tuple[str, str]] = Counter()
    for owner, channel in zip(OWNERS, CHANNELS):
        token = seed_token(db, now=NOW, expires_on=(NOW + dt.timedelta(days=3)).date(),
                           label=f"deploy {owner}", owner=owner, channel=channel).token
        expected.update({(owner, token.public_id): 1, (channel, token.public_id): 1})
    return expected


def _digests(standin: SlackStandIn) -> Counter[tuple[str, str]]:
    """(destination, token) of every digest Slack holds, whether its poster read the
    answer or not."""
    return Counter((message["channel"], public_id) for message in standin.posted()
                   if message.get("blocks") for public_id in posted_ids(message))


def _assert_recorded_as_slack_has_them(db: Database, standin: SlackStandIn) -> None:
    """Every alert is sent, and names the message Slack holds for it (its buttons work)."""
    named = {(m["ts"], alert_id) for m in standin.posted() for alert_id in named_rows(m)}
    with db.sessions() as session:
        rows = session.execute(select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.message_ts,
                                      OutboxMessage.post_attempted_at)).all()
    assert len(rows) == 10
    for alert_id, status, ts, attempted in rows:
        assert (status, attempted) == (OutboxStatus.SENT, None)
        assert (ts, alert_id) in named


def _version(db: Database, public_id: str) -> int:
    with db.sessions() as session:
        return tokens.get_token(session, team_id=TEAM, public_id=public_id).version


def _seed_owner_notices(db: Database, settings: Settings) -> None:
    """An admin disabled, then enabled, a token of each owner: two notices each."""
    admin = tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True)
    for owner in OWNERS:
        public_id = seed_token(db, now=NOW - dt.timedelta(hours=1), expires_on=None,
                               label=f"deploy {owner}", owner=owner).token.public_id
        for change in (tokens.disable_token, tokens.enable_token):
            with db.sessions.begin() as session:
                change(session, actor=admin, public_id=public_id,
                       expected_version=_version(db, public_id),
                       now=NOW - dt.timedelta(minutes=1))


def _seed_rotations(db: Database, settings: Settings) -> None:
    """A rotation of each owner's token whose overlap ran out: the pass ends it and
    queues its notice."""
    for owner in OWNERS:
        created = seed_token(db, now=NOW - dt.timedelta(hours=3), expires_on=None,
                             label=f"deploy {owner}", owner=owner)
        with db.sessions.begin() as session:
            tokens.rotate_token(session,
                                box=db.box, actor=tokens.Actor(team_id=TEAM, user_id=owner),
                                now=NOW - dt.timedelta(hours=2),
                                public_id=created.token.public_id,
                                expected_version=created.token.version,
                                overlap=dt.timedelta(hours=1))


def _seed_alarms(db: Database, settings: Settings) -> None:
    """A disabled token of each owner, each with its own channel, presented this hour."""
    for owner, channel in zip(OWNERS, CHANNELS):
        created = seed_token(db, now=NOW - dt.timedelta(hours=3), expires_on=None,
                             label=f"deploy {owner}", owner=owner, channel=channel)
        with db.sessions.begin() as session:  # by its owner: nobody else is told
            tokens.disable_token(session, actor=tokens.Actor(team_id=TEAM, user_id=owner),
                                 public_id=created.token.public_id,
                                 expected_version=created.token.version,
                                 now=NOW - dt.timedelta(hours=1))
        with db.engine.begin() as connection:
            add_presentations(connection, counts={UseKey(
                TEAM, created.token.public_id, "ci-runner", hour_of(NOW), "disabled",
                created.token.secret_masked): 3})


def _earlier_pass(db: Database, settings: Settings, at: dt.datetime) -> None:
    """A pass before NOW, which posted what it had to (not under test: the suite leaves
    the rows it sent out)."""
    report = run_pass(settings=settings, database=db, client=make_web_client(settings),
                      now=at, post_interval=0.0)
    assert report.failed == 0 and report.sent > 0, report.to_dict()


def _seed_dormant(db: Database, owners: list[str]) -> None:
    """A token of each owner, created 100 days ago and never used: dormant (90 days)."""
    for owner in owners:
        seed_token(db, now=NOW - 100 * DAY, expires_on=None, label=f"idle {owner}",
                   owner=owner)


def _seed_hygiene(db: Database, settings: Settings) -> None:
    """Five owners' dormant tokens: the weekly digest to each owner and the alert channel."""
    _seed_dormant(db, OWNERS)


def _seed_dormant_disabled(db: Database, settings: Settings) -> None:
    """Five owners' dormant tokens, which their weekly digests warned of 8 days ago
    (TOKENBOT_DORMANT_ACTION=disable): the pass disables them and tells each owner. (No
    alert channel: its weekly digest, due again with them, would list them too.)"""
    _seed_dormant(db, OWNERS)
    _earlier_pass(db, settings, NOW - 8 * DAY)  # the warnings


def _seed_leaks(db: Database, settings: Settings) -> None:
    """Three live secrets pasted in one message: each owner's DM and a post each to the
    alert channel (the tokens have no channel of their own)."""
    secrets = [seed_token(db, now=NOW - DAY, expires_on=None, label=f"deploy {owner}",
                          owner=owner).secret for owner in OWNERS[:3]]
    where = leaks.Where(channel="CPUBLIC", message_ts="1795000000.000100", poster="UPOSTER",
                        permalink="https://acme.slack.com/archives/CPUBLIC/p1795000000000100")
    with db.sessions.begin() as session:
        found = leaks.record_leaks(session, team_id=TEAM, secrets=secrets, where=where,
                                   action=leaks.LeakAction(settings.tokenbot_leak_action),
                                   default_channel=settings.tokenbot_alert_channel,
                                   now=NOW - dt.timedelta(minutes=1))
    assert len(found) == 3


def _seed_reassignments(db: Database, settings: Settings) -> None:
    """An admin gave three owners' tokens to three others: the old and the new owner of
    each are told."""
    admin = tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True)
    for old, new in zip(OWNERS[:3], NEW_OWNERS):
        token = seed_token(db, now=NOW - DAY, expires_on=None, label=f"deploy {old}",
                           owner=old).token
        with db.sessions.begin() as session:
            told = owners.reassign(session, actor=admin, public_id=token.public_id,
                                   new_owner=new, now=NOW - dt.timedelta(minutes=1),
                                   expected_version=token.version).told
        assert told == (old, new)


def _seed_departures(db: Database, settings: Settings) -> None:
    """Four owners of dormant tokens were found deactivated (a ``user_change``) a day
    after the weekly digest listed their tokens: one post each to the alert channel. (The
    channel's digest is not due again for a week: it would list their tokens too.)"""
    _seed_dormant(db, OWNERS[:4])
    _earlier_pass(db, settings, NOW - DAY)  # the weekly digests
    for owner in OWNERS[:4]:
        with db.sessions.begin() as session:
            assert departed.note_departure(session, team_id=TEAM, user_id=owner,
                                           now=NOW - dt.timedelta(minutes=1),
                                           channel=settings.tokenbot_alert_channel)


@dataclass(frozen=True)
class _Kind:
    """A kind of message: how to make some due (at NOW, under its passes' settings) and
    how many posts they make. ``settings``: the update (by field name) of the tests'
    settings its passes run with, the killed ones too; ``few_points``: killed at fewer
    points (see :func:`_points`)."""

    name: str
    seed: Callable[[Database, Settings], object]
    posts: int
    settings: Mapping[str, object] = field(default_factory=dict)
    few_points: bool = False

    def __str__(self) -> str:
        return self.name


# The pass disables dormant tokens only under this action; see _seed_dormant_disabled.
DISABLE_DORMANT = {"tokenbot_dormant_action": "disable", "tokenbot_alert_channel": None}
KINDS = [_Kind("expiry", _seed, 10), _Kind("owner_notice", _seed_owner_notices, 10),
         _Kind("rotation_notice", _seed_rotations, 5),
         _Kind("dead_secret_alarm", _seed_alarms, 10),
         _Kind("hygiene", _seed_hygiene, 6, few_points=True),
         _Kind("dormant_disabled", _seed_dormant_disabled, 5, DISABLE_DORMANT,
               few_points=True),
         _Kind("leak_notice", _seed_leaks, 6, few_points=True),
         _Kind("reassign_notice", _seed_reassignments, 6, few_points=True),
         _Kind("departed_owner", _seed_departures, 4, few_points=True)]


def _settings(kind: _Kind, asettings: Settings) -> Settings:
    """The settings ``kind``'s passes run with (the killed ones too: ``cli_environment``)."""
    return asettings.model_copy(update=dict(kind.settings))


def _earlier(db: Database) -> frozenset[int]:
    """The rows a seed's earlier pass already posted (left out of what is checked)."""
    with db.sessions() as session:
        return frozenset(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.status == OutboxStatus.SENT)))


def _posts(standin: SlackStandIn, earlier: frozenset[int]) -> list[dict[str, object]]:
    """The messages Slack holds, less those of the rows ``earlier`` posted."""
    return [m for m in standin.posted() if not named_rows(m) or named_rows(m) - earlier]


def test_every_kind_of_message_is_in_the_fault_suite() -> None:
    """A new ``MessageKind`` fails here until its seed is in :data:`KINDS`."""
    assert {kind.name for kind in KINDS} == {kind.value for kind in MessageKind}


def _assert_in_slack_once(db: Database, standin: SlackStandIn, kind: _Kind,
                          earlier: frozenset[int] = frozenset()) -> None:
    """Every row of the outbox (but those ``earlier`` posted) is of ``kind``, sent, named
    by exactly one message Slack holds, at its destination, and records that message (its
    buttons work)."""
    named: Counter[int] = Counter()
    where: dict[int, tuple[str, str]] = {}
    for message in _posts(standin, earlier):
        for row_id in named_rows(message):
            named[row_id] += 1
            where[row_id] = (message["channel"], message["ts"])
    with db.sessions() as session:
        rows = session.execute(select(
            OutboxMessage.id, OutboxMessage.kind, OutboxMessage.status,
            OutboxMessage.destination, OutboxMessage.message_ts,
            OutboxMessage.post_attempted_at).where(OutboxMessage.id.not_in(earlier))).all()
    assert len(rows) == kind.posts and set(named) == {row.id for row in rows}
    for row in rows:
        assert (str(row.kind), row.status, row.post_attempted_at) == (
            kind.name, OutboxStatus.SENT, None), row
        assert named[row.id] == 1, row
        assert where[row.id] == (row.destination, row.message_ts), row


@dataclass(frozen=True)
class _Point:
    """Where a pass is killed with SIGKILL. ``arrival``: as its n-th post reaches Slack (it
    is accepted, its answer never read); ``answered``: just after Slack answered its n-th
    post (the pass is recording it); ``attempted``: its first post is recorded as
    attempted in the database but never reaches Slack. ``recovering`` / ``reposting``: a
    first pass killed as its 4th post reaches Slack, then the rerun killed as it reads its
    first history / as its first post reaches Slack (a third pass finishes)."""

    when: str
    n: int = 1

    def __str__(self) -> str:
        return f"{self.when}-{self.n}"


POINTS = [
    *(_Point("arrival", n) for n in range(1, 11)),
    *(_Point("answered", n) for n in range(1, 11)),
    _Point("attempted"), _Point("recovering"), _Point("reposting"),
]
# PostgreSQL repeats the same protocol: a few points of each kind are enough there.
ON_POSTGRESQL = {"arrival-1", "arrival-6", "answered-1", "answered-10", "attempted-1",
                 "recovering-1", "reposting-1"}
# The other kinds go through the same delivery: their first, middle and last posts.
OTHER_KINDS_ON_POSTGRESQL = {"arrival-1", "attempted-1", "recovering-1"}
# The kinds with ``few_points``: their first post, last answer, an attempt and a recovery
# (CI's time goes to the kill tests); on PostgreSQL their first post.
FEW_POINTS_ON_POSTGRESQL = {"arrival-1"}


def _points(kind: _Kind) -> list[_Point]:
    if kind.name == "expiry":
        return POINTS
    middle, last = kind.posts // 2 + 1, kind.posts
    if kind.few_points:
        return [_Point("arrival", 1), _Point("answered", last), _Point("attempted"),
                _Point("recovering")]
    return [_Point("arrival", 1), _Point("arrival", middle), _Point("arrival", last),
            _Point("answered", 1), _Point("answered", last), _Point("attempted"),
            _Point("recovering"), _Point("reposting")]


def _on_postgresql(kind: _Kind) -> set[str]:
    """The points of ``kind`` that PostgreSQL runs too."""
    if kind.name == "expiry":
        return ON_POSTGRESQL
    return FEW_POINTS_ON_POSTGRESQL if kind.few_points else OTHER_KINDS_ON_POSTGRESQL


KILLS = [pytest.param(kind, point, id=f"{kind}-{point}") for kind in KINDS
         for point in _points(kind)]


def _killed_pass(
    standin: SlackStandIn, settings: Settings, cwd: Path, *, now: dt.datetime,
    when: str, n: int, method: str = "chat.postMessage",
) -> None:
    """Run ``tokenbot alerts run --now`` in a child process and SIGKILL it at the point
    (see :class:`_Point`); fails unless it was killed there."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    proc: subprocess.Popen[str] | None = None

    def kill() -> None:
        assert proc is not None
        proc.send_signal(signal.SIGKILL)

    def on_arrival(call: object) -> None:
        if getattr(call, "method", "") == method:
            with lock:
                counts["arrived"] += 1
                if when == "arrival" and counts["arrived"] == n:
                    kill()

    def on_answered(answered: str) -> None:
        if answered == method:
            with lock:
                counts["answered"] += 1
                if when == "answered" and counts["answered"] == n:
                    kill()

    before = len(standin.calls_to(method))  # (a seed's earlier pass made some)
    if when == "attempted":  # the first post is held, then refused: it never reaches Slack
        standin.fail_next(method, Failure(status=500))
        standin.hold(method)
    standin.slow_down(ANSWER, "chat.postMessage")
    standin.on_arrival, standin.on_answered = on_arrival, on_answered
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "alerts", "run", "--now", now.isoformat(), "--json"],
        env={**os.environ, **cli_environment(settings)}, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    err = ""
    try:
        if when == "attempted":
            standin.wait_for(method, before + 1, timeout=60)  # attempt committed; held
            kill()
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a pass running into the next test
            proc.kill()
        proc.wait()
        standin.on_arrival = standin.on_answered = None
        standin.slow_down(0)
        standin.release()
    assert proc.returncode == -signal.SIGKILL, f"not killed at {when}-{n}: {err[-2000:]}"


@pytest.mark.parametrize(("kind", "point"), KILLS)
def test_a_pass_killed_at_any_point_posts_each_message_exactly_once(
    kind: _Kind, point: _Point, asettings: Settings, adb: Database, standin: SlackStandIn,
    tmp_path: Path,
) -> None:
    if adb.engine.dialect.name == "postgresql" and str(point) not in _on_postgresql(kind):
        pytest.skip("the same point as on SQLite; PostgreSQL runs a few of each kind")
    settings = _settings(kind, asettings)
    expected = kind.seed(adb, settings)
    earlier = _earlier(adb)
    if point.when in ("recovering", "reposting"):
        _killed_pass(standin, settings, tmp_path, now=NOW, when="arrival", n=4)
        method = "conversations.history" if point.when == "recovering" else "chat.postMessage"
        _killed_pass(standin, settings, tmp_path, now=AFTER_LEASE, when="arrival", n=1,
                     method=method)
        rerun_at = AFTER_LEASE + service.LEASE + dt.timedelta(minutes=1)
    else:
        _killed_pass(standin, settings, tmp_path, now=NOW, when=point.when, n=point.n)
        rerun_at = AFTER_LEASE
    # The rerun once the dead pass's lease has run out (time travel, not waiting).
    rerun = run_pass(settings=settings, database=adb, client=make_web_client(settings),
                     now=rerun_at, post_interval=0.0)
    assert rerun.failed == 0, rerun.to_dict()
    assert run_pass(settings=settings, database=adb, client=make_web_client(settings),
                    now=rerun_at + dt.timedelta(hours=1)).messages == 0
    if kind.name == "expiry":
        assert _digests(standin) == expected
    _assert_in_slack_once(adb, standin, kind, earlier)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_post_answered_after_the_clients_timeout_is_not_posted_again(
    kind: _Kind, asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Slack accepts the first post but answers it 2.5 s later; the client gives up
    after 1 s. Its rows are uncertain (what waits behind it at its destination fails; the
    other destinations' posts go on), and the next pass finds them in the history."""
    settings = _settings(kind, asettings)
    kind.seed(adb, settings)
    earlier = _earlier(adb)
    client = make_web_client(settings, timeout=1)
    standin.delay_next("chat.postMessage", 2.5)
    first = run_pass(settings=settings, database=adb, client=client, now=NOW,
                     post_interval=0.0)
    assert first.uncertain >= 1 and first.sent + first.failed == kind.posts, first.to_dict()
    assert first.sent >= 1 or len(first.destinations) == 1, first.to_dict()
    [late] = [d for d in first.destinations if d.uncertain]
    assert late.error is not None and "timed out" in late.error
    later = run_pass(settings=settings, database=adb, client=client,
                     now=NOW + dt.timedelta(minutes=5), post_interval=0.0)
    assert (later.recovered, later.failed) == (first.uncertain, 0), later.to_dict()
    assert later.sent == first.failed - first.uncertain  # what waited behind it, if any
    _assert_in_slack_once(adb, standin, kind, earlier)


@pytest.mark.parametrize("times", [2, 100], ids=["briefly", "for-the-pass"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_database_error_while_recording_a_post_posts_each_message_exactly_once(
    kind: _Kind, times: int, asettings: Settings, adb: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recording that Slack accepted a post fails ``times`` times (an OperationalError, as
    a restart or failover gives). Briefly: the pass retries in place and records it.
    For the whole pass: each destination stops after its first post; once the lease has
    run out, the next pass finds those in the history and posts the rest."""
    settings = _settings(kind, asettings)
    kind.seed(adb, settings)
    earlier = _earlier(adb)
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (0.01, 0.01, 0.01))
    real, left = service.mark_sent, [times]

    def flaky(session, **kwargs):  # type: ignore[no-untyped-def]
        if left[0]:
            left[0] -= 1
            raise OperationalError("UPDATE outbox", {}, ConnectionError("server restarting"))
        return real(session, **kwargs)

    monkeypatch.setattr(service, "mark_sent", flaky)
    first = run_pass(settings=settings, database=adb, client=make_web_client(settings),
                     now=NOW, post_interval=0.0)
    if times == 2:
        assert (first.failed, first.uncertain) == (0, 0), first.to_dict()
    else:
        assert first.failed > 0 and all(
            d.error and "OperationalError" in d.error for d in first.destinations)
    monkeypatch.undo()
    rerun = run_pass(settings=settings, database=adb, client=make_web_client(settings),
                     now=AFTER_LEASE, post_interval=0.0)
    assert rerun.failed == 0, rerun.to_dict()
    _assert_in_slack_once(adb, standin, kind, earlier)


UNREACHABLE = "http://127.0.0.1:9/api/"  # nothing listens there: the connection is refused


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_slack_unreachable_fails_the_posts_and_posts_them_once_slack_is_back(
    kind: _Kind, asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """A post that never reached Slack is failed, not uncertain (before issue 19 such
    rotation notices and alarms were counted as sent, and lost): nothing is read from
    history, and the next pass once Slack is back posts every message once. (The pass
    without Slack runs as the scheduler's does, without the weekly owner check, a job of
    its own: refused, its users.info calls cost seconds per owner in the client's
    retries, to find nobody.)"""
    settings = _settings(kind, asettings)
    kind.seed(adb, settings)
    earlier = _earlier(adb)
    away = settings.model_copy(update={"slack_api_url": UNREACHABLE})
    first = run_pass(settings=away, database=adb, client=make_web_client(away), now=NOW,
                     post_interval=0.0, owner_check=False)
    assert (first.sent, first.uncertain, first.recovered) == (0, 0, 0), first.to_dict()
    assert first.failed >= 1 and all("Connection refused" in (d.error or "")
                                     for d in first.destinations)
    assert _posts(standin, earlier) == []
    back = run_pass(settings=settings, database=adb, client=make_web_client(settings),
                    now=NOW + dt.timedelta(minutes=10), post_interval=0.0)
    assert (back.failed, back.uncertain, back.recovered) == (0, 0, 0), back.to_dict()
    assert standin.calls_to("conversations.history") == []
    _assert_in_slack_once(adb, standin, kind, earlier)


# -- a PostgreSQL server of the test's own, restarted mid-pass ------------------------


@dataclass
class _Cluster:
    bindir: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args]
        _as_postgres(command)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.root / "log"), "-w", "-o",
                    f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def postmaster(self) -> int | None:
        """The pid of the running server, if any."""
        try:
            pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def stop_for_good(self) -> bool:
        """Stop the server whatever it takes (fast, immediate, then SIGKILL); True once
        no server runs on the data directory."""
        for mode in ("fast", "immediate"):
            try:
                self.pg_ctl("-m", mode, "-w", "-t", "20", "stop")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                continue
            if self.postmaster() is None:
                return True
        pid = self.postmaster()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while self.postmaster() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.postmaster() is None


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_postgresql() -> Iterator[_Cluster]:
    """A throw-away PostgreSQL cluster on its own port, for this test alone."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(shutil.which("initdb") or "/nonexistent"))
    if not initdb.exists():
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    root = Path(tempfile.mkdtemp(prefix="tokenbot-pg-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    cluster = _Cluster(bindir=initdb.parent, root=root, port=_free_port())
    try:
        _as_postgres([str(initdb), "-D", str(root / "data"), "-A", "trust", "-U", "postgres",
                      "--no-sync"])
        cluster.start()
        yield cluster
    finally:
        if cluster.stop_for_good():  # never delete the files of a live server
            shutil.rmtree(root, ignore_errors=True)
        else:
            warnings.warn(f"PostgreSQL on {root} would not stop; its directory is left", stacklevel=1)


@pytest.mark.parametrize("at_post", [1, 6])
def test_a_postgresql_restart_mid_pass_posts_each_alert_exactly_once(
    at_post: int, own_postgresql: _Cluster, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the ``at_post``-th digest reaches Slack the server stops; it is back 0.2 s
    after Slack answered. The pass records every post by trying again in place."""
    # A start on a busy machine can take longer than the 6 s the pass retries for.
    monkeypatch.setattr(delivery, "DB_RETRY_DELAYS", (*delivery.DB_RETRY_DELAYS, 5, 10, 15))
    engine = make_engine(own_postgresql.url)
    upgrade(engine)
    engine.dispose()
    settings = load_settings(_env_file=None, DATABASE_URL=own_postgresql.url,  # type: ignore[call-arg]
                             TOKENBOT_SECRET_KEYS=TEST_KEY, SLACK_API_URL=standin.api_url,
                             SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_ALERT_CHANNEL=ALERTS)
    db = Database(settings, auto_upgrade=False)
    try:
        expected = _seed(db, settings)
        arrived, restarts = [0], []

        def restart(call: object) -> None:
            if getattr(call, "method", "") != "chat.postMessage":
                return
            arrived[0] += 1
            if arrived[0] != at_post:
                return
            own_postgresql.stop()
            back = threading.Thread(
                target=lambda: (time.sleep(ANSWER + 0.2), own_postgresql.start()))
            back.start()
            restarts.append(back)

        standin.slow_down(ANSWER, "chat.postMessage")
        standin.on_arrival = restart
        try:
            report = run_pass(settings=settings, database=db, client=make_web_client(settings),
                              now=NOW, post_interval=0.0)
        finally:
            standin.on_arrival = None
            standin.slow_down(0)
            for thread in restarts:
                thread.join()
        assert restarts, "the server was not restarted"
        assert (report.sent, report.failed) == (10, 0), report.to_dict()
        assert run_pass(settings=settings, database=db, client=make_web_client(settings),
                        now=AFTER_LEASE, post_interval=0.0).messages == 0
        assert _digests(standin) == expected
        _assert_recorded_as_slack_has_them(db, standin)
    finally:
        db.dispose()
