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
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.outbox import delivery
from bot.outbox.delivery import named_rows
from bot.alerts.scheduler import run_pass
from bot.config import Settings, load_settings
from bot.db import Database, make_engine, upgrade
from bot.models import OutboxMessage, OutboxStatus
from bot.services import outbox as service
from bot.slack.client import make_web_client
from tests.alerts_support import ALERTS, UTC, cli_environment, posted_ids, seed_token
from tests.conftest import TEST_KEY
from tests.support.slack_standin import Failure, SlackStandIn

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
            standin.wait_for(method, timeout=60)  # its attempt is committed: it is held
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


@pytest.mark.parametrize("point", POINTS, ids=str)
def test_a_pass_killed_at_any_point_posts_each_alert_exactly_once(
    point: _Point, asettings: Settings, adb: Database, standin: SlackStandIn, tmp_path: Path
) -> None:
    if adb.engine.dialect.name == "postgresql" and str(point) not in ON_POSTGRESQL:
        pytest.skip("the same point as on SQLite; PostgreSQL runs a few of each kind")
    expected = _seed(adb)
    if point.when in ("recovering", "reposting"):
        _killed_pass(standin, asettings, tmp_path, now=NOW, when="arrival", n=4)
        method = "conversations.history" if point.when == "recovering" else "chat.postMessage"
        _killed_pass(standin, asettings, tmp_path, now=AFTER_LEASE, when="arrival", n=1,
                     method=method)
        rerun_at = AFTER_LEASE + service.LEASE + dt.timedelta(minutes=1)
    else:
        _killed_pass(standin, asettings, tmp_path, now=NOW, when=point.when, n=point.n)
        rerun_at = AFTER_LEASE
    # The rerun once the dead pass's lease has run out (time travel, not waiting).
    rerun = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                     now=rerun_at, post_interval=0.0)
    assert rerun.failed == 0, rerun.to_dict()
    assert run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                    now=rerun_at + dt.timedelta(hours=1)).messages == 0
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
