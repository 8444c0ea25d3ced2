"""Expiry-alert benchmark: one pass over a large registry, Slack played by the stand-in.

Run:  .venv/bin/python tests/bench_alerts.py [--tokens 1000000] [--due 10000]
          [--channels 20] [--owners 200] [--steady 30000] [--backend both]

Seeds ``--tokens`` tokens (SQLite file and/or a throw-away PostgreSQL database):

- ``--due`` of them crossed their 7-day threshold since the previous pass (their 30-day
  reminder was sent earlier), spread over ``--channels`` alert channels (per-token
  override) and ``--owners`` owners;
- ``--steady`` expire within the next 30 days (or expired within the notice window) and
  have already had their current reminder: the pass must find nothing to say about them;
- the rest expire 31 days to 3 years from now, or never.

Then, in a fresh child process (so its peak RSS is the pass's own, not the seeding's),
runs one pass with the real Web API client against the local stand-in answering at once,
and a second pass a minute later with nothing due. Reports wall time of each, Slack calls
(every chat.postMessage the stand-in received: channel digests and owner DMs alike) and
the number of digest messages needed, and peak RSS. Targets: <= 10 s for the pass,
calls == messages needed, peak RSS <= 300 MB, nothing-due pass <= 1 s.

Each channel gets at most one message per second, so a channel with 500 tokens (three
digest messages of up to 240) needs at least two seconds whatever the hardware; the
pass posts destinations side by side, every first message before any second one
(bot/outbox/dispatch.py), so that floor is paid once, not per channel.
Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from bot.services.alerts import current_stage  # noqa: E402
from bot.crypto import SecretBox, generate_key  # noqa: E402
from bot.db import make_engine, upgrade  # noqa: E402
from bot.models import (  # noqa: E402
    Audience,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    Token,
    TokenStatus,
)
from bot.slack.views.digests import COMPACT_LAYOUT_MAX, FULL_LAYOUT_MAX  # noqa: E402
from tests.support.databases import throwaway_postgresql  # noqa: E402

# One key for the seeded rows and the pass (start-up checks that the keys open them).
KEY = generate_key()
SEALED = SecretBox([KEY]).encrypt("bench secret")

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)
TEAM = "TBENCH"
DEFAULT_CHANNEL = "CDEFAULT"
PG_ADMIN_URL = os.environ.get(
    "TOKENBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BATCH = 10_000
DAYS = [30, 7, 1]


def messages_needed(count: int) -> int:
    if count == 0:
        return 0
    if count <= FULL_LAYOUT_MAX:
        return 1
    return math.ceil(count / COMPACT_LAYOUT_MAX)


def _token_row(n: int, *, expires: dt.datetime | None, channel: str | None,
               owner: str) -> dict[str, object]:
    digest = hashlib.sha256(f"bench-{n}".encode()).hexdigest()
    label = f"bench token {n:07d}"
    return dict(
        id=n + 1, public_id=f"tok_b{n:011d}", team_id=TEAM, label=label,
        label_search=label, scope="read", status=TokenStatus.ACTIVE,
        secret_digest=digest, secret_masked=f"tkb_{digest[:6]}…",
        secret_encrypted=SEALED, created_at=NOW - dt.timedelta(days=60),
        created_by=owner, owner=owner, updated_at=NOW - dt.timedelta(days=60), expires_at=expires,
        alert_channel=channel, version=1,
    )


def _alert_row(token_id: int, *, days: int, expires: dt.datetime, kind: Audience,
               destination: str) -> dict[str, object]:
    return dict(
        token_id=token_id, team_id=TEAM, threshold_days=days, expires_at=expires,
        kind=MessageKind.EXPIRY, audience=kind, destination=destination,
        status=OutboxStatus.SENT, attempts=0,
        next_attempt_at=NOW - dt.timedelta(days=1), created_at=NOW - dt.timedelta(days=1),
        sent_at=NOW - dt.timedelta(days=1), message_channel=destination, message_ts="1.1",
    )


def seed(url: str, args: argparse.Namespace) -> tuple[float, dict[str, int]]:
    """Insert the registry; returns (seconds, tokens due per destination)."""
    rng = random.Random(11)
    engine = make_engine(url)
    upgrade(engine)
    expected: dict[str, int] = {}
    started = time.perf_counter()
    tokens: list[dict[str, object]] = []
    alerts: list[dict[str, object]] = []

    def flush(force: bool = False) -> None:
        force = force or len(alerts) >= BATCH  # alerts need their tokens written first
        if len(tokens) >= BATCH or (force and tokens):
            with engine.begin() as connection:
                connection.execute(insert(Token), tokens)
            tokens.clear()
        if alerts and force:
            with engine.begin() as connection:
                connection.execute(insert(OutboxMessage), alerts)
            alerts.clear()

    crossing = NOW + dt.timedelta(days=7) - dt.timedelta(minutes=10)
    for n in range(args.tokens):
        owner = f"U{n % args.owners:05d}"
        if n < args.due:
            channel = f"C{n % args.channels:03d}"
            tokens.append(_token_row(n, expires=crossing, channel=channel, owner=owner))
            for kind, dest in ((Audience.CHANNEL, channel), (Audience.OWNER, owner)):
                alerts.append(_alert_row(n + 1, days=30, expires=crossing, kind=kind,
                                         destination=dest))
                expected[dest] = expected.get(dest, 0) + 1
        elif n < args.due + args.steady:
            owner = f"S{n % 1000:05d}"
            expires = NOW + dt.timedelta(seconds=rng.randint(-6 * 86400, 30 * 86400))
            # not the band just crossed (those are the due ones)
            if crossing - dt.timedelta(minutes=20) < expires <= crossing + dt.timedelta(minutes=20):
                expires += dt.timedelta(hours=1)
            tokens.append(_token_row(n, expires=expires, channel=None, owner=owner))
            stage = current_stage(expires, now=NOW, alert_days=DAYS)
            assert stage is not None
            for kind, dest in ((Audience.CHANNEL, DEFAULT_CHANNEL), (Audience.OWNER, owner)):
                alerts.append(_alert_row(n + 1, days=stage, expires=expires, kind=kind,
                                         destination=dest))
        else:
            owner = f"R{n % 5000:05d}"
            never_or_later: dt.datetime | None = (
                None if n % 5 == 0
                else NOW + dt.timedelta(seconds=rng.randint(31 * 86400, 3 * 365 * 86400))
            )
            tokens.append(_token_row(n, expires=never_or_later, channel=None, owner=owner))
        flush()
    flush(force=True)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT setval(pg_get_serial_sequence('tokens', 'id'), "
                                    "(SELECT max(id) FROM tokens))"))
            connection.execute(text("ANALYZE tokens"))
            connection.execute(text("ANALYZE outbox"))
        else:
            connection.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started, expected


def child(args: argparse.Namespace) -> None:
    """Run in a fresh process: the pass with something due, then one with nothing due."""
    from bot.alerts.scheduler import run_pass
    from bot.config import load_settings
    from bot.db import Database
    from bot.slack.client import make_web_client

    settings = load_settings(_env_file=None)
    database = Database(settings, auto_upgrade=False)
    client = make_web_client(settings)
    # The weekly owner check (users.info, paced at Tier 4) is a scheduler job of its own.
    first = run_pass(settings=settings, database=database, client=client, now=NOW,
                     owner_check=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    second = run_pass(settings=settings, database=database, client=client,
                      now=NOW + dt.timedelta(minutes=1), owner_check=False)
    idle = time.perf_counter() - started
    database.dispose()
    print(json.dumps({
        "pass_seconds": first.seconds, "messages": first.messages, "sent": first.sent,
        "failed": first.failed, "skipped": first.skipped, "armed": first.armed,
        "slack_calls_counted_by_client": first.slack_calls, "peak_rss_mb": round(peak, 1),
        "idle_pass_seconds": round(idle, 3), "idle_messages": second.messages,
        "idle_armed": second.armed,
    }))


@contextmanager
def database(name: str) -> Iterator[str]:
    """An empty database for one backend's run, removed afterwards."""
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tokenbot-bench-alerts-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
    else:
        with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_bench_alerts") as url:
            yield url


def run_backend(name: str, args: argparse.Namespace) -> dict[str, object]:
    from tests.support.slack_standin import SlackStandIn

    with database(name) as url:
        seconds, expected = seed(url, args)
        needed = sum(messages_needed(count) for count in expected.values())
        print(f"[{name}] seeded {args.tokens:,} tokens in {seconds:.1f}s", flush=True)
        standin = SlackStandIn().start()
        try:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SLACK_", "TOKENBOT_", "DATABASE_URL"))}
            env.update({
                "DATABASE_URL": url, "TOKENBOT_SECRET_KEYS": KEY,
                "SLACK_API_URL": standin.api_url, "SLACK_BOT_TOKEN": "xoxb-bench",
                "TOKENBOT_ALERT_CHANNEL": DEFAULT_CHANNEL,
            })
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--child"], env=env, cwd=ROOT, check=True,
                capture_output=True, text=True,
            ).stdout
            wall = time.perf_counter() - started
            result = json.loads(out.strip().splitlines()[-1])
            calls = len(standin.calls_to("chat.postMessage"))
            posted = sum(len(c.body.get("blocks") or []) > 0 for c in standin.calls)
        finally:
            standin.stop()
        result.update(
            backend=name, tokens=args.tokens, due=args.due, channels=args.channels,
            owners=args.owners, steady=args.steady, slack_calls=calls,
            messages_needed=needed, child_wall_seconds=round(wall, 2),
            all_calls_carried_blocks=posted == calls,
        )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--steady", type=int, default=30_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        result = run_backend(backend, args)
        ok = (
            result["pass_seconds"] <= 10  # type: ignore[operator]
            and result["slack_calls"] == result["messages_needed"]
            and result["peak_rss_mb"] <= 300  # type: ignore[operator]
            and result["idle_pass_seconds"] <= 1  # type: ignore[operator]
        )
        print(f"[{backend}] " + json.dumps(result))
        print(
            f"[{backend}] pass {result['pass_seconds']}s, {result['slack_calls']} Slack calls "
            f"({result['messages_needed']} digest messages needed), peak RSS "
            f"{result['peak_rss_mb']} MB, nothing-due pass {result['idle_pass_seconds']}s: "
            f"{'within targets' if ok else 'MISSES a target'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
