"""Issue 12 end to end with real processes, on SQLite and PostgreSQL: two ``tokenbot serve``
processes answer introspection for named callers (Bearer and Basic); a rotation with
overlap switches over across processes (the new secret's first use through one process
retires the old one for the other from the next request on); dead-secret presentations
counted by both processes add up; then three ``tokenbot alerts run`` processes race and
each alarm and rotation notice goes out exactly once. Races that end a rotation: first
uses of the new secret through both processes at once, and first uses against lifecycle
passes that see the deadline passed: each rotation ends once, with one DM."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db import Database
from bot.models import (
    AuditAction,
    AuditEvent,
    AuditSource,
    MessageKind,
    OutboxMessage,
    RetiredSecret,
)
from bot.services import rotation
from bot.services import tokens
from tests.conftest import TEST_KEY
from tests.lifecycle_support import introspect_at, told
from tests.support.blockkit import validate_message_blocks
from tests.support.slack_standin import SlackStandIn
from tests.support.policy import NO_POLICY

pytestmark = pytest.mark.slow  # starts `tokenbot serve` and `tokenbot alerts run` processes

TOKENBOT = Path(sys.executable).parent / "tokenbot"
TEAM, OWNER = "T1", "UOWNER"
CI, DEPLOY = "ci-runner-secret-0001", "deploy-bot-secret-0002"
ACTOR = tokens.Actor(team_id=TEAM, user_id=OWNER, source=AuditSource.CLI)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def introspect(port: int, secret: str, auth: str) -> dict[str, Any]:
    return introspect_at(("127.0.0.1", port), secret, auth)


BEARER = f"Bearer {CI}"
BASIC = "Basic " + base64.b64encode(f"anything:{DEPLOY}".encode()).decode()


@pytest.fixture
def env(database_url: str, standin: SlackStandIn) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "TOKENBOT_", "DATABASE_URL"))}
    base.update({
        "DATABASE_URL": database_url, "TOKENBOT_SECRET_KEYS": TEST_KEY,
        "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "processes-signing-secret",
        "SLACK_API_URL": standin.api_url, "TOKENBOT_SCHEDULER": "off",
        "TOKENBOT_ALERT_CHANNEL": "CALERTS",
        "TOKENBOT_INTROSPECTION_SECRETS": f"ci-runner={CI},deploy-bot={DEPLOY}",
    })
    return base


@pytest.fixture
def serve(
    env: dict[str, str], tmp_path: Path
) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    started = []
    for name in "AB":
        port = free_port()
        with (tmp_path / f"serve-{name}.log").open("wb") as out:
            popen = subprocess.Popen(
                [str(TOKENBOT), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        started.append((port, popen))
    try:
        deadline = time.monotonic() + 60
        for port, popen in started:
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/healthz")
                    if connection.getresponse().status == 200:
                        break
                except OSError:
                    pass
                assert popen.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield started
    finally:
        stop(started)


def stop(started: list[tuple[int, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM: each process writes what it counted before it exits."""
    for _, popen in started:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
    for _, popen in started:
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def alarm_and_notice_posts(standin: SlackStandIn) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for call in standin.calls_to("chat.postMessage"):
        validate_message_blocks(call.body["blocks"])
        kinds = {b.get("block_id") for b in call.body["blocks"]}
        kind = "alarm" if "dead_secret" in kinds else "notice" if "rotation_notice" in kinds else ""
        if kind:
            label = call.body["text"].split("(", 1)[1].split(",")[0] if kind == "alarm" else (
                call.body["text"])
            out[(kind, f"{call.body['channel']}:{label[:40]}")] += 1
    return out


def test_named_callers_overlap_and_dead_secret_alarms_across_processes(
    serve: list[tuple[int, subprocess.Popen[bytes]]], env: dict[str, str], settings: Settings,
    standin: SlackStandIn, tmp_path: Path,
) -> None:
    (a, _), (b, _) = serve
    database = Database(settings, auto_upgrade=False)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with database.sessions.begin() as session:
            make = dict(box=database.box, actor=ACTOR, scope="write", scopes=["write"], now=now)
            disabled = tokens.create_token(session, label="CI deploy", **make, policy=NO_POLICY)
            moving = tokens.create_token(session, label="moving", **make, policy=NO_POLICY)
            tokens.disable_token(session, actor=ACTOR, public_id=disabled.token.public_id,
                                 expected_version=disabled.token.version, now=now)
            rotated = tokens.rotate_token(session, box=database.box, actor=ACTOR, now=now,
                                          public_id=moving.token.public_id,
                                          expected_version=moving.token.version,
                                          overlap=dt.timedelta(hours=24))
    finally:
        database.dispose()
    # the overlap, across processes
    assert introspect(a, moving.secret, BEARER)["rotation"] == "superseded"
    assert introspect(b, moving.secret, BASIC)["rotation"] == "superseded"
    assert "rotation" not in introspect(b, rotated.secret, BASIC)  # first use, through B
    assert introspect(a, moving.secret, BEARER) == {"active": False}  # A: the next request
    # dead secrets presented through both processes, by two callers
    for _ in range(10):
        assert introspect(a, disabled.secret, BEARER) == {"active": False}
    for _ in range(4):
        assert introspect(b, disabled.secret, BASIC) == {"active": False}
    stop(serve)

    now_text = dt.datetime.now(dt.timezone.utc).isoformat()
    procs = [subprocess.Popen([str(TOKENBOT), "alerts", "run", "--now", now_text, "--json"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    alarms = [alarm for report in reports for alarm in told(report, "dead_secret_alarm")]
    assert sorted((a["label"], a["state"], a["presented"]) for a in alarms) == [
        ("CI deploy", "disabled", 14), ("moving", "rotated out", 1)]
    (ci,) = [a for a in alarms if a["label"] == "CI deploy"]
    assert ci["callers"] == [["ci-runner", 10], ["deploy-bot", 4]]
    assert sorted(ci["destinations"]) == sorted([OWNER, "CALERTS"])
    # the notice of the first use: posted by process B right after it (the outbox's drain),
    # or by a pass if B was stopped first; once either way
    (notice,) = rotation_notices(standin)
    assert "first used by deploy-bot" in notice
    posted = alarm_and_notice_posts(standin)
    assert set(posted.values()) == {1}  # each exactly once
    assert len(posted) == 2 * 2 + 1  # two alarms to owner and channel, one DM


def rotate_with_overlap(settings: Settings, overlap: dt.timedelta) -> tuple[str, str, str]:
    """A token rotated with ``overlap``: its public id, old secret and new secret."""
    database = Database(settings, auto_upgrade=False)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with database.sessions.begin() as session:
            created = tokens.create_token(session, box=database.box, actor=ACTOR, label="racing",
                                          scope="write", scopes=["write"], now=now,
                                          policy=NO_POLICY)
            rotated = tokens.rotate_token(session, box=database.box, actor=ACTOR, now=now,
                                          public_id=created.token.public_id,
                                          expected_version=created.token.version,
                                          overlap=overlap)
    finally:
        database.dispose()
    return created.token.public_id, created.secret, rotated.secret


def rotation_ends(settings: Settings, public_id: str) -> tuple[int, int, list[str]]:
    """How many times the rotation of ``public_id`` was ended: audit rows, tombstones,
    and the kinds of the owner's notices."""
    database = Database(settings, auto_upgrade=False)
    try:
        with database.sessions() as session:
            audits = session.scalars(select(AuditEvent).where(
                AuditEvent.token_public_id == public_id,
                AuditEvent.action == AuditAction.RETIRE_OLD)).all()
            buried = session.scalars(select(RetiredSecret).where(
                RetiredSecret.token_public_id == public_id)).all()
            notices = session.scalars(select(OutboxMessage).where(
                OutboxMessage.kind == MessageKind.ROTATION_NOTICE,
                OutboxMessage.token_public_id == public_id)).all()
            return len(audits), len(buried), sorted(str(n.payload["ending"]) for n in notices)
    finally:
        database.dispose()


def end_overdue(database: Database, now: dt.datetime) -> int:
    """What a pass at ``now`` does first about rotations: end those whose overlap ran out
    (queuing their owners' notices); how many it ended."""
    with database.sessions.begin() as session:
        return rotation.end_overdue_rotations(session, now=now)


def rotation_notices(standin: SlackStandIn) -> list[str]:
    """The texts of the rotation notices posted to the owner."""
    return [call.body["text"] for call in standin.calls_to("chat.postMessage")
            if call.body["channel"] == OWNER
            and any(b.get("block_id") == "rotation_notice" for b in call.body["blocks"])]


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` in threads released together."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(released, calls))


def test_concurrent_first_uses_through_two_processes_end_the_rotation_once(
    serve: list[tuple[int, subprocess.Popen[bytes]]], env: dict[str, str], settings: Settings,
    standin: SlackStandIn, tmp_path: Path,
) -> None:
    (a, _), (b, _) = serve
    public_id, old, new = rotate_with_overlap(settings, dt.timedelta(hours=24))
    assert introspect(a, old, BEARER)["rotation"] == "superseded"
    answers = at_once([lambda port=port, auth=auth: introspect(port, new, auth)
                       for port, auth in [(a, BEARER), (b, BASIC)] * 8])
    assert all(answer["active"] and "rotation" not in answer for answer in answers)
    assert introspect(a, old, BEARER) == {"active": False}
    assert introspect(b, old, BASIC) == {"active": False}
    assert rotation_ends(settings, public_id) == (1, 1, ["rotation_switched"])
    stop(serve)

    run = subprocess.run([str(TOKENBOT), "alerts", "run", "--json"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    (notice,) = rotation_notices(standin)
    assert "first used by" in notice


def test_first_uses_racing_deadline_passes_end_each_rotation_once(
    serve: list[tuple[int, subprocess.Popen[bytes]]], env: dict[str, str], settings: Settings,
    standin: SlackStandIn, tmp_path: Path,
) -> None:
    """Three passes' rotation step (``end_overdue_rotations``, issue 19: the pass no longer
    has a lifecycle part of its own) that see the overlaps run out (their ``now`` is past the
    deadlines) race first uses of the new secrets through two servers (for which the
    overlaps still run): whichever ends a rotation, it ends once, and its owner hears of it
    once. The passes run in threads here, so they start as the requests do."""
    (a, _), (b, _) = serve
    rotated = [rotate_with_overlap(settings, dt.timedelta(hours=1)) for _ in range(4)]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    database = Database(settings, auto_upgrade=False)
    try:
        passes = [lambda: end_overdue(database, later) for _ in range(3)]
        uses = [lambda port=port, auth=auth, new=new: introspect(port, new, auth)
                for _public_id, _old, new in rotated for port, auth in [(a, BEARER), (b, BASIC)]]
        results = at_once([*passes, *uses])
    finally:
        database.dispose()
    assert sum(results[:3]) <= len(rotated)
    assert all(answer["active"] for answer in results[3:])
    for public_id, _old, _new in rotated:
        audits, buried, notices = rotation_ends(settings, public_id)
        assert (audits, buried, len(notices)) == (1, 1, 1), public_id
    stop(serve)
    # at the passes' time: the notices they queued are due from then on (those queued by a
    # first use were posted by its server already)
    run = subprocess.run([str(TOKENBOT), "alerts", "run", "--json", "--now", later.isoformat()],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(rotation_notices(standin)) == len(rotated)  # one DM a rotation
