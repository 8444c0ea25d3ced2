"""What every HTTP entry point shares: the ASGI types, reading a request body within a
limit (and decoding form fields), and sending a whole response.

A body is refused past :data:`MAX_BODY_BYTES` (or the limit a caller gives): from the
announced Content-Length before anything is read, and by counting while reading (a chunked
body announces nothing). A response is sent in one piece, its Content-Length computed
here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final
from urllib.parse import unquote_to_bytes

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]

MAX_BODY_BYTES: Final = 1024 * 1024
TEXT_CONTENT_TYPE: Final = (b"content-type", b"text/plain; charset=utf-8")


class BodyTooLarge(Exception):
    """The request body exceeds the limit."""


class ClientDisconnected(Exception):
    """The client went away before the body was read."""


# -- reading -------------------------------------------------------------------------------


def parse_length(value: bytes) -> int | None:
    """A Content-Length value as a number of bytes, or None when it is not one."""
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def announced_length(scope: Scope) -> int | None:
    """The body length the request announces; None without a (well-formed) Content-Length."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return parse_length(value)
    return None


def form_unquote(raw: bytes) -> bytes:
    """One name or value of a urlencoded form, decoded (``+`` is a space)."""
    if b"%" not in raw and b"+" not in raw:
        return raw
    return unquote_to_bytes(raw.replace(b"+", b" "))


async def read_body(receive: Receive, limit: int, *, announced: int | None = None) -> bytes:
    """The whole request body. :class:`BodyTooLarge` when ``announced`` (the Content-Length,
    checked before anything is read) or the bytes received exceed ``limit``;
    :class:`ClientDisconnected` when the client leaves first."""
    if announced is not None and announced > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# -- answering -----------------------------------------------------------------------------


async def send_response(
    send: Send, status: int, body: bytes | str = b"", headers: Headers = ()
) -> None:
    """The whole response: ``headers`` (any Content-Length among them is replaced by the
    body's) and ``body`` (a ``str`` is sent as UTF-8)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    header_list = [(name, value) for name, value in headers if name != b"content-length"]
    header_list.append((b"content-length", str(len(data)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": data})


async def send_text(send: Send, status: int, text: str, headers: Headers = ()) -> None:
    """A plain-text response."""
    await send_response(send, status, text, [TEXT_CONTENT_TYPE, *headers])
