"""The full token appears only in the ephemeral copy / creation / rotation payloads: never
in any other Slack call, never in logs. Unexpected failures: a generic message for the
user, the traceback (without secrets) in the log."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from bot import logs
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import RowRef
from tests.slack.conftest import (
    ADMIN,
    OTHER_USER,
    buttons,
    form_values,
    last_response,
    rotate_by_modal,
    row_buttons,
    seed,
    texts,
)
from tests.support.slack_standin import Failure

SECRET = re.compile(r"tkb_[0-9A-Za-z]{40}")


def _secret_blocks(body: dict) -> list[dict]:
    blocks = body.get("blocks") or (body.get("view") or {}).get("blocks") or []
    return [b for b in blocks if b.get("block_id") == BlockId.SECRET]


def test_secrets_only_in_copy_and_creation_payloads_and_never_logged(bot, db, standin, table,
                                                                     caplog):
    caplog.set_level(logging.INFO)  # Bolt's and slack_sdk's loggers included
    seeded = seed(db, label="seeded")
    known = {seeded.secret}
    # create from the command, copy, rotate, copy on Home, disable, enable, edit, refusals
    bot.command("create")
    bot.submit(standin.wait_for("views.open")[-1].body["view"],
               form_values(label="created", scope="read"))
    blocks = table()
    public_id = seeded.token.public_id
    bot.click(row_buttons(blocks, public_id)[ActionId.COPY])
    rotate_by_modal(bot, standin, blocks, public_id)
    blocks = table()
    bot.click(row_buttons(blocks, public_id)[ActionId.DISABLE])
    blocks = last_response(standin).body["blocks"]
    bot.click(row_buttons(blocks, public_id)[ActionId.ENABLE])
    assert f"row_actions:{public_id}" not in str(table(user=OTHER_USER))  # none for a teammate
    bot.click({"action_id": ActionId.COPY, "value": RowRef(public_id=public_id, version=1).encode()},
              user=OTHER_USER)  # a click forged all the same is refused
    bot.home_opened(user=ADMIN)
    home = standin.wait_for("views.publish")[-1].body["view"]
    bot.click(row_buttons(home["blocks"], public_id)[ActionId.COPY], user=ADMIN, home=True)
    standin.wait_for("views.publish", 2)
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    bot.submit(standin.wait_for("views.open", 2)[-1].body["view"],
               form_values(label="renamed", scope="write"))

    carrying = 0
    for call in standin.calls:
        dumped = json.dumps(call.body)
        found = set(SECRET.findall(dumped))
        known |= found
        if not found:
            continue
        carrying += 1
        secret_blocks = _secret_blocks(call.body)
        assert secret_blocks, f"a secret outside a secret message: {call.method}"
        inside = set(SECRET.findall(json.dumps(secret_blocks)))
        assert found == inside and len(found) == 1
        assert not SECRET.search(call.body.get("text", ""))  # not in notifications
        assert call.body.get("replace_original") is not True  # never overwrites a table
    # creation, copy, rotation, copy on Home
    assert carrying == 4
    assert len(known) == 3  # seeded, rotated, created
    for secret in known:
        assert secret not in caplog.text
    assert not SECRET.search(caplog.text)


def test_an_unexpected_failure_says_something_went_wrong_and_logs_a_traceback(bot, db, standin,
                                                                             table, caplog):
    caplog.set_level(logging.INFO)
    created = seed(db, label="ci")
    standin.fail_next("views.open", Failure(status=200,
                                            body={"ok": False, "error": "fatal_error"}))
    response = bot.click(row_buttons(table(), created.token.public_id)[ActionId.EDIT])
    assert response.status == 200
    answer = last_response(standin).body
    assert "Something went wrong" in texts(answer["blocks"])
    assert answer["replace_original"] is False  # the table stays
    assert "fatal_error" not in json.dumps(answer)
    records = [r for r in caplog.records if r.name == "bot.errors" and r.exc_info]
    assert records and "Traceback" in caplog.text and "SlackApiError" in caplog.text
    assert created.secret not in caplog.text


def test_a_form_slack_opened_too_late_says_so(bot, db, standin, table):
    """Slack answered the Edit click's views.open after the trigger's 3 s had passed."""
    created = seed(db, label="ci")
    standin.fail_next("views.open", Failure(status=200,
                                            body={"ok": False, "error": "expired_trigger_id"}))
    bot.click(row_buttons(table(), created.token.public_id)[ActionId.EDIT])
    answer = last_response(standin).body
    assert "Slack took too long to answer" in texts(answer["blocks"])
    assert answer["replace_original"] is False  # the table stays


@pytest.mark.slow
def test_an_unexpected_failure_on_home_is_shown_on_home(bot, db, standin, caplog):
    caplog.set_level(logging.INFO)
    created = seed(db, label="ci")
    bot.home_opened()
    home = standin.wait_for("views.publish")[-1].body["view"]
    standin.fail_next("views.open", Failure(status=500))
    standin.fail_next("views.open", Failure(status=500))
    standin.fail_next("views.open", Failure(status=500))
    bot.click(row_buttons(home["blocks"], created.token.public_id)[ActionId.EDIT], home=True)
    view = standin.wait_for("views.publish", 2)[-1].body["view"]
    assert "Something went wrong" in texts(view["blocks"])
    refresh = [b for b in buttons(view["blocks"]) if b["action_id"] == ActionId.REFRESH]
    bot.click(refresh[0], home=True)
    view = standin.wait_for("views.publish", 3)[-1].body["view"]
    assert "ci" in texts(view["blocks"])


def test_a_failing_slash_command_answers_the_user(bot, standin, caplog):
    caplog.set_level(logging.INFO)
    standin.fail_next("views.open", Failure(status=200, body={"ok": False,
                                                              "error": "invalid_trigger_id"}))
    response = bot.command("create")
    assert response.status == 200
    answer = last_response(standin).body
    assert "Something went wrong" in answer["text"]
    assert answer["response_type"] == "ephemeral"
    assert "invalid_trigger_id" not in json.dumps(answer)
    assert "invalid_trigger_id" in caplog.text


def test_debug_logs_of_slack_calls_show_no_secret(bot, db, standin, table):
    """slack_sdk logs every request body at DEBUG, the copy message's included; the filter
    Tokenbot puts on its log handlers masks the token in those lines."""
    stream = io.StringIO()
    handler = logs.guard(logging.StreamHandler(stream))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        created = seed(db, label="debug me")
        bot.click(row_buttons(table(), created.token.public_id)[ActionId.COPY])
        copy = standin.calls_to("response_url")[-1].body
        assert created.secret in json.dumps(copy)  # the user got it
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    output = stream.getvalue()
    assert "Sending a request" in output  # slack_sdk did log the copy message's body
    assert created.secret not in output and created.secret[10:] not in output
    assert "tkb_[redacted]" in output


def test_every_handler_the_entry_points_set_up_masks_secrets():
    secret = "tkb_" + "Ab1" * 13 + "x"
    stream = io.StringIO()
    record = logging.LogRecord("slack_sdk", logging.DEBUG, __file__, 1,
                               "body: %s, auth: %s", (f"`{secret}`", "xoxb-1-2-abc"), None)
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        failing = logging.LogRecord("bot", logging.ERROR, __file__, 1, "boom", None,
                                    sys.exc_info())
    handler = logs.guard(logging.StreamHandler(stream))
    handler.handle(record)
    handler.handle(failing)
    output = stream.getvalue()
    assert secret not in output and "xoxb-1-2-abc" not in output
    assert "`tkb_[redacted]`" in output and "xoxb-[redacted]" in output
    assert "RuntimeError: failed with tkb_[redacted]" in output


@pytest.mark.parametrize("glued", ["token={}", "x{}", "{}y", "_{}_", "xoxb{}"])
def test_a_secret_glued_to_a_word_is_masked_too(glued):
    from bot.crypto import generate_secret

    secret = generate_secret()
    stream = io.StringIO()
    handler = logs.guard(logging.StreamHandler(stream))
    handler.handle(logging.LogRecord("bot", logging.INFO, __file__, 1, glued.format(secret),
                                     None, None))
    assert secret not in stream.getvalue()
    assert secret[4:] not in stream.getvalue()


@pytest.mark.slow
def test_the_entry_points_logging_set_up_guards_its_handlers():
    """What `tokenbot …` and the uvicorn worker factory call, in a fresh interpreter."""
    import subprocess

    secret = "tkb_" + "Zz9" * 13 + "q"
    script = (
        "import logging, sys\n"
        "from bot import logs\n"
        "logs.configure(logging.DEBUG, stream=sys.stderr)\n"
        f"logging.getLogger('slack_sdk.webhook').debug('body: %s', '{secret}')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "body: tkb_[redacted]" in result.stderr and secret not in result.stderr
