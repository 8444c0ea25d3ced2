"""`tokenbot alerts status [--json]`: what the outbox holds, before and after a pass in
which one destination refuses its posts (the operator sees the stuck destination, its
error and its next retry without reading the database)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from bot import metrics
from bot.alerts.scheduler import run_pass
from bot.cli import main
from bot.config import Settings
from bot.db import Database
from bot.models import MessageKind, utcnow
from bot.services import tokens
from bot.slack.client import make_web_client
from tests.alerts_support import ADMIN, ALERTS, TEAM, cli_environment
from tests.support.scrape import moved, parse
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

OWNER = "U1"


def status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["alerts", "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def places(data: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["audience"], d["destination"]): d for d in data["destinations"]}


def test_status_shows_the_pending_messages_and_then_the_destination_that_refuses_them(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in cli_environment(asettings).items():
        monkeypatch.setenv(name, value)
    now = dt.datetime.now(dt.timezone.utc)
    owner = tokens.Actor(team_id=TEAM, user_id=OWNER)
    with adb.sessions.begin() as session:
        tokens.create_token(session, box=adb.box, actor=owner, label="expires soon", scope="read",
                            scopes=["read"], now=now, expires_on=now.date() + dt.timedelta(days=5),
                            policy=NO_POLICY)
        other = tokens.create_token(session, box=adb.box, actor=owner, label="other",
                                    scope="read", scopes=["read"], now=now, policy=NO_POLICY)
        # An admin disables the owner's token: the owner's notice is queued.
        tokens.disable_token(session,
                             actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                             public_id=other.token.public_id,
                             expected_version=other.token.version, now=now)

    before = status(capsys)
    kinds = {k["kind"]: k for k in before["kinds"]}
    assert (kinds["owner_notice"]["queued"], kinds["owner_notice"]["pending"]) == (1, 1)
    assert kinds["owner_notice"]["oldest_pending"] is not None
    assert all(k["pending"] == 0 for name, k in kinds.items() if name != "owner_notice")
    (notice,) = before["destinations"]
    assert (notice["kind"], notice["audience"], notice["destination"]) == (
        "owner_notice", "owner", OWNER)
    assert (notice["queued"], notice["failing"], notice["last_error"]) == (1, 0, None)

    # The pass: the owner's direct messages go first, and Slack refuses them.
    standin.fail_next("chat.postMessage", Failure(200, {"ok": False, "error": "not_in_channel"}))
    assert main(["alerts", "run", "--json"]) == 1
    capsys.readouterr()

    after = status(capsys)
    kinds = {k["kind"]: k for k in after["kinds"]}
    assert {name: (k["queued"], k["failing"], k["sent"]) for name, k in kinds.items()} == {
        kind.value: {"expiry": (0, 1, 1), "owner_notice": (0, 1, 0)}.get(kind.value, (0, 0, 0))
        for kind in MessageKind}
    found = places(after)
    assert found[("expiry", "channel", ALERTS)]["sent"] == 1
    assert found[("expiry", "channel", ALERTS)]["last_error"] is None
    for kind in ("expiry", "owner_notice"):
        stuck = found[(kind, "owner", OWNER)]
        assert stuck["failing"] == 1 and "not_in_channel" in stuck["last_error"]
        assert stuck["attempts"] == 1 and stuck["next_retry"] > after["now"]
        assert stuck["oldest_pending"] <= after["now"]

    assert main(["alerts", "status"]) == 0
    text = capsys.readouterr().out
    stuck_lines = [line for line in text.splitlines() if f"DM {OWNER}" in line]
    assert len(stuck_lines) == 2 and all("not_in_channel" in line for line in stuck_lines)
    assert f"#{ALERTS}" not in text  # nothing pending there


def test_a_destination_failing_between_the_reports_two_reads_is_reported(db: Database) -> None:
    """A message queued and failed by a delivery while the report is being read (after its
    counts, before its errors) does not break it: the report (and the scrape's gauges) go
    on, with that destination's error."""
    from sqlalchemy import event, update

    from bot.models import Audience, OutboxMessage
    from bot.services import outbox
    from bot.services.outbox_status import outbox_report

    now = dt.datetime.now(dt.timezone.utc)
    inserted: list[bool] = []

    def meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "last_error IS NOT NULL" in statement and not inserted:
            inserted.append(True)
            with db.sessions.begin() as other:
                outbox.queue(other, kind=MessageKind.OWNER_NOTICE, team_id=TEAM,
                             audience=Audience.OWNER, destination="ULATE", now=now, payload={})
                other.execute(update(OutboxMessage).values(attempts=1,
                                                           last_error="not_in_channel"))

    event.listen(db.engine, "before_cursor_execute", meanwhile)
    try:
        with db.sessions() as session:
            report = outbox_report(session, now=now)
    finally:
        event.remove(db.engine, "before_cursor_execute", meanwhile)
    assert inserted
    late = [p for p in report.destinations if p.destination == "ULATE"]
    assert [(p.kind, p.last_error) for p in late] == [("owner_notice", "not_in_channel")]


def test_every_pass_is_counted_by_how_it_ended(
    asettings: Settings, adb: Database, standin: SlackStandIn,
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    """A pass that ends, and one stopped by an unreachable database: both counted."""
    before = parse(metrics.exposition()[0].decode())
    run_pass(settings=asettings, database=adb, client=make_web_client(asettings), now=utcnow())
    broken = make_settings(DATABASE_URL=f"sqlite:///{tmp_path}")  # a folder: no database
    unreachable = Database(broken, auto_upgrade=False)
    try:
        with pytest.raises(SQLAlchemyError):
            run_pass(settings=broken, database=unreachable,
                     client=make_web_client(asettings), now=utcnow())
    finally:
        unreachable.dispose()
    after = parse(metrics.exposition()[0].decode())
    assert moved(before, after, "tokenbot_alert_passes_total") == {("ok",): 1, ("error",): 1}
