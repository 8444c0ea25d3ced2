"""Who calls ``POST /introspect``: a presented credential checked against the configured
``TOKENBOT_INTROSPECTION_SECRETS``, in constant time.

Each side is reduced to HMAC-SHA-256 under a per-process random key (equal lengths, nothing
about the secrets' lengths leaks); the presented value is compared with *every* secret
(:func:`hmac.compare_digest`), the results OR-ed, no early exit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from dataclasses import dataclass

from bot.http.common import form_unquote


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: how it authenticated, and its Basic user name if any."""

    scheme: str
    name: str | None


class CallerCheck:
    """Constant-time check of a presented credential against every configured secret."""

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
            return self._basic(credential)
        return None

    def _basic(self, credential: bytes) -> Caller | None:
        """``base64(<client name>:<secret>)``: the password is checked, the name only logged."""
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
        decoded_form = self.matches(form_unquote(password))
        if not (as_sent | decoded_form):
            return None
        return Caller("basic", form_unquote(user).decode("utf-8", errors="replace")[:100])
