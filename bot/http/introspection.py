"""``POST /introspect``: RFC 7662 token introspection for other services (the contract
is the README's "Introspection for other services"; how a lookup is made and what it
writes, docs/ARCHITECTURE.md's "Introspection"): authenticate the caller, read the form,
verify through the batcher, answer; never a 500, never ``active: true`` but for a real
active token."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot import metrics
from bot.config import Settings
from bot.db import Database
from bot.http.batching import LookupBatcher
from bot.http.callers import Caller, CallerCheck
from bot.http.common import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    form_unquote,
    parse_length,
    read_body,
    send_response,
)
from bot.logs import LogLimiter
from bot.models import utcnow
from bot.http.usage_writer import UsageWriter
from bot.services.verification import (
    ActiveToken,
    Found,
    fetch_by_digests,
    judge,
    lookup_key,
)

log = logging.getLogger(__name__)

READ_TIMEOUT_MS: Final = 5000
FORM_TYPE: Final = b"application/x-www-form-urlencoded"
LookupMode = Literal["loop", "thread"]


# -- the request ---------------------------------------------------------------------------


class BadRequest(Exception):
    """The request is malformed (RFC 6749 ``invalid_request``); the message says why."""


def parse_form(body: bytes) -> bytes:
    """The raw bytes of the single ``token`` field of a urlencoded body. A missing or
    repeated ``token`` (or a repeated ``token_type_hint``) is a :class:`BadRequest`."""
    token: bytes | None = None
    hint_seen = False
    for part in body.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = form_unquote(raw_name)
        if name == b"token":
            if token is not None:
                raise BadRequest("The token parameter is repeated.")
            token = form_unquote(raw_value)
        elif name == b"token_type_hint":
            if hint_seen:
                raise BadRequest("The token_type_hint parameter is repeated.")
            hint_seen = True
    if token is None:
        raise BadRequest("The token parameter is missing.")
    return token


@dataclass(slots=True)
class RequestHeaders:
    """The request headers introspection looks at (the values as sent)."""

    authorization: bytes | None = None
    authorization_count: int = 0
    content_type: bytes | None = None
    content_length: bytes | None = None

    @classmethod
    def of(cls, scope: Scope) -> RequestHeaders:
        headers = cls()
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                headers.authorization = value
                headers.authorization_count += 1
            elif name == b"content-type":
                headers.content_type = value
            elif name == b"content-length":
                headers.content_length = value
        return headers

    @property
    def is_form(self) -> bool:
        """Whether the body is declared urlencoded (parameters and case aside)."""
        if self.content_type is None:
            return False
        return self.content_type.split(b";", 1)[0].strip().lower() == FORM_TYPE


# -- answers -------------------------------------------------------------------------------

_JSON_NO_STORE: Final = (
    (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
)
_CHALLENGE: Final = (
    (b"www-authenticate", b'Basic realm="tokenbot introspection", charset="UTF-8"'),
    (b"www-authenticate", b'Bearer realm="tokenbot introspection"'),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status, JSON body, and headers beyond the ones every answer has."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def result(self) -> str:
        """What ``tokenbot_introspection_requests_total`` counts it as."""
        if self.status == 200:
            return "inactive" if self.body == INACTIVE_BODY else "active"
        return {401: "unauthorized", 400: "bad_request", 413: "bad_request"}.get(
            self.status, "error")

    async def respond(self, send: Send) -> None:
        await send_response(send, self.status, self.body, (*_JSON_NO_STORE, *self.headers))


def error_answer(
    status: int, error: str, description: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    """An RFC 6749 §5.2 style error."""
    body = json.dumps({"error": error, "error_description": description}).encode("utf-8")
    return Answer(status, body, headers)


INACTIVE_BODY: Final = b'{"active":false}'
INACTIVE: Final = Answer(200, INACTIVE_BODY)
UNAUTHENTICATED: Final = error_answer(
    401, "invalid_client", "Authenticate with an introspection secret.", _CHALLENGE
)
MALFORMED_LENGTH: Final = error_answer(400, "invalid_request", "Malformed Content-Length.")
NOT_A_FORM: Final = error_answer(
    400, "invalid_request", "Send the token as application/x-www-form-urlencoded (token=...)."
)
TOO_LARGE: Final = error_answer(
    413, "invalid_request", f"The body is over {MAX_BODY_BYTES} bytes."
)
UNAVAILABLE: Final = error_answer(
    503,
    "temporarily_unavailable",
    "The token store is unavailable.",
    ((b"retry-after", b"5"),),
)


# -- the ASGI handler ----------------------------------------------------------------------


class IntrospectionHandler:
    """The ``POST /introspect`` ASGI callable (the router has matched path and method).
    ``lookup``: where the batched read runs; by default in the event loop on SQLite (an
    in-process read of a few microseconds) and in one reader thread on PostgreSQL (a
    network round trip)."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        lookup: LookupMode | None = None,
    ) -> None:
        self.engine: Engine = database.engine
        self.callers = CallerCheck(
            [secret.get_secret_value() for secret in settings.tokenbot_introspection_secrets]
        )
        if lookup is None:
            lookup = "loop" if self.engine.dialect.name == "sqlite" else "thread"
        self.lookup_mode: LookupMode = lookup
        self._reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-introspect")
            if lookup == "thread"
            else None
        )
        self.batcher = LookupBatcher(self._fetch, self._reader)
        # Last use, dead-secret counts, retirements: one writer thread, off the hot path.
        self.writes = UsageWriter(database)
        self._callers_seen: set[tuple[str, str]] = set()
        self._refusals = LogLimiter()
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        if not self.callers.configured:
            log.warning(
                "TOKENBOT_INTROSPECTION_SECRETS is not set: POST /introspect refuses every "
                "request (401)"
            )

    # -- ASGI: one request, step by step --------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        result: str | None = "error"  # unless an answer says otherwise
        try:
            answer = await self._answer(scope, receive)
            result = answer.result
            await answer.respond(send)
        except ClientDisconnected:
            result = None  # nobody left to answer: not counted
        finally:  # an unexpected failure too (it goes on to the server: a 500)
            if result is not None:
                metrics.introspection(result, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        """The steps in order (the first that fails answers): authenticate the caller,
        check the body's framing, read the body, look the token up."""
        headers = RequestHeaders.of(scope)
        caller = self._authenticate(scope, headers)
        if caller is None:
            return UNAUTHENTICATED
        refusal = self._check_framing(headers)
        if refusal is not None:
            return refusal
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            return TOO_LARGE
        return await self._introspect(body, caller)

    def _authenticate(self, scope: Scope, headers: RequestHeaders) -> Caller | None:
        """The caller of exactly one valid ``Authorization`` header, or None (logged)."""
        caller = None
        if headers.authorization_count == 1:
            caller = self.callers.authenticate(headers.authorization)
        if caller is None:
            client = scope.get("client")
            source = client[0] if client else "?"
            if self._refusals.allow(source):
                log.info("introspection refused: no valid credential (from %s; logged at "
                         "most once a minute per source)", source)
            return None
        self._note_caller(caller)
        return caller

    def _check_framing(self, headers: RequestHeaders) -> Answer | None:
        """The refusal for the announced length or the content type, before reading."""
        if headers.content_length is not None:
            announced = parse_length(headers.content_length)
            if announced is None:
                return MALFORMED_LENGTH
            if announced > MAX_BODY_BYTES:
                return TOO_LARGE
        if not headers.is_form:
            return NOT_A_FORM
        return None

    async def _introspect(self, body: bytes, caller: Caller) -> Answer:
        """The answer for the token in the body: its claims, or inactive."""
        try:
            raw_token = parse_form(body)
        except BadRequest as exc:
            return error_answer(400, "invalid_request", str(exc))
        try:
            secret = raw_token.decode("ascii")
        except UnicodeDecodeError:
            return INACTIVE  # no token has such characters
        key = lookup_key(secret)
        if key is None:
            return INACTIVE  # wrong shape or checksum: no read needed
        now = utcnow()
        try:
            verdict = judge(await self.batcher.get(key), now=now)
        except SQLAlchemyError as exc:
            log.error("introspection lookup failed: %s", type(exc).__name__)
            return UNAVAILABLE
        if verdict.token is None:
            if verdict.dead is not None:
                self.writes.note_dead(verdict.dead, caller.name, now)
            return INACTIVE
        if verdict.retire is not None:
            await self.writes.retire(verdict.token, verdict.retire, key, caller.name, now)
        return self._active(verdict.token, caller, now)

    def _active(self, token: ActiveToken, caller: Caller, now: dt.datetime) -> Answer:
        """The claims of a working token, its use noted."""
        self.writes.note_use(token, caller.name, now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "introspection by %s (%s): %s active",
                caller.name,
                caller.scheme,
                token.public_id,
            )
        return Answer(200, json.dumps(token.claims(), separators=(",", ":")).encode())

    def _note_caller(self, caller: Caller) -> None:
        """Log each caller once per process at INFO (every request at DEBUG)."""
        key = (caller.scheme, caller.name)
        if key in self._callers_seen or len(self._callers_seen) >= 1000:
            return
        self._callers_seen.add(key)
        log.info(
            "introspection: first request from caller %s (%s auth)",
            caller.name,
            caller.scheme,
        )

    # -- the read connection: one per reading thread (the loop's, or the reader's) ----------

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if connection.dialect.name == "postgresql":
                # A stuck read fails (503) instead of holding every request behind it.
                connection.exec_driver_sql(f"SET statement_timeout = {READ_TIMEOUT_MS}")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _drop_connection(self) -> None:
        connection: Connection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.invalidate()
            except SQLAlchemyError:
                pass

    def _fetch(self, digests: list[str]) -> dict[str, Found]:
        """One read on this thread's connection; a dropped connection is replaced once."""
        for attempt in (1, 2):
            connection = self._connection()
            try:
                try:
                    return fetch_by_digests(connection, digests=digests)
                finally:
                    connection.rollback()  # ends SQLAlchemy's transaction bookkeeping
            except DBAPIError as exc:
                self._drop_connection()
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    # -- the write side ----------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes and close the read connections."""
        self.writes.close()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except SQLAlchemyError:
                pass
