"""Scale-out: three ``tokenbot serve`` processes on one PostgreSQL database.

Slack requests (signed exactly as Slack signs them) and introspection requests are spread
over the three; a token disabled through one process (a Disable click on its row) answers
``active: false`` through every other at once, with no retry; the three stop cleanly on
SIGTERM. Slack's side is the local SlackStandIn. PostgreSQL only: the deployment this
documents (README, Operations, "Scaling out").
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.config import load_settings
from bot.db import Database
from bot.slack.ids import ActionId
from bot.models import AuditEvent, Base, Token, TokenStatus
from bot.services import tokens
from tests.conftest import TEST_KEY
from tests.support.signing import form_body, interactive_body, signed_headers
from tests.support.slack_standin import SlackStandIn
from tests.support.policy import NO_POLICY

pytestmark = pytest.mark.slow  # every test here starts `tokenbot serve` processes

SIGNING_SECRET = "scale-out-signing-secret-0123456789"
INTROSPECTION_SECRET = "scale-out-introspection-secret"
TEAM = "TSCALE"
OWNER = "UOWNER"
FORM = "application/x-www-form-urlencoded"
TOKENBOT = Path(sys.executable).parent / "tokenbot"


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    process: Process, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*process.address, timeout=10)
    try:
        connection.request(method, path, body=body.encode(), headers=headers or {})
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def introspect(process: Process, secret: str) -> dict[str, Any]:
    status, headers, body = request(
        process, "POST", "/introspect", form_body({"token": secret}),
        {"Authorization": f"Bearer {INTROSPECTION_SECRET}", "Content-Type": FORM},
    )
    assert status == 200, body
    assert headers["cache-control"] == "no-store"
    return json.loads(body)


def slack(process: Process, body: str) -> int:
    status, _, _ = request(process, "POST", "/slack/events", body,
                           signed_headers(SIGNING_SECRET, body, content_type=FORM))
    return status


_seq = itertools.count(1)


def slash_tokens(process: Process, standin: SlackStandIn, user: str = OWNER) -> list[dict[str, Any]]:
    """``/tokens`` through this process; the table's blocks as posted to the response_url."""
    before = len(standin.calls_to("response_url"))
    body = form_body({
        "token": "legacy", "team_id": TEAM, "team_domain": "acme", "channel_id": "C1",
        "channel_name": "general", "user_id": user, "user_name": "owner",
        "command": "/tokens", "text": "", "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": standin.response_url(f"cmd{next(_seq)}"),
        "trigger_id": f"{next(_seq)}.1.trigger",
    })
    assert slack(process, body) == 200
    return standin.wait_for("response_url", before + 1, timeout=15)[-1].body["blocks"]


def click(process: Process, standin: SlackStandIn, element: dict[str, Any],
          user: str = OWNER) -> list[dict[str, Any]]:
    """A button click through this process; the blocks of the table redrawn in place."""
    before = len(standin.calls_to("response_url"))
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "owner", "name": "owner", "team_id": TEAM},
        "api_app_id": "A1", "token": "legacy", "trigger_id": f"{next(_seq)}.1.trigger",
        "team": {"id": TEAM, "domain": "acme"}, "enterprise": None,
        "is_enterprise_install": False,
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C1",
                      "is_ephemeral": True},
        "channel": {"id": "C1", "name": "general"},
        "response_url": standin.response_url(f"click{next(_seq)}"),
        "actions": [{
            "type": "button", "action_id": element["action_id"], "block_id": "b",
            "text": element.get("text", {"type": "plain_text", "text": "x"}),
            "value": element.get("value", ""), "action_ts": f"{time.time():.6f}",
        }],
        "state": {"values": {}},
    }
    assert slack(process, interactive_body(payload)) == 200
    return standin.wait_for("response_url", before + 1, timeout=15)[-1].body["blocks"]


def row_buttons(blocks: list[dict[str, Any]], public_id: str) -> dict[str, dict[str, Any]]:
    for block in blocks:
        if block.get("block_id") == f"row_actions:{public_id}":
            return {element["action_id"]: element for element in block["elements"]}
    raise AssertionError(f"no row for {public_id}")


def row_text(blocks: list[dict[str, Any]], public_id: str) -> str:
    return json.dumps(next(b for b in blocks if b.get("block_id") == f"row:{public_id}"))


@pytest.fixture
def pg(postgresql_url: str) -> Iterator[Database]:
    settings = load_settings(_env_file=None, DATABASE_URL=postgresql_url,
                             TOKENBOT_SECRET_KEYS=TEST_KEY)
    database = Database(settings, auto_upgrade=False)
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def cluster(
    postgresql_url: str, standin: SlackStandIn, tmp_path: Path, pg: Database
) -> Iterator[list[Process]]:
    """Three ``tokenbot serve`` processes, ready (``/healthz``), stopped on SIGTERM."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "TOKENBOT_", "DATABASE_URL"))
    }
    env.update({
        "DATABASE_URL": postgresql_url,
        "TOKENBOT_SECRET_KEYS": TEST_KEY,
        "SLACK_BOT_TOKEN": "xoxb-scale-out",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": standin.api_url,
        "TOKENBOT_INTROSPECTION_SECRETS": f"old-secret,{INTROSPECTION_SECRET}",
        "TOKENBOT_SCHEDULER": "off",
    })
    processes = []
    for name in "ABC":
        port = free_port()
        log = tmp_path / f"serve-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(TOKENBOT), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            )
        processes.append(Process(name, port, popen, log))
    try:
        deadline = time.monotonic() + 60
        for process in processes:
            while True:
                try:
                    if request(process, "GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert process.popen.poll() is None, process.log.read_text()
                assert time.monotonic() < deadline, f"{process.name} did not start"
                time.sleep(0.1)
        yield processes
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


def test_three_processes_one_database(
    cluster: list[Process], standin: SlackStandIn, pg: Database
) -> None:
    a, b, c = cluster
    now = dt.datetime.now(dt.timezone.utc)
    actor = tokens.Actor(team_id=TEAM, user_id=OWNER)
    with pg.sessions.begin() as session:
        kept = tokens.create_token(session, box=pg.box, actor=actor, label="kept", scope="read",
                                   scopes=["read", "write", "admin"], now=now, policy=NO_POLICY)
        target = tokens.create_token(session, box=pg.box, actor=actor, label="deploy",
                                     scope="write", scopes=["read", "write", "admin"], now=now,
                                     policy=NO_POLICY)
    public_id = target.token.public_id

    # Introspection spread over the three: every process answers from the shared store.
    for process in cluster * 4:
        claims = introspect(process, target.secret)
        assert claims["active"] is True and claims["client_id"] == public_id
        assert claims["scope"] == "write" and claims["sub"] == OWNER
    # Twelve successful checks over three processes: "last used" is recorded.
    deadline = time.monotonic() + 10
    while (last_used := _load(pg, public_id).last_used_at) is None:
        assert time.monotonic() < deadline, "last used never recorded"
        time.sleep(0.05)
    assert now - dt.timedelta(seconds=1) <= last_used <= dt.datetime.now(dt.timezone.utc)
    assert _load(pg, public_id).version == 1  # "last used" is not an edit

    # The table drawn through A, the Disable click through B.
    table = slash_tokens(a, standin)
    assert "Disabled" not in row_text(table, public_id)
    assert "Last used" in row_text(table, public_id)  # what the services' checks left
    assert "Never used" in row_text(table, kept.token.public_id)
    redrawn = click(b, standin, row_buttons(table, public_id)[ActionId.DISABLE])
    assert "Disabled" in row_text(redrawn, public_id)
    assert _load(pg, public_id).status == TokenStatus.DISABLED

    # At once, on every process, no retry: inactive; the other token is untouched.
    for process in (c, a, b):
        assert introspect(process, target.secret) == {"active": False}
        assert introspect(process, kept.secret)["active"] is True

    # The table drawn through C shows it disabled; enabling through C revives it everywhere.
    table = slash_tokens(c, standin)
    assert "Disabled" in row_text(table, public_id)
    click(c, standin, row_buttons(table, public_id)[ActionId.ENABLE])
    for process in cluster:
        assert introspect(process, target.secret)["active"] is True

    # Rotation through the service: the old secret is dead everywhere at once.
    with pg.sessions.begin() as session:
        version = _load(pg, public_id).version
        rotated = tokens.rotate_token(session, box=pg.box, actor=actor, public_id=public_id,
                                      expected_version=version,
                                      now=dt.datetime.now(dt.timezone.utc))
    for process in cluster:
        assert introspect(process, target.secret) == {"active": False}
        assert introspect(process, rotated.secret)["active"] is True

    with pg.sessions.begin() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.token_public_id == public_id)
            .order_by(AuditEvent.id)
        ).all()
    assert actions == ["create", "disable", "enable", "rotate"]

    # Clean stop: SIGTERM, exit code 0 within a few seconds; no secret in any log.
    for process in cluster:
        process.popen.send_signal(signal.SIGTERM)
    for process in cluster:
        assert process.popen.wait(timeout=10) == 0, process.log.read_text()[-2000:]
        log = process.log.read_text()
        for secret in (target.secret, rotated.secret, kept.secret, INTROSPECTION_SECRET,
                       SIGNING_SECRET):
            assert secret not in log


def _load(database: Database, public_id: str) -> Token:
    with database.sessions.begin() as session:
        token = session.scalars(select(Token).where(Token.public_id == public_id)).one()
        session.expunge(token)
        return token
