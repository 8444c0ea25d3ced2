"""The bounded pool and queue that runs a listener's work after its acknowledgement.

Slack waits 3 s for an acknowledgement; the Web API calls that draw the answer
(``views.publish``, ``response_url``, ``views.open``, ``chat.update``) may take longer, or
be rate-limited for seconds. So every request is acknowledged first, in the thread that
received it, and the rest is handed to this pool: a fixed number of workers and a
bounded queue. When both are full, :meth:`Background.reserve` says so at once and the
request is answered "busy, try again" instead of waiting (``bot.slack.app``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("bot.slack.background")

Task = Callable[[], None]


class Slot:
    """Room for one task, taken before the request is acknowledged: a request told "yes"
    always gets its work done. Run it or release it, once."""

    def __init__(self, background: Background) -> None:
        self._background = background
        self._used = False

    def run(self, task: Task) -> None:
        self._use()
        self._background._start(task)

    def release(self) -> None:
        self._use()
        self._background._done()

    def _use(self) -> None:
        if self._used:
            raise RuntimeError("a slot runs or is released once")
        self._used = True


class Background:
    def __init__(self, *, workers: int, queue: int, name: str) -> None:
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._room = threading.BoundedSemaphore(self.capacity)
        self._idle = threading.Condition()
        self._pending = 0

    def reserve(self) -> Slot | None:
        """Room for one more task, or None when the workers and the queue are full."""
        if not self._room.acquire(blocking=False):
            return None
        with self._idle:
            self._pending += 1
        return Slot(self)

    def submit(self, task: Task) -> bool:
        """Run ``task`` if there is room; False (and nothing run) when there is none."""
        slot = self.reserve()
        if slot is None:
            return False
        slot.run(task)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every task taken so far has finished; False if ``timeout`` passed
        first. (The server drains on shutdown; tests wait for the work after an ack.)"""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, task: Task) -> None:
        def run() -> None:
            try:
                task()
            except Exception:  # a task reports its own errors; this is the last guard
                log.exception("Background task failed")
            finally:
                self._done()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shut down: the process is stopping
            self._done()

    def _done(self) -> None:
        self._room.release()
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
