"""Requests signed exactly as Slack signs them (v0 HMAC-SHA256 of v0:timestamp:body)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode("utf-8")
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, body: str, *, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature(secret, ts, body),
    }


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)


def interactive_body(payload: dict[str, Any]) -> str:
    """block_actions / view_submission bodies: a form field ``payload`` holding JSON."""
    return urlencode({"payload": json.dumps(payload)})
