"""``POST /introspect``: RFC 7662 token introspection for other services.

Request: ``application/x-www-form-urlencoded`` body with ``token`` (``token_type_hint`` is
accepted and ignored). The caller authenticates with one of the configured
``TOKENBOT_INTROSPECTION_SECRETS`` (several, so a secret can be rotated without downtime):

- ``Authorization: Bearer <secret>``, or
- ``Authorization: Basic base64(<client name>:<secret>)``: the *password* must be a
  configured secret (as sent, or form-url-decoded as RFC 6749 §2.3.1 clients send it); the
  user name is free-form, names the caller in the log (INFO once per process, DEBUG per
  request) and is never checked.

The presented credential is compared with every configured secret in constant time
(HMAC-SHA-256 of both sides, :func:`hmac.compare_digest` against all of them, no early exit).
Anything else gets ``401`` with ``WWW-Authenticate`` challenges, before the body is read
and before anything is looked up; with no secrets configured every request gets ``401``.

Answers (every one with ``Cache-Control: no-store`` and ``Pragma: no-cache``):

- ``200 {"active": true, "scope", "exp" (omitted when the token never expires), "iat",
  "token_type": "access_token", "sub" (owner's Slack user id), "client_id" (the token's
  public id), "team_id"}`` for an active, unexpired token;
- ``200 {"active": false}`` (exactly) for anything else: unknown, malformed, wrong format,
  disabled, expired, deleted, a rotated token's old secret, non-ASCII bytes;
- ``400 {"error": "invalid_request", ...}`` (RFC 6749 §5.2 style) for a wrong content
  type, a missing ``token`` field, a repeated field or a malformed Content-Length;
- ``413`` for a body over 1 MiB (refused from Content-Length before reading, and counted
  while reading);
- ``503 {"error": "temporarily_unavailable"}`` when the database cannot be reached.

Never a 500, never ``active: true`` for anything but a real active token.

Lookup: the checksum is checked first (no database work for a malformed token), then one
indexed ``SELECT`` of the needed columns by the secret's SHA-256 digest (Core, not the ORM;
the same rule as :func:`bot.services.tokens.verify`); nothing is ever decrypted or scanned.
Concurrent requests are coalesced (:class:`LookupBatcher`): while one read is in flight,
the digests of requests arriving meanwhile go together in the next ``IN (...)`` read.
There is no cache of answers, and a request never joins a read that already started, so a
token disabled, deleted, rotated or expired through any surface of any process answers
``active: false`` on the very next request. A successful check records "last used" at
most once a minute per token (:mod:`bot.services.usage`), in a worker thread, several
tokens per ``UPDATE``.

The read runs on a connection the handler holds: directly in the event loop
(``lookup="loop"``, the default on SQLite: an in-process read of microseconds, cheaper
than a hop to a thread) or in one reader thread (``lookup="thread"``, the default on
PostgreSQL: the loop keeps serving HTTP during the network round trip); the README's
benchmark section has the figures behind the defaults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets as _random
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote_to_bytes

from sqlalchemy import Connection, Engine, Row, bindparam, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot import crypto
from bot.config import Settings
from bot.db import Database
from bot.models import Token, TokenStatus
from bot.services.usage import UsageMemo, record_use

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES: Final = 1024 * 1024
READ_TIMEOUT_MS: Final = 5000
FORM_TYPE: Final = b"application/x-www-form-urlencoded"
TOKEN_TYPE: Final = "access_token"
LookupMode = Literal["loop", "thread"]

# -- the lookup (Core, one indexed read by digest) --------------------------------------

_t = Token.__table__
# Built once; SQLAlchemy compiles it once per IN-list size and reuses it from its cache.
LOOKUP_STATEMENT: Final = select(
    _t.c.secret_digest,
    _t.c.id,
    _t.c.public_id,
    _t.c.team_id,
    _t.c.scope,
    _t.c.status,
    _t.c.created_by,
    _t.c.created_at,
    _t.c.expires_at,
    _t.c.last_used_at,
).where(_t.c.secret_digest.in_(bindparam("digests", expanding=True)))


@dataclass(frozen=True, slots=True)
class ActiveToken:
    """What introspection needs from an active token's row (never the secret)."""

    id: int
    public_id: str
    team_id: str
    scope: str
    owner: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None

    def claims(self) -> dict[str, Any]:
        """The RFC 7662 response members for this token."""
        claims: dict[str, Any] = {"active": True, "scope": self.scope}
        if self.expires_at is not None:
            claims["exp"] = int(self.expires_at.timestamp())
        claims["iat"] = int(self.created_at.timestamp())
        claims["token_type"] = TOKEN_TYPE
        claims["sub"] = self.owner
        claims["client_id"] = self.public_id
        claims["team_id"] = self.team_id
        return claims


def fetch_by_digests(connection: Connection, *, digests: Sequence[str]) -> dict[str, Row[Any]]:
    """The rows whose secret digest is one of ``digests`` (one indexed read), by digest."""
    if not digests:
        return {}
    rows = connection.execute(LOOKUP_STATEMENT, {"digests": list(digests)})
    return {row.secret_digest: row for row in rows}


def active_token(row: Row[Any] | None, *, now: dt.datetime) -> ActiveToken | None:
    """The row as an :class:`ActiveToken` when it is active and unexpired at ``now``."""
    if row is None or row.status != TokenStatus.ACTIVE:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return ActiveToken(
        id=row.id,
        public_id=row.public_id,
        team_id=row.team_id,
        scope=row.scope,
        owner=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def lookup_active(connection: Connection, *, secret: str, now: dt.datetime) -> ActiveToken | None:
    """The active, unexpired token with this secret, or None: the checksum first (a
    malformed secret costs no query), then one read by digest. Same rule as
    :func:`bot.services.tokens.verify`, without the ORM."""
    if not crypto.has_valid_checksum(secret):
        return None
    key = crypto.digest(secret)
    return active_token(fetch_by_digests(connection, digests=[key]).get(key), now=now)


class LookupBatcher:
    """Coalesces the lookups of concurrent requests into one ``IN (...)`` read.

    A request's digest joins the *pending* batch; a batch is sent when the event loop has
    handled the requests that arrived with it, and only when no batch is in flight (at
    most one per process); whatever arrives meanwhile waits for the next one. A request
    never joins a read that has already started, so every answer comes from a read that
    began after the request arrived: nothing is cached, a change committed before the
    request is always seen. ``run`` executes in ``executor`` (a thread, so the loop keeps
    serving HTTP while the database answers) or, without one, directly in the loop.
    """

    def __init__(
        self,
        run: Callable[[list[str]], dict[str, Row[Any]]],
        executor: ThreadPoolExecutor | None,
        *,
        max_batch: int = 256,
    ) -> None:
        self._run = run
        self._executor = executor
        self._max_batch = max_batch
        self._pending: dict[str, list[asyncio.Future[Row[Any] | None]]] = {}
        self._scheduled = False
        self._in_flight = False
        self.batches = 0
        self.lookups = 0

    async def get(self, digest: str) -> Row[Any] | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Row[Any] | None] = loop.create_future()
        self._pending.setdefault(digest, []).append(future)
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _take(self) -> dict[str, list[asyncio.Future[Row[Any] | None]]]:
        if len(self._pending) <= self._max_batch:
            batch, self._pending = self._pending, {}
            return batch
        keys = list(self._pending)[: self._max_batch]
        return {key: self._pending.pop(key) for key in keys}

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending or self._in_flight:
            return
        batch = self._take()
        self.batches += 1
        self.lookups += len(batch)
        if self._executor is None:
            try:
                rows = self._run(list(batch))
            except SQLAlchemyError as exc:
                self._fail(batch, exc)
            else:
                self._resolve(batch, rows)
            if self._pending:
                self._schedule()
            return
        self._in_flight = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run, list(batch))
        done.add_done_callback(lambda result: self._finished(batch, result))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _finished(
        self,
        batch: dict[str, list[asyncio.Future[Row[Any] | None]]],
        result: asyncio.Future[dict[str, Row[Any]]],
    ) -> None:
        self._in_flight = False
        if result.cancelled():
            self._fail(batch, asyncio.CancelledError())
        elif (exc := result.exception()) is not None:
            self._fail(batch, exc)
        else:
            self._resolve(batch, result.result())
        if self._pending:
            self._schedule()

    @staticmethod
    def _resolve(
        batch: dict[str, list[asyncio.Future[Row[Any] | None]]], rows: dict[str, Row[Any]]
    ) -> None:
        for digest, futures in batch.items():
            row = rows.get(digest)
            for future in futures:
                if not future.done():
                    future.set_result(row)

    @staticmethod
    def _fail(
        batch: dict[str, list[asyncio.Future[Row[Any] | None]]], exc: BaseException
    ) -> None:
        for futures in batch.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)


# -- request parsing -------------------------------------------------------------------


class BadRequest(Exception):
    """The request is malformed (RFC 6749 ``invalid_request``); the message says why."""


def _unquote(raw: bytes) -> bytes:
    if b"%" not in raw and b"+" not in raw:
        return raw
    return unquote_to_bytes(raw.replace(b"+", b" "))


def parse_form(body: bytes) -> bytes:
    """The raw bytes of the single ``token`` field of a urlencoded body. A missing or
    repeated ``token`` (or a repeated ``token_type_hint``) is a :class:`BadRequest`."""
    token: bytes | None = None
    hint_seen = False
    for part in body.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = _unquote(raw_name)
        if name == b"token":
            if token is not None:
                raise BadRequest("The token parameter is repeated.")
            token = _unquote(raw_value)
        elif name == b"token_type_hint":
            if hint_seen:
                raise BadRequest("The token_type_hint parameter is repeated.")
            hint_seen = True
    if token is None:
        raise BadRequest("The token parameter is missing.")
    return token


# -- caller authentication ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: how it authenticated, and its Basic user name if any."""

    scheme: str
    name: str | None


class CallerCheck:
    """Constant-time check of a presented credential against every configured secret.

    Each side is reduced to HMAC-SHA-256 under a per-process random key (equal lengths,
    nothing about the secrets' lengths leaks); the presented value is compared with *every*
    secret, the results OR-ed, no early exit.
    """

    def __init__(self, secrets: list[str]) -> None:
        self._key = _random.token_bytes(32)
        self._digests = [self._mac(secret.encode("utf-8")) for secret in secrets if secret]

    def _mac(self, value: bytes) -> bytes:
        return hmac.new(self._key, value, hashlib.sha256).digest()

    @property
    def configured(self) -> bool:
        return bool(self._digests)

    def matches(self, presented: bytes) -> bool:
        mac = self._mac(presented)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(mac, digest)
        return found and bool(self._digests)

    def authenticate(self, header: bytes | None) -> Caller | None:
        """The caller named by an ``Authorization`` header value, or None."""
        if not header or not self._digests:
            return None
        scheme, _, credential = header.strip().partition(b" ")
        scheme = scheme.lower()
        credential = credential.strip()
        if not credential:
            return None
        if scheme == b"bearer":
            return Caller("bearer", None) if self.matches(credential) else None
        if scheme == b"basic":
            try:
                decoded = base64.b64decode(credential, validate=True)
            except (binascii.Error, ValueError):
                return None
            user, colon, password = decoded.partition(b":")
            if not colon:
                return None
            # RFC 6749 §2.3.1 clients form-urlencode the password first: accept either form
            # (both always compared).
            as_sent = self.matches(password)
            decoded_form = self.matches(_unquote(password))
            if not (as_sent | decoded_form):
                return None
            return Caller("basic", _unquote(user).decode("utf-8", errors="replace")[:100])
        return None


# -- responses -----------------------------------------------------------------------------

_NO_STORE: Final = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_JSON: Final = [(b"content-type", b"application/json"), *_NO_STORE]
INACTIVE_BODY: Final = b'{"active":false}'
_CHALLENGE: Final = [
    (b"www-authenticate", b'Basic realm="tokenbot introspection", charset="UTF-8"'),
    (b"www-authenticate", b'Bearer realm="tokenbot introspection"'),
]


def _error_body(error: str, description: str) -> bytes:
    return json.dumps({"error": error, "error_description": description}).encode("utf-8")


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode("ascii"))]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    pass


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# -- the ASGI handler ----------------------------------------------------------------------


class IntrospectionHandler:
    """The ``POST /introspect`` ASGI callable (the router has matched path and method)."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        lookup: LookupMode | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.engine: Engine = database.engine
        self.max_body_bytes = max_body_bytes
        self.callers = CallerCheck(
            [secret.get_secret_value() for secret in settings.tokenbot_introspection_secrets]
        )
        self.usage = UsageMemo()
        if lookup is None:
            lookup = "loop" if self.engine.dialect.name == "sqlite" else "thread"
        self.lookup_mode: LookupMode = lookup
        self._reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-introspect")
            if lookup == "thread"
            else None
        )
        self.batcher = LookupBatcher(self._fetch, self._reader)
        # Last-used writes: one thread, several tokens per UPDATE, off the request path.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-usage")
        self._due: dict[int, dt.datetime] = {}
        self._due_lock = threading.Lock()
        self._callers_seen: set[tuple[str, str | None]] = set()
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        if not self.callers.configured:
            log.warning(
                "TOKENBOT_INTROSPECTION_SECRETS is not set: POST /introspect refuses every "
                "request (401)"
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

    def _fetch(self, digests: list[str]) -> dict[str, Row[Any]]:
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

    async def lookup(self, secret: str, now: dt.datetime) -> ActiveToken | None:
        """The active token presented, or None (checksum first: no read for a bad one)."""
        if not crypto.has_valid_checksum(secret):
            return None
        return active_token(await self.batcher.get(crypto.digest(secret)), now=now)

    def _note_caller(self, caller: Caller) -> None:
        """Log each caller once per process at INFO (every request at DEBUG)."""
        key = (caller.scheme, caller.name)
        if key in self._callers_seen or len(self._callers_seen) >= 1000:
            return
        self._callers_seen.add(key)
        log.info(
            "introspection: first request from caller %s (%s auth)",
            repr(caller.name) if caller.name is not None else "-",
            caller.scheme,
        )

    # -- last used -------------------------------------------------------------------------

    def _note_use(self, token: ActiveToken, now: dt.datetime) -> None:
        if not self.usage.claim(token.id, now=now, stored=token.last_used_at):
            return
        with self._due_lock:
            first = not self._due
            self._due[token.id] = now
        if first:
            self._writer.submit(self._write_uses)

    def _write_uses(self) -> None:
        with self._due_lock:
            due, self._due = self._due, {}
        by_time: dict[dt.datetime, list[int]] = {}
        for token_id, when in due.items():
            by_time.setdefault(when, []).append(token_id)
        for when, token_ids in by_time.items():
            try:
                with self.engine.begin() as connection:
                    record_use(connection, token_ids=token_ids, now=when)
            except SQLAlchemyError as exc:
                for token_id in token_ids:
                    self.usage.forget(token_id)
                log.warning(
                    "could not record last use of %d token(s): %s",
                    len(token_ids),
                    type(exc).__name__,
                )

    async def drain(self) -> None:
        """Wait until queued last-used writes are done (tests and shutdown)."""
        await asyncio.get_running_loop().run_in_executor(self._writer, lambda: None)

    def close(self) -> None:
        """Finish queued last-used writes and close the read connections."""
        self._writer.shutdown(wait=True)
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except SQLAlchemyError:
                pass

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization: bytes | None = None
        auth_headers = 0
        content_type: bytes | None = None
        content_length: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value
                auth_headers += 1
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value

        caller = self.callers.authenticate(authorization) if auth_headers == 1 else None
        if caller is None:
            client = scope.get("client")
            log.info(
                "introspection refused: no valid credential (from %s)",
                client[0] if client else "?",
            )
            await _respond(
                send,
                401,
                _error_body("invalid_client", "Authenticate with an introspection secret."),
                _CHALLENGE,
            )
            return
        self._note_caller(caller)

        if content_length is not None:
            try:
                announced = int(content_length)
            except ValueError:
                announced = -1
            if announced < 0:
                await _respond(
                    send, 400, _error_body("invalid_request", "Malformed Content-Length.")
                )
                return
            if announced > self.max_body_bytes:
                await self._too_large(send)
                return

        if content_type is None or content_type.split(b";", 1)[0].strip().lower() != FORM_TYPE:
            await _respond(
                send,
                400,
                _error_body(
                    "invalid_request",
                    "Send the token as application/x-www-form-urlencoded (token=...).",
                ),
            )
            return

        try:
            body = await _read_body(receive, self.max_body_bytes)
        except _TooLarge:
            await self._too_large(send)
            return
        except _Disconnected:
            return

        try:
            raw_token = parse_form(body)
        except BadRequest as exc:
            await _respond(send, 400, _error_body("invalid_request", str(exc)))
            return

        try:
            secret = raw_token.decode("ascii")
        except UnicodeDecodeError:
            await _respond(send, 200, INACTIVE_BODY)
            return

        now = dt.datetime.now(dt.timezone.utc)
        try:
            token = await self.lookup(secret, now)
        except SQLAlchemyError as exc:
            log.error("introspection lookup failed: %s", type(exc).__name__)
            await _respond(
                send,
                503,
                _error_body("temporarily_unavailable", "The token store is unavailable."),
                [(b"retry-after", b"5")],
            )
            return

        if token is None:
            await _respond(send, 200, INACTIVE_BODY)
            return

        self._note_use(token, now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "introspection by %s (%s): %s active",
                caller.name or "-",
                caller.scheme,
                token.public_id,
            )
        await _respond(send, 200, json.dumps(token.claims(), separators=(",", ":")).encode())

    async def _too_large(self, send: Send) -> None:
        await _respond(
            send,
            413,
            _error_body("invalid_request", f"The body is over {self.max_body_bytes} bytes."),
        )


def make_introspection_handler(
    *, settings: Settings, database: Database, lookup: LookupMode | None = None
) -> IntrospectionHandler:
    """The ``POST /introspect`` handler for ``bot.http.server``'s router. ``lookup``: where the
    batched read runs; by default in the event loop on SQLite (an in-process read of a few
    microseconds) and in one reader thread on PostgreSQL (a network round trip)."""
    return IntrospectionHandler(settings=settings, database=database, lookup=lookup)
