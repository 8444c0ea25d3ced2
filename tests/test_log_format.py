"""LOG_FORMAT=json at DEBUG: one JSON object per line, with the request's context, and the
secret redaction as in text (slack_sdk's DEBUG lines carry whole request bodies: a
chat.postEphemeral with a secret in it, as a copy from a digest posts). A whole serve
process logging JSON: tests/test_operations.py."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot import logs
from bot.config import Settings
from bot.crypto import generate_secret
from bot.slack.client import make_web_client
from tests.support.slack_standin import SlackStandIn

BOT_TOKEN = "xoxb-1234-5678-log-format-test"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger at DEBUG through one handler set up as ``logs.configure`` sets it."""
    root, stream = logging.getLogger(), io.StringIO()
    handler = logs.guard(logging.StreamHandler(stream))
    handler.setFormatter(logs.formatter("json"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_at_debug_carry_the_context_and_never_a_secret(
    json_log: io.StringIO, make_settings: Callable[..., Settings], standin: SlackStandIn,
) -> None:
    secret = generate_secret()
    client = make_web_client(make_settings(SLACK_BOT_TOKEN=BOT_TOKEN,
                                           SLACK_API_URL=standin.api_url))
    entered = logs.enter_request(logs.RequestContext("click", "token_copy", "T1", "U1"))
    try:
        logs.note_token("tok_abc123")
        client.chat_postEphemeral(channel="C1", user="U1", text=f"Your token:\n```{secret}```")
        try:
            raise ValueError(f"a message quoting {secret}")
        except ValueError:
            logging.getLogger("bot.test").exception("failed with %s", secret)
    finally:
        logs.leave_request(entered)
    logging.getLogger("bot.test").info("after the request")

    assert standin.calls_to("chat.postEphemeral")  # the secret did reach Slack
    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert secret not in text and BOT_TOKEN not in text
    sent = [line for line in lines if line["logger"].startswith("slack_sdk")
            and "chat.postEphemeral" in line["message"] and "Sending a request" in line["message"]]
    assert sent and "tkb_[redacted]" in sent[0]["message"]  # the body, masked
    assert sent[0]["level"] == "DEBUG" and sent[0]["time"].endswith("Z")
    assert {k: v for k, v in sent[0]["request"].items() if k != "duration_ms"} == {
        "kind": "click", "action_id": "token_copy", "team": "T1", "user": "U1",
        "token": "tok_abc123"}
    (failed,) = [line for line in lines if line["logger"] == "bot.test"
                 and line["level"] == "ERROR"]
    assert failed["message"] == "failed with tkb_[redacted]"
    assert "ValueError: a message quoting tkb_[redacted]" in failed["exception"]
    assert "request" not in lines[-1] and lines[-1]["message"] == "after the request"


@pytest.mark.slow
def test_log_settings_are_checked_and_the_cli_logs_json(tmp_path: Path) -> None:
    def run(cwd: Path = tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "alerts", "status"], cwd=cwd,
                              env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                              text=True, timeout=60)

    refused = run(LOG_FORMAT="yaml")
    assert refused.returncode == 2 and "LOG_FORMAT" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run(LOG_LEVEL="loud").returncode == 2
    done = run(LOG_FORMAT="JSON", LOG_LEVEL="debug")  # (any case)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert line["level"] == "WARNING" and "TOKENBOT_SECRET_KEYS" in line["message"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    quiet = run(elsewhere, LOG_LEVEL="ERROR")  # the same warning, below ERROR
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert (elsewhere / "tokenbot.key").exists()
