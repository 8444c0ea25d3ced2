"""The App Home tab: the table, drawn whenever the user opens the tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.slack.listeners.common import actor_from, deps, redraw
from bot.slack.state import Origin, OriginKind


def handle_home_opened(event: dict[str, Any], body: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    if event.get("tab", "home") != "home":
        return
    d = deps(context)
    actor = actor_from(body, d.settings)
    redraw(d, client, actor=actor, origin=Origin(kind=OriginKind.HOME))
