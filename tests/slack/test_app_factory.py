"""``create_app``: what it needs for HTTP and for Socket Mode."""

from __future__ import annotations

import pytest
from slack_bolt import BoltRequest

from bot.slack.app import create_app, work_pool
from bot.errors import ConfigurationError
from tests.slack.conftest import OWNER, TEAM, last_response, seed, texts
from tests.support.blockkit import validate_slack_call


def test_http_mode_requires_the_signing_secret(make_settings, db, standin):
    settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_BOT_TOKEN="xoxb-test")
    with pytest.raises(ConfigurationError, match="SLACK_SIGNING_SECRET"):
        create_app(settings=settings, database=db)


def test_a_bot_token_is_required_without_a_client(make_settings, db, standin):
    settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET="s")
    with pytest.raises(ConfigurationError, match="SLACK_BOT_TOKEN"):
        create_app(settings=settings, database=db)


def test_building_the_app_calls_nothing(make_settings, db, standin):
    settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET="s",
                             SLACK_BOT_TOKEN="xoxb-test")
    create_app(settings=settings, database=db)
    assert standin.calls == []  # no auth.test at start-up


def test_socket_mode_needs_no_signing_secret(make_settings, db, standin):
    seed(db, label="over the socket")
    settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_BOT_TOKEN="xoxb-test")
    work = work_pool()
    app = create_app(settings=settings, database=db, socket_mode=True, work=work)
    try:
        body = {"team_id": TEAM, "user_id": OWNER, "command": "/tokens", "text": "",
                "channel_id": "C1", "response_url": standin.response_url("socket"),
                "trigger_id": "1.1.t"}
        response = app.dispatch(BoltRequest(body=body, mode="socket_mode"))
        assert response.status == 200
        standin.wait_for("response_url")
        assert "over the socket" in texts(last_response(standin).body["blocks"])
        for call in standin.calls:
            validate_slack_call(call.method, call.body)
    finally:
        work.close(timeout=10)
