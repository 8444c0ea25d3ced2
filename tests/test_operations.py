"""Operating `tokenbot serve` as a service: the scripted session of tests/support/session.py
against real processes (one worker; two workers in prometheus_client's multi-process mode)
moves every counter of one scrape by what was done, the scheduler's pass in the parent
included; with LOG_FORMAT=json at DEBUG every line of the log is one JSON object, the
requests' lines carry their context, and no secret appears in any."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_settings
from bot.db import Database
from bot.services import tokens
from tests.conftest import TEST_KEY
from tests.slack.conftest import INTROSPECTION_SECRET, OWNER, SIGNING_SECRET, TEAM, HttpSlackBot
from tests.support.scrape import moved, scrape, value
from tests.support.session import API_CALLS, EXPECTED, introspect_each_result, play_session
from tests.support.slack_standin import Failure, SlackStandIn
from tests.test_server import cli_env, free_port, request
from tests.support.policy import NO_POLICY

pytestmark = pytest.mark.slow  # every test here starts `tokenbot serve`

BOT_TOKEN = "xoxb-operations-test"


class ProcessBot(HttpSlackBot):
    """Sends what Slack sends to a `tokenbot serve` process; its work is waited for through
    what it draws (``play_session``)."""

    def __init__(self, address: tuple[str, int], standin: SlackStandIn) -> None:
        super().__init__(address, None, standin, None)

    def settle(self) -> None:
        pass


def seed(url: str) -> tuple[tokens.CreatedToken, tokens.CreatedToken]:
    """As their owner: a token, and one whose 7-day reminder is due (channel and DM)."""
    settings = load_settings(_env_file=None, DATABASE_URL=url, TOKENBOT_SECRET_KEYS=TEST_KEY)
    database = Database(settings)
    now = dt.datetime.now(dt.timezone.utc)
    actor = tokens.Actor(team_id=TEAM, user_id=OWNER)
    try:
        with database.sessions.begin() as session:
            made = [tokens.create_token(session, box=database.box, actor=actor, label=label,
                                        scope="read", scopes=["read"], now=now, **extra,
                                        policy=NO_POLICY)
                    for label, extra in (("deploy", {}), ("weekly", {
                        "expires_on": now.date() + dt.timedelta(days=7),
                        "alert_channel": "CALERTS"}))]
    finally:
        database.dispose()
    return made[0], made[1]


def start_serve(tmp_path: Path, env: dict[str, str], workers: int
                ) -> tuple[subprocess.Popen[bytes], tuple[str, int], Path]:
    """`tokenbot serve` logging to a file (a DEBUG log would fill a pipe), once ready."""
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers)], env=env, cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT)
    address = ("127.0.0.1", port)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if request(address, "GET", "/readyz").status == 200:
                return process, address, log
        except OSError:
            pass
        assert time.monotonic() < deadline, "tokenbot serve did not become ready"
        time.sleep(0.1)


def wait_for_the_pass(address: tuple[str, int]) -> dict[Any, float]:
    """The scrape once the scheduler's first pass (10 s after start) is counted."""
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(address)
        if value(samples, "tokenbot_alert_pass_seconds_count"):
            return samples
        assert time.monotonic() < deadline, "no alert pass counted"
        time.sleep(0.5)


@pytest.mark.parametrize("workers", [1, 2])
def test_one_scrape_counts_the_session_on_every_worker(
    tmp_path: Path, standin: SlackStandIn, workers: int
) -> None:
    url = f"sqlite:///{tmp_path}/tokenbot.db"
    mine, soon = seed(url)
    env = cli_env(
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url, DATABASE_URL=url, TOKENBOT_SECRET_KEYS=TEST_KEY,
        TOKENBOT_INTROSPECTION_SECRETS=f"ci-runner={INTROSPECTION_SECRET}",
        LOG_FORMAT="json", LOG_LEVEL="DEBUG",
    )
    if workers > 1:
        # The operator's directory, with an earlier run's leftovers: emptied at start.
        directory = tmp_path / "metrics"
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"left over")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    standin.fail_next("chat.postMessage", Failure(200, {"ok": False, "error": "not_in_channel"}))
    process, address, log = start_serve(tmp_path, env, workers)
    try:
        play_session(ProcessBot(address, standin), standin, mine.token.public_id)
        introspect_each_result(address, mine.secret)
        after = wait_for_the_pass(address)
        # Several scrapes, whichever worker answers: the same sums.
        again = [scrape(address) for _ in range(4)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]

    for name, expected in EXPECTED.items():
        assert moved({}, after, name) == expected, name
        assert all(moved({}, each, name) == expected for each in again), name
    calls = moved({}, after, "tokenbot_slack_api_calls_total")
    calls.pop(("users.info", "ok"), None)  # the weekly owner check: a job on its own clock
    assert calls == {**API_CALLS, ("auth.test", "ok"): 1}  # auth.test: the start-up check
    if workers > 1:
        assert sorted(p.name for p in directory.iterdir())  # the processes' files
        assert "counter_1.db" not in {p.name for p in directory.iterdir()}

    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    for secret in (mine.secret, soon.secret, BOT_TOKEN, SIGNING_SECRET, INTROSPECTION_SECRET):
        assert secret not in output
    debug = [line for line in lines if line["level"] == "DEBUG"
             and line["logger"].startswith("slack_sdk") and "tkb_[redacted]" in line["message"]]
    assert debug, "slack_sdk's DEBUG line of the copy (its body, the secret masked)"
    copied = [line for line in debug if line.get("request", {}).get("action_id") == "token_copy"]
    assert copied and copied[0]["request"] | {"duration_ms": 0} == {
        "kind": "click", "action_id": "token_copy", "team": TEAM, "user": OWNER,
        "token": mine.token.public_id, "duration_ms": 0}
    access = [line["http"] for line in lines if line["logger"] == "uvicorn.access"]
    assert {"method": "GET", "path": "/metrics", "status": 200}.items() <= access[-1].items()


def test_the_first_counts_may_come_from_many_threads_at_once(tmp_path: Path) -> None:
    """A fresh process whose first Web API calls are made by 16 threads at once counts all."""
    script = """
import threading
from bot import metrics
ready = threading.Barrier(16)
def call():
    ready.wait()
    metrics.slack_api_call("views.open", "ok")
threads = [threading.Thread(target=call) for _ in range(16)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(metrics.exposition()[0].decode())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert 'tokenbot_slack_api_calls_total{method="views.open",outcome="ok"} 16.0' in done.stdout


def test_a_metrics_directory_holding_other_files_is_refused(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR=. beside the database: one line, and nothing deleted."""
    (tmp_path / "tokenbot.db").write_bytes(b"the database")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--workers", "2"], cwd=tmp_path, timeout=60,
        env=cli_env(PROMETHEUS_MULTIPROC_DIR="."), capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr and "tokenbot.db" in done.stderr
    assert (tmp_path / "tokenbot.db").read_bytes() == b"the database"


def test_a_forwarded_for_header_does_not_open_metrics_to_a_refused_client(
    tmp_path: Path, standin: SlackStandIn
) -> None:
    """METRICS_ALLOW sees the TCP peer: an X-Forwarded-For naming an allowed address does
    not let a client outside the networks in, even from an address uvicorn would trust for
    proxy headers (FORWARDED_ALLOW_IPS, as many images set it)."""
    url = f"sqlite:///{tmp_path}/tokenbot.db"
    seed(url)
    env = cli_env(
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url, DATABASE_URL=url, TOKENBOT_SECRET_KEYS=TEST_KEY,
        TOKENBOT_SCHEDULER="off", METRICS_ALLOW="10.0.0.0/8", FORWARDED_ALLOW_IPS="*",
    )
    process, address, log = start_serve(tmp_path, env, 1)
    try:
        spoofed = request(address, "GET", "/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
        plain = request(address, "GET", "/metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert (spoofed.status, plain.status) == (403, 403), log.read_text()[-3000:]


def test_only_serve_writes_into_the_metrics_directory(tmp_path: Path, standin: SlackStandIn
                                                       ) -> None:
    """An operator's PROMETHEUS_MULTIPROC_DIR (exported for serve) is left alone by the
    other commands: an alert pass run by cron writes no files there that nothing removes."""
    url = f"sqlite:///{tmp_path}/tokenbot.db"
    seed(url)  # a token expiring within the alert days: the pass posts
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = cli_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=standin.api_url, DATABASE_URL=url,
                  TOKENBOT_SECRET_KEYS=TEST_KEY, TOKENBOT_ALERT_CHANNEL="CALERTS",
                  PROMETHEUS_MULTIPROC_DIR=str(directory))
    done = subprocess.run([sys.executable, "-m", "bot", "alerts", "run", "--json"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert standin.calls, "the pass posted (and counted its Web API calls)"
    assert list(directory.iterdir()) == []
    assert list(tmp_path.glob("*.db")) == [tmp_path / "tokenbot.db"]


def test_an_empty_metrics_directory_setting_is_refused(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR= (set, but to nothing): one line, exit 2, and no metrics
    files in the working directory (prometheus_client's reading of it)."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, timeout=60,
        env=cli_env(PROMETHEUS_MULTIPROC_DIR=""), capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr and len(done.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
