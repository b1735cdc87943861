"""SQLite backend: the embedded default (one file, no service to run).

Every call runs on one dedicated worker thread that owns the only connection, so the
event loop never blocks on disk and statements never interleave.  The database is in
WAL mode (readers do not block the writer, and other processes — several workers, the
CLI — may open the same file); writes take the lock up front with ``BEGIN IMMEDIATE``
and wait up to ``busy_timeout`` for another process's writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..errors import StorageUnavailableError
from .schema import SQLITE
from .sql import Op, SqlStorage, drive_sync

__all__ = ["SqliteStorage"]

T = TypeVar("T")


class SqliteStorage(SqlStorage):
    dialect = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _connect(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="dendrite-admin-sqlite")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=True)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a committed transaction survives a crash of the
            # process (SIGKILL); only a power loss may lose the last ones.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageUnavailableError(f"cannot use {self.path}: {exc}") from exc
        self._conn = conn

    async def _disconnect(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, op: Op[T], *, write: bool) -> T:
        executor = self._executor
        if executor is None:
            op.close()
            raise StorageUnavailableError("the SQLite storage is not open")
        return await asyncio.get_running_loop().run_in_executor(
            executor, self._run_sync, op, write)

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
