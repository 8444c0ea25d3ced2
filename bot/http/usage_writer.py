"""The write side of ``POST /introspect``, in one worker thread off the request path: last
uses (the ones noted meanwhile in one statement), dead-secret counts (added every
:data:`DEAD_FLUSH_SECONDS` in one upsert), and the retirement of a rotation's old secret
at the new one's first use (the one write a request waits for)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from bot.db import Database
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from bot.services.rotation import retire_on_first_use
from bot.services.usage import UsageMemo, Use, record_uses
from bot.services.verification import ActiveToken, DeadToken

log = logging.getLogger("bot.http.introspection")

#: How often a process adds its counts of dead-secret presentations to the database.
DEAD_FLUSH_SECONDS: Final = 5.0


class UsageWriter:
    def __init__(self, database: Database) -> None:
        self.engine = database.engine
        self.sessions = database.sessions
        self.usage = UsageMemo()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenbot-usage")
        self._due: dict[int, tuple[dt.datetime, str]] = {}
        self._due_lock = threading.Lock()
        # Dead-secret presentations not yet handed to the writer.
        self._dead: Counter[UseKey] = Counter()
        self._dead_lock = threading.Lock()
        self._closed = False
        self._dead_flush: asyncio.TimerHandle | None = None  # touched in the loop only
        # Old secrets being retired by this process: one write per rotation.
        self._retiring: dict[str, asyncio.Future[bool]] = {}

    # -- rotation: the first use of a new secret retires the old one -------------------------

    async def retire(self, token: ActiveToken, old_digest: str, new_digest: str, caller: str,
                     now: dt.datetime) -> None:
        """Retire the old secret before the answer goes out (once per rotation in this
        process; the conditional UPDATE makes it once across processes). A failure is
        logged: the old secret then works until the next use of the new one, or the
        deadline."""
        pending = self._retiring.get(old_digest)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._writer, self._retire_write, token.id,
                                           old_digest, new_digest, caller, now)
            self._retiring[old_digest] = pending
            pending.add_done_callback(lambda _: self._retiring.pop(old_digest, None))
        try:
            await asyncio.shield(pending)
        except SQLAlchemyError as exc:
            log.warning("could not retire the old secret of %s: %s", token.public_id,
                        type(exc).__name__)

    def _retire_write(self, token_id: int, old_digest: str, new_digest: str, caller: str,
                      now: dt.datetime) -> bool:
        with self.sessions.begin() as session:
            return retire_on_first_use(session, token_id=token_id, old_digest=old_digest,
                                       new_digest=new_digest, caller=caller, now=now)

    # -- dead secrets ----------------------------------------------------------------------

    def note_dead(self, dead: DeadToken, caller: str, now: dt.datetime) -> None:
        """Count one presentation (in the event loop; written within seconds)."""
        with self._dead_lock:
            self._dead[UseKey(dead.team_id, dead.public_id, caller, hour_of(now),
                              dead.reason, dead.masked)] += 1
        if self._dead_flush is None:
            loop = asyncio.get_running_loop()
            self._dead_flush = loop.call_later(DEAD_FLUSH_SECONDS, self._on_timer)

    def _on_timer(self) -> None:
        self._dead_flush = None
        self.flush()

    def flush(self) -> Future[None]:
        """Hand the counts so far to the writer thread (from any thread); the future is
        done when they are written."""
        with self._dead_lock:
            counts, self._dead = self._dead, Counter()
            if self._closed:
                done: Future[None] = Future()
                done.set_result(None)
                return done
            return self._writer.submit(self._write_dead, counts)

    def _write_dead(self, counts: Counter[UseKey]) -> None:
        if not counts:
            return
        try:
            with self.engine.begin() as connection:
                add_presentations(connection, counts=counts)
        except SQLAlchemyError as exc:
            log.warning("could not count %d presentation(s) of dead secrets: %s",
                        sum(counts.values()), type(exc).__name__)

    # -- last used -------------------------------------------------------------------------

    def note_use(self, token: ActiveToken, caller: str, now: dt.datetime) -> None:
        if not self.usage.claim(token.id, now=now, stored=token.last_used_at):
            return
        with self._due_lock:
            first = not self._due
            self._due[token.id] = (now, caller)
        if first:
            self._writer.submit(self._write_uses)

    def _write_uses(self) -> None:
        with self._due_lock:
            due, self._due = self._due, {}
        uses = [Use(token_id, at, caller) for token_id, (at, caller) in due.items()]
        if not uses:
            return
        try:
            with self.engine.begin() as connection:
                record_uses(connection, uses=uses)
        except SQLAlchemyError as exc:
            for use in uses:
                self.usage.forget(use.token_id)
            log.warning("could not record last use of %d token(s): %s", len(uses),
                        type(exc).__name__)

    # -- draining and closing ---------------------------------------------------------------

    async def drain(self) -> None:
        """Write the dead-secret counts so far and wait until queued writes are done."""
        await asyncio.wrap_future(self.flush())

    def close(self) -> None:
        """Finish queued writes (the dead-secret counts too)."""
        if self._dead_flush is not None:
            self._dead_flush.cancel()
            self._dead_flush = None
        self.flush()
        with self._dead_lock:
            self._closed = True
        self._writer.shutdown(wait=True)
