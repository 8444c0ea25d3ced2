"""HTTP mode: a small ASGI application served by uvicorn. Routes: ``POST /slack/events``
(the signature checked on the raw bytes, then Bolt's ``dispatch`` in a worker thread),
``GET /healthz``, ``GET /readyz``, ``POST /introspect``, ``GET /metrics``; 405 with
``Allow`` for another method, 404 otherwise, 413 past
:data:`~bot.http.common.MAX_BODY_BYTES`. :func:`serve` runs it (``workers > 1``: one
application per process, from :data:`FACTORY_IMPORT_STRING`)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError

from bot import logs, metrics
from bot.config import Settings
from bot.db import SCHEMA_BEHIND, Database, is_up_to_date
from bot.http.common import (
    MAX_BODY_BYTES,
    ASGIApp,
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    announced_length,
    read_body,
    send_response,
    send_text,
)
from bot.http.introspection import IntrospectionHandler
from bot.http.metrics import MetricsHandler
from bot.logs import LogLimiter
from bot.slack.observed import ARRIVED

if TYPE_CHECKING:
    import uvicorn
    from slack_bolt import App

log = logging.getLogger(__name__)

SLACK_EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
INTROSPECT_PATH = "/introspect"
METRICS_PATH = "/metrics"
READY_TIMEOUT_SECONDS = 3.0
DISPATCH_THREADS = 16
FACTORY_IMPORT_STRING = "bot.http.server:app_from_environment"
#: uvicorn's HTTP/1.1 implementation: httptools (C), faster than h11 (pure Python);
#: ``docs/BENCHMARKS.md`` has the figures. Named, not left to uvicorn's "auto", so a missing
#: httptools stops the start instead of quietly serving with h11.
HTTP_PARSER = "httptools"
#: How long a thread may hold the GIL while another waits (Python's default: 5 ms): the
#: event loop waits on the database-read and usage-writer threads at most this long.
SWITCH_INTERVAL_SECONDS = 0.001


class BadSlackRequest(Exception):
    """Not a request Slack sent: ``status`` is the answer (401 unsigned, 400 malformed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def to_bolt_request(scope: Scope, body: bytes, verifier: SignatureVerifier | None) -> Any:
    """The request as Bolt takes it, once it is known to be Slack's: the signature and its
    timestamp are checked on the raw bytes first, before anything is parsed; then the body
    must parse as one of Slack's payloads (JSON, a form, or a form's ``payload`` field),
    which Bolt is handed as JSON (its own parser takes any form that merely contains the
    word "payload" for an interactive payload). Raises :class:`BadSlackRequest` otherwise."""
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    try:
        text = body.decode("utf-8")  # Slack signs UTF-8; nothing else can be signed by it
    except UnicodeDecodeError:
        raise BadSlackRequest(401, "not UTF-8") from None
    if verifier is not None and not _signed(headers, text, verifier):
        raise BadSlackRequest(401, "invalid signature or timestamp")
    content_type = (headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    try:
        payload = _payload(text, content_type)
    except (ValueError, RecursionError):
        raise BadSlackRequest(400, "a body that is no Slack payload") from None
    if not isinstance(payload, dict) or not payload or not _dispatchable(payload):
        raise BadSlackRequest(400, "a body that is no Slack payload")
    headers["content-type"] = ["application/json"]
    try:
        return BoltRequest(
            body=json.dumps(payload),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,  # type: ignore[arg-type]
        )
    except Exception:  # noqa: BLE001 - what Bolt cannot even read is no Slack payload
        raise BadSlackRequest(400, "a body that is no Slack payload") from None


def _signed(headers: dict[str, list[str]], text: str, verifier: SignatureVerifier) -> bool:
    """Slack's signature of this very text, made less than five minutes ago."""
    timestamp = (headers.get("x-slack-request-timestamp") or [""])[0]
    signature = (headers.get("x-slack-signature") or [None])[0]
    if not (timestamp.isascii() and timestamp.isdigit()):  # "abc", "1.5", "" are no time
        return False
    return verifier.is_valid(body=text, timestamp=timestamp, signature=signature)


def _payload(text: str, content_type: str) -> Any:
    if content_type == "application/json" or text.startswith("{"):
        return json.loads(text)
    fields = dict(parse_qsl(text, keep_blank_values=True))
    return json.loads(fields["payload"]) if "payload" in fields else fields


def _dispatchable(body: dict[str, Any]) -> bool:
    """Whether Bolt can route the payload: what it reads before any listener runs (and
    would fail on with a 500) has Slack's shape. Block actions: objects with an action id;
    a submission: a view with a callback id; an event: an object with a type."""
    if "view" in body and not isinstance(body["view"], dict):
        return False
    kind = body.get("type")
    if kind == "block_actions":
        actions = body.get("actions")
        return isinstance(actions, list) and bool(actions) and all(
            isinstance(action, dict) and isinstance(action.get("action_id"), str)
            for action in actions
        )
    if kind in ("view_submission", "view_closed"):
        return isinstance(body.get("view"), dict) and isinstance(
            body["view"].get("callback_id"), str)
    if kind == "event_callback":
        event = body.get("event")
        return isinstance(event, dict) and isinstance(event.get("type"), str)
    return True  # a slash command (a form), or a payload Bolt answers without a listener


class TokenbotASGI:
    """The ASGI application: Slack's endpoint, health checks and introspection."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        bolt_app: App,
        introspection: IntrospectionHandler,
        on_shutdown: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.settings = settings
        self.database = database
        self.bolt_app = bolt_app
        self.introspection = introspection
        self._executor = ThreadPoolExecutor(
            max_workers=DISPATCH_THREADS, thread_name_prefix="tokenbot-dispatch"
        )
        self._on_shutdown = list(on_shutdown)
        secret = settings.slack_signing_secret
        self._verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
        self._bad_requests = LogLimiter()
        self._metrics = MetricsHandler(settings=settings, database=database)
        # Each path: the methods it answers, and its handler.
        self._routes: dict[str, tuple[tuple[str, ...], ASGIApp]] = {
            SLACK_EVENTS_PATH: (("POST",), self._slack),
            HEALTH_PATH: (("GET", "HEAD"), self._health),
            READY_PATH: (("GET", "HEAD"), self._ready),
            # The handler authenticates the caller before reading the body, and applies
            # the same body limit itself.
            INTROSPECT_PATH: (("POST",), introspection),
            METRICS_PATH: (("GET",), self._metrics),
        }

    # -- ASGI entry ------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets and anything else: not served (uvicorn closes the connection)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._metrics.close()
        metrics.process_exited(os.getpid())
        self.introspection.close()
        for callback in self._on_shutdown:
            callback()
        self._on_shutdown.clear()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"])
        if route is None:
            await send_text(send, 404, "not found")
            return
        methods, handler = route
        if scope["method"] not in methods:
            allow = ", ".join(methods).encode("ascii")
            await send_text(send, 405, "method not allowed", [(b"allow", allow)])
            return
        await handler(scope, receive, send)

    # -- routes ----------------------------------------------------------------

    async def _slack(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()  # Slack's 3 s run from here (the ack histogram)
        try:
            body = await read_body(receive, MAX_BODY_BYTES, announced=announced_length(scope))
        except BodyTooLarge:
            await send_text(send, 413, "request body too large")
            return
        except ClientDisconnected:
            return
        try:
            request = to_bolt_request(scope, body, self._verifier)
        except BadSlackRequest as refused:
            if self._bad_requests.allow(refused.reason):
                log.warning("refused a request to %s: %s (logged at most once a minute)",
                            SLACK_EVENTS_PATH, refused.reason)
            await send_text(send, refused.status, "invalid request")
            return
        request.context[ARRIVED] = arrived
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self._executor, self.bolt_app.dispatch, request)
        headers = [
            (name.encode("latin-1"), str(value).encode("latin-1"))
            for name, values in response.headers.items()
            for value in values
        ]
        await send_response(send, response.status, response.body or "", headers)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_text(send, 200, "ok")

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 when the database answers and its schema is the one this code needs; 503
        with the reason otherwise."""
        loop = asyncio.get_running_loop()
        try:
            current = await asyncio.wait_for(
                loop.run_in_executor(self._executor, is_up_to_date, self.database.engine),
                timeout=READY_TIMEOUT_SECONDS,
            )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # The exception text may hold the URL; its type is enough for the log.
            log.warning("readiness check failed: database unavailable (%s)", type(exc).__name__)
            await send_text(send, 503, "database unavailable")
            return
        if not current:
            log.warning("readiness check failed: %s", SCHEMA_BEHIND)
            await send_text(send, 503, f"database schema behind: {SCHEMA_BEHIND}")
            return
        await send_text(send, 200, "ready")


def build_asgi_app(
    *,
    settings: Settings,
    database: Database,
    bolt_app: App | None = None,
    client: Any = None,
    on_shutdown: Iterable[Callable[[], None]] = (),
) -> TokenbotASGI:
    """The ASGI application; without ``bolt_app`` the product's Bolt app is built."""
    if bolt_app is None:
        from bot.slack.app import SHUTDOWN_DRAIN_SECONDS, create_app, work_pool

        work = work_pool()
        bolt_app = create_app(settings=settings, database=database, client=client, work=work)
        # On shutdown, what was acknowledged is still done (within a bound), before the
        # database is closed.
        on_shutdown = [lambda: work.close(SHUTDOWN_DRAIN_SECONDS), *on_shutdown]
    return TokenbotASGI(
        settings=settings,
        database=database,
        bolt_app=bolt_app,
        introspection=IntrospectionHandler(settings=settings, database=database),
        on_shutdown=on_shutdown,
    )


def app_from_environment() -> TokenbotASGI:
    """uvicorn factory for multi-process mode: each worker builds its own application."""
    from bot.config import load_settings

    settings = load_settings()
    logs.configure(settings.log_level, log_format=settings.log_format)
    database = Database(settings)
    app = build_asgi_app(settings=settings, database=database, on_shutdown=[database.dispose])
    tune_runtime()
    return app


def tune_runtime() -> None:
    """Once the app is built in a serving process: freeze its heap out of the garbage
    collector's sight and hand the GIL over every 1 ms (docs/BENCHMARKS.md, the tail)."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def serve(
    settings: Settings,
    *,
    database: Database | None = None,
    bolt_app: App | None = None,
    client: Any = None,
    workers: int | None = None,
    access_log: bool = True,
) -> None:
    """Run the HTTP server until SIGINT/SIGTERM (uvicorn shuts down gracefully): one
    process on ``database``, or ``workers`` processes that each open their own."""
    import uvicorn

    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    # log_config=None: uvicorn's own handlers would write its access log to stdout; its
    # loggers propagate instead to the root logger's (stderr, LOG_FORMAT, secrets masked).
    # proxy_headers=False: the client address is the TCP peer's, never X-Forwarded-For's
    # (which anyone can send; METRICS_ALLOW is checked against the address).
    options: dict[str, Any] = dict(host=settings.host, port=settings.port,
                                   access_log=access_log, log_level=log_level,
                                   log_config=None, lifespan="on", http=HTTP_PARSER,
                                   proxy_headers=False)
    if workers is not None and workers > 1:
        if bolt_app is not None:
            raise ValueError("a prebuilt Bolt app cannot be shared by several worker processes")
        config = uvicorn.Config(FACTORY_IMPORT_STRING, factory=True, workers=workers,
                                **options)
        _serve_processes(config, host=settings.host, port=settings.port)
        return
    if database is None:
        raise ValueError("one process serves the caller's database: pass it")
    app = build_asgi_app(settings=settings, database=database, bolt_app=bolt_app, client=client)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    tune_runtime()
    try:
        server.run()
    finally:
        app.close()


def _serve_processes(config: uvicorn.Config, *, host: str, port: int) -> None:
    """uvicorn's worker processes on one listening socket, bound here."""
    from uvicorn.supervisors import Multiprocess

    # Not uvicorn.run(workers=N): its Config.bind_socket() leaves the socket's proto at
    # 0, accepted sockets inherit it and asyncio then never sets TCP_NODELAY, so every
    # keep-alive response waits ~40 ms for the peer's delayed ACK (uvicorn issue #3149).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    try:
        Multiprocess(config, sockets=[listener]).run()
    finally:
        listener.close()
