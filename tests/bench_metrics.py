"""What counting costs a request: ``bot.metrics`` calls per second, in one process (the
default registry) and in prometheus_client's multi-process mode (``serve --workers N``:
each count is a write to a memory-mapped file), and a scrape's exposition.

Run:  .venv/bin/python tests/bench_metrics.py [--calls 200000]

Each mode runs in a fresh interpreter (prometheus_client picks its mode when imported).
Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_CHILD = "--child"


def child(calls: int) -> None:
    from bot import metrics

    for name, count in (
        ("introspection (counter + histogram)", lambda: metrics.introspection("active", 0.001)),
        ("Slack request (counter)", lambda: metrics.slack_request("click", "ok")),
        ("Web API call (counter)", lambda: metrics.slack_api_call("chat.postMessage", "ok")),
    ):
        count()
        started = time.perf_counter()
        for _ in range(calls):
            count()
        print(f"  {name}: {(time.perf_counter() - started) / calls * 1e6:.2f} µs per count")
    started = time.perf_counter()
    body, _ = metrics.exposition()
    print(f"  a scrape's exposition: {(time.perf_counter() - started) * 1000:.1f} ms "
          f"({len(body):,} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument(_CHILD, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.calls)
        return
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as directory:
        for mode, extra in (("one process", {}),
                            ("multi-process", {"PROMETHEUS_MULTIPROC_DIR": directory})):
            print(mode)
            subprocess.run([sys.executable, __file__, _CHILD, "--calls", str(args.calls)],
                           env={**env, **extra}, check=True)


if __name__ == "__main__":
    main()
