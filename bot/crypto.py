"""Token secrets: generation, checksum, masking, digest and encryption at rest.

Format: ``tkb_`` + 34 random base62 characters (202 bits from :mod:`secrets`) + 6 base62
characters of CRC32 over the random part. A scanner can match it with::

    \\btkb_[0-9A-Za-z]{40}\\b

and confirm a hit offline by recomputing the checksum (:func:`has_valid_checksum`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets as _random
import zlib
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.errors import ConfigurationError

log = logging.getLogger(__name__)

PREFIX = "tkb_"
RANDOM_LENGTH = 34
CHECKSUM_LENGTH = 6
SCANNER_REGEX = r"\btkb_[0-9A-Za-z]{40}\b"
MASK_VISIBLE = 10
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The whole candidate has the secret's shape (the scanner's pattern, anchored).
_SHAPE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}")
_SCANNER = re.compile(SCANNER_REGEX)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_secret() -> str:
    body = "".join(_random.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + body + _checksum(body)


def has_valid_checksum(candidate: str) -> bool:
    """True if ``candidate`` has the secret's shape and its checksum matches."""
    if _SHAPE.fullmatch(candidate) is None:
        return False
    body = candidate[len(PREFIX) : len(PREFIX) + RANDOM_LENGTH]
    tail = candidate[len(PREFIX) + RANDOM_LENGTH :]
    return _random.compare_digest(_checksum(body), tail)


def find_secrets(text: str) -> list[str]:
    """The distinct strings in ``text`` that the scanner's pattern matches and whose
    checksum holds, in order (a text without the prefix costs one substring test)."""
    if PREFIX not in text:
        return []
    return list(dict.fromkeys(found for found in _SCANNER.findall(text)
                              if has_valid_checksum(found)))


def mask(secret: str) -> str:
    return secret[:MASK_VISIBLE] + "…"


def digest(secret: str) -> str:
    """Lookup key: SHA-256 of the secret (the secret has 200+ bits, so no salt is needed)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SecretBox:
    """Encrypts secrets at rest with Fernet; several keys, newest first, for rotation."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError("TOKENBOT_SECRET_KEYS: at least one key is required")
        try:
            self._fernets = [Fernet(key.encode("ascii")) for key in keys]
        except (ValueError, UnicodeEncodeError):
            raise ConfigurationError(
                "TOKENBOT_SECRET_KEYS: each key must be a url-safe base64 32-byte Fernet key "
                "(make one with `tokenbot keys generate`)"
            ) from None
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, secret: str) -> bytes:
        return self._multi.encrypt(secret.encode("utf-8"))

    def decrypt(self, blob: bytes) -> str:
        try:
            return self._multi.decrypt(blob).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                "A stored secret cannot be decrypted with the configured TOKENBOT_SECRET_KEYS; "
                "is the key it was encrypted with still in the list?"
            ) from None

    def rotate(self, blob: bytes) -> bytes:
        """Re-encrypt under the newest key."""
        try:
            return self._multi.rotate(blob)
        except InvalidToken:
            raise ConfigurationError(
                "A stored secret cannot be decrypted with the configured TOKENBOT_SECRET_KEYS"
            ) from None

    def opens(self, blob: bytes) -> bool:
        """Whether one of the keys decrypts ``blob``."""
        try:
            self._multi.decrypt(blob)
        except InvalidToken:
            return False
        return True

    def is_current(self, blob: bytes) -> bool:
        try:
            self._fernets[0].decrypt(blob)
        except InvalidToken:
            return False
        return True


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_or_create_key_file(path: Path) -> str:
    """The embedded default's key: read it, or create it with mode 0600 and say so."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    log.warning(
        "No TOKENBOT_SECRET_KEYS set: generated an encryption key in %s (mode 0600). "
        "Back it up with the database; without it the stored secrets cannot be copied.",
        path,
    )
    return key
