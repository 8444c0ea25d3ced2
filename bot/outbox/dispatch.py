"""Sequences of steps run side by side, each in order and paced: how a delivery posts
(step *k + 1* of a destination no sooner than ``interval`` after step *k*, at most
``threads`` at once, the step ready longest first; a step that returns False or raises
ends its own destination only)."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger("bot.outbox")

T = TypeVar("T")


def run_paced(
    tasks: Sequence[T],
    *,
    steps: Callable[[T], int],
    step: Callable[[T, int], bool],
    threads: int,
    interval: float,
) -> None:
    """Run ``step(task, k)`` for k in range(steps(task)) for every task (see the module);
    returns once every task has ended."""
    ready = [(0.0, order, 0) for order, task in enumerate(tasks) if steps(task) > 0]
    heapq.heapify(ready)
    changed = threading.Condition()
    running = 0

    def next_step() -> tuple[int, int] | None:
        nonlocal running
        with changed:
            while True:
                if not ready and running == 0:
                    return None  # nothing queued and nothing that could queue more
                wait = ready[0][0] - time.monotonic() if ready else None
                if wait is not None and wait <= 0:
                    _at, order, number = heapq.heappop(ready)
                    running += 1
                    return order, number
                changed.wait(wait)

    def work() -> None:
        nonlocal running
        while (found := next_step()) is not None:
            order, number = found
            go_on = False
            try:
                go_on = step(tasks[order], number)
            except Exception:  # noqa: BLE001 - a bug ends this task, not the others
                log.exception("alert pass: a step failed; its destination waits for a later pass")
            with changed:
                running -= 1
                if go_on and number + 1 < steps(tasks[order]):
                    heapq.heappush(ready, (time.monotonic() + interval, order, number + 1))
                changed.notify_all()

    workers = [threading.Thread(target=work, name=f"tokenbot-alerts-{n}", daemon=True)
               for n in range(max(1, min(threads, len(ready))))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
