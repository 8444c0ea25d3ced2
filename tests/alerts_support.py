"""Helpers and fixtures shared by the expiry-alert tests (tests/test_alerts*.py); the
fixtures reach them through ``pytest_plugins`` in tests/conftest.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.config import Settings
from bot.db import Database
from bot.services import tokens
from bot.slack.state import RowRef
from tests.support.blockkit import validate_message_blocks
from tests.support.slack_standin import Call, SlackStandIn
from tests.support.policy import NO_POLICY

TEAM = "T1"
ALERTS = "CALERTS"
ADMIN = "UADMIN"
UTC = dt.timezone.utc


def seed_token(
    db: Database,
    *,
    now: dt.datetime,
    expires_on: dt.date | None,
    label: str = "ci deploy",
    owner: str = "U1",
    channel: str | None = None,
    team: str = TEAM,
) -> tokens.CreatedToken:
    actor = tokens.Actor(team_id=team, user_id=ADMIN, is_admin=True)
    with db.sessions.begin() as session:
        return tokens.create_token(
            session, box=db.box, actor=actor, label=label, scope="write",
            scopes=["read", "write", "admin"], now=now, expires_on=expires_on,
            alert_channel=channel, owner=owner, policy=NO_POLICY,
        )


def posted_ids(body: dict[str, Any]) -> list[str]:
    """Public ids of the tokens one digest message carries, in order."""
    ids: list[str] = []
    for block in body["blocks"]:
        block_id = block.get("block_id", "")
        if block_id.startswith("alert_item:"):
            ids.append(block_id.split(":", 1)[1])
        elif block_id.startswith("alert_group_actions:"):
            menu = next(e for e in block["elements"] if e["action_id"] == "alert_edit")
            ids.extend(RowRef.decode(option["value"]).public_id for option in menu["options"])
    return ids


def successful_posts(standin: SlackStandIn, failures: int = 0) -> list[Call]:
    """chat.postMessage calls that Slack accepted: the stand-in serves queued failures to
    the first calls, in the order it records them. Each one is validated Block Kit."""
    calls = standin.calls_to("chat.postMessage")
    for call in calls:  # refused ones too: every payload sent is checked
        validate_message_blocks(call.body["blocks"])
    return calls[failures:]


def by_destination(calls: list[Call]) -> dict[str, list[str]]:
    """Destination (channel or owner) -> the public ids posted there, over all calls."""
    out: dict[str, list[str]] = {}
    for call in calls:
        out.setdefault(call.body["channel"], []).extend(posted_ids(call.body))
    return out


@pytest.fixture
def asettings(make_settings: Callable[..., Settings], standin: SlackStandIn) -> Settings:
    """Settings with an alert channel, Slack as the stand-in, and the tests' signing secret."""
    from tests.slack.conftest import SIGNING_SECRET

    return alert_settings(make_settings, standin, SLACK_SIGNING_SECRET=SIGNING_SECRET)


@pytest.fixture
def adb(asettings: Settings) -> Iterator[Database]:
    database = Database(asettings, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


def alert_settings(make_settings: Any, standin: SlackStandIn, **extra: object) -> Settings:
    values: dict[str, object] = {
        "SLACK_API_URL": standin.api_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "TOKENBOT_ALERT_CHANNEL": ALERTS,
    }
    values.update(extra)
    settings: Settings = make_settings(**values)
    return settings


def cli_environment(settings: Settings) -> dict[str, str]:
    """The environment a `tokenbot alerts run` needs to run against these settings: with
    their alert channel (none: unset) and their dormant rule."""
    from tests.conftest import TEST_KEY

    environment = {
        "DATABASE_URL": settings.database_url,
        "TOKENBOT_SECRET_KEYS": TEST_KEY,
        "SLACK_API_URL": settings.slack_api_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "TOKENBOT_DORMANT_DAYS": str(settings.tokenbot_dormant_days),
        "TOKENBOT_DORMANT_ACTION": settings.tokenbot_dormant_action,
    }
    if settings.tokenbot_alert_channel is not None:
        environment["TOKENBOT_ALERT_CHANNEL"] = settings.tokenbot_alert_channel
    return environment
