"""What the usage-lifecycle tests share (issue 12): the workspace's names, an
introspection client for the served app, the CLI in-process, and reading what was posted.
Their fixtures (``lc_settings``, ``lc_db``, ``server``, ``run``) are in tests/conftest.py."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import io
import json
import re
import sys
from typing import Any

import pytest
from sqlalchemy import select

from bot import cli
from bot.db import Database
from bot.models import AuditEvent, AuditSource, utcnow
from bot.services import tokens
from tests.support.blockkit import validate_slack_call
from tests.support.signing import form_body
from tests.support.slack_standin import SlackStandIn
from tests.support.policy import NO_POLICY


TEAM = "T1"
OWNER = "UOWNER"
CI_SECRET = "ci-runner-credential-0123"
BARE_SECRET = "a-bare-credential=="
SECRETS = f"ci-runner={CI_SECRET},{BARE_SECRET},deploy-bot=deploy-credential-456"
FORM = "application/x-www-form-urlencoded"
ACTOR = tokens.Actor(team_id=TEAM, user_id=OWNER, source=AuditSource.SLACK)


def introspect_at(address: tuple[str, int], secret: str, auth: str) -> dict[str, Any]:
    """``POST /introspect`` of ``secret`` at ``address`` with ``auth``: the 200 answer."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("POST", "/introspect", body=form_body({"token": secret}),
                           headers={"Authorization": auth, "Content-Type": FORM})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


class Server:
    def __init__(self, address: tuple[str, int], app: Any) -> None:
        self.address = address
        self.app = app

    def introspect(self, secret: str, *, auth: str = f"Bearer {CI_SECRET}") -> dict[str, Any]:
        return introspect_at(self.address, secret, auth)

    def settle(self) -> None:
        """Wait for the writes queued by requests so far (last use, dead-secret counts)."""
        self.app.introspection.writes.flush().result(10)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


def create(database: Database, *, label: str = "CI deploy", channel: str | None = None,
           now: dt.datetime | None = None, expires_on: dt.date | None = None
           ) -> tokens.CreatedToken:
    with database.sessions.begin() as session:
        return tokens.create_token(session, box=database.box, actor=ACTOR, label=label,
                                   scope="write", scopes=["read", "write"], now=now or utcnow(),
                                   alert_channel=channel, expires_on=expires_on, policy=NO_POLICY)


def version(database: Database, public_id: str) -> int:
    with database.sessions() as session:
        return tokens.get_token(session, team_id=TEAM, public_id=public_id).version


def audit_actions(database: Database, public_id: str) -> list[tuple[str, str]]:
    with database.sessions() as session:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.token_public_id == public_id).order_by(AuditEvent.id)).all()
        return [(str(e.action), e.actor) for e in events]


def posts(standin: SlackStandIn, start: int = 0) -> list[dict[str, Any]]:
    """The chat.postMessage bodies so far (each one validated Block Kit)."""
    bodies = [call.body for call in standin.calls_to("chat.postMessage")[start:]]
    for body in bodies:
        validate_slack_call("chat.postMessage", body)
    return bodies


def time_after(text: str, words: str) -> dt.datetime:
    """The instant ``words`` are followed by in ``text``: Slack's ``<!date^epoch^{time}|…>``,
    which each reader sees as the time of day in their own time zone."""
    match = re.search(re.escape(words) + r" <!date\^(\d+)\^\{time\}\|\d\d:\d\d UTC>", text)
    assert match, text
    return dt.datetime.fromtimestamp(int(match.group(1)), dt.timezone.utc)


def alarm_posts(standin: SlackStandIn) -> list[dict[str, Any]]:
    """The dead-secret alarms posted so far."""
    return [p for p in posts(standin)
            if any(b.get("block_id") == "dead_secret" for b in p.get("blocks") or [])]


def alerts_run(run: Cli, now: dt.datetime, *extra: str, code: int = 0) -> dict[str, Any]:
    """``tokenbot alerts run --now … --json``: the whole report (``PassReport.to_dict()``);
    ``code``: the exit status expected (1 when something failed)."""
    exit_code, out, err = run("alerts", "run", "--now", now.isoformat(), "--json", *extra)
    assert exit_code == code, err
    return json.loads(out)  # type: ignore[no-any-return]


def entries(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The report's ``tokens`` entries of message kind ``kind`` (``rotation_notice``,
    ``dead_secret_alarm``, ``owner_notice``, ``expiry``), each with its destination's
    ``destination`` and ``audience`` (``channel`` / ``owner``), destinations in order."""
    return [{**entry, "destination": each["destination"], "audience": each["kind"]}
            for each in report["destinations"] for entry in each["tokens"]
            if entry["kind"] == kind]


def told(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The tokens the report's messages of ``kind`` are about, one entry per token (its
    first entry's payload) with ``destinations``: where it was posted, the owner first."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries(report, kind), key=lambda e: e["audience"] != "owner"):
        found = merged.setdefault(entry["id"], {**entry, "destinations": []})
        found["destinations"].append(entry["destination"])
    for found in merged.values():
        del found["destination"], found["audience"]
    return list(merged.values())


def rotation_notice_posts(standin: SlackStandIn) -> list[dict[str, Any]]:
    """The owners' rotation notices posted so far."""
    return [p for p in posts(standin)
            if any(b.get("block_id") == "rotation_notice" for b in p.get("blocks") or [])]
