"""Logging set-up for every entry point: ``LOG_LEVEL``, ``LOG_FORMAT`` (``text``, or
``json``: one object per line, with the request's context), and a filter on each handler
that masks Tokenbot and Slack tokens in every line and traceback, whatever logged them."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from bot.crypto import ALPHABET, PREFIX, RANDOM_LENGTH

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# No word boundaries (unlike a scanner's pattern): a secret glued to a word is a secret too.
_SECRETS = re.compile(
    rf"{PREFIX}[{ALPHABET}]{{{RANDOM_LENGTH}}}[{ALPHABET}]*|(?:xox[abeprs]|xapp)-[0-9A-Za-z-]+"
)


def _mask(match: re.Match[str]) -> str:
    found = match.group(0)
    prefix = "tkb_" if found.startswith("tkb_") else found.split("-", 1)[0] + "-"
    return prefix + "[redacted]"


def redact(text: str) -> str:
    return _SECRETS.sub(_mask, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message or traceback holds a secret; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def guard(handler: logging.Handler) -> logging.Handler:
    """Put the secret filter on ``handler`` (once)."""
    if not any(isinstance(f, RedactSecrets) for f in handler.filters):
        handler.addFilter(RedactSecrets())
    return handler


@dataclass
class RequestContext:
    """What is known of the request being handled (a Slack request: set where every one
    passes, ``bot.slack.acks``); JSON log lines carry it."""

    kind: str
    action_id: str | None = None
    team: str | None = None
    user: str | None = None
    token: str | None = None  # a token's public id, once a listener knows it
    outcome: str = "ok"  # ok, refused, error: how the request ended
    started: float = field(default_factory=time.perf_counter)
    _holders: int = field(default=1, repr=False)  # the acknowledgement, and held work
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fields(self) -> dict[str, Any]:
        known = {"kind": self.kind, "action_id": self.action_id, "team": self.team,
                 "user": self.user, "token": self.token}
        return {name: value for name, value in known.items() if value is not None}

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def hold(self) -> None:
        """Work of this request goes on elsewhere (after its acknowledgement)."""
        with self._lock:
            self._holders += 1

    def release(self) -> bool:
        """One part of the request ended; True for the last (the request is over)."""
        with self._lock:
            self._holders -= 1
            return self._holders == 0


_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "tokenbot_request", default=None)


def current_request() -> RequestContext | None:
    return _request.get()


def enter_request(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _request.set(context)


def leave_request(token: contextvars.Token[RequestContext | None]) -> None:
    _request.reset(token)


def note_token(public_id: str | None) -> None:
    """The token the current request acts on (for its log lines)."""
    context = _request.get()
    if context is not None and public_id:
        context.token = public_id


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request's context
    (``request``: kind, action id, team, user, token, duration), the traceback. Uvicorn's
    access lines also carry ``http``: client, method, path, status."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _request.get()
        if context is not None:
            line["request"] = {**context.fields(),
                               "duration_ms": round(context.seconds() * 1000, 1)}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) \
                and len(record.args) == 5:
            client, method, path, _version, status = record.args
            line["http"] = {"client": client, "method": method, "path": path,
                            "status": status}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        # The filter has masked message and traceback; the whole line is masked again,
        # as it holds the request's fields too.
        return redact(json.dumps(line, default=str, ensure_ascii=False))


def formatter(log_format: str = "text") -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT)


def configure(level: int | str = logging.INFO, stream: IO[str] | None = None,
              log_format: str = "text") -> None:
    """The root logger's set-up (if nothing set it up before), every handler guarded."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter(log_format))
        root.addHandler(handler)
        root.setLevel(level)
    for handler in root.handlers:
        guard(handler)


class LogLimiter:
    """At most one log line per ``interval`` seconds per key (a refused caller's address, a
    kind of bad request), so a flood of bad requests cannot flood the log."""

    def __init__(self, interval: float = 60.0, max_keys: int = 10_000) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True
