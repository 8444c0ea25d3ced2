"""Introspection benchmark: ``POST /introspect`` against ``GET /healthz`` on the same server.

Run (the full figures in docs/BENCHMARKS.md)::

    .venv/bin/python tests/bench_introspection.py
    .venv/bin/python tests/bench_introspection.py --tokens 2000 --duration 3 --backend sqlite

For each backend (SQLite file, PostgreSQL throw-away database on the local server or
``TOKENBOT_TEST_POSTGRES_URL``) it seeds ``--tokens`` tokens (100,000 by default) with
real secrets, starts the server as a subprocess (``tokenbot serve --no-access-log`` with
1, then 2 worker processes; ``--server minimal`` serves only the introspection handler and
``/healthz`` under plain uvicorn, ``--server unrecorded`` the same handler recording
nothing: the two side by side show what recording costs), and drives it from a load
generator in another process: a small asyncio HTTP/1.1 client with ``--connections``
keep-alive connections (50), each sending its next request as soon as the previous answer
arrived. Per run it reports throughput (requests/s) and latency (median, p99, ms) of
``GET /healthz`` (the ceiling of the stack: routing and HTTP only) and of ``POST /introspect`` with an active token drawn
from ``--hot`` tokens (so last-used writes happen, once a minute per token), and the ratio.
``--mix half-dead`` (or ``both``, the default) also measures a load where every other
request presents a dead secret (half of them of disabled tokens, half tombstones of
rotated-out or deleted ones): answered ``{"active": false}`` and counted per token and
caller in memory, written every few seconds (``bot.http.usage_writer``). The caller is a
named credential (``bench-caller=…``), as ``last_used_by`` records it. ``--client wrk``
sends the same requests through wrk (installed separately), whose latency figures are the
reference: this client, being Python, pauses itself and under-reports the tail.

Not collected by pytest (the file name does not start with ``test_``). The machine is
shared: figures vary from run to run; compare the ratio within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
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
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
INTROSPECTION_SECRET = "bench-introspection-secret"
TEAM = "TBENCH"
PG_ADMIN_URL = os.environ.get(
    "TOKENBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# -- load generator (runs in its own process) ----------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection: send, wait for the whole answer, record, repeat."""

    def __init__(self, gen: _LoadGen) -> None:
        self.gen = gen
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if self.gen.stopping:
            assert self.transport is not None
            self.transport.close()
            return
        self.started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.gen.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.gen.record(time.perf_counter() - self.started, status, body)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _LoadGen:
    def __init__(self, requests: list[bytes], warmup: float) -> None:
        self.requests = requests
        self.index = 0
        self.stopping = False
        self.measuring = False
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.bodies: dict[str, int] = {}
        self.warmup = warmup

    def next_request(self) -> bytes:
        self.index = (self.index + 1) % len(self.requests)
        return self.requests[self.index]

    def record(self, seconds: float, status: int, body: bytes) -> None:
        if not self.measuring:
            return
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != 200:
            return
        key = "active" if body.startswith(b'{"active":true') else body.decode()[:40]
        self.bodies[key] = self.bodies.get(key, 0) + 1


async def _drive(host: str, port: int, requests: list[bytes], connections: int,
                 duration: float, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = _LoadGen(requests, warmup)
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: _Conn(gen), host, port)
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    gen.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    gen.measuring = False
    elapsed = time.perf_counter() - started
    gen.stopping = True
    await asyncio.wait([p.closed for p in protocols], timeout=10)
    latencies = sorted(gen.latencies)
    count = len(latencies)
    return {
        "requests": count,
        "rps": count / elapsed,
        "median_ms": statistics.median(latencies) * 1000 if count else None,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000 if count else None,
        "statuses": gen.statuses,
        "bodies": gen.bodies,
    }


def loadgen_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_introspection.py loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests-file", required=True, help="JSON list of base64 requests")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    args = parser.parse_args(argv)
    requests = [base64.b64decode(r) for r in json.loads(Path(args.requests_file).read_text())]
    result = asyncio.run(
        _drive(args.host, args.port, requests, args.connections, args.duration, args.warmup)
    )
    print(json.dumps(result))
    return 0


def run_load(port: int, requests: list[bytes], *, connections: int, duration: float,
             warmup: float, workdir: Path) -> dict[str, Any]:
    path = workdir / f"requests-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps([base64.b64encode(r).decode() for r in requests]))
    out = subprocess.run(
        [sys.executable, __file__, "loadgen", "--port", str(port), "--requests-file",
         str(path), "--connections", str(connections), "--duration", str(duration),
         "--warmup", str(warmup)],
        check=True, capture_output=True, text=True, timeout=duration + warmup + 60,
    )
    return json.loads(out.stdout)


def _lua_string(raw: bytes) -> str:
    text = raw.decode("ascii")
    for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\r", "\\r"), ("\n", "\\n")):
        text = text.replace(char, escaped)
    return f'"{text}"'


#: wrk's script: send the prepared requests in turn (each thread from its own place) and,
#: at the end, print throughput and latency percentiles as one JSON line.
_WRK_SCRIPT = """
local requests = {%s}
i = 0
function setup(thread) thread:set("i", math.random(#requests)) end
function request()
  i = i %% #requests + 1
  return requests[i]
end
function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "seconds": %%.3f, "non_2xx": %%d, ' ..
    '"socket_errors": %%d, "median_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def run_wrk(port: int, requests: list[bytes], *, connections: int, duration: float,
            warmup: float, workdir: Path) -> dict[str, Any]:
    """The same load through wrk (2 threads): its own clock and latency histogram, so a
    load generator's own pauses (this script's is Python) cannot hide the server's."""
    script = workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    script.write_text(_WRK_SCRIPT % ",\n".join(_lua_string(r) for r in requests))
    url = f"http://127.0.0.1:{port}/"

    def wrk(seconds: float) -> dict[str, Any]:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout",
             "10s", "-s", str(script), url],
            check=True, capture_output=True, text=True, timeout=seconds + 60,
        )
        (line,) = [x for x in out.stdout.splitlines() if x.startswith("WRK ")]
        return json.loads(line[4:])

    if warmup > 0:
        wrk(warmup)
    found = wrk(duration)
    count = found["requests"]
    failed = found["non_2xx"] + found["socket_errors"]
    return {
        "requests": count,
        "rps": count / found["seconds"],
        "median_ms": found["median_ms"],
        "p99_ms": found["p99_ms"],
        "max_ms": found["max_ms"],
        # wrk does not read the bodies: the asyncio client checks those.
        "statuses": {"2xx": count - failed, **({"failed": failed} if failed else {})},
        "bodies": {},
    }


def healthz_request() -> bytes:
    return b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


def introspect_request(secret: str) -> bytes:
    body = f"token={secret}".encode()
    return (
        b"POST /introspect HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"authorization: Bearer " + INTROSPECTION_SECRET.encode() + b"\r\n"
        b"content-type: application/x-www-form-urlencoded\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


# -- databases and seeding -------------------------------------------------------------------


@contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'bench.db'}"


@contextmanager
def postgresql_database() -> Iterator[str]:
    from tests.support.databases import throwaway_postgresql

    with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_bench") as url:
        yield url


def seed(url: str, key: str, count: int, hot: int) -> tuple[list[str], list[str]]:
    """``count`` tokens with real secrets (1 in 17 disabled, 1 in 3 expiring later) and
    ``hot`` tombstones (rotated-out secrets); returns ``hot`` secrets of active tokens and
    ``hot`` dead secrets (half of disabled tokens, half tombstoned) for the loads."""
    from bot import crypto
    from bot.crypto import SecretBox
    from bot.db import make_engine, upgrade
    from bot.models import TokenStatus
    from tests.support.databases import analyze, insert_tokens

    engine = make_engine(url)
    upgrade(engine)
    box = SecretBox([key])
    rng = random.Random(5)
    now = dt.datetime.now(dt.timezone.utc)
    active: list[str] = []
    disabled_secrets: list[str] = []
    started = time.perf_counter()

    def rows() -> Iterator[dict[str, Any]]:
        for n in range(count):
            secret = crypto.generate_secret()
            disabled = n % 17 == 0
            created = now - dt.timedelta(seconds=count - n)
            if not disabled:
                active.append(secret)
            else:
                disabled_secrets.append(secret)
            yield dict(
                public_id=f"tok_b{n:011d}", team_id=TEAM, label=f"bench {n}",
                label_search=f"bench {n}", scope=rng.choice(["read", "write", "admin"]),
                status=TokenStatus.DISABLED if disabled else TokenStatus.ACTIVE,
                secret_digest=crypto.digest(secret), secret_masked=crypto.mask(secret),
                secret_encrypted=box.encrypt(secret), created_at=created,
                created_by=f"U{n % 200:05d}", owner=f"U{n % 200:05d}", updated_at=created,
                expires_at=now + dt.timedelta(days=365) if n % 3 == 0 else None, version=1,
            )

    insert_tokens(engine, rows())
    from bot.models import RetiredReason, RetiredSecret

    buried = [crypto.generate_secret() for _ in range(hot)]
    with engine.begin() as connection:
        connection.execute(RetiredSecret.__table__.insert(), [
            dict(secret_digest=crypto.digest(secret), team_id=TEAM,
                 token_public_id=f"tok_b{n:011d}", label=f"bench {n}", owner="U00001",
                 secret_masked=crypto.mask(secret), reason=RetiredReason.ROTATED,
                 retired_at=now) for n, secret in enumerate(buried)])
    analyze(engine)
    engine.dispose()
    print(f"  seeded {count} tokens and {hot} tombstones in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    half = hot // 2
    dead = rng.sample(disabled_secrets, min(half, len(disabled_secrets))) + buried[:hot - half]
    rng.shuffle(dead)
    return rng.sample(active, min(hot, len(active))), dead


# -- the server under test ---------------------------------------------------------------------


#: ``--server floor``: the answer of a working token, sent without looking anything up.
FLOOR_ANSWER = (b'{"active":true,"scope":"read","exp":1798761600,"iat":1764633600,'
                b'"token_type":"access_token","sub":"U0BENCH","client_id":"tok_bench00000",'
                b'"team_id":"TBENCH"}')


class _NoRecording:
    """``--server unrecorded``: the handler's writer, minus the writes. Nothing is noted:
    no last use, no caller, no dead-secret count (the loads rotate nothing, so no
    retirement is ever asked for)."""

    def note_use(self, *args: Any) -> None:
        pass

    def note_dead(self, *args: Any) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def minimal_app() -> Any:
    """``--server minimal``: /healthz and the introspection handler under plain uvicorn
    (a uvicorn factory, so it also runs with several workers). ``--server unrecorded``:
    the same handler, recording nothing (what recording costs is the difference).
    ``--server floor``: the same, but /introspect only reads the body and sends a fixed
    answer of the same size and headers (no authentication, no lookup): what HTTP alone
    costs."""
    from bot.config import load_settings
    from bot.db import Database
    from bot.http.common import MAX_BODY_BYTES, read_body, send_text
    from bot.http.introspection import Answer, IntrospectionHandler

    if os.environ.get("BENCH_FLOOR") == "1":
        fixed = Answer(200, FLOOR_ANSWER)

        async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            elif scope["path"] == "/introspect":
                await read_body(receive, MAX_BODY_BYTES)
                await fixed.respond(send)
            else:
                await send_text(send, 200, "ok")

        return floor

    settings = load_settings()
    database = Database(settings)
    handler = IntrospectionHandler(
        settings=settings, database=database, lookup=os.environ.get("BENCH_LOOKUP") or None
    )
    if os.environ.get("BENCH_RECORDING") == "0":
        handler.writes.close()
        handler.writes = _NoRecording()  # type: ignore[assignment]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            handler.close()
            batcher = handler.batcher
            print(f"introspection stats (pid {os.getpid()}, lookup in {handler.lookup_mode}): "
                  f"{batcher.lookups} lookups in {batcher.batches} reads", file=sys.stderr,
                  flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/introspect":
            await handler(scope, receive, send)
            return
        await send_text(send, 200, "ok")

    return app


def serve_minimal_main(argv: list[str]) -> int:
    """uvicorn with the listening socket bound as IPPROTO_TCP: with ``--workers N`` uvicorn
    binds it with proto 0 and asyncio then leaves Nagle on for accepted connections
    (uvicorn issue #3149: +40 ms per keep-alive request on Linux)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    parser = argparse.ArgumentParser(prog="bench_introspection.py serve-minimal")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    config = uvicorn.Config("tests.bench_introspection:minimal_app", factory=True,
                            host="127.0.0.1", port=args.port, workers=args.workers,
                            access_log=False, log_level="warning")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.set_inheritable(True)
    if args.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(
    kind: str, url: str, key: str, workers: int, workdir: Path
) -> Iterator[tuple[int, Path]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TOKENBOT_SECRET_KEYS": key,
        "TOKENBOT_INTROSPECTION_SECRETS": f"bench-caller={INTROSPECTION_SECRET}",
        "TOKENBOT_SCHEDULER": "off",
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": "bench-signing-secret",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "PYTHONPATH": str(ROOT),
        "BENCH_FLOOR": "1" if kind == "floor" else "0",
        "BENCH_RECORDING": "0" if kind == "unrecorded" else "1",
    }
    if kind == "tokenbot":
        command = [str(Path(sys.executable).parent / "tokenbot"), "serve", "--host",
                   "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--no-access-log"]
    elif kind == "tokenbot-untuned":  # as before tune_runtime(): the figures to compare
        command = [sys.executable, "-c", "import gc, sys; gc.freeze = lambda: None; "
                   "sys.setswitchinterval = lambda _: None; "
                   "from bot.cli import main; sys.exit(main(sys.argv[1:]))", "serve",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--no-access-log"]
    else:
        command = [sys.executable, __file__, "serve-minimal", "--port", str(port),
                   "--workers", str(workers)]
    log_path = workdir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "server did not start:\n"
                        + (workdir / f"server-{port}.log").read_text(errors="replace")[-3000:]
                    ) from None
                time.sleep(0.2)
        yield port, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- orchestration -------------------------------------------------------------------------------


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds as one: throughput and latencies are the rounds' medians."""
    statuses: dict[str, int] = {}
    bodies: dict[str, int] = {}
    for run in runs:
        for key, value in run["statuses"].items():
            statuses[key] = statuses.get(key, 0) + value
        for key, value in run["bodies"].items():
            bodies[key] = bodies.get(key, 0) + value
    return {
        "requests": sum(run["requests"] for run in runs),
        "rps": statistics.median(run["rps"] for run in runs),
        "median_ms": statistics.median(run["median_ms"] for run in runs),
        "p99_ms": statistics.median(run["p99_ms"] for run in runs),
        "p99_worst_ms": max(run["p99_ms"] for run in runs),
        "statuses": statuses,
        "bodies": bodies,
    }


def _fmt(result: dict[str, Any]) -> str:
    return (f"{result['rps']:8.0f} req/s  median {result['median_ms']:6.2f} ms  "
            f"p99 {result['p99_ms']:6.2f} ms (worst round {result['p99_worst_ms']:6.2f})")


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    from bot.crypto import generate_key

    key = generate_key()
    rows = []
    database = sqlite_database(workdir) if backend == "sqlite" else postgresql_database()
    with database as url:
        print(f"{backend}:", flush=True)
        hot, dead = seed(url, key, args.tokens, args.hot)
        mixes = {"active": [introspect_request(secret) for secret in hot]}
        # every other request a dead secret
        mixes["half-dead"] = [introspect_request(secret) for pair in zip(hot, dead, strict=False)
                              for secret in pair]
        chosen = ["active", "half-dead"] if args.mix == "both" else [args.mix]
        clients = ["asyncio", "wrk"] if args.client == "both" else [args.client]
        for workers in args.workers:
            with server(args.server, url, key, workers, workdir) as (port, log_path):
                load = dict(connections=args.connections, duration=args.duration,
                            warmup=args.warmup, workdir=workdir)
                # Alternate them all, so drift in the machine's load hits each alike.
                ceilings: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
                results = {(c, mix): [] for c in clients for mix in chosen}
                for _ in range(args.rounds):
                    for client in clients:
                        drive = run_wrk if client == "wrk" else run_load
                        ceilings[client].append(drive(port, [healthz_request()], **load))
                        for mix in chosen:
                            results[client, mix].append(drive(port, mixes[mix], **load))
            for client in clients:
                rows.extend(_report(backend, workers, client, chosen, ceilings[client],
                                    results, args.server))
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("introspection stats"):
                    print(f"  {line}")
    return rows


def _report(backend: str, workers: int, client: str, chosen: list[str],
            ceilings: list[dict[str, Any]], results: dict[Any, list[dict[str, Any]]],
            kind: str) -> list[dict[str, Any]]:
    rows = []
    ceiling = _combine(ceilings)
    print(f"  {workers} worker(s)  {client:7}  /healthz     {_fmt(ceiling)}", flush=True)
    for mix in chosen:
        result = _combine(results[client, mix])
        ratio = result["rps"] / ceiling["rps"]
        print(f"  {workers} worker(s)  {client:7}  /introspect  {_fmt(result)}  "
              f"ratio {ratio:.0%}  ({mix})", flush=True)
        if client == "wrk":  # wrk counts statuses, it does not read bodies
            expected, statuses = set(), {"2xx"}
        else:
            expected = ({"active"} if mix == "active" or kind == "floor"
                        else {"active", '{"active":false}'})
            statuses = {"200"}
        if set(result["statuses"]) != statuses or set(result["bodies"]) != expected:
            print(f"  !! unexpected answers: {result['statuses']} {result['bodies']}")
        rows.append({"backend": backend, "workers": workers, "client": client, "mix": mix,
                     "healthz": ceiling, "introspect": result, "ratio": ratio,
                     "rounds": {"healthz": ceilings, "introspect": results[client, mix]}})
    return rows
def main(argv: list[str]) -> int:
    if argv[:1] == ["loadgen"]:
        return loadgen_main(argv[1:])
    if argv[:1] == ["serve-minimal"]:
        return serve_minimal_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--hot", type=int, default=1000,
                        help="distinct active tokens the load presents (default 1000)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating /healthz and /introspect measurements (default 3)")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")],
                        default=[1, 2], help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--server", choices=["tokenbot", "tokenbot-untuned", "minimal",
                                             "unrecorded", "floor"],
                        default="tokenbot",
                        help="tokenbot serve (default), tokenbot serve without "
                             "tune_runtime() (no gc.freeze(), Python's GIL switch "
                             "interval; 1 worker), the handler alone under uvicorn, "
                             "the handler recording nothing (no last use, no dead-secret "
                             "count), or a fixed answer instead of the handler (what HTTP "
                             "alone costs)")
    parser.add_argument("--lookup", choices=["loop", "thread"],
                        help="with --server minimal or unrecorded: where the read runs "
                             "(default: loop on SQLite, thread on PostgreSQL)")
    parser.add_argument("--mix", choices=["active", "half-dead", "both"], default="both",
                        help="the introspection load: active tokens only, every other "
                             "request a dead secret, or both (default)")
    parser.add_argument("--client", choices=["asyncio", "wrk", "both"], default="asyncio",
                        help="the load generator: this script's asyncio client (default), "
                             "wrk (installed separately: apt-get install wrk), or both, "
                             "alternating on the same server")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    if args.lookup:
        os.environ["BENCH_LOOKUP"] = args.lookup
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.tokens} tokens, {args.hot} hot, {args.connections} connections, "
          f"{args.rounds} rounds of {args.duration:g}s per measurement, server: {args.server}, "
          f"client: {args.client}",
          flush=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tokenbot-bench-") as tmp:
        for backend in backends:
            rows.extend(bench_backend(backend, args, Path(tmp)))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
