"""The Bolt app: one factory wiring settings, database, Web API client and listeners, and
the one error handler that turns domain errors into text for the user. Every listener is
registered here, wrapped in that error path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.config import Settings
from bot.db import Database
from bot.errors import ConfigurationError
from bot.slack.actions import ACTIONS, listener_of
from bot.slack.client import make_web_client
from bot.slack.ids import CallbackId
from bot.slack.listeners import (  # noqa: F401 - marks
    commands,
    digests,
    home,
    modals,
    rotation,
    table,
)
from bot.slack.listeners.common import CONTEXT_KEY, Deps
from bot.slack.listeners.errors import handle_error, reporting

log = logging.getLogger("bot.slack.app")

# Bolt's own listener threads; the work after ack() runs there.
LISTENER_THREADS = 8


def create_app(
    *,
    settings: Settings,
    database: Database,
    client: WebClient | None = None,
    socket_mode: bool = False,
) -> App:
    """A Bolt app for this configuration. HTTP mode needs SLACK_SIGNING_SECRET (the server
    checks every request with it); Socket Mode (``socket_mode=True``) needs none."""
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
        # HTTP requests are verified on their raw bytes before they are parsed and handed
        # to Bolt (bot.http.server.to_bolt_request); Socket Mode needs no signature.
        request_verification_enabled=False,
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
    app.command(commands.COMMAND)(reporting(commands.handle_tokens))
    app.view(CallbackId.CREATE)(reporting(modals.handle_create_submit))
    app.view(CallbackId.EDIT)(reporting(modals.handle_edit_submit))
    app.view(CallbackId.ROTATE)(reporting(rotation.handle_rotate_submit))
    app.event("app_home_opened")(reporting(home.handle_home_opened))
    for action in ACTIONS:  # the table's, the digests': bot.slack.actions lists them all
        app.action(action.id)(reporting(listener_of(action)))
    return app
