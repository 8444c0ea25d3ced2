"""The Bolt app: one factory wiring settings, database, Web API client and listeners, and
the one error handler that turns domain errors into text for the user."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from slack_bolt import App, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot.config import Settings
from bot.db import Database
from bot.errors import ConfigurationError, NotFoundError, StaleTokenError, TokenbotError
from bot.listeners import alerts, commands, home, modals, table_actions
from bot.listeners.common import (
    CONTEXT_KEY,
    Deps,
    actor_from,
    deps,
    origin_of_action,
    redraw,
    respond_to,
    send,
)
from bot.slack_client import make_web_client
from bot.views.home import home_notice_view
from bot.views.messages import notice_message
from bot.views.modals import notice_modal
from bot.views.state import ModalMetadata, OriginKind, RowRef, TableState
from bot.views.table import Notice, NoticeKind

log = logging.getLogger("bot.app")

GENERIC_ERROR = (
    "Something went wrong on Tokenbot's side and your request may not have been carried out. "
    "Please try again; if it keeps failing, tell a workspace admin."
)
STALE_TEXT = (
    "This token changed since you looked: someone edited, disabled, rotated or deleted it. "
    "Nothing was changed; here is the current table."
)
GONE_TEXT = (
    "That token was not found: it may have been deleted since you looked. "
    "Nothing was changed; here is the current table."
)

# Bolt's own listener threads; the work after ack() runs there.
LISTENER_THREADS = 8


def user_text(error: Exception) -> str:
    """What the user reads: the domain error's own message, or a generic apology."""
    if isinstance(error, StaleTokenError):
        return STALE_TEXT
    if isinstance(error, NotFoundError):
        return GONE_TEXT
    if isinstance(error, TokenbotError):
        return str(error)
    return GENERIC_ERROR


def _payload_kind(body: dict[str, Any]) -> str:
    if isinstance(body.get("type"), str):
        return str(body["type"])
    if "command" in body:
        return "slash_command"
    return "unknown"


def _state_of_action(body: dict[str, Any]) -> TableState:
    actions = body.get("actions") or [{}]
    value = actions[0].get("value") if isinstance(actions[0], dict) else None
    try:
        return RowRef.decode(value).state
    except NotFoundError:
        return TableState.decode(value)


def handle_error(
    error: Exception,
    body: dict[str, Any],
    context: BoltContext,
    client: WebClient,
    response: BoltResponse | None,
) -> BoltResponse | None:
    """Domain errors become the user's text where they look (the redrawn table, the modal,
    an ephemeral message); anything else is logged with its traceback and the user gets a
    generic message. Nothing from the payload is logged (it may carry a secret)."""
    kind = _payload_kind(body)
    domain = isinstance(error, TokenbotError)
    if domain:
        log.info("Refused %s: %s", kind, type(error).__name__)
    else:
        log.error("Unexpected error while handling a %s", kind, exc_info=error)
    text = user_text(error)
    notice = Notice(text, NoticeKind.ERROR)
    d = deps(context)

    if kind == "view_submission":
        metadata = ModalMetadata.decode((body.get("view") or {}).get("private_metadata"))
        if domain and isinstance(error, (StaleTokenError, NotFoundError)):
            redraw(d, client, actor=actor_from(body, d.settings), origin=metadata.origin,
                   notice=notice)
        if response is not None:  # not acknowledged yet: answer inside the modal
            view = notice_modal(f":warning: {text}")
            return BoltResponse(
                status=200, body={"response_action": "update", "view": view.to_dict()}
            )
        return None

    if kind == "block_actions":
        origin = origin_of_action(body, _state_of_action(body))
        if domain:
            redraw(d, client, actor=actor_from(body, d.settings), origin=origin, notice=notice)
        elif origin.kind == OriginKind.HOME:
            client.views_publish(user_id=body["user"]["id"], view=home_notice_view(notice))
        else:
            _tell(origin.response_url, text)
        return None

    if kind == "slash_command":
        _tell(body.get("response_url"), text)
        return None

    if kind == "event_callback":
        event = body.get("event") or {}
        if event.get("type") == "app_home_opened" and event.get("user"):
            client.views_publish(user_id=event["user"], view=home_notice_view(notice))
    return None


def _tell(response_url: str | None, text: str) -> None:
    respond = respond_to(response_url)
    if respond is not None:
        send(respond, notice_message(text), replace_original=False)


def create_app(
    *,
    settings: Settings,
    database: Database,
    client: WebClient | None = None,
    socket_mode: bool = False,
) -> App:
    """A Bolt app for this configuration. HTTP mode verifies Slack's signature with
    SLACK_SIGNING_SECRET; Socket Mode (``socket_mode=True``) needs no signing secret."""
    secret = (
        settings.slack_signing_secret.get_secret_value()
        if settings.slack_signing_secret
        else ""
    )
    if not secret and not socket_mode:
        raise ConfigurationError(
            "SLACK_SIGNING_SECRET is required to serve Slack over HTTP "
            "(Basic Information > App Credentials of the app created from app_manifest.yml)."
        )
    if client is None:
        if settings.slack_bot_token is None:
            raise ConfigurationError(
                "SLACK_BOT_TOKEN is required (OAuth & Permissions of the app created from "
                "app_manifest.yml)."
            )
        client = make_web_client(settings)
    app = App(
        name="tokenbot",
        client=client,
        signing_secret=secret,
        token_verification_enabled=False,  # no auth.test call at start-up
        request_verification_enabled=bool(secret) or not socket_mode,
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(
            max_workers=LISTENER_THREADS, thread_name_prefix="tokenbot-listener"
        ),
    )
    app_deps = Deps(settings=settings, sessions=database.sessions, box=database.box)

    def inject_dependencies(context: BoltContext, next: Callable[[], None]) -> None:  # noqa: A002
        context[CONTEXT_KEY] = app_deps
        next()

    app.middleware(inject_dependencies)
    app.error(handle_error)
    for module in (commands, table_actions, modals, home, alerts):
        module.register(app)
    return app
