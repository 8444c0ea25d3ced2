"""Logging set-up for every entry point: one format, and a filter on each handler that
masks Tokenbot and Slack tokens in every line and traceback, whatever logged them."""

from __future__ import annotations

import logging
import re
import time
from typing import IO

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


def configure(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """The root logger's set-up (if nothing set it up before), every handler guarded."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=FORMAT, stream=stream)
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
