"""PostgreSQL backend on aiopg: production, and several admin workers on one database.

One pool per storage, created in :meth:`open` and closed in :meth:`close` (the admin
app calls both from its ``cleanup_ctx``).  Every wait is bounded: acquiring a
connection (which may mean connecting) by ``connect_timeout``, every statement by
``statement_timeout`` (enforced by the server, and by the client if the server is
unreachable).  Connection failures become
:class:`~dendrite_admin_ext.errors.StorageUnavailableError` (503 + Retry-After); the
broken connection is discarded, so the pool reconnects by itself when the database is
back.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import weakref
from typing import Any, TypeVar

import aiopg
import psycopg2
import psycopg2.extensions

from ..errors import StorageUnavailableError
from .sql import Op, Result, SqlStorage, Stmt
from .sql.ops import rows_of
from .sql.schema import POSTGRES

__all__ = ["PostgresStorage"]

T = TypeVar("T")

# Failures that say "the database is not reachable (now)", as opposed to a bug.
_UNAVAILABLE = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError, TimeoutError)


@functools.lru_cache(maxsize=256)
def _prepared_form(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE statement, EXECUTE statement with %s placeholders) for ``sql``."""
    name = "dendrite_admin_" + hashlib.sha256(sql.encode()).hexdigest()[:20]
    parts = sql.split("%s")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    args = "(" + ", ".join(["%s"] * (len(parts) - 1)) + ")" if len(parts) > 1 else ""
    return name, f"PREPARE {name} AS {numbered}", f"EXECUTE {name}{args}"


class PostgresStorage(SqlStorage):
    dialect = POSTGRES

    def __init__(self, dsn: str, *, pool_size: int = 10, connect_timeout: float = 5.0,
                 statement_timeout: float = 30.0, shared_with: str | None = None) -> None:
        super().__init__()
        self.shared_with = shared_with
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._pool: Any = None
        # Names of the statements prepared on each pooled connection.
        self._prepared: weakref.WeakKeyDictionary[Any, set[str]] = (
            weakref.WeakKeyDictionary())

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._pool = await aiopg.create_pool(
                    self.dsn,
                    minsize=1,
                    maxsize=self.pool_size,
                    # aiopg's own bound on connecting and on acquiring from the pool.
                    timeout=self.connect_timeout,
                    enable_json=False,
                    enable_hstore=False,  # saves a catalogue query per new connection
                    enable_uuid=False,
                    # libpq options (merged into the DSN): the server cancels any
                    # statement running longer than statement_timeout.
                    connect_timeout=max(2, math.ceil(self.connect_timeout)),
                    options=self._options(),
                )
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc

    def _options(self) -> str:
        """libpq ``options``: the DSN's own, plus the statement timeout."""
        own = psycopg2.extensions.parse_dsn(self.dsn).get("options", "")
        timeout = f"-c statement_timeout={int(self.statement_timeout * 1000)}"
        return f"{own} {timeout}".strip()

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.close()
        try:
            # aiopg waits for connections still in use; one released after failing
            # does not wake it up, so the wait is bounded.
            async with asyncio.timeout(self.connect_timeout + self.statement_timeout):
                await pool.wait_closed()
        except TimeoutError:
            pool.terminate()

    async def _run(self, op: Op[T], *, write: bool) -> T:
        pool = self._pool
        if pool is None:
            op.close()
            raise StorageUnavailableError("the PostgreSQL storage is not open")
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            # Bounded by the pool's timeout (connect_timeout), connecting included.
            conn = await pool.acquire()
        except _UNAVAILABLE as exc:
            op.close()
            raise StorageUnavailableError(f"no PostgreSQL connection: {exc}") from exc
        healthy = False
        try:
            # Every statement is bounded by the cursor's timeout on the client side too
            # (for a server that stopped answering altogether); no extra timer here,
            # it would cost on every call.
            value = await self._drive(conn, op, write)
            healthy = True
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"PostgreSQL failed: {exc}") from exc
        except asyncio.CancelledError:
            if task is not None and task.cancelling() == cancels:
                # Nobody cancelled us: aiopg turns the server's statement_timeout
                # (QueryCanceledError) into CancelledError.
                raise StorageUnavailableError("statement timed out") from None
            raise
        except psycopg2.Error:
            healthy = await self._rolled_back(conn)
            raise
        except BaseException:
            healthy = await self._rolled_back(conn) if write else False
            raise
        finally:
            if not healthy and not conn.closed:
                # State unknown (cancelled mid-statement, broken socket): never reuse it.
                conn.close()
            pool.release(conn)
        if task is not None and task.cancelling() > cancels:
            # Cancelled while a statement was completing: Python 3.11's wait_for (used
            # by aiopg) may then return the result and drop the cancellation.  Deliver
            # it, or a task stopped with cancel() would carry on as if never asked to.
            raise asyncio.CancelledError
        return value

    async def _drive(self, conn: Any, op: Op[T], write: bool) -> T:
        cursor = await conn.cursor(timeout=self.statement_timeout + 1)
        try:
            if write:
                await cursor.execute("BEGIN")
            try:
                stmt = next(op)
                while True:
                    if stmt.reuse:
                        await self._execute_prepared(conn, cursor, stmt)
                    else:
                        await cursor.execute(self.dialect.sql(stmt.sql), tuple(stmt.params))
                    rows = rows_of(cursor.description, await cursor.fetchall()
                                   if cursor.description is not None else ())
                    stmt = op.send(Result(rows, cursor.rowcount))
            except StopIteration as done:
                value: T = done.value
            if write:
                await cursor.execute("COMMIT")
            return value
        finally:
            cursor.close()

    async def _execute_prepared(self, conn: Any, cursor: Any, stmt: Stmt) -> None:
        name, prepare, execute = _prepared_form(self.dialect.sql(stmt.sql))
        done = self._prepared.setdefault(conn, set())
        if name not in done:
            await cursor.execute(prepare)
            # Prepared statements belong to the session and survive a rollback.
            done.add(name)
        await cursor.execute(execute, tuple(stmt.params))

    @staticmethod
    async def _rolled_back(conn: Any) -> bool:
        """Roll back an open transaction; True if the connection is reusable."""
        if conn.closed:
            return False
        status = conn.raw.get_transaction_status()
        if status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            return True
        try:
            async with asyncio.timeout(1.0):
                cursor = await conn.cursor()
                try:
                    await cursor.execute("ROLLBACK")
                finally:
                    cursor.close()
        except Exception:
            return False
        return bool(conn.raw.get_transaction_status()
                    == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
