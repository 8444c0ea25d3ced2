"""A local HTTP stand-in for Slack's Web API and for ``response_url``s.

The bot reaches it through its configurable Slack API base URL (``SLACK_API_URL``), the
way slack_sdk's own tests run against a mock server. It records every call and answers
like Slack does; failures (HTTP 429 with Retry-After, 5xx, ``ok: false``) can be queued
per method. Messages posted with ``chat.postMessage`` are kept per conversation with their
metadata and answered by ``conversations.history``; answers can be delayed (``latency``,
``delay_next``) and watched (``on_arrival``, ``on_answered``) to stage faults.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse


DROPPED = 0  # _handle's status for a call answered by closing the connection


@dataclass
class Call:
    method: str  # Web API method ("chat.postMessage") or "response_url"
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when its bytes had all arrived


@dataclass
class Failure:
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    accepted: bool = False  # Slack did the work (a post is kept), then answered this


def _decode_form(raw: bytes) -> dict[str, Any]:
    values = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
    for key in ("blocks", "view", "attachments", "metadata"):
        if isinstance(values.get(key), str):
            try:
                values[key] = json.loads(values[key])
            except ValueError:
                pass
    return values


class SlackStandIn:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: dict[str, list[Failure]] = {}
        self._held: set[str] = set()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._init_history()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                arrived = time.monotonic()  # before the stand-in's own decoding
                status, payload, headers = standin._handle(
                    self.path, dict(self.headers), raw, arrived
                )
                if status == DROPPED:  # accepted, then the connection is closed unanswered
                    self.close_connection = True
                    standin._answered(self.path)
                    return
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:  # the caller gave up waiting (timeout) or died
                    self.close_connection = True
                standin._answered(self.path)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> SlackStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be."""
        return self.base_url + "api/"

    def response_url(self, name: str = "r") -> str:
        return f"{self.base_url}response/{name}"

    # -- scripting and inspection ---------------------------------------------

    def fail_next(self, method: str, *failures: Failure) -> None:
        with self._lock:
            self._failures.setdefault(method, []).extend(failures)

    def slow_down(self, seconds: float, *methods: str) -> None:
        """Answer ``methods`` (every method and response_url when none is named), refusals
        included, only after ``seconds``, as a slow Slack does (``delay_next`` delays only the
        next few; ``hold`` until ``release``).
        ``slow_down(0)`` answers everything at once again."""
        with self._lock:
            if not methods and not seconds:
                self._latency.clear()
            for method in methods or ("*",):
                self._latency[method] = seconds

    def hold(self, *methods: str) -> None:
        """Answer ``methods`` only once ``release()`` is called (at most 30 s later)."""
        with self._lock:
            self._released.clear()
            self._held.update(methods)

    def release(self) -> None:
        with self._lock:
            self._held.clear()
            self._released.set()

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def clear(self) -> None:
        """Forget the calls recorded so far; failures queued with fail_next stay queued."""
        with self._lock:
            self.calls.clear()

    def unused_failures(self) -> dict[str, list[Failure]]:
        """The failures queued with fail_next that no call has been answered with yet, per
        method: a test that queues more than it uses describes calls that never happened."""
        with self._lock:
            return {method: list(queue) for method, queue in self._failures.items() if queue}

    def reset(self) -> None:
        """Back to what a freshly started stand-in knows: no calls, no queued failures, ts
        and view ids counting from 1 again. (One server serves a whole test run: starting
        and stopping one per test costs 0.5 s, the shutdown's poll interval.)"""
        with self._lock:
            self.calls.clear()
            self._failures.clear()
            self._held.clear()
            self._released.set()
            self._ts = itertools.count(1)
            self._views = itertools.count(1)
        self._init_history()

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Calls to ``method`` once at least ``count`` arrived (the work after an
        acknowledgement runs late)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls_to(method)
            if len(calls) >= count:
                return calls
            time.sleep(0.01)
        raise AssertionError(
            f"expected {count} call(s) to {method}, got {len(self.calls_to(method))}: "
            f"{[c.method for c in self.calls]}"
        )

    # -- answering ------------------------------------------------------------

    def _handle(
        self, path: str, headers: dict[str, str], raw: bytes, arrived: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parsed = urlparse(path)
        content_type = headers.get("Content-Type", headers.get("content-type", ""))
        if "json" in content_type:
            body = json.loads(raw or b"{}")
        else:
            body = _decode_form(raw)
        if parsed.query:  # GET methods (conversations.history) send their arguments here
            body = {**_decode_form(parsed.query.encode("utf-8")), **body}
        if parsed.path.startswith("/response/"):
            method = "response_url"
        else:
            method = parsed.path.rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append(
                Call(method=method, path=parsed.path, body=body, headers=headers, at=arrived)
            )
            queue = self._failures.get(method)
            failure = queue.pop(0) if queue else None
            call = self.calls[-1]
            held = method in self._held
        if held:
            self._released.wait(30)
        if failure is not None:
            if failure.accepted:
                self._answer(method, body)
            time.sleep(self._latency_of(method))
            return failure.status, failure.body or {"ok": False, "error": "fatal_error"}, failure.headers
        answer = self._answer(method, body)
        if self._after_arrival(call):
            return DROPPED, {}, {}
        return 200, answer, {}

    def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "response_url":
            return {"ok": True}
        if method in ("chat.postMessage", "chat.update"):
            channel = body.get("channel", "C000")
            ts = body.get("ts") or f"{int(time.time())}.{next(self._ts):06d}"
            if method == "chat.postMessage":
                self._keep(channel, ts, body)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text")}}
        if method == "chat.getPermalink":
            channel, ts = str(body.get("channel", "")), str(body.get("message_ts", ""))
            return {"ok": True, "channel": channel,
                    "permalink": f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}
        if method in ("views.open", "views.update", "views.push", "views.publish"):
            view = dict(body.get("view") or {})
            view.setdefault("id", f"V{next(self._views):08d}")
            view.setdefault("hash", "h")
            return {"ok": True, "view": view}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(body.get("users", "U"))[:10]}}
        if method == "conversations.history":
            return self._history(body)
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"}
        return {"ok": True}

    # -- conversation history (alerts exactly once) ---------------------------
    #
    # Every message Slack accepted is kept under its conversation (a post to a user id
    # lands in the DM ``conversations.open`` names) with its metadata, the moment it
    # arrives: a client that dies or stops waiting before the answer still posted it.

    def _init_history(self) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = {}
        # method ("*" for all) -> seconds every answer waits: set with ``slow_down``
        self._latency: dict[str, float] = {}
        self._delays: dict[str, list[float]] = {}  # method -> the next answers' delays
        self._drops: dict[str, int] = {}
        # Called in the server's thread: once a call arrived and was accepted (before any
        # delay), and once its answer was written (or the caller had gone).
        self.on_arrival: Callable[[Call], None] | None = None
        self.on_answered: Callable[[str], None] | None = None

    @staticmethod
    def conversation_of(channel: str) -> str:
        """Where a post to ``channel`` lands: a user id means the bot's DM with them, the
        id ``conversations.open`` answers for that user."""
        return "D" + channel[:10] if channel[:1] in ("U", "W") else channel

    def delay_next(self, method: str, *seconds: float) -> None:
        """The next calls to ``method`` are answered this late (after being accepted)."""
        with self._lock:
            self._delays.setdefault(method, []).extend(seconds)

    def drop_next(self, method: str, times: int = 1) -> None:
        """The next calls to ``method`` are accepted, then the connection is closed
        without an answer (a proxy or load balancer cutting it)."""
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + times

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages kept (of one conversation, or all), oldest first."""
        with self._lock:
            if channel is not None:
                return list(self.messages.get(self.conversation_of(channel), []))
            return [m for kept in self.messages.values() for m in kept]

    def _keep(self, channel: str, ts: str, body: dict[str, Any]) -> None:
        message = {"type": "message", "ts": ts, "text": body.get("text"), "bot_id": "BBOT",
                   "channel": channel, "metadata": body.get("metadata")}
        if body.get("blocks"):
            message["blocks"] = body["blocks"]
        with self._lock:
            self.messages.setdefault(self.conversation_of(channel), []).append(message)

    def _after_arrival(self, call: Call) -> bool:
        """Hooks and delays of an accepted call; True when it is to go unanswered."""
        if self.on_arrival is not None:
            self.on_arrival(call)
        with self._lock:
            queue = self._delays.get(call.method)
            delay = queue.pop(0) if queue else self._latency_of(call.method)
            drop = self._drops.get(call.method, 0) > 0
            if drop:
                self._drops[call.method] -= 1
        if delay:
            time.sleep(delay)
        return drop

    def _latency_of(self, method: str) -> float:
        return self._latency.get(method, self._latency.get("*", 0.0))

    def _answered(self, path: str) -> None:
        if self.on_answered is not None:
            self.on_answered(urlparse(path).path.rsplit("/", 1)[-1])

    def _history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        if channel[:1] in ("U", "W"):  # a user id is no conversation
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(body.get("oldest") or 0)
        with_metadata = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        with self._lock:
            kept = [m for m in self.messages.get(channel, []) if float(m["ts"]) > oldest]
        kept.reverse()  # newest first, as Slack answers
        start = int(str(body.get("cursor") or "0").removeprefix("next:"))
        limit = min(int(body.get("limit") or 100), 999)
        page = kept[start : start + limit]
        messages = [
            {k: v for k, v in m.items()
             if k != "channel" and (k != "metadata" or (with_metadata and v))}
            for m in page
        ]
        more = start + limit < len(kept)
        return {"ok": True, "messages": messages, "has_more": more,
                "response_metadata": {"next_cursor": f"next:{start + limit}" if more else ""}}


# -- what a modal's inputs hold, as Slack keeps it ----------------------------------------

_INITIAL_STATE = {  # element type -> (its initial key, the state key Slack sends)
    "plain_text_input": ("initial_value", "value"),
    "static_select": ("initial_option", "selected_option"),
    "radio_buttons": ("initial_option", "selected_option"),
    "datepicker": ("initial_date", "selected_date"),
    "conversations_select": ("initial_conversation", "selected_conversation"),
    "checkboxes": ("initial_options", "selected_options"),
}


def _base(block_id: str) -> str:
    return block_id.split(":", 1)[0]


def modal_state(view: dict[str, Any], *, previous: dict[str, Any] | None = None,
                typed: dict[str, Any] | None = None) -> dict[str, Any]:
    """``view.state.values`` as Slack sends them for ``view`` as drawn (by ``views.open``,
    ``views.update`` or ``response_action: update``). Slack keeps what an input held in
    the ``previous`` view while its block_id and action_id stay the same, whatever the new
    view's initial value says; any other input starts at its initial value. ``typed``:
    what the user then changes, ``{block id (without a ":…" suffix): {action id: state}}``
    (``form_values``' shape)."""
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        action_id, kind = element["action_id"], element["type"]
        kept = (previous or {}).get(block_id, {}).get(action_id)
        if kept is not None:
            state = dict(kept)
        else:
            initial, key = _INITIAL_STATE[kind]
            default: Any = [] if kind == "checkboxes" else None
            state = {"type": kind, key: element.get(initial, default)}
        change = (typed or {}).get(_base(block_id), {}).get(action_id)
        if change is not None:
            state = dict(change)
        values[block_id] = {action_id: state}
    return values
