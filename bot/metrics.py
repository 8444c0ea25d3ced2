"""Prometheus metrics (prometheus_client): what the entry points count, and one scrape.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``tokenbot serve --workers N`` sets it when the
operator has not: :func:`use_multiprocess_dir`), every process writes its counts to files
there and a scrape adds them up (prometheus_client's multi-process mode); else the default
registry. prometheus_client decides which when it is first imported, so the metric objects
are made on first use, after ``serve`` has named the directory. Label values come from
short fixed sets (kinds, outcomes, results, Slack method names): never a token, a secret,
a user id or a label."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.errors import ConfigurationError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Slack shows "didn't respond" after 3 s; the suggested alert is p99 over 2 s.
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# Introspection's budget: 20 ms at p99 (docs/BENCHMARKS.md).
INTROSPECTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
PASS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_METHOD = re.compile(r"[a-z][A-Za-z0-9_.]{0,63}")
# How prometheus_client names a process's file: its type (a gauge's with its mode), its pid.
_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_[0-9]+\.db")


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series beside every counter
        self.slack_requests = Counter(
            "tokenbot_slack_requests", "Slack requests handled, by kind and how they ended",
            ["kind", "outcome"])
        self.slack_ack = Histogram(
            "tokenbot_slack_ack_seconds", "Time from a Slack request's arrival to its "
            "acknowledgement", ["kind"], buckets=ACK_BUCKETS)
        self.introspection = Counter(
            "tokenbot_introspection_requests", "POST /introspect answers, by result",
            ["result"])
        self.introspection_seconds = Histogram(
            "tokenbot_introspection_seconds", "Time to answer POST /introspect",
            buckets=INTROSPECTION_BUCKETS)
        self.outbox_posted = Counter(
            "tokenbot_outbox_posted", "Outbox messages posted to Slack, by kind and outcome",
            ["kind", "outcome"])
        self.outbox_given_up = Counter(
            "tokenbot_outbox_given_up", "Outbox messages closed unsent after their "
            "destination refused them too many times, by kind", ["kind"])
        self.alert_pass = Histogram(
            "tokenbot_alert_pass_seconds", "Duration of a scheduled alert pass",
            buckets=PASS_BUCKETS)
        self.alert_passes = Counter(
            "tokenbot_alert_passes", "Alert passes (not dry runs) by how they ended: ok, "
            "failed (a post failed; retried later), error (the pass stopped)", ["outcome"])
        self.slack_api = Counter(
            "tokenbot_slack_api_calls", "Slack Web API calls (each try), by method and "
            "outcome", ["method", "outcome"])


_made: _Metrics | None = None
_making = threading.Lock()


def _metrics() -> _Metrics:
    """The metric objects, made once (the first counts may come from several threads)."""
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _Metrics()
    return _made


def slack_request(kind: str, outcome: str) -> None:
    _metrics().slack_requests.labels(kind, outcome).inc()


def slack_ack(kind: str, seconds: float) -> None:
    _metrics().slack_ack.labels(kind).observe(seconds)


def introspection(result: str, seconds: float) -> None:
    metrics = _metrics()
    metrics.introspection.labels(result).inc()
    metrics.introspection_seconds.observe(seconds)


def outbox_posted(kind: str, outcome: str) -> None:
    _metrics().outbox_posted.labels(kind, outcome).inc()


def outbox_given_up(counts: dict[str, int]) -> None:
    for kind, count in counts.items():
        _metrics().outbox_given_up.labels(kind).inc(count)


def alert_pass(seconds: float) -> None:
    _metrics().alert_pass.observe(seconds)


def alert_pass_ended(outcome: str) -> None:
    _metrics().alert_passes.labels(outcome).inc()


def slack_api_call(method: str, outcome: str) -> None:
    _metrics().slack_api.labels(method if _METHOD.fullmatch(method) else "other",
                                outcome).inc()


# -- multi-process mode ------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def choose_mode(*, serving: bool) -> None:
    """At the CLI's start, before prometheus_client is imported (it reads the variable
    then): only ``serve`` (and its workers) use an operator's ``PROMETHEUS_MULTIPROC_DIR``;
    for every other command it is dropped (their counts are not scraped, and their files
    there would never be removed). Set but blank is refused: prometheus_client would write
    its files into the working directory."""
    if not serving:
        os.environ.pop(MULTIPROC_ENV, None)
        os.environ.pop(MULTIPROC_ENV.lower(), None)  # prometheus_client's older spelling
        return
    named = os.environ.get(MULTIPROC_ENV)
    if named is not None and not named.strip():
        raise ConfigurationError(f"{MULTIPROC_ENV} is set but empty: name a directory for "
                                 "the metrics' files, or unset it.")


def use_multiprocess_dir() -> tuple[Path, bool]:
    """For ``serve --workers N``, before any metric is made: the operator's
    ``PROMETHEUS_MULTIPROC_DIR`` emptied of an earlier run's files (refused when it holds
    other ``.db`` files: a database, say), or a new temporary
    directory named in this process's environment (the workers inherit it). Returns the
    directory and whether it was made here (the caller removes it on exit)."""
    named = multiprocess_dir()
    if named is not None:
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        files = list(path.glob("*.db"))
        foreign = sorted(f.name for f in files if not _FILE.fullmatch(f.name))
        if foreign:  # a scrape would read them; emptying it would delete them
            raise ConfigurationError(
                f"{MULTIPROC_ENV} ({path}) must be a directory for the metrics' files alone: "
                f"it holds {', '.join(foreign[:3])}. Name an empty directory, or unset it.")
        for stale in files:
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="tokenbot-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def remove_multiprocess_dir(path: Path) -> None:
    os.environ.pop(MULTIPROC_ENV, None)
    shutil.rmtree(path, ignore_errors=True)


def process_exited(pid: int) -> None:
    """A worker process ended: its live gauges leave the sums (prometheus_client's
    bookkeeping; counters and histograms keep counting)."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


# -- the scrape ------------------------------------------------------------------------------


def exposition(collectors: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The text format of every metric: this process's (or, in multi-process mode, every
    process's, from the directory), plus ``collectors`` (read at the scrape)."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    _metrics()
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
