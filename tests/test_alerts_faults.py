"""The fault suite of the alert pass: whatever breaks mid-pass, each alert reaches Slack
exactly once. A pass killed with SIGKILL at 20 points of its run, a PostgreSQL restart
while it posts, and a post Slack accepts but answers after the client's timeout.

Ten destinations (five channels, five owners' DMs), one digest each; the stand-in keeps
every message it accepted, including those whose caller died before the answer."""

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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.alerts.delivery import named_alerts
from bot.alerts.scheduler import run_pass
from bot.config import Settings, load_settings
from bot.db import Database, make_engine, upgrade
from bot.models import Alert, AlertStatus
from bot.services import alerts as service
from bot.slack.client import make_web_client
from tests.alerts_support import ALERTS, UTC, cli_environment, posted_ids, seed_token
from tests.conftest import TEST_KEY
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.slow

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AFTER_LEASE = NOW + service.LEASE + dt.timedelta(minutes=1)
OWNERS = [f"U{n}" for n in range(1, 6)]
CHANNELS = [f"C{n}" for n in range(1, 6)]
ANSWER = 0.2  # Slack answers each post this late


def _seed(db: Database) -> Counter[tuple[str, str]]:
    """Five tokens due a reminder, each to its own channel and owner: ten digests."""
    expected: Counter[tuple[str, str]] = Counter()
    for owner, channel in zip(OWNERS, CHANNELS):
        token = seed_token(db, now=NOW, expires_on=(NOW + dt.timedelta(days=3)).date(),
                           label=f"deploy {owner}", owner=owner, channel=channel).token
        expected.update({(owner, token.public_id): 1, (channel, token.public_id): 1})
    return expected


def _digests(standin: SlackStandIn) -> Counter[tuple[str, str]]:
    """(destination, token) of every digest that reached Slack, answered or not."""
    return Counter((call.body["channel"], public_id)
                   for call in standin.calls_to("chat.postMessage")
                   for public_id in posted_ids(call.body))


def _assert_recorded_as_slack_has_them(db: Database, standin: SlackStandIn) -> None:
    """Every alert is sent, and names the message Slack holds for it (its buttons work)."""
    named = {(m["ts"], alert_id) for m in standin.posted() for alert_id in named_alerts(m)}
    with db.sessions() as session:
        rows = session.execute(select(Alert.id, Alert.status, Alert.message_ts,
                                      Alert.post_attempted_at)).all()
    assert len(rows) == 10
    for alert_id, status, ts, attempted in rows:
        assert (status, attempted) == (AlertStatus.SENT, None)
        assert (ts, alert_id) in named


class _Killer:
    """Sends SIGKILL to the pass at a point of its run: as the ``n``-th post reaches Slack
    (points 0-9: it is accepted, its answer never read) or just after Slack answered the
    ``n``-th post (points 10-19: the pass is recording it)."""

    def __init__(self, point: int) -> None:
        self.point = point
        self.proc: subprocess.Popen[str] | None = None
        self.arrived = self.answered = 0
        self.killed = threading.Event()
        self.lock = threading.Lock()

    def _kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.killed.set()

    def on_arrival(self, call: object) -> None:
        if getattr(call, "method", "") != "chat.postMessage":
            return
        with self.lock:
            self.arrived += 1
            if self.point < 10 and self.arrived == self.point + 1:
                self._kill()

    def on_answered(self, method: str) -> None:
        if method != "chat.postMessage":
            return
        with self.lock:
            self.answered += 1
            if self.point >= 10 and self.answered == self.point - 9:
                self._kill()


@pytest.mark.parametrize("point", range(20))
def test_a_pass_killed_at_any_point_posts_each_alert_exactly_once(
    point: int, asettings: Settings, adb: Database, standin: SlackStandIn, tmp_path: Path
) -> None:
    expected = _seed(adb)
    killer = _Killer(point)
    standin.latency["chat.postMessage"] = ANSWER
    standin.on_arrival, standin.on_answered = killer.on_arrival, killer.on_answered
    killer.proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "alerts", "run", "--now", NOW.isoformat(), "--json"],
        env={**os.environ, **cli_environment(asettings)}, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        _out, err = killer.proc.communicate(timeout=120)
    finally:
        standin.on_arrival = standin.on_answered = None
        standin.latency.clear()
    assert killer.killed.is_set(), f"the pass ended before point {point}: {err[-2000:]}"
    # The rerun once the dead pass's lease has run out (time travel, not waiting).
    rerun = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                     now=AFTER_LEASE, post_interval=0.0)
    assert rerun.failed == 0, rerun.to_dict()
    assert run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                    now=AFTER_LEASE + dt.timedelta(hours=1)).messages == 0
    assert _digests(standin) == expected
    _assert_recorded_as_slack_has_them(adb, standin)


def test_a_post_answered_after_the_clients_timeout_is_not_posted_again(
    asettings: Settings, adb: Database, standin: SlackStandIn
) -> None:
    """Slack accepts the first digest but answers it 2.5 s later; the client gives up
    after 1 s. Its alert is uncertain, and the next pass finds it in the history."""
    expected = _seed(adb)
    client = make_web_client(asettings, timeout=1)
    standin.delay_next("chat.postMessage", 2.5)
    first = run_pass(settings=asettings, database=adb, client=client, now=NOW,
                     post_interval=0.0)
    assert (first.sent, first.uncertain, first.failed) == (9, 1, 1)
    [late] = [d for d in first.destinations if d.uncertain]
    assert late.error is not None and "timed out" in late.error
    later = run_pass(settings=asettings, database=adb, client=client,
                     now=NOW + dt.timedelta(minutes=5), post_interval=0.0)
    assert (later.recovered, later.messages, later.failed) == (1, 0, 0)
    assert _digests(standin) == expected
    _assert_recorded_as_slack_has_them(adb, standin)


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
        try:
            cluster.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("at_post", [1, 6])
def test_a_postgresql_restart_mid_pass_posts_each_alert_exactly_once(
    at_post: int, own_postgresql: _Cluster, standin: SlackStandIn
) -> None:
    """As the ``at_post``-th digest reaches Slack the server stops; it is back 0.2 s
    after Slack answered. The pass records every post by trying again in place."""
    engine = make_engine(own_postgresql.url)
    upgrade(engine)
    engine.dispose()
    settings = load_settings(_env_file=None, DATABASE_URL=own_postgresql.url,  # type: ignore[call-arg]
                             TOKENBOT_SECRET_KEYS=TEST_KEY, SLACK_API_URL=standin.api_url,
                             SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_ALERT_CHANNEL=ALERTS)
    db = Database(settings, auto_upgrade=False)
    try:
        expected = _seed(db)
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

        standin.latency["chat.postMessage"] = ANSWER
        standin.on_arrival = restart
        try:
            report = run_pass(settings=settings, database=db, client=make_web_client(settings),
                              now=NOW, post_interval=0.0)
        finally:
            standin.on_arrival = None
            standin.latency.clear()
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
