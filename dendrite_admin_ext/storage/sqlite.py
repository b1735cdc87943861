"""SQLite backend: the embedded default (one file, no service to run).

Every call runs on one dedicated worker thread that owns the only connection, so the
event loop never blocks on disk and statements never interleave.  The worker takes the
calls queued so far as one batch and hands their results back to the loop in one
wake-up: under load a thread hop per call (wake the thread, then wake the loop) costs
far more than the indexed queries themselves.  The database is in
WAL mode (readers do not block the writer, and other processes — several workers, the
CLI — may open the same file); writes take the lock up front with ``BEGIN IMMEDIATE``
and wait up to ``busy_timeout`` for another process's writer.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StorageUnavailableError
from .sql import Op, SqlStorage, drive_sync
from .sql.schema import SQLITE

__all__ = ["SqliteStorage"]

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "asyncio.Future[Any] | None"]


class _Worker:
    """One thread running queued calls in order, results delivered in batches."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs: collections.deque[_Job | None] = collections.deque()
        self._wake = threading.Condition(threading.Lock())
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        with self._wake:
            self._jobs.append((call, future))
            self._wake.notify()
        return future

    def call_blocking(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the worker and wait for it, blocking (tests and tools that
        must see the database exactly as the worker does; never from the loop in the
        server)."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                result.set_result(call())
            except BaseException as exc:
                result.set_exception(exc)

        with self._wake:
            self._jobs.append((job, None))
            self._wake.notify()
        return result.result()

    async def stop(self) -> None:
        with self._wake:
            self._jobs.append(None)
            self._wake.notify()
        await self._loop.run_in_executor(None, self._thread.join)

    def _main(self) -> None:
        while True:
            with self._wake:
                while not self._jobs:
                    self._wake.wait()
                batch = list(self._jobs)
                self._jobs.clear()
            done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            stop = False
            for job in batch:
                if job is None:
                    stop = True
                    break
                call, future = job
                if future is None:
                    call()  # call_blocking: it reports its own outcome
                    continue
                try:
                    done.append((future, call(), None))
                except BaseException as exc:  # handed to the caller, like an executor
                    done.append((future, None, exc))
            if done:
                self._loop.call_soon_threadsafe(_deliver, done)
            if stop:
                return


def _deliver(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, exc in done:
        if future.cancelled():
            continue  # the caller went away; the call itself has run
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


class SqliteStorage(SqlStorage):
    dialect = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._worker: _Worker | None = None
        self._conn: sqlite3.Connection | None = None

    async def _connect(self) -> None:
        self._worker = _Worker("dendrite-admin-sqlite")
        try:
            await self._worker.submit(self._open_sync)
        except BaseException:
            worker, self._worker = self._worker, None
            await worker.stop()
            raise

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=True)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._enable_wal(conn)
            # NORMAL in WAL mode: a committed transaction survives a crash of the
            # process (SIGKILL); only a power loss may lose the last ones.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageUnavailableError(f"cannot use {self.path}: {exc}") from exc
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switching a new file to WAL needs an exclusive lock, and SQLite reports a
        clash with another process opening it at the same moment as "database is
        locked" at once, without its busy handler: retry within ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    async def _disconnect(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            await worker.submit(self._close_sync)
        finally:
            await worker.stop()

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, op: Op[T], *, write: bool) -> T:
        worker = self._worker
        if worker is None:
            op.close()
            raise StorageUnavailableError("the SQLite storage is not open")
        return await worker.submit(lambda: self._run_sync(op, write))

    def _run_sync(self, op: Op[T], write: bool) -> T:
        """Runs on the worker thread."""
        conn = self._conn
        if conn is None:
            op.close()
            raise StorageUnavailableError("the SQLite storage is not open")
        cursor = conn.cursor()
        try:
            if write:
                cursor.execute("BEGIN IMMEDIATE")
            value = drive_sync(cursor, SQLITE, op)
            if write:
                cursor.execute("COMMIT")
            return value
        except sqlite3.OperationalError as exc:
            # Locked past busy_timeout, I/O error, disk full, file gone: transient for
            # the API (503), not a bug.
            raise StorageUnavailableError(str(exc)) from exc
        finally:
            if conn.in_transaction:
                conn.rollback()
            cursor.close()
