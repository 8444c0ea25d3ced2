"""The App Home tab: the table, drawn whenever the user opens the tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.slack.acks import on_event
from bot.slack.listeners.common import Deps, actor_from, deps_of, redraw
from bot.slack.listeners.errors import user_text
from bot.slack.state import Origin, OriginKind, mapping
from bot.slack.views.home import home_notice_view
from bot.slack.views.table import Notice, NoticeKind


def handle_home_opened(event: dict[str, Any], body: dict[str, Any], context: BoltContext,
                       client: WebClient) -> None:
    if event.get("tab", "home") != "home":
        return
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    redraw(deps, client, actor=actor, origin=Origin(kind=OriginKind.HOME))


def answer_error(error: Exception, body: dict[str, Any], deps: Deps, client: WebClient) -> None:
    """Home, with the reason where the table would be."""
    event = mapping(body.get("event"))
    if event.get("tab", "home") == "home":
        publish_error(error, client=client, user_id=event.get("user"))


def publish_error(error: Exception, *, client: WebClient, user_id: object) -> None:
    """The user's Home with the reason where the table would be."""
    if isinstance(user_id, str) and user_id:
        notice = Notice(user_text(error), NoticeKind.ERROR)
        client.views_publish(user_id=user_id, view=home_notice_view(notice))


def register(app: App) -> None:
    on_event(app, "app_home_opened", handle_home_opened, surface=answer_error)
