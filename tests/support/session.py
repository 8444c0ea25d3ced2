"""A scripted session through the Slack app, in process or in `tokenbot serve` processes,
and the counters it moves (tests/slack/test_metrics.py, tests/test_operations.py)."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

from bot.slack.ids import ActionId
from tests.slack.conftest import INTROSPECTION_SECRET, SlackBot, form_values, row_buttons
from tests.support.signing import form_body
from tests.support.slack_standin import SlackStandIn

FORM = "application/x-www-form-urlencoded"


def introspect(address: tuple[str, int], body: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("POST", "/introspect", body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def introspect_each_result(address: tuple[str, int], secret: str) -> None:
    """One request of each result: active, inactive, unauthorized, bad_request."""
    good = {"Authorization": f"Bearer {INTROSPECTION_SECRET}", "Content-Type": FORM}
    assert introspect(address, form_body({"token": secret}), good) == 200
    assert introspect(address, form_body({"token": "tkb_nothing"}), good) == 200
    assert introspect(address, form_body({"token": secret}), {"Content-Type": FORM}) == 401
    assert introspect(address, "{}", {**good, "Content-Type": "application/json"}) == 400


def play_session(bot: SlackBot, standin: SlackStandIn, public_id: str) -> None:
    """Two /tokens, five clicks (Disable, a stale Disable: refused, Enable, Copy, Edit),
    one edit submitted, App Home opened (an event); each step waits for what it draws
    (``bot`` may be a process)."""

    def answered(step: Callable[[], object]) -> list[dict[str, Any]]:
        before = len(standin.calls_to("response_url"))
        step()
        return standin.wait_for("response_url", before + 1, timeout=15)[-1].body["blocks"]

    drawn = answered(lambda: bot.command(""))
    answered(lambda: bot.click(row_buttons(drawn, public_id)[ActionId.DISABLE]))
    stale = answered(lambda: bot.click(row_buttons(drawn, public_id)[ActionId.DISABLE]))
    assert "changed since you looked" in str(stale)
    drawn = answered(lambda: bot.command(""))
    drawn = answered(lambda: bot.click(row_buttons(drawn, public_id)[ActionId.ENABLE]))
    answered(lambda: bot.click(row_buttons(drawn, public_id)[ActionId.COPY]))
    opened = len(standin.calls_to("views.open"))
    bot.click(row_buttons(drawn, public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open", opened + 1, timeout=15)[-1].body["view"]
    answered(lambda: bot.submit(view, form_values(label="renamed by the owner", scope="read")))
    published = len(standin.calls_to("views.publish"))
    bot.home_opened()
    standin.wait_for("views.publish", published + 1, timeout=15)


EXPECTED = {
    "tokenbot_slack_requests_total": {("command", "ok"): 2, ("click", "ok"): 4,
                                      ("click", "refused"): 1, ("submission", "ok"): 1,
                                      ("event", "ok"): 1},
    "tokenbot_slack_ack_seconds_count": {("command",): 2, ("click",): 5, ("submission",): 1,
                                         ("event",): 1},
    "tokenbot_introspection_requests_total": {("active",): 1, ("inactive",): 1,
                                              ("unauthorized",): 1, ("bad_request",): 1},
    "tokenbot_introspection_seconds_count": {(): 4},
    # The owner's DM goes first and is refused; the channel's digest is posted.
    "tokenbot_outbox_posted_total": {("expiry", "failed"): 1, ("expiry", "sent"): 1},
    "tokenbot_alert_pass_seconds_count": {(): 1},
}
# (label values sorted by label name: method, outcome; the pass as the scheduler runs it,
# without the weekly owner check, a job of its own)
API_CALLS = {("chat.postMessage", "error"): 1, ("chat.postMessage", "ok"): 1,
             ("views.open", "ok"): 1, ("views.publish", "ok"): 1}
