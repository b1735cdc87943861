"""Storage: the protocol the host implements, and the backends shipped with the package."""

from __future__ import annotations

from ..config import DatabaseConfig
from .coalescing import CoalescingStorage
from .memory import MemoryStorage
from .protocols import AdminStorage

__all__ = ["AdminStorage", "CoalescingStorage", "MemoryStorage", "storage_from_config"]


def storage_from_config(db: DatabaseConfig) -> AdminStorage:
    """The backend named by ``database.backend``; the SQL ones with their token and
    device reads coalesced (:mod:`.coalescing`)."""
    if db.backend == "memory":
        return MemoryStorage()
    if db.backend == "sqlite":
        from .sqlite import SqliteStorage

        return CoalescingStorage(SqliteStorage(db.path, busy_timeout=db.connect_timeout,
                                               shared_with=db.shared_with))
    if db.backend == "postgres":
        # Imported here so that hosts on SQLite do not need aiopg importable.
        from .postgres import PostgresStorage

        if not db.dsn:
            raise ValueError("the postgres backend needs a dsn")
        return CoalescingStorage(PostgresStorage(db.dsn, pool_size=db.pool_size,
                                                 connect_timeout=db.connect_timeout,
                                                 statement_timeout=db.statement_timeout,
                                                 shared_with=db.shared_with))
    raise ValueError(f"unknown database backend {db.backend!r}")
