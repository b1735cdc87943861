"""SQLite backend: the embedded default (one file, no service to run).

Every call runs on one dedicated thread (a one-thread executor) that owns the only
connection, so the event loop never blocks on disk and statements never interleave.
(A worker of our own that handed results back in batches, one loop wake-up per batch,
gained nothing measurable over the plain executor: see the ``devices`` rows of
``tests/benchmarks/RESULTS.md``.)  The database is in WAL mode (readers do not block the
writer, and other processes — several workers, the CLI — may open the same file);
writes take the lock up front with ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout``
for another process's writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import StorageUnavailableError
from .sql import Op, SqlStorage, drive_sync
from .sql.schema import SQLITE

__all__ = ["SqliteStorage"]

T = TypeVar("T")


class _Worker:
    """The storage's one thread: calls run there in the order they were submitted."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)

    def submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        return self._loop.run_in_executor(self._pool, call)

    def call_blocking(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the thread and wait for it, blocking (tests and tools that
        must see the database exactly as the storage does; never from the loop in the
        server)."""
        return self._pool.submit(call).result()

    async def stop(self) -> None:
        """Let the calls submitted so far finish, then end the thread."""
        await self._loop.run_in_executor(None, self._pool.shutdown)


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
