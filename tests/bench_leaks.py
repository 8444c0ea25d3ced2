"""Leak scan cost: the CPU `tokenbot serve` spends on chat messages that hold no secret.

Run (from the checkout):

    .venv/bin/python tests/bench_leaks.py                                   # 5,000 messages, SQLite then PostgreSQL
    .venv/bin/python tests/bench_leaks.py --messages 1000 --backend sqlite  # quick

For each backend the script seeds the database (`--tokens` tokens with real encrypted
secrets: the scan never reads it for a message without a secret, and this shows it),
starts `tokenbot serve` as a subprocess (uvicorn, the production stack; the scheduler
off) with the Slack stand-in of tests/support as SLACK_API_URL, and sends `--messages`
signed `message` events over one keep-alive connection, as Slack would: the first
`--warmup` unmeasured, then the rest measured. The texts are chat-like (5 to 80 words);
one in 20 holds a string that starts like a secret but is not one (`tkb_` plus a short or
a wrong-checksum tail), so the regular expression and the checksum run too. The server's
CPU time (user + system, from /proc/PID/stat) is read before and after; the idle CPU over
as long a quiet spell is subtracted. It prints CPU per message and what 1,000 messages a
minute cost as a share of one core.

Budget (docs/BENCHMARKS.md): under 5% of one core at 1,000 messages a minute (3 ms of CPU
per message). Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot import crypto  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.db import Database, make_engine, upgrade  # noqa: E402
from tests.bench_slack import BOT_TOKEN, SIGNING_SECRET, TEAM, free_port, seed, server  # noqa: E402
from tests.support.databases import throwaway_postgresql  # noqa: E402
from tests.support.signing import signed_headers  # noqa: E402
from tests.support.slack_standin import SlackStandIn  # noqa: E402

JSON = "application/json"
PER_MINUTE = 1000
BUDGET_SHARE = 0.05  # of one core at PER_MINUTE
WORDS = ("the deploy failed again on staging because the token for ci expired yesterday "
         "can someone look at the grafana dashboard before standup please thanks lunch "
         "release notes merged review approved backup nightly job metrics sync").split()
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def chat_text(rng: random.Random, n: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80)))
    if n % 20 == 0:  # looks like a secret to the substring test, is not one
        fake = crypto.generate_secret()
        fake = fake[:-1] + ("0" if fake[-1] != "0" else "1") if n % 40 == 0 else fake[:20]
        text += f" {fake}"
    return text


def event_body(text: str, n: int) -> str:
    ts = f"{int(time.time())}.{n:06d}"
    return json.dumps({
        "token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
        "event_id": f"Ev{n:010d}", "event_time": int(time.time()),
        "event": {"type": "message", "user": f"U{n % 97:05d}", "text": text, "ts": ts,
                  "channel": f"C{n % 13:08d}", "channel_type": "channel", "event_ts": ts},
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "UBOT",
                            "is_bot": True, "is_enterprise_install": False}],
    })


def scan_only(bodies: list[str], rounds: int = 20) -> float:
    """CPU seconds per message of the scan alone (what the acknowledgement runs on the
    parsed event: ``listeners/leaks.nothing_to_do``), in this process."""
    from bot.slack.listeners.leaks import nothing_to_do

    events = [json.loads(body)["event"] for body in bodies]
    started = time.process_time()
    for _ in range(rounds):
        for event in events:
            nothing_to_do(event)
    return (time.process_time() - started) / (rounds * len(events))


def send_all(port: int, bodies: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body in bodies:
            headers = signed_headers(SIGNING_SECRET, body, content_type=JSON)
            connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} for a message event")
    finally:
        connection.close()


def bench_backend(label: str, url: str, args: argparse.Namespace, standin: SlackStandIn,
                  workdir: Path) -> float:
    """CPU seconds per message (idle subtracted)."""
    key = crypto.generate_key()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    database = Database(load_settings(_env_file=None, DATABASE_URL=url,
                                      TOKENBOT_SECRET_KEYS=key), auto_upgrade=False)
    try:
        seed(database, args.tokens, dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    finally:
        database.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TOKENBOT_"))}
    port = free_port()
    env.update(DATABASE_URL=url, TOKENBOT_SECRET_KEYS=key, SLACK_BOT_TOKEN=BOT_TOKEN,
               SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=standin.api_url,
               TOKENBOT_SCHEDULER="off", HOST="127.0.0.1", PORT=str(port))
    rng = random.Random(22)
    bodies = [event_body(chat_text(rng, n), n) for n in range(args.warmup + args.messages)]
    with server([sys.executable, "-m", "bot", "serve"], env, port,
                workdir / f"serve-{label}.log") as client:
        pid = _server_pid(port)
        standin.clear()  # the start-up's auth.test
        send_all(port, bodies[:args.warmup])
        started_cpu, started = cpu_seconds(pid), time.monotonic()
        send_all(port, bodies[args.warmup:])
        busy_cpu, wall = cpu_seconds(pid) - started_cpu, time.monotonic() - started
        idle_from = cpu_seconds(pid)
        time.sleep(wall)
        idle_cpu = cpu_seconds(pid) - idle_from
        client.close()
    if standin.calls:
        raise RuntimeError(f"the scan called Slack for a message without a secret: "
                           f"{sorted({c.method for c in standin.calls})}")
    per_message = max(0.0, busy_cpu - idle_cpu) / args.messages
    print(f"{label}: {args.messages:,} messages in {wall:.2f} s wall, server CPU "
          f"{busy_cpu * 1000:.0f} ms (idle over as long: {idle_cpu * 1000:.0f} ms); the scan "
          f"alone: {scan_only(bodies[args.warmup:]) * 1e6:.1f} µs per message", flush=True)
    return per_message


def _server_pid(port: int) -> int:
    """The serving process: the one whose listening socket is ``port`` (/proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":  # LISTEN
            inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def report(label: str, per_message: float) -> bool:
    share = per_message * PER_MINUTE / 60
    good = share < BUDGET_SHARE
    print(f"  {label:<11} {per_message * 1e6:8.0f} µs CPU per message   {PER_MINUTE:,}/min = "
          f"{share * 100:5.2f}% of one core  {'ok' if good else 'OVER BUDGET'}", flush=True)
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description="Leak scan cost (see module docstring)")
    parser.add_argument("--messages", type=int, default=5000, help="measured messages")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured messages first")
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TOKENBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="server to create a throw-away benchmark database on",
    )
    args = parser.parse_args()
    print(f"Leak scan: {args.messages:,} messages without a secret, budget < "
          f"{BUDGET_SHARE * 100:.0f}% of one core at {PER_MINUTE:,} a minute", flush=True)
    standin = SlackStandIn().start()
    results: list[tuple[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if args.backend in ("sqlite", "both"):
                url = f"sqlite:///{workdir / 'bench.db'}"
                results.append(("SQLite", bench_backend("sqlite", url, args, standin, workdir)))
            if args.backend in ("postgresql", "both"):
                with throwaway_postgresql(args.postgres_url, "tokenbot_bench") as url:
                    results.append(("PostgreSQL",
                                    bench_backend("postgresql", url, args, standin, workdir)))
    finally:
        standin.stop()
    print()
    ok = all([report(label, per_message) for label, per_message in results])
    print("\nall targets met" if ok else "\nsome targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
