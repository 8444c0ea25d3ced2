"""Registry benchmark: 100,000 tokens in SQLite and in PostgreSQL.

Run:  .venv/bin/python tests/bench_registry.py [--tokens 100000] [--runs 300] [--backend both]

Reports the seeding rate, then median and p99 (ms) of: the first page of the list
(unfiltered; filtered by a label text few tokens match; filtered by a word a fifth of
the labels contain), get by id, verify by secret, and disable. Each
operation is a whole transaction through the service layer, as the Slack app and the CLI
run it. Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot import crypto  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.models import AuditSource, TokenStatus  # noqa: E402
from bot.services import listing  # noqa: E402
from bot.services import tokens as tokens  # noqa: E402
from bot.services.verification import verify as verify_secret  # noqa: E402
from tests.support.databases import analyze, insert_tokens, throwaway_postgresql  # noqa: E402
from tests.support.policy import NO_POLICY

TEAM = "TBENCH"
OWNERS = [f"U{n:05d}" for n in range(200)]
WORDS = ["deploy", "ci", "backup", "metrics", "grafana", "billing", "search", "etl", "sync"]


def seed(database: Database, count: int, now: dt.datetime) -> tuple[float, list[str], list[str]]:
    """Insert ``count`` tokens with real secrets; returns (rows/s, public ids, secrets)."""
    rng = random.Random(7)
    public_ids: list[str] = []
    secrets: list[str] = []
    started = time.perf_counter()
    def rows() -> Iterator[dict[str, object]]:
        for n in range(count):
            secret = crypto.generate_secret()
            label = f"{rng.choice(WORDS)}-{n:06d} {rng.choice(WORDS)}"
            created = now - dt.timedelta(seconds=count - n)
            public_id = f"tok_b{n:011d}"
            expires = created + dt.timedelta(days=rng.choice([30, 90, 365])) if n % 3 else None
            public_ids.append(public_id)
            secrets.append(secret)
            yield dict(
                public_id=public_id, team_id=TEAM, label=label, label_search=label.lower(),
                scope=rng.choice(["read", "write", "admin"]),
                status=TokenStatus.DISABLED if n % 17 == 0 else TokenStatus.ACTIVE,
                secret_digest=crypto.digest(secret), secret_masked=crypto.mask(secret),
                secret_encrypted=database.box.encrypt(secret), created_at=created,
                created_by=(owner := rng.choice(OWNERS)), owner=owner, updated_at=created,
                expires_at=expires,
                version=1,
            )

    insert_tokens(database.engine, rows())
    elapsed = time.perf_counter() - started
    analyze(database.engine)
    return count / elapsed, public_ids, secrets


def measure(fn: Callable[[int], object], runs: int) -> tuple[float, float]:
    for i in range(min(20, runs)):  # warm-up: connections, statement caches
        fn(i)
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99


def bench(url: str, key: str, count: int, runs: int) -> dict[str, tuple[float, float]]:
    settings = load_settings(_env_file=None, DATABASE_URL=url, TOKENBOT_SECRET_KEYS=key)
    database = Database(settings, auto_upgrade=True)
    now = dt.datetime.now(dt.timezone.utc)
    rate, ids, secrets = seed(database, count, now)
    print(f"  seeded {count:,} tokens at {rate:,.0f} tokens/s", flush=True)
    actor = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True, source=AuditSource.CLI)
    rng = random.Random(11)
    results: dict[str, tuple[float, float]] = {}

    def first_page(_: int) -> None:
        with database.sessions.begin() as session:
            page = listing.list_tokens(session, team_id=TEAM, now=now, per_page=10,
                                       policy=NO_POLICY)
            assert len(page.items) == 10

    def filtered(i: int) -> None:
        with database.sessions.begin() as session:
            listing.list_tokens(session, team_id=TEAM, now=now, per_page=10,
                                filters=listing.TokenFilter(search=f"{rng.randrange(count):06d}"),
                                policy=NO_POLICY)

    def filtered_broad(i: int) -> None:  # about a fifth of all labels match
        with database.sessions.begin() as session:
            listing.list_tokens(session, team_id=TEAM, now=now, per_page=10,
                                filters=listing.TokenFilter(search=WORDS[i % len(WORDS)]),
                                policy=NO_POLICY)

    def get(_: int) -> None:
        with database.sessions.begin() as session:
            tokens.get_token(session, team_id=TEAM, public_id=rng.choice(ids))

    def verify(_: int) -> None:
        with database.sessions.begin() as session:
            verify_secret(session, secret=rng.choice(secrets), now=now)

    pending = iter(rng.sample(range(count), k=min(count, runs + 40)))

    def disable(_: int) -> None:
        while True:
            n = next(pending)
            if n % 17:  # seeded active
                break
        with database.sessions.begin() as session:
            token = tokens.get_token(session, team_id=TEAM, public_id=ids[n])
            tokens.disable_token(session, actor=actor, public_id=ids[n],
                                 expected_version=token.version, now=now)

    for name, fn in [
        ("list first page", first_page),
        ("list filtered by label", filtered),
        ("list filtered, broad", filtered_broad),
        ("get by id", get),
        ("verify by secret", verify),
        ("disable", disable),
    ]:
        results[name] = measure(fn, runs)
        median, p99 = results[name]
        print(f"  {name:<24} median {median:6.2f} ms   p99 {p99:6.2f} ms", flush=True)
    results["seed rate"] = (rate, rate)
    database.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="server to create a throw-away benchmark database on",
    )
    args = parser.parse_args()
    key = crypto.generate_key()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"SQLite, {args.tokens:,} tokens", flush=True)
            bench(f"sqlite:///{Path(tmp) / 'bench.db'}", key, args.tokens, args.runs)
    if args.backend in ("postgresql", "both"):
        with throwaway_postgresql(args.postgres_url, "tokenbot_bench") as url:
            print(f"PostgreSQL, {args.tokens:,} tokens", flush=True)
            bench(url, key, args.tokens, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
