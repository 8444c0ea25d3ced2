"""``GET /metrics``: Prometheus's text format (``bot.metrics``), plus the gauges read from
the database at the scrape (at most once a minute per process: the outbox's pending rows
per kind, the oldest one's age, the tokens per status; a scrape waits at most 2 s for
them). A scrape runs on a thread of its own, never on the Slack requests' pool. Served
only to the networks in ``METRICS_ALLOW`` (403 otherwise) and only with ``METRICS_TOKEN``
as a bearer credential
(401 otherwise), when those are set."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot import metrics
from bot.config import Settings
from bot.db import Database
from bot.http.common import Receive, Scope, Send, send_response, send_text
from bot.logs import LogLimiter
from bot.models import utcnow
from bot.services.outbox_status import pending_by_kind, token_counts

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
READ_WAIT_SECONDS = 2.0  # how long a scrape waits for the database
READ_LIMIT_MS = 30_000  # PostgreSQL: how long the read itself may take
_CHALLENGE = (b"www-authenticate", b'Bearer realm="metrics"')


class DatabaseGauges:
    """A prometheus_client collector: the gauges read from the database, kept for
    :data:`REFRESH_SECONDS` (a scrape every few seconds costs no more reads). The read runs
    on a thread of its own; a scrape waits for it at most :data:`READ_WAIT_SECONDS`, then
    serves the last figures (a slow database never holds a scrape, nor a second read), and
    ``tokenbot_metrics_db_read_timestamp_seconds`` says how old they are."""

    def __init__(self, database: Database, refresh: float = REFRESH_SECONDS,
                 wait: float = READ_WAIT_SECONDS) -> None:
        self.database = database
        self.refresh = refresh
        self.wait = wait
        self._lock = threading.Lock()  # held only to look at or start a read, never during one
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-gauges")
        self._reading: Future[None] | None = None
        self._read_at: float | None = None
        self._read_time = 0.0  # the Unix time of the last read that succeeded
        self._families: list[GaugeMetricFamily] = []
        self._failures = LogLimiter()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily  # after serve's set-up

        with self._lock:
            due = self._read_at is None or time.monotonic() - self._read_at >= self.refresh
            if due and self._reading is None:
                self._reading = self._reader.submit(self._refresh)
            reading = self._reading
        if reading is not None:
            try:
                reading.result(timeout=self.wait)
            except FutureTimeout:  # the last figures, and their age, tell
                if self._failures.allow("slow"):
                    log.warning("metrics: the database read takes over %.0f s; serving the "
                                "last figures", self.wait)
        yield from list(self._families)
        stamp = GaugeMetricFamily("tokenbot_metrics_db_read_timestamp_seconds", "When the "
                                  "gauges read from the database were last read (Unix time; "
                                  "0: never)")
        stamp.add_metric([], self._read_time)
        yield stamp

    def _refresh(self) -> None:
        try:
            families = self._read()
            self._families, self._read_time = families, time.time()
            self._read_at = time.monotonic()
        except SQLAlchemyError as error:  # the last figures stay; the scrape goes on
            if self._failures.allow("read"):
                log.warning("metrics: the database could not be read (%s)",
                            type(error).__name__)
        finally:
            with self._lock:
                self._reading = None

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)

    def _read(self) -> list[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily  # after serve's set-up

        now = utcnow()
        with self.database.sessions() as session:
            if session.get_bind().dialect.name == "postgresql":  # a stuck read ends
                session.execute(text(f"SET LOCAL statement_timeout = {READ_LIMIT_MS}"))
            pending_rows = pending_by_kind(session)
            tokens = token_counts(session, now=now)
        pending = GaugeMetricFamily("tokenbot_outbox_pending", "Outbox messages queued and "
                                    "not yet sent (queued, leased or failing), by kind",
                                    labels=["kind"])
        oldest = GaugeMetricFamily("tokenbot_outbox_oldest_pending_seconds", "Age of the "
                                   "oldest pending outbox message, by kind (0: none)",
                                   labels=["kind"])
        for kind, (count, first) in sorted(pending_rows.items()):
            pending.add_metric([kind], count)
            age = (now - first).total_seconds() if first else 0
            oldest.add_metric([kind], max(age, 0.0))
        counted = GaugeMetricFamily("tokenbot_tokens", "Tokens by the status they show",
                                    labels=["status"])
        for status_name, count in sorted(tokens.items()):
            counted.add_metric([status_name], count)
        return [pending, oldest, counted]


class MetricsHandler:
    """The ``GET /metrics`` ASGI callable (the router has matched path and method)."""

    def __init__(self, *, settings: Settings, database: Database) -> None:
        token = settings.metrics_token
        self._token = token.get_secret_value().encode() if token else None
        self._allow = list(settings.metrics_allow)
        # A scrape's own thread: a slow one never takes a thread Slack's requests need.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-scrape")
        self.gauges = DatabaseGauges(database)
        self._refusals = LogLimiter()

    def refusal(self, scope: Scope) -> int | None:
        """403 for a client outside METRICS_ALLOW, 401 without METRICS_TOKEN; else None."""
        if self._allow:
            client = scope.get("client")
            try:
                address: Any = ipaddress.ip_address(client[0]) if client else None
            except ValueError:
                address = None
            # HOST=:: : an IPv4 client arrives as ::ffff:a.b.c.d; its IPv4 address counts.
            address = getattr(address, "ipv4_mapped", None) or address
            if address is None or not any(address in network for network in self._allow):
                return 403
        if self._token is not None:
            given = b""
            for name, value in scope.get("headers", ()):
                if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
            if not hmac.compare_digest(given, self._token):
                return 401
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.gauges.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.refusal(scope)
        if refused is not None:
            if self._refusals.allow(str(refused)):
                log.info("GET /metrics refused (%d; logged at most once a minute)", refused)
            headers = [_CHALLENGE] if refused == 401 else []
            await send_text(send, refused, "forbidden" if refused == 403 else
                            "unauthorized", headers)
            return
        loop = asyncio.get_running_loop()
        body, content_type = await loop.run_in_executor(
            self._executor, metrics.exposition, [self.gauges])
        await send_response(send, 200, body, [(b"content-type", content_type.encode())])
