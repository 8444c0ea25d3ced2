"""`tokenbot serve` (HTTP mode, production) and `tokenbot socket` (Socket Mode, development)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bot import metrics
from bot.alerts.scheduler import start_scheduler
from bot.config import Settings, load_settings
from bot.db import Database
from bot.errors import ConfigurationError

log = logging.getLogger("bot.serve")
_QUIET_SLACK = logging.getLogger("bot.serve.auth_test")  # tries of auth.test: -v shows them

REQUIRED = {
    "serve": ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"),
    "socket": ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"),
}
_WHERE = {
    "SLACK_BOT_TOKEN": "Bot User OAuth Token (xoxb-…), under OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "Signing Secret, under Basic Information → App Credentials",
    "SLACK_APP_TOKEN": "app-level token (xapp-…) with connections:write, under Basic Information",
}


def require_slack_credentials(settings: Settings, mode: str) -> None:
    """Stop start-up with one message naming every missing Slack variable."""
    missing = [
        name
        for name in REQUIRED[mode]
        if (value := getattr(settings, name.lower())) is None or not value.get_secret_value()
    ]
    if not missing:
        return
    lines = "\n".join(f"  {name}: the {_WHERE[name]}" for name in missing)
    raise ConfigurationError(
        f"`tokenbot {mode}` needs {' and '.join(missing)} (not set).\n{lines}\n"
        "Create the Slack app in one paste from app_manifest.yml "
        "(api.slack.com/apps → Create New App → From an app manifest), install it to the "
        "workspace, and set these variables in the environment or in .env."
    )


# What Slack answers when the bot token itself is wrong (rather than Slack being down).
_REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
     "not_allowed_token_type"}
)


def check_bot_token(settings: Settings) -> None:
    """Ask Slack once (``auth.test``) whether SLACK_BOT_TOKEN works, so a wrong token stops
    start-up instead of failing every user's first click. If Slack cannot be reached or
    answers with another error, start anyway, with a warning: Slack may be down for a while,
    and every call to it is retried."""
    from slack_sdk.errors import SlackApiError

    from bot.slack.client import make_web_client

    # slack_sdk logs each failed try at ERROR: the one warning below says it all.
    quiet = make_web_client(settings, logger=_QUIET_SLACK)
    _QUIET_SLACK.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL)
    try:
        answer = quiet.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        if error in _REFUSED_TOKEN:
            raise ConfigurationError(
                f"Slack refused SLACK_BOT_TOKEN ({error}): it must be the Bot User OAuth "
                "Token (xoxb-…) from OAuth & Permissions of the app created from "
                "app_manifest.yml, installed to the workspace."
            ) from None
        log.warning("could not check SLACK_BOT_TOKEN with Slack (%s); starting anyway",
                    error or "no answer")
        return
    except OSError as exc:  # URLError included: SLACK_API_URL unreachable
        log.warning("could not reach Slack at %s to check SLACK_BOT_TOKEN (%s); "
                    "starting anyway", settings.slack_api_url, type(exc).__name__)
        return
    log.info("SLACK_BOT_TOKEN works: bot user %s in workspace %s",
             answer.get("user_id"), answer.get("team_id"))


@contextmanager
def running(settings: Settings, mode: str) -> Iterator[tuple[Database, Any, Any]]:
    """Credentials checked (present, and accepted by Slack), database opened (and upgraded
    when embedded), scheduler on."""
    from bot.slack.client import make_web_client

    require_slack_credentials(settings, mode)
    client = make_web_client(settings)
    check_bot_token(settings)
    database = Database(settings)
    scheduler = None
    try:
        # None when TOKENBOT_SCHEDULER=off.
        scheduler = start_scheduler(settings=settings, database=database, client=client)
        yield database, client, scheduler
    finally:
        if scheduler is not None:
            scheduler.shutdown()
        database.dispose()


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["HOST"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["PORT"] = args.port
    return load_settings(**overrides)


class _Stop(Exception):
    """SIGTERM or SIGINT: leave through every ``finally`` (scheduler, database)."""


@contextmanager
def stopped_by_signals(name: str) -> Iterator[None]:
    """A graceful stop on SIGTERM / SIGINT, with exit code 0.

    uvicorn traps these signals while it serves, finishes the requests in flight and then
    raises the signal again with the handlers it found: these, so the scheduler is shut
    down and the database released after the server, never killed half-way.
    """

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except _Stop as stop_signal:
        log.info("tokenbot %s: stopped by %s", name, signal.Signals(stop_signal.args[0]).name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: More worker processes than any machine this serves from has cores for.
MAX_WORKERS = 64


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigurationError(f"--workers must be from 1 to {MAX_WORKERS}")
    with (stopped_by_signals("serve"), metrics_directory(args.workers),
          running(settings, "serve") as (database, client, scheduler)):
        from bot.http.server import serve

        log.info(
            "tokenbot serve: HTTP mode on http://%s:%d (Slack endpoint /slack/events), "
            "%d worker process(es), database %s, alert scheduler %s",
            settings.host,
            settings.port,
            args.workers,
            describe_database(settings),
            "on" if scheduler is not None else "off",
        )
        # Several workers open their own database and client (the scheduler stays here).
        serve(settings, database=database, client=client, workers=args.workers,
              access_log=args.access_log)
    return 0


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Several processes (or an operator's PROMETHEUS_MULTIPROC_DIR): prometheus_client's
    multi-process mode, in the operator's directory emptied of an earlier run's files, or
    else in a temporary one made here for the workers to inherit and removed at the end,
    so that every worker's counts add up in one scrape without any set-up. Before
    anything is counted, as prometheus_client reads the variable once."""
    if workers == 1 and metrics.multiprocess_dir() is None:
        yield
        return
    if workers > 1 and log.isEnabledFor(logging.DEBUG):
        os.environ["LOG_LEVEL"] = "DEBUG"  # -v reaches the workers too
    path, made_here = metrics.use_multiprocess_dir()
    log.info("metrics: multi-process mode, directory %s%s", path,
             " (temporary; set PROMETHEUS_MULTIPROC_DIR to choose it)" if made_here else "")
    try:
        yield
    finally:
        if made_here:
            metrics.remove_multiprocess_dir(path)


def describe_database(settings: Settings) -> str:
    """Backend and database name for logs: never the password or the whole URL."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    where = url.database or ""
    if url.host:
        where = f"{url.host}/{where}"
    return f"{url.get_backend_name()} ({where})"


def cmd_socket(args: argparse.Namespace) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    settings = load_settings()
    with (stopped_by_signals("socket"),
          running(settings, "socket") as (database, client, scheduler)):
        from bot.slack.app import SHUTDOWN_DRAIN_SECONDS, create_app, work_pool

        work = work_pool()
        app = create_app(settings=settings, database=database, client=client,
                         socket_mode=True, work=work)
        assert settings.slack_app_token is not None  # checked by running()
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
        log.info(
            "tokenbot socket: Socket Mode, database %s, alert scheduler %s",
            describe_database(settings),
            "on" if scheduler is not None else "off",
        )
        try:
            connect(handler, settings)
            log.info("tokenbot socket: connected to Slack")
            threading.Event().wait()  # until SIGTERM / SIGINT
        finally:
            handler.close()
            # What was acknowledged is still done (within a bound).
            work.close(SHUTDOWN_DRAIN_SECONDS)
    return 0


def connect(handler: Any, settings: Settings) -> None:
    """Open the Socket Mode connection; a refused app token is a configuration error."""
    from slack_sdk.errors import SlackApiError

    try:
        handler.connect()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        raise ConfigurationError(
            f"Slack refused SLACK_APP_TOKEN ({error or 'error'}): it must be an app-level "
            f"token (xapp-…) with the connections:write scope, from Basic Information → "
            f"App-Level Tokens of the app created from app_manifest.yml."
        ) from None
    except OSError as exc:  # URLError included: Slack (SLACK_API_URL) unreachable
        raise ConfigurationError(
            f"could not reach Slack at {settings.slack_api_url} to open the Socket Mode "
            f"connection ({type(exc).__name__})."
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve",
        help="run the Slack app in HTTP mode (production, under uvicorn)",
        description=(
            "Serve Slack's requests at POST /slack/events, with GET /healthz (liveness), "
            "GET /readyz (database check), POST /introspect and GET /metrics (Prometheus). "
            "Needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET; set the app's request URLs to "
            "https://HOST/slack/events (see app_manifest.yml)."
        ),
    )
    serve.add_argument("--host", help="listen address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 3000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"worker processes, 1 to {MAX_WORKERS} (default 1); beyond one machine, "
        "use PostgreSQL",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request, on stderr as every log line (default: on)",
    )
    serve.set_defaults(handler=cmd_serve)

    socket = subparsers.add_parser(
        "socket",
        help="run the Slack app in Socket Mode (development; no public URL needed)",
        description="Connect to Slack over Socket Mode. Needs SLACK_BOT_TOKEN and "
        "SLACK_APP_TOKEN.",
    )
    socket.set_defaults(handler=cmd_socket)
