"""Coalesced reads: the single-key reads asked for while one is running are made
together, in one call of a many-key read (:mod:`.coalescing` puts it in front of a
storage).

Every authenticated request reads its token (SPEC 3: fresh, for each request), and
whois reads its target's devices.  Under load, many requests wait for the same kind of
read at once; a database round trip per key then costs far more than the rows: on
PostgreSQL each statement is a network round trip and a wake-up of the loop, on SQLite
a hand-over to the worker thread and back.  A :class:`ReadBatcher` sends the keys that
are waiting as one ``IN (…)`` statement and hands each caller its own row.

Freshness is kept: a batch takes only keys asked for before it starts, so every
caller's read is made after the caller asked (never answered from an earlier read).
At low load a key is alone in its batch and waits for nothing but its own statement;
under load, the keys that arrive while a batch is in flight go out in the next one
("natural batching": batches grow with the load, so do not need a timer).

A caller that goes away (client gone, deadline) leaves the batch running for the
others.  A batch that fails because the storage is unavailable gives each of its
callers its own exception (503 for each); one that fails for another reason is tried
again key by key, so one key the driver refuses fails only its own callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

from ..errors import StorageUnavailableError

__all__ = ["MAX_BATCH", "BatchedReadError", "ReadBatcher"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Keys read in one batch at most; more waiting go in the next batch.
MAX_BATCH = 64
# Batches of one kind in flight at once when every one of them has stalled.
MAX_STALLED = 8


class BatchedReadError(RuntimeError):
    """A batched read failed for a reason other than the storage being unavailable;
    the original error is its ``__cause__``."""


class ReadBatcher(Generic[K, V]):
    """Single-key reads of one kind, coalesced.

    ``fetch(keys)`` reads up to :data:`MAX_BATCH` distinct keys in one go and maps
    each key found to its value; keys it leaves out get a new ``missing()``.  At most
    ``max_running`` batches are in flight at once — unless every one of them has been
    running for ``stall_after`` seconds (a database that stopped answering): then one
    more may start, up to :data:`MAX_STALLED`, so callers meet the storage's own
    timeouts (a pool that has no connection left) rather than a queue behind a read
    that hangs.
    """

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
                 missing: Callable[[], V], *, max_running: int = 1,
                 stall_after: float = 1.0) -> None:
        self._fetch = fetch
        self._missing = missing
        self._max_running = max_running
        self._stall_after = stall_after
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        # Running batches: when each started, and the callers it took.
        self._running: dict[asyncio.Task[None], float] = {}
        self._taken: dict[asyncio.Task[None], list[asyncio.Future[V]]] = {}
        self._stall_timer: asyncio.TimerHandle | None = None
        # A batch task created but not yet started: it takes every key added until then.
        self._starting: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.get(key)
        if waiters is None:
            self._waiting[key] = [future]
        else:
            waiters.append(future)
        self._start()
        return await future

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._running

    async def drain(self) -> None:
        """Wait until every read asked for so far has been answered (or failed); reads
        asked for meanwhile are not waited for."""
        asked = [f for waiters in self._waiting.values() for f in waiters]
        asked += [f for taken in self._taken.values() for f in taken]
        pending = [f for f in asked if not f.done()]
        if pending:
            await asyncio.wait(pending)

    def _start(self) -> None:
        if self._starting or not self._waiting:
            return
        loop = asyncio.get_running_loop()
        if len(self._running) >= self._max_running:
            newest = max(self._running.values())
            if (len(self._running) >= MAX_STALLED
                    or loop.time() - newest < self._stall_after):
                return
        task = loop.create_task(self._batch())
        self._starting = task
        self._running[task] = loop.time()
        task.add_done_callback(self._finished)
        self._arm_stall_timer(self._stall_after)

    def _arm_stall_timer(self, delay: float) -> None:
        """Look again once the newest batch counts as stalled (off when none runs)."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._stall_timer = asyncio.get_running_loop().call_later(delay, self._on_stall)

    def _on_stall(self) -> None:
        self._stall_timer = None
        self._start()
        if self._stall_timer is None and self._waiting and 0 < len(self._running) < MAX_STALLED:
            # Not started (a timer may fire a hair early): look again when the newest
            # batch is due.  At the limit, the end of a batch starts the next.
            due = (max(self._running.values()) + self._stall_after
                   - asyncio.get_running_loop().time())
            self._arm_stall_timer(max(due, 0.001))

    def _finished(self, task: asyncio.Task[None]) -> None:
        del self._running[task]
        self._taken.pop(task, None)
        if self._starting is task:
            self._starting = None
        if not self._running and self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not task.cancelled():
            self._start()
            return
        # Cancelled (the loop is closing): nobody is left to read for those waiting.
        waiting, self._waiting = self._waiting, {}
        for waiters in waiting.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(_own_copy(asyncio.CancelledError()))

    async def _batch(self) -> None:
        self._starting = None
        taken: dict[K, list[asyncio.Future[V]]] = {}
        for key in list(self._waiting)[:MAX_BATCH]:
            waiters = [f for f in self._waiting.pop(key) if not f.done()]
            if waiters:
                taken[key] = waiters
        task = asyncio.current_task()
        if task is not None:
            self._taken[task] = [f for waiters in taken.values() for f in waiters]
        # More than one batch's worth: the rest go in the next batch (at once, if
        # max_running allows; otherwise when this one ends).
        self._start()
        if taken:
            await self._read(taken)

    async def _read(self, taken: Mapping[K, list[asyncio.Future[V]]]) -> None:
        try:
            found = await self._fetch(list(taken))
        except (Exception, asyncio.CancelledError) as exc:
            if len(taken) > 1 and not isinstance(
                    exc, (StorageUnavailableError, asyncio.CancelledError)):
                # Not the storage: perhaps one key the driver cannot take (or one row
                # it cannot read).  Each key alone, so only its own callers fail.
                for key, waiters in taken.items():
                    await self._read({key: waiters})
                return
            for waiters in taken.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(_own_copy(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, waiters in taken.items():
            for future in waiters:
                if not future.done():
                    future.set_result(found[key] if key in found else self._missing())


def _own_copy(exc: BaseException) -> BaseException:
    """An exception for one caller: raising one instance in many tasks would tangle
    their tracebacks together."""
    copy: BaseException
    if isinstance(exc, StorageUnavailableError):
        copy = StorageUnavailableError(*exc.args)
    elif isinstance(exc, asyncio.CancelledError):
        copy = StorageUnavailableError("the storage is closing")
    else:
        copy = BatchedReadError(f"batched read failed: {exc!r}")
    copy.__cause__ = exc
    return copy
