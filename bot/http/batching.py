"""Coalesced reads for ``POST /introspect``: the lookups of concurrent requests go to the
database together, in one ``IN (...)`` read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from sqlalchemy.exc import SQLAlchemyError

from bot.services.verification import Found

#: The requests waiting for a read: each digest, and the futures of the requests that sent it.
_Batch = dict[str, list[asyncio.Future[Found | None]]]


class LookupBatcher:
    """Coalesces the lookups of concurrent requests into one ``IN (...)`` read.

    A request's digest joins the *pending* batch; a batch is sent when the event loop has
    handled the requests that arrived with it, and only when no batch is in flight (at
    most one per process); whatever arrives meanwhile waits for the next one. A request
    never joins a read that has already started, so every answer comes from a read that
    began after the request arrived: nothing is cached, a change committed before the
    request is always seen. ``run`` executes in ``executor`` (a thread, so the loop keeps
    serving HTTP while the database answers) or, without one, directly in the loop.
    """

    def __init__(
        self,
        run: Callable[[list[str]], dict[str, Found]],
        executor: ThreadPoolExecutor | None,
        *,
        max_batch: int = 256,
    ) -> None:
        self._run = run
        self._executor = executor
        self._max_batch = max_batch
        self._pending: _Batch = {}
        self._scheduled = False
        self._in_flight = False
        self.batches = 0
        self.lookups = 0

    async def get(self, digest: str) -> Found | None:
        """The row with this secret digest, or None, from a read that starts after this call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Found | None] = loop.create_future()
        self._pending.setdefault(digest, []).append(future)
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _take(self) -> _Batch:
        if len(self._pending) <= self._max_batch:
            batch, self._pending = self._pending, {}
            return batch
        keys = list(self._pending)[: self._max_batch]
        return {key: self._pending.pop(key) for key in keys}

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending or self._in_flight:
            return
        batch = self._take()
        self.batches += 1
        self.lookups += len(batch)
        if self._executor is None:
            self._read_here(batch)
        else:
            self._read_in_thread(batch)

    def _read_here(self, batch: _Batch) -> None:
        """The read in the event loop: answered before anything else runs."""
        try:
            rows = self._run(list(batch))
        except SQLAlchemyError as exc:
            self._fail(batch, exc)
        else:
            self._resolve(batch, rows)
        if self._pending:
            self._schedule()

    def _read_in_thread(self, batch: _Batch) -> None:
        """The read in the executor; the loop serves HTTP meanwhile."""
        self._in_flight = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run, list(batch))
        done.add_done_callback(lambda result: self._finished(batch, result))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _finished(self, batch: _Batch, result: asyncio.Future[dict[str, Found]]) -> None:
        self._in_flight = False
        if result.cancelled():
            self._fail(batch, asyncio.CancelledError())
        elif (exc := result.exception()) is not None:
            self._fail(batch, exc)
        else:
            self._resolve(batch, result.result())
        if self._pending:
            self._schedule()

    @staticmethod
    def _resolve(batch: _Batch, rows: dict[str, Found]) -> None:
        for digest, futures in batch.items():
            row = rows.get(digest)
            for future in futures:
                if not future.done():
                    future.set_result(row)

    @staticmethod
    def _fail(batch: _Batch, exc: BaseException) -> None:
        for futures in batch.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)

