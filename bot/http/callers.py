"""Who calls ``POST /introspect``: the presented credential checked against every entry of
``TOKENBOT_INTROSPECTION_SECRETS`` in constant time (HMAC-SHA-256 under a per-process key,
every entry compared, no early exit); the caller is the matching entry's name
(``name=secret``, or ``client-N`` for a bare secret by its position)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets as _random
from dataclasses import dataclass
from typing import Final

from bot.http.common import form_unquote


_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


def named_secrets(entries: list[str]) -> list[tuple[str, str]]:
    """``(name, secret)`` for each non-empty entry: ``name=secret``, or a bare secret named
    ``client-N`` by its position (1-based)."""
    named: list[tuple[str, str]] = []
    for position, entry in enumerate((e for e in entries if e), start=1):
        name, equals, secret = entry.partition("=")
        if equals and _NAME.fullmatch(name) and secret and not secret.startswith("="):
            named.append((name, secret))
        else:
            named.append((f"client-{position}", entry))
    return named


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: how it authenticated, and the name of its credential."""

    scheme: str
    name: str


class CallerCheck:
    """Constant-time check of a presented credential against every configured secret."""

    def __init__(self, secrets: list[str]) -> None:
        self._key = _random.token_bytes(32)
        named = named_secrets(secrets)
        self._names = [name for name, _ in named]
        self._digests = [self._mac(secret.encode("utf-8")) for _, secret in named]

    def _mac(self, value: bytes) -> bytes:
        return hmac.digest(self._key, value, "sha256")

    @property
    def configured(self) -> bool:
        return bool(self._digests)

    def match(self, presented: bytes) -> str | None:
        """The name of the secret equal to ``presented``, or None; every secret is
        compared (no early exit)."""
        mac = self._mac(presented)
        found: str | None = None
        for name, digest in zip(self._names, self._digests, strict=True):
            if hmac.compare_digest(mac, digest):
                found = name
        return found

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
            name = self.match(credential)
            return Caller("bearer", name) if name is not None else None
        if scheme == b"basic":
            return self._basic(credential)
        return None

    def _basic(self, credential: bytes) -> Caller | None:
        """``base64(<user>:<secret>)``: the password is checked; the user name is ignored
        (the caller is the matching secret's name)."""
        try:
            decoded = base64.b64decode(credential, validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        # RFC 6749 §2.3.1 clients form-urlencode the password first: accept either form
        # (both always compared).
        as_sent = self.match(password)
        decoded_form = self.match(form_unquote(password))
        name = as_sent or decoded_form
        return Caller("basic", name) if name is not None else None
