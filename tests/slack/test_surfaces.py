"""Each request answers where the user is: a listener is registered with its surface, and
an error is told there. A new surface is a listener module of its own, with nothing
else to edit (no central router)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.errors import NotFoundError
from bot.slack.acks import on_actions
from bot.slack.listeners.common import Deps
from bot.slack.listeners.errors import GENERIC_ERROR, user_text
from tests.slack.conftest import OWNER, SlackBot
from tests.support.slack_standin import SlackStandIn

SURFACE_ACTION = "tokenbot_test_new_surface"


def _in_the_channel(error: Exception, body: dict[str, Any], deps: Deps,
                    client: WebClient) -> None:
    """A made-up surface: an ephemeral line in the channel clicked."""
    client.chat_postEphemeral(channel=body["channel"]["id"], user=body["user"]["id"],
                              text=f":warning: {user_text(error, on_table=False)}")


def test_a_new_surface_tells_its_own_errors_with_nothing_else_edited(
    app: App, bot: SlackBot, standin: SlackStandIn,
) -> None:
    def refusing(body: dict[str, Any], action: dict[str, Any], **_: Any) -> None:
        if action["value"] == "gone":
            raise NotFoundError("That thing is gone.")
        raise RuntimeError("a bug, with a tkb_ secret in it")  # never shown, nor its text

    on_actions(app, [SURFACE_ACTION], refusing, surface=_in_the_channel)
    assert bot.click({"action_id": SURFACE_ACTION, "value": "gone"}).status == 200
    assert bot.click({"action_id": SURFACE_ACTION, "value": "bug"}).status == 200

    told = [(c.body["user"], c.body["text"]) for c in standin.calls_to("chat.postEphemeral")]
    assert told == [(OWNER, ":warning: That thing is gone."),
                    (OWNER, f":warning: {GENERIC_ERROR}")]
    assert standin.calls_to("response_url") == []  # not the table's answer
