"""The bounded work pool after an acknowledgement: a fixed number of daemon threads and a
bounded queue (``reserve`` says at once when both are full), and a lane of its own for
telling users (``notices``) that a full pool does not hold up. Why it is ours and not
Bolt's ``listener_executor``: docs/ARCHITECTURE.md, "Where a click goes"."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("bot.slack.background")

Task = Callable[[], None]


class _Lane:
    """``workers`` daemon threads taking tasks from a queue; room for ``workers + waiting``
    tasks at a time."""

    def __init__(self, *, workers: int, waiting: int, name: str) -> None:
        self._room = threading.BoundedSemaphore(workers + waiting)
        self._workers = workers
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._accepted = 0
        for number in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def reserve(self) -> bool:
        """Room for one task, taken before the request is acknowledged (a request told "yes"
        always gets its work done): then ``run`` or ``release``, once. False when the
        threads and the queue are full."""
        if not self._room.acquire(blocking=False):
            return False
        with self._idle:
            self._accepted += 1
        return True

    def release(self) -> None:
        self._room.release()
        with self._idle:
            self._accepted -= 1
            self._idle.notify_all()

    def run(self, task: Task) -> None:
        """Queue a task for which room was reserved."""
        self._tasks.put(task)

    def submit(self, task: Task) -> bool:
        """Run ``task`` if there is room; False (and nothing run) when there is none."""
        if not self.reserve():
            return False
        self.run(task)
        return True

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._accepted == 0, timeout)

    def unfinished(self) -> int:
        """How many tasks were accepted and have not finished."""
        with self._idle:
            return self._accepted

    def stop(self) -> None:
        """Each thread ends once it reaches this in the queue."""
        for _ in range(self._workers):
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task()
            except Exception:  # a task reports its own errors; this is the last guard
                log.exception("A task after an acknowledgement failed")
            finally:
                self.release()


class Background(_Lane):
    """The work pool, and ``notices``: one thread of its own for messages to users ("busy")
    that a full pool does not hold up (its ``submit`` is False, dropped, when it is full
    too)."""

    def __init__(self, *, workers: int, queue: int, name: str) -> None:
        super().__init__(workers=workers, waiting=queue, name=name)
        self.notices = _Lane(workers=1, waiting=queue, name=f"{name}-notice")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every task accepted so far has finished; False if ``timeout`` passed
        first."""
        deadline = time.monotonic() + timeout
        return super().wait_idle(timeout) and self.notices.wait_idle(
            max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float) -> None:
        """On shutdown: give the work accepted so far ``timeout`` seconds to finish, then
        end the threads; what is left is logged (it stops with the process)."""
        if not self.wait_idle(timeout):
            log.warning("Stopping with %d task(s) after acknowledgements unfinished",
                        self.unfinished() + self.notices.unfinished())
        self.stop()
        self.notices.stop()
