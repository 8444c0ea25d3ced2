"""`tokenbot alerts run` from the shell, several processes at once on one PostgreSQL
database, and the APScheduler job that `serve` / `socket` start."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.alerts import scheduler as alert_scheduler
from bot.services.alerts import current_stage
from bot.cli import main
from bot.config import Settings, load_settings
from bot.db import Database
from bot.models import OutboxMessage
from bot.slack.client import make_web_client
from tests.alerts_support import (
    ALERTS,
    UTC,
    alert_settings,
    cli_environment,
    posted_ids,
    seed_token,
    successful_posts,
)
from tests.conftest import TEST_KEY
from tests.support.slack_standin import SlackStandIn

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_dry_run_prints_what_would_be_posted_and_posts_and_records_nothing(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    seed_token(adb, now=NOW, expires_on=(NOW + dt.timedelta(days=5)).date(), label="ci deploy")
    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    assert main(["alerts", "run", "--dry-run", "--now", "2026-11-27T12:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert f"#{ALERTS}: would post 1 message(s) about 1 token(s)" in out
    assert "DM U1: would post 1 message(s)" in out
    assert "ci deploy" in out and "7-day reminder" in out and "nothing was posted" in out
    assert standin.calls == []
    with adb.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    assert main(["alerts", "run", "--now", "2026-11-27T12:00:00Z", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["messages"] == 2 and report["sent"] == 2 and report["failed"] == 0
    assert len(successful_posts(standin)) == 2
    assert main(["alerts", "run", "--now", "2026-11-27T12:15:00Z", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 0

    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert main(["alerts", "run"]) == 2
    assert "SLACK_BOT_TOKEN is required" in capsys.readouterr().err


def test_a_bad_now_is_refused_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "run", "--dry-run", "--now", "next tuesday"])
    assert exited.value.code == 2
    assert "not an ISO-8601 date-time" in capsys.readouterr().err


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_now_too_far_out_is_one_line_not_a_traceback(
    asettings: Settings, adb: Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], moment: str,
) -> None:
    seed_token(adb, now=NOW, expires_on=(NOW + dt.timedelta(days=5)).date(), label="ci")
    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    for extra in (["--dry-run"], ["--dry-run", "--json"], []):
        assert main(["alerts", "run", "--now", moment, *extra]) == 2
        captured = capsys.readouterr()
        (line,) = captured.err.strip().splitlines()
        assert "--now" in line and "out of range" in line and captured.out == ""
    with adb.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_the_json_report_writes_moments_as_the_other_json_outputs_do(
    asettings: Settings, adb: Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """UTC, whole seconds, ``Z`` (bot.serialize.timestamp), as `tokens list --json`."""
    seed_token(adb, now=NOW, expires_on=(NOW + dt.timedelta(days=5)).date(), label="ci")
    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    assert main(["alerts", "run", "--dry-run", "--json", "--now",
                 "2026-11-27T13:00:00.250+01:00"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["now"] == "2026-11-27T12:00:00Z"
    expiries = {token["expires_at"] for dest in report["destinations"]
                for token in dest["tokens"]}
    assert expiries == {"2026-12-02T00:00:00Z"}


def _run_processes(
    env: dict[str, str], now: dt.datetime, cwd: Path, count: int = 3
) -> list[dict[str, object]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TOKENBOT_"))}
    base.update(env)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "alerts", "run", "--now", now.isoformat(), "--json"],
            env=base, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    return reports


def _posted(standin: SlackStandIn, start: int = 0) -> Counter[tuple[str, str]]:
    return Counter(
        (call.body["channel"], public_id)
        for call in successful_posts(standin)[start:] for public_id in posted_ids(call.body)
    )


@pytest.mark.slow
def test_three_processes_at_once_post_each_alert_exactly_once(
    asettings: Settings, adb: Database, standin: SlackStandIn, tmp_path: Path,
) -> None:
    """Three OS processes run the pass at the same moment against one database (the
    PostgreSQL run is the multi-machine deployment; SQLite serialises writers)."""
    settings, database = asettings, adb
    tokens: list[tuple[str, str, str, dt.datetime]] = []
    for number in range(120):
        channel = ALERTS if number % 3 == 0 else f"CTEAM{number % 4}"
        owner = f"U{number % 6}"
        created = seed_token(
            database, now=NOW, expires_on=(NOW + dt.timedelta(days=1 + number % 25)).date(),
            label=f"service {number}", owner=owner,
            channel=None if channel == ALERTS else channel,
        )
        assert created.token.expires_at is not None
        tokens.append((created.token.public_id, channel, owner, created.token.expires_at))

    def due(now: dt.datetime, before: dt.datetime | None) -> Counter[tuple[str, str]]:
        """Each token once per destination when its nearest threshold changed."""
        out: Counter[tuple[str, str]] = Counter()
        for public_id, channel, owner, expires in tokens:
            stage = current_stage(expires, now=now, alert_days=[30, 7, 1])
            previous = (current_stage(expires, now=before, alert_days=[30, 7, 1])
                        if before else None)
            if stage is not None and stage != previous:
                out[(channel, public_id)] += 1
                out[(owner, public_id)] += 1
        return out

    env = cli_environment(settings)
    reports = _run_processes(env, NOW, tmp_path)
    assert _posted(standin) == due(NOW, None) and len(due(NOW, None)) == 240
    assert sum(int(r["sent"]) for r in reports) == 240  # type: ignore[call-overload]
    # and one digest per destination, not halves from different processes
    destinations = [call.body["channel"] for call in successful_posts(standin)]
    assert sorted(destinations) == sorted({dest for dest, _id in due(NOW, None)})
    # Three again, a minute later: nothing new to say, nothing posted.
    seen = len(standin.calls_to("chat.postMessage"))
    _run_processes(env, NOW + dt.timedelta(minutes=1), tmp_path)
    assert len(standin.calls_to("chat.postMessage")) == seen
    # Three days on, nearer thresholds are crossed: each new alert exactly once.
    later = NOW + dt.timedelta(days=3)
    _run_processes(env, later, tmp_path)
    assert _posted(standin, seen) == due(later, NOW)
    assert len(due(later, NOW)) > 0


def test_the_scheduler_runs_the_pass_and_is_off_when_configured(
    make_settings: Callable[..., Settings], adb: Database, asettings: Settings,
    standin: SlackStandIn,
) -> None:
    off = alert_settings(make_settings, standin, TOKENBOT_SCHEDULER="off")
    assert alert_scheduler.start_scheduler(settings=off, database=adb,
                                          client=make_web_client(off)) is None

    now = dt.datetime.now(UTC)
    seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2)).date())
    sched = alert_scheduler.start_scheduler(
        settings=asettings, database=adb, client=make_web_client(asettings)
    )
    assert sched is not None
    try:
        job = sched.get_job(alert_scheduler.JOB_ID)
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time >= 24 * 3600
        assert job.trigger.interval == dt.timedelta(minutes=15)
        job.modify(next_run_time=dt.datetime.now(UTC))  # instead of waiting for the first run
        posts = standin.wait_for("chat.postMessage", 2, timeout=20)
        assert {call.body["channel"] for call in posts} == {ALERTS, "U1"}
    finally:
        sched.shutdown()
    time.sleep(0.1)
    assert len(standin.calls_to("chat.postMessage")) == 2


def _queued(db: Database, kind: str) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.kind == kind)) or 0


@pytest.mark.slow  # the scheduler's jobs in real time
def test_the_weekly_owner_check_is_a_job_beside_the_pass(
    adb: Database, asettings: Settings, standin: SlackStandIn,
) -> None:
    """The scheduled pass never asks ``users.info`` (a week's calls at their rate tier
    would hold reminders up for as long); the owner check is a job of its own, and the
    next pass posts what it found."""
    now = dt.datetime.now(UTC)
    seed_token(adb, now=now, expires_on=(now + dt.timedelta(days=2)).date())
    seed_token(adb, now=now, expires_on=None, label="ada's bot", owner="UADA")
    standin.users["UADA"] = {"deleted": True}
    sched = alert_scheduler.start_scheduler(settings=asettings, database=adb,
                                            client=make_web_client(asettings))
    assert sched is not None
    try:
        sched.get_job(alert_scheduler.JOB_ID).modify(next_run_time=dt.datetime.now(UTC))
        standin.wait_for("chat.postMessage", 2, timeout=20)  # the reminders
        time.sleep(1)  # (a pass that checks owners asks right after its posts)
        assert standin.calls_to("users.info") == []
        sched.get_job(alert_scheduler.OWNER_JOB_ID).modify(next_run_time=dt.datetime.now(UTC))
        asked = standin.wait_for("users.info", 2, timeout=20)
        assert {call.body["user"] for call in asked} == {"U1", "UADA"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _queued(adb, "departed_owner"):
            time.sleep(0.1)
        sched.get_job(alert_scheduler.JOB_ID).modify(next_run_time=dt.datetime.now(UTC))
        posts = standin.wait_for("chat.postMessage", 3, timeout=20)
        assert posts[2].body["channel"] == ALERTS and "<@UADA>" in posts[2].body["text"]
    finally:
        sched.shutdown()


def test_interval_comes_from_the_setting(make_settings: Callable[..., Settings],
                                         standin: SlackStandIn, adb: Database) -> None:
    settings = alert_settings(make_settings, standin, TOKENBOT_ALERT_INTERVAL_MINUTES="5")
    sched = alert_scheduler.start_scheduler(settings=settings, database=adb,
                                            client=make_web_client(settings))
    assert sched is not None
    try:
        assert sched.get_job(alert_scheduler.JOB_ID).trigger.interval == dt.timedelta(minutes=5)
    finally:
        sched.shutdown()
    assert load_settings(_env_file=None).tokenbot_alert_interval_minutes == 15


def test_a_never_migrated_sqlite_database_is_brought_up_to_date_and_the_pass_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'never-migrated.db'}")
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", TEST_KEY)
    assert main(["alerts", "run", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "Dry run" in captured.out and "Traceback" not in captured.err
