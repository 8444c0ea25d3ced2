"""The bounded work pool after an acknowledgement: a fixed number of daemon threads and a
bounded queue (``reserve`` says at once when both are full), and a lane of its own for
telling users (``notify``) that a full pool does not hold up. Why it is ours and not
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

    def take_room(self) -> bool:
        if not self._room.acquire(blocking=False):
            return False
        with self._idle:
            self._accepted += 1
        return True

    def give_back(self) -> None:
        self._room.release()
        with self._idle:
            self._accepted -= 1
            self._idle.notify_all()

    def put(self, task: Task) -> None:
        """Queue a task for which room was taken."""
        self._tasks.put(task)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._accepted == 0, timeout)

    def unfinished(self) -> int:
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
                self.give_back()


class Reservation:
    """Room for one task, taken before the request is acknowledged: a request told "yes"
    always gets its work done. Run it or release it, once."""

    def __init__(self, lane: _Lane) -> None:
        self._lane: _Lane | None = lane

    def run(self, task: Task) -> None:
        self._take().put(task)

    def release(self) -> None:
        self._take().give_back()

    def _take(self) -> _Lane:
        lane, self._lane = self._lane, None
        if lane is None:
            raise RuntimeError("a reservation runs or is released once")
        return lane


class Background:
    def __init__(self, *, workers: int, queue: int, name: str = "tokenbot-work") -> None:
        self._work = _Lane(workers=workers, waiting=queue, name=name)
        self._notices = _Lane(workers=1, waiting=queue, name=f"{name}-notice")

    def reserve(self) -> Reservation | None:
        """Room for one more task, or None when the threads and the queue are full."""
        return Reservation(self._work) if self._work.take_room() else None

    def submit(self, task: Task) -> bool:
        """Run ``task`` if there is room; False (and nothing run) when there is none."""
        slot = self.reserve()
        if slot is not None:
            slot.run(task)
        return slot is not None

    def notify(self, task: Task) -> bool:
        """Run ``task``, a message to a user, on the notices' own lane; False (dropped)
        when that is full too."""
        if not self._notices.take_room():
            return False
        self._notices.put(task)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every task accepted so far has finished; False if ``timeout`` passed
        first."""
        deadline = time.monotonic() + timeout
        return self._work.wait_idle(timeout) and self._notices.wait_idle(
            max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float) -> None:
        """On shutdown: give the work accepted so far ``timeout`` seconds to finish, then
        end the threads; what is left is logged (it stops with the process)."""
        if not self.wait_idle(timeout):
            log.warning("Stopping with %d task(s) after acknowledgements unfinished",
                        self._work.unfinished() + self._notices.unfinished())
        self._work.stop()
        self._notices.stop()
