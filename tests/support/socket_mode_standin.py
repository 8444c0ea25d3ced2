"""A local stand-in for Slack's Socket Mode WebSocket endpoint (RFC 6455, text frames only).

Pair it with SlackStandIn: answer ``apps.connections.open`` with :attr:`url` and the bot's
Socket Mode client connects here (slack_sdk's built-in client speaks plain ``ws://`` to a
port other than 443, as it does in slack_sdk's own tests). The stand-in greets the client
with ``hello`` as Slack does, sends the envelopes a test queues with :meth:`send_envelope`,
answers pings, and records every text message the client sends (acknowledgements).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class SocketModeStandIn:
    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._connection: socket.socket | None = None
        self._connected = threading.Event()
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"ws://{host}:{port}/link/?ticket=standin"

    def start(self) -> SocketModeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        for sock in (self._connection, self._listener):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def wait_connected(self, timeout: float = 20.0) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError("the Socket Mode client never connected")

    def send_envelope(self, envelope_type: str, payload: dict[str, Any], envelope_id: str) -> None:
        self._send_text(
            {
                "envelope_id": envelope_id,
                "payload": payload,
                "type": envelope_type,
                "accepts_response_payload": envelope_type != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for message in self.received:
                    if message.get("envelope_id") == envelope_id:
                        return message
            time.sleep(0.01)
        raise AssertionError(f"no acknowledgement of {envelope_id}: {self.received}")

    # -- the wire ------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        self._connection = connection
        try:
            self._handshake(connection)
            self._send_text(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": "A1"},
                }
            )
            self._connected.set()
            self._read_frames(connection)
        except OSError:
            pass

    def _handshake(self, connection: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = connection.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            request += chunk
        headers = {}
        for line in request.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest()
        ).decode()
        connection.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )

    def _recv_exact(self, connection: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read_frames(self, connection: socket.socket) -> None:
        while True:
            first, second = self._recv_exact(connection, 2)
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._recv_exact(connection, 2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._recv_exact(connection, 8))
            mask = self._recv_exact(connection, 4) if second & 0x80 else b"\0\0\0\0"
            raw = self._recv_exact(connection, length)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
            if opcode == PING:
                self._send_frame(PONG, payload)
            elif opcode == CLOSE:
                self._send_frame(CLOSE, payload[:2])
                return
            elif opcode == TEXT:
                with self._lock:
                    self.received.append(json.loads(payload.decode("utf-8")))

    def _send_text(self, message: dict[str, Any]) -> None:
        self._send_frame(TEXT, json.dumps(message).encode("utf-8"))

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([127]) + struct.pack("!Q", len(payload))
        assert self._connection is not None
        with self._send_lock:
            self._connection.sendall(header + payload)
