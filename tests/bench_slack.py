"""Slack latency benchmark: `tokenbot serve` against 100,000 tokens, SQLite then PostgreSQL.

Run (from the checkout):

    .venv/bin/python tests/bench_slack.py                      # full: 100,000 tokens, 200 requests
    .venv/bin/python tests/bench_slack.py --tokens 2000 --requests 30 --backend sqlite   # quick

For each backend the script seeds the database (bulk insert, real generated, encrypted
secrets), starts `tokenbot serve` as a subprocess (uvicorn, the production stack) with the
Slack stand-in of tests/support as SLACK_API_URL, and measures, one request at a time, the
time from sending a signed request to the stand-in receiving what the user sees:

- `/tokens`: the table posted to the command's response_url;
- Disable click (then Enable, alternately): the redrawn table (replace_original) at the
  click's response_url;
- edit submission ("Update Access Token" with a new label; the modal is first opened with
  a real Edit click, not timed): the redrawn table at the response_url the modal came from.

Budget (docs/BENCHMARKS.md): p99 <= 50 ms and median <= 25 ms each. With --only both the
same three requests also go to the floor, for comparison only: a bare Bolt app on the same
server stack (bot.http.server + uvicorn, a separate process started by this script with
--serve-floor) whose listeners ack and make the same Slack call with a fixed one-block
payload, touching no database. Prints median and p99 (and the floor's, with its ratio).
Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bot import crypto  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.db import Database, make_engine, upgrade  # noqa: E402
from bot.slack.ids import ActionId, BlockId, CallbackId  # noqa: E402
from bot.models import TokenStatus  # noqa: E402
from tests.support.databases import analyze, insert_tokens, throwaway_postgresql  # noqa: E402
from tests.support.signing import form_body, interactive_body, signed_headers  # noqa: E402
from tests.support.slack_standin import Call, SlackStandIn  # noqa: E402
from tests.support.policy import NO_POLICY

TEAM = "T1"
USER = "UBENCH"
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench"
FORM = "application/x-www-form-urlencoded"
TARGET_P99_MS = 50.0
TARGET_MEDIAN_MS = 25.0
OWNERS = [f"U{n:05d}" for n in range(200)]
WORDS = ["deploy", "ci", "backup", "metrics", "grafana", "billing", "search", "etl", "sync"]
FLOOR_BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}]


# -- the floor: a bare Bolt app on the same server stack ----------------------------------


def floor_app(settings: Any) -> Any:
    from slack_bolt import App
    from slack_sdk.webhook import WebhookClient

    from bot.slack.client import make_web_client

    app = App(
        client=make_web_client(settings),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        token_verification_enabled=False,
        request_verification_enabled=False,  # the server checks signatures first
    )

    @app.command("/tokens")
    def _command(ack: Callable[..., None], respond: Callable[..., None]) -> None:
        ack()
        respond(blocks=FLOOR_BLOCKS, text="ok", response_type="ephemeral")

    @app.action(ActionId.DISABLE)
    @app.action(ActionId.ENABLE)
    def _click(ack: Callable[..., None], respond: Callable[..., None]) -> None:
        ack()
        respond(blocks=FLOOR_BLOCKS, text="ok", replace_original=True)

    @app.view(CallbackId.EDIT)
    def _submit(ack: Callable[..., None], body: dict[str, Any]) -> None:
        values = body["view"]["state"]["values"]
        if not values[BlockId.LABEL][ActionId.LABEL_INPUT]["value"].strip():
            ack(response_action="errors", errors={BlockId.LABEL: "A label is required."})
            return
        ack()
        url = json.loads(body["view"]["private_metadata"])["u"]
        WebhookClient(url).send(blocks=FLOOR_BLOCKS, text="ok", replace_original=True)

    return app


def serve_floor() -> int:
    import logging

    from bot.http.server import serve

    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    database = Database(settings)
    try:
        serve(settings, database=database, bolt_app=floor_app(settings))
    finally:
        database.dispose()
    return 0


def floor_modal(response_url: str) -> dict[str, Any]:
    from bot.models import Token
    from bot.slack.views.modals import FormMode, token_form
    from bot.slack.state import ModalMetadata, Origin, OriginKind, TableState

    now = dt.datetime.now(dt.timezone.utc)
    token = Token(
        public_id="tok_b00000099999", label="bench edit 1 abcdef", scope="read",
        secret_masked="tkb_…wxyz", created_by=USER, owner=USER, created_at=now,
        expires_at=now + dt.timedelta(days=90), alert_channel=None, version=1,
    )
    origin = Origin(kind=OriginKind.MESSAGE, state=TableState(), response_url=response_url)
    metadata = ModalMetadata(origin=origin, public_id=token.public_id, version=1)
    view = token_form(mode=FormMode.EDIT, scopes=["read", "write", "admin"],
                      metadata=metadata, token=token, policy=NO_POLICY)
    return view.to_dict()


# -- seeding -----------------------------------------------------------------------------


def seed(database: Database, count: int, now: dt.datetime) -> float:
    """``count`` tokens of team T1 with real encrypted secrets, bulk-inserted; the newest
    (the first row of the table) belongs to the benchmark user. Returns rows per second."""
    rng = random.Random(11)
    started = time.perf_counter()

    def rows() -> Iterator[dict[str, object]]:
        for n in range(count):
            secret = crypto.generate_secret()
            label = f"{rng.choice(WORDS)}-{n:06d} {rng.choice(WORDS)}"
            created = now - dt.timedelta(seconds=count - n)
            newest = n >= count - 5
            yield dict(
                public_id=f"tok_b{n:011d}",
                team_id=TEAM,
                label=label,
                label_search=label.lower(),
                scope=rng.choice(["read", "write", "admin"]),
                status=TokenStatus.DISABLED if n % 17 == 0 and not newest else TokenStatus.ACTIVE,
                secret_digest=crypto.digest(secret),
                secret_masked=crypto.mask(secret),
                secret_encrypted=database.box.encrypt(secret),
                created_at=created,
                created_by=(owner := USER if newest else rng.choice(OWNERS)),
                owner=owner,
                updated_at=created,
                expires_at=created + dt.timedelta(days=rng.choice([30, 90, 365])) if n % 3 else None,
                version=1,
            )

    insert_tokens(database.engine, rows())
    rate = count / (time.perf_counter() - started)
    analyze(database.engine)
    return rate


# -- talking to the server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One keep-alive connection, as Slack's side would hold."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: str) -> tuple[int, str]:
        headers = signed_headers(SIGNING_SECRET, body, content_type=FORM)
        try:
            self.connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
            response = self.connection.getresponse()
        return response.status, response.read().decode()

    def get(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def close(self) -> None:
        self.connection.close()


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int, log_path: Path) -> Iterator[Client]:
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
        client = Client(port)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
                try:
                    if client.get("/readyz") == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become ready")
                time.sleep(0.1)
            yield client
        finally:
            client.close()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def await_call(
    standin: SlackStandIn, path: str, accept: Callable[[Call], bool], timeout: float = 10.0
) -> Call:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with standin._lock:
            for call in standin.calls:
                if call.path == path and accept(call):
                    return call
        time.sleep(0.0005)
    raise TimeoutError(f"no call to {path} within {timeout}s")


def replaces(call: Call) -> bool:
    return bool(call.body.get("replace_original")) and bool(call.body.get("blocks"))


def has_blocks(call: Call) -> bool:
    return bool(call.body.get("blocks"))


# -- Slack-shaped payloads ------------------------------------------------------------------


def command_body(response_url: str, text_: str = "") -> str:
    return form_body(
        {
            "token": "legacy",
            "team_id": TEAM,
            "team_domain": "bench",
            "channel_id": "C1",
            "channel_name": "general",
            "user_id": USER,
            "user_name": "bench",
            "command": "/tokens",
            "text": text_,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{time.time():.6f}.trigger",
        }
    )


def click_body(response_url: str, action_id: str, value: str, block_id: str) -> str:
    return interactive_body(
        {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "bench"},
            "user": {"id": USER, "username": "bench", "name": "bench", "team_id": TEAM},
            "api_app_id": "A1",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": "1700000000.000100",
                "channel_id": "C1",
                "is_ephemeral": True,
            },
            "trigger_id": f"{time.time():.6f}.trigger",
            "channel": {"id": "C1", "name": "general"},
            "response_url": response_url,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": value,
                    "text": {"type": "plain_text", "text": "x"},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
    )


def state_values(view: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What Slack sends back for a modal the user submits unchanged, but for ``overrides``
    (block id → value of its text input)."""
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        kind = element["type"]
        if kind == "plain_text_input":
            state: dict[str, Any] = {"value": overrides.get(block["block_id"], element.get("initial_value"))}
        elif kind == "static_select":
            state = {"selected_option": element.get("initial_option")}
        elif kind == "datepicker":
            state = {"selected_date": element.get("initial_date")}
        elif kind == "checkboxes":
            state = {"selected_options": element.get("initial_options", [])}
        elif kind == "conversations_select":
            state = {"selected_conversation": element.get("initial_conversation")}
        else:
            state = {}
        values[block["block_id"]] = {element["action_id"]: {"type": kind, **state}}
    return values


def submission_body(view: dict[str, Any], overrides: dict[str, Any]) -> str:
    submitted = dict(view)
    submitted.setdefault("id", "V0001")
    submitted["team_id"] = TEAM
    submitted["state"] = {"values": state_values(view, overrides)}
    return interactive_body(
        {
            "type": "view_submission",
            "team": {"id": TEAM, "domain": "bench"},
            "user": {"id": USER, "username": "bench", "name": "bench", "team_id": TEAM},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": f"{time.time():.6f}.trigger",
            "view": submitted,
            "response_urls": [],
        }
    )


def find_button(
    blocks: list[dict[str, Any]], action_id: str, public_id: str | None
) -> tuple[str, str]:
    """(value, block_id) of the row button ``action_id`` of ``public_id`` (any row if None)."""
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") != action_id:
                continue
            value = element.get("value", "")
            if public_id is None or public_id in value:
                return value, block.get("block_id", "")
    raise LookupError(f"no {action_id} button for {public_id} in the table")


# -- the measurements -------------------------------------------------------------------


@dataclass
class Series:
    name: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


class Run:
    def __init__(self, client: Client, standin: SlackStandIn, product: bool, tag: str) -> None:
        self.client = client
        self.standin = standin
        self.product = product
        self.tag = tag
        self.n = 0
        self.table: list[dict[str, Any]] = []

    def _url(self, kind: str) -> tuple[str, str]:
        self.n += 1
        name = f"{self.tag}-{kind}-{self.n}"
        return self.standin.response_url(name), f"/response/{name}"

    def _send(self, body: str, path: str, accept: Callable[[Call], bool]) -> tuple[float, Call, str]:
        self.standin.clear()
        started = time.monotonic()
        status, answer = self.client.post(body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {answer[:300]}")
        call = await_call(self.standin, path, accept)
        return (call.at - started) * 1000.0, call, answer

    def command(self) -> float:
        url, path = self._url("cmd")
        elapsed, call, _ = self._send(command_body(url), path, has_blocks)
        self.table = call.body["blocks"]
        return elapsed

    def toggle(self, public_id: str | None) -> float:
        url, path = self._url("click")
        if self.product:
            try:
                value, block_id = find_button(self.table, ActionId.DISABLE, public_id)
                action = ActionId.DISABLE
            except LookupError:
                value, block_id = find_button(self.table, ActionId.ENABLE, public_id)
                action = ActionId.ENABLE
        else:
            action, value, block_id = (ActionId.DISABLE, "x", "b")
        elapsed, call, _ = self._send(click_body(url, action, value, block_id), path, replaces)
        if self.product:
            self.table = call.body["blocks"]
            # The redraw must show the change (else we would be timing an error path).
            opposite = ActionId.ENABLE if action == ActionId.DISABLE else ActionId.DISABLE
            find_button(self.table, opposite, public_id)
        return elapsed

    def open_edit(self, public_id: str | None) -> tuple[dict[str, Any], str]:
        """The "Edit Access Token" modal as Slack would hold it (opened by a real click on
        the product; a minimal one for the floor), and the path its redraw goes to."""
        url, path = self._url("edit")
        if not self.product:
            # The same modal as the product's (its builder, a token like the benchmark's),
            # so both servers parse a submission of the same size; only the floor's
            # listener is bare.
            view = floor_modal(url)
            return view, path
        value, block_id = find_button(self.table, ActionId.EDIT, public_id)
        self.standin.clear()
        status, answer = self.client.post(click_body(url, ActionId.EDIT, value, block_id))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {answer[:300]}")
        return await_call(self.standin, "/api/views.open", lambda c: True).body["view"], path

    def edit(self, public_id: str | None) -> float:
        view, path = self.open_edit(public_id)
        label = f"bench edit {self.n} {uuid.uuid4().hex[:6]}"
        body = submission_body(view, {BlockId.LABEL: label})
        elapsed, call, answer = self._send(body, path, replaces)
        if answer.strip() and '"errors"' in answer:
            raise RuntimeError(f"edit refused: {answer[:300]}")
        if self.product:
            self.table = call.body["blocks"]
            if label not in json.dumps(self.table):
                raise RuntimeError("the redrawn table does not show the edited label")
        return elapsed

    def invalid_edit(self, view: dict[str, Any]) -> float:
        """A blank label: the user sees the error on the field, from the HTTP response."""
        body = submission_body(view, {BlockId.LABEL: "   "})
        started = time.monotonic()
        status, answer = self.client.post(body)
        elapsed = (time.monotonic() - started) * 1000.0
        if status != 200 or '"response_action": "errors"' not in answer.replace('":"', '": "'):
            raise RuntimeError(f"expected response_action errors, got HTTP {status}: {answer[:300]}")
        return elapsed


def measure(run: Run, requests: int, warmup: int, target: str | None) -> list[Series]:
    run.command()  # the table the clicks start from
    for _ in range(warmup):
        run.command()
        run.toggle(target)  # disable
        run.toggle(target)  # enable again: a disabled token offers no Edit
        run.edit(target)
    commands, toggles, edits = [], [], []
    for _ in range(requests):
        commands.append(run.command())
    run.command()
    for _ in range(requests):
        toggles.append(run.toggle(target))
    # an edit needs an active token: enable it if the last toggle disabled it
    if run.product:
        try:
            find_button(run.table, ActionId.ENABLE, target)
            run.toggle(target)
        except LookupError:
            pass
    for _ in range(requests):
        edits.append(run.edit(target))
    view, _ = run.open_edit(target)
    invalid = [run.invalid_edit(view) for _ in range(requests)]
    return [
        Series("/tokens (table)", commands),
        Series("Disable/Enable (redraw)", toggles),
        Series("edit submission (redraw)", edits),
        Series("invalid edit (errors)", invalid),
    ]


def bench_backend(
    label: str, url: str, args: argparse.Namespace, standin: SlackStandIn, workdir: Path
) -> list[tuple[str, Series, Series | None]]:
    key = crypto.generate_key()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = load_settings(_env_file=None, DATABASE_URL=url, TOKENBOT_SECRET_KEYS=key)
    database = Database(settings, auto_upgrade=False)
    try:
        rate = seed(database, args.tokens, dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    finally:
        database.dispose()
    print(f"{label}: seeded {args.tokens:,} tokens at {rate:,.0f} rows/s", flush=True)
    target = f"tok_b{args.tokens - 1:011d}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TOKENBOT_"))}
    port = free_port()
    env.update(
        DATABASE_URL=url,
        TOKENBOT_SECRET_KEYS=key,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url,
        TOKENBOT_SCHEDULER="off",
        HOST="127.0.0.1",
        PORT=str(port),
    )
    python = sys.executable
    product: list[Series] = []
    if args.only in ("both", "product"):
        log_path = workdir / f"serve-{label}.log"
        with server([python, "-m", "bot", "serve"], env, port, log_path) as client:
            run = Run(client, standin, True, f"{label}-p")
            product = measure(run, args.requests, args.warmup, target)
    floor: list[Series] = []
    if args.only in ("both", "floor"):
        port = free_port()
        env["PORT"] = str(port)
        floor_cmd = [python, str(Path(__file__).resolve()), "--serve-floor"]
        with server(floor_cmd, env, port, workdir / f"floor-{label}.log") as client:
            run = Run(client, standin, False, f"{label}-f")
            floor = measure(run, args.requests, args.warmup, None)
    if not product:  # --only floor: its figures in the product's columns
        return [(f.name, f, None) for f in floor]
    return [(p.name, p, f) for p, f in zip(product, floor or [None] * len(product))]


def report(label: str, rows: list[tuple[str, Series, Series | None]]) -> bool:
    ok = True
    print(f"\n{label}")
    print(f"  {'request':<26} {'median':>8} {'p99':>8}   floor: {'median':>8} {'p99':>8} {'ratio':>6}")
    for name, product, floor in rows:
        good = product.p99 <= TARGET_P99_MS and product.median <= TARGET_MEDIAN_MS
        ok &= good
        line = f"  {name:<26} {product.median:7.1f}ms {product.p99:7.1f}ms"
        if floor is not None:
            ratio = product.median / floor.median
            line += f"          {floor.median:7.1f}ms {floor.p99:7.1f}ms {ratio:5.2f}x"
        print(f"{line}  {'ok' if good else 'OVER BUDGET'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description="Slack latency benchmark (see module docstring)")
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="measured requests per kind")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured rounds first")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TOKENBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="server to create a throw-away benchmark database on",
    )
    parser.add_argument(
        "--only", choices=["both", "product", "floor"], default="product",
        help="the product (default), the floor, or both (then the floor's figures too)",
    )
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        return serve_floor()
    print(
        f"Slack latency: {args.tokens:,} tokens, {args.requests} requests per kind, "
        f"budget p99 <= {TARGET_P99_MS:.0f} ms and median <= {TARGET_MEDIAN_MS:.0f} ms",
        flush=True,
    )
    standin = SlackStandIn().start()
    ok = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if args.backend in ("sqlite", "both"):
                url = f"sqlite:///{workdir / 'bench.db'}"
                ok &= report("SQLite", bench_backend("sqlite", url, args, standin, workdir))
            if args.backend in ("postgresql", "both"):
                with throwaway_postgresql(args.postgres_url, "tokenbot_bench") as url:
                    ok &= report("PostgreSQL", bench_backend("postgresql", url, args, standin, workdir))
    finally:
        standin.stop()
    print("\nall targets met" if ok else "\nsome targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
