"""The Bolt app: one factory wiring settings, database, Web API client and the listener
modules (each registers its own, ``register(app)``), and the outbox's drain after a
commit."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import App, BoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.db import Database
from bot.errors import ConfigurationError
from bot.outbox.run import Drain
from bot.services import outbox
from bot.slack.acks import action_ids
from bot.slack.actions import ACTIONS, ROW_ACTIONS
from bot.slack.background import Background
from bot.slack.client import make_web_client
from bot.slack.listeners import (
    commands,
    digests,
    home,
    hygiene,
    leaks,
    menu,
    modals,
    owners,
    rotation,
    table,
)
from bot.slack.listeners.common import CONTEXT_KEY, Deps
from bot.slack.listeners.errors import handle_error
from bot.slack.observed import ObservedApp

log = logging.getLogger("bot.slack.app")


class _TokenFromAuthorize(logging.Filter):
    """Bolt takes SLACK_BOT_TOKEN from the environment when its client has none, then warns
    on every start that the token goes unused: it does, by design (``authorize`` gives it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


logging.getLogger("slack_bolt.App").addFilter(_TokenFromAuthorize())

# The work after an acknowledgement: threads for slow Web API calls, and how many more
# requests may wait for one before users are told "busy, try again".
WORK_THREADS = 8
WORK_QUEUE = 64
# How long a stopping process waits for the work it already acknowledged.
SHUTDOWN_DRAIN_SECONDS = 10.0


def work_pool() -> Background:
    return Background(workers=WORK_THREADS, queue=WORK_QUEUE, name="tokenbot-work")


def create_app(
    *,
    settings: Settings,
    database: Database,
    client: WebClient | None = None,
    socket_mode: bool = False,
    work: Background | None = None,
) -> App:
    """A Bolt app for this configuration. HTTP mode needs SLACK_SIGNING_SECRET (the server
    checks every request with it); Socket Mode (``socket_mode=True``) needs none. ``work``
    is the pool for the work after acknowledgements (``work_pool()`` when not given; pass
    one to drain it on shutdown)."""
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
    app = ObservedApp(
        name="tokenbot",
        # Given a token, Bolt calls auth.test before the first request's listener, and
        # again on every request while that call fails: a Web API call before the ack.
        # Each request's client gets the bot token from ``authorize`` instead. Without the
        # bot's user id, which only auth.test would tell, Bolt's filter of the app's own
        # events is off: the message listener skips Tokenbot's own (``leaks.is_own``).
        client=_template(client),
        authorize=lambda enterprise_id, team_id: AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=client.token),
        signing_secret=secret,
        # HTTP requests are verified on their raw bytes before they are parsed and handed
        # to Bolt (bot.http.server.to_bolt_request); Socket Mode needs no signature.
        request_verification_enabled=False,
        # Listeners run in the request's thread and only acknowledge there; the work
        # after the acknowledgement is theirs to hand to the background pool.
        process_before_response=True,
    )
    work = work or work_pool()
    app_deps = Deps(settings=settings, sessions=database.sessions, box=database.box,
                    work=work)

    def inject_dependencies(context: BoltContext, next: Callable[[], None]) -> None:  # noqa: A002
        context[CONTEXT_KEY] = app_deps
        next()

    app.middleware(inject_dependencies)
    # Whatever a listener's transaction queued in the outbox (an owner's notice) is posted
    # right after it commits, on the work pool (the scheduled pass posts what this could not).
    drain = Drain(sessions=database.sessions, client=client,
                  alert_days=settings.tokenbot_alert_days, submit=work.submit)

    def after_commit(session: Session) -> None:
        if outbox.take_queued(session):
            drain.kick()

    event.listen(database.sessions, "after_commit", after_commit)
    app.error(handle_error)
    for module in (commands, home, modals, table, rotation, digests, owners, hygiene, menu,
                   leaks):
        module.register(app)
    # Every entry of bot.slack.actions has its listener, every row action its function.
    missing = ({a.id.value for a in ACTIONS} - action_ids(app)) | {
        a.id.value for a in ROW_ACTIONS if a.id not in menu.ROWS}
    if missing:
        raise LookupError(f"no listener for {sorted(missing)} (bot.slack.actions.ACTIONS)")
    return app


def _template(client: WebClient) -> WebClient:
    """What Bolt copies into each request's client: the same Slack, without the token."""
    return WebClient(base_url=client.base_url, timeout=client.timeout, ssl=client.ssl,
                     proxy=client.proxy, headers=client.headers,
                     retry_handlers=client.retry_handlers, logger=client.logger)
