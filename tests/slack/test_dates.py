"""Dates users can trust: the expiry date picked in the modal is the date every surface
shows (the table, the edit modal, digests, the CLI), whatever the reader's time zone; how
far away it is ("in 3 days", "expired today", "expired 2 days ago") and an "Expires soon" badge
within 7 days; Created shows date and time."""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from bot import cli
from bot.alerts.scheduler import run_pass
from bot.config import Settings
from bot.dates import expires_soon, relative_expiry
from bot.db import Database
from bot.models import Token
from bot.slack.client import make_web_client
from bot.slack.ids import ActionId
from tests.alerts_support import ALERTS
from tests.conftest import TEST_KEY
from tests.slack.conftest import (
    OWNER,
    SlackBot,
    form_values,
    row_buttons,
    running_bot,
    seed,
    texts,
)
from tests.support.slack_standin import SlackStandIn

UTC = dt.timezone.utc
WEST = dt.timezone(dt.timedelta(hours=-8))  # e.g. San Francisco in winter
EAST = dt.timezone(dt.timedelta(hours=13))  # e.g. Tonga, or Auckland in summer
DATE = re.compile(r"<!date\^(\d+)\^([^|>]*)(?:\^[^|>]*)?\|[^>]*>")


def render(mrkdwn: str, zone: dt.tzinfo, now: dt.datetime) -> str:
    """What a Slack client in ``zone`` shows for each ``<!date^…>`` (the tokens Tokenbot
    uses and the common others)."""

    def one(match: re.Match[str]) -> str:
        moment = dt.datetime.fromtimestamp(int(match.group(1)), tz=zone)
        text = match.group(2)
        days = (now - moment).days
        words = {
            "{date_num}": moment.strftime("%Y-%m-%d"),
            "{date_short}": moment.strftime("%b %-d, %Y"),
            "{date}": moment.strftime("%B %-d, %Y"),
            "{date_long}": moment.strftime("%A, %B %-d, %Y"),
            "{date_short_pretty}": moment.strftime("%b %-d, %Y"),
            "{time}": moment.strftime("%-I:%M %p"),
            "{ago}": f"{days} days ago" if days > 0 else "just now",
        }
        for token, value in words.items():
            text = text.replace(token, value)
        return text

    return DATE.sub(one, mrkdwn)


@pytest.fixture
def abot(asettings: Settings, adb: Database, standin: SlackStandIn) -> Iterator[SlackBot]:
    with running_bot(asettings, adb, standin) as harness:
        yield harness


def _cli(asettings: Settings, monkeypatch: pytest.MonkeyPatch, capsys, *argv: str) -> str:
    monkeypatch.setenv("DATABASE_URL", asettings.database_url)
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", TEST_KEY)
    monkeypatch.setenv("TOKENBOT_TEAM_ID", "T1")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    capsys.readouterr()
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def _row(blocks: list[dict[str, Any]]) -> str:
    return next(b for b in blocks if b.get("block_id", "").startswith("row:"))["text"]["text"]


def test_a_date_picked_in_the_modal_reads_the_same_everywhere_in_every_time_zone(
    abot, asettings, adb, standin, monkeypatch, capsys
):
    now = dt.datetime.now(UTC)
    picked = (now + dt.timedelta(days=7)).date()
    picked_text = picked.isoformat()
    # picked in the create modal
    abot.command("create")
    modal = standin.wait_for("views.open")[-1].body["view"]
    abot.submit(modal, form_values(label="deploy", scope="read", expires=picked_text))

    # the table, as a reader west and east of UTC sees it
    abot.command("")
    table = standin.calls_to("response_url")[-1].body["blocks"]
    row = _row(table)
    for zone in (WEST, EAST, UTC):
        shown = render(row, zone, now)
        assert f"Expires: {picked_text} (in 7 days)" in shown
        expiry_part = shown.split("Expires:", 1)[1].split("·", 1)[0]
        for other in (picked - dt.timedelta(days=1), picked + dt.timedelta(days=1)):
            assert other.isoformat() not in expiry_part
            assert other.strftime("%b %-d, %Y") not in expiry_part
    assert ":hourglass_flowing_sand: *Expires soon*" in row  # within 7 days
    # Created: the instant, date and time, in the reader's zone
    created = re.search(r"Created: (<!date\^\d+\^\{date_short\} \{time\}\|[^>]+>)", row)
    assert created is not None

    # the edit modal shows the same date
    public_id = next(b for b in table if b.get("block_id", "").startswith("row:"))[
        "block_id"].split(":", 1)[1]
    abot.click(row_buttons(table, public_id)[ActionId.EDIT])
    form = standin.wait_for("views.open", 2)[-1].body["view"]
    picker = next(b for b in form["blocks"] if b.get("block_id") == "expires")["element"]
    assert picker["initial_date"] == picked_text

    # the digest
    report = run_pass(settings=asettings, database=adb, client=make_web_client(asettings),
                      now=now, post_interval=0.0)
    assert report.failed == 0
    digest = next(c.body for c in standin.calls_to("chat.postMessage")
                  if c.body["channel"] == ALERTS)
    said = "\n".join(texts(digest["blocks"]).splitlines())
    for zone in (WEST, EAST):
        assert f"Expires {picked_text} (*in 7 days*)" in render(said, zone, now)
    assert "<!date^" not in said

    # the CLI
    listed = _cli(asettings, monkeypatch, capsys, "tokens", "list")
    assert f"{picked_text} (in 7 days)" in listed
    shown = _cli(asettings, monkeypatch, capsys, "tokens", "show", public_id)
    assert f"Expires:   {picked_text} (in 7 days)" in shown
    assert f'"expires_on": "{picked_text}"' in _cli(asettings, monkeypatch, capsys, "tokens",
                                                   "show", public_id, "--json")


@pytest.mark.parametrize(
    ("offset", "relative", "soon"),
    [(40, "in 40 days", False), (8, "in 8 days", False), (7, "in 7 days", True),
     (3, "in 3 days", True), (1, "in 1 day", True), (0, "expired today", False),
     (-2, "expired 2 days ago", False)],
)
def test_rows_say_how_far_the_expiry_is_and_badge_the_soon_ones(bot, db, table, offset,
                                                                relative, soon):
    now = dt.datetime.now(UTC)
    day = now.date() + dt.timedelta(days=offset)
    created = seed(db, label="dated", owner=OWNER, expires_on=now.date() + dt.timedelta(days=1))
    with db.sessions.begin() as session:  # any date, past ones too
        session.execute(update(Token).where(Token.public_id == created.token.public_id)
                        .values(expires_at=dt.datetime.combine(day, dt.time(), tzinfo=UTC)))
    row = _row(table())
    assert f"Expires: {day.isoformat()} ({relative})" in row
    assert ("Expires soon" in row) is soon
    assert ("Expired" in row) is (offset <= 0)
    assert relative_expiry(day, now) == relative and expires_soon(day, now) is soon


def test_relative_expiry_counts_utc_calendar_days():
    """Late on the 10th (UTC) a token expiring on the 11th is "in 1 day", and at 00:00 on
    the 11th it has expired "today"."""
    day = dt.date(2027, 1, 11)
    assert relative_expiry(day, dt.datetime(2027, 1, 10, 23, 59, tzinfo=UTC)) == "in 1 day"
    assert relative_expiry(day, dt.datetime(2027, 1, 11, 0, 0, tzinfo=UTC)) == "expired today"
    # a reader's zone does not move the calendar: the same instant, written west of UTC
    late_west = dt.datetime(2027, 1, 10, 17, 0, tzinfo=WEST)  # 01:00 UTC on the 11th
    assert relative_expiry(day, late_west) == "expired today"
    assert relative_expiry(day, dt.datetime(2027, 1, 13, 12, tzinfo=UTC)) == "expired 2 days ago"
