"""Storage operations as generators of SQL statements, run by any SQL driver.

Each storage operation is a generator that *yields* statements and receives their
results (:class:`Stmt` → :class:`Result`), and finally returns the method's value.  It
does no I/O itself, so the same operation runs on sqlite3 inside a worker thread and on
aiopg inside the event loop: each backend only implements ``_run`` (:mod:`.base`), which
drives an operation inside one transaction (for writes) or none (single reads).

SQL is written with ``%s`` placeholders; values always travel as parameters.  Multi-row
statements are built by repeating the placeholder group, never by formatting values.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .schema import Dialect

__all__ = ["CHUNK_ROWS", "Op", "Result", "Stmt", "drive_sync", "dumps", "exec_",
           "insert_rows", "one", "select", "with_keys"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stmt:
    sql: str
    params: Sequence[Any] = ()
    # A statement run again and again with other values; PostgreSQL prepares it once
    # per connection (planning a join costs more than running it).  Statements whose
    # text varies (multi-row inserts) or DDL are not.
    reuse: bool = True


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[tuple[Any, ...]]
    rowcount: int


Op = Generator[Stmt, Result, T]

# Rows per multi-row INSERT: few round trips, and well below SQLite's and PostgreSQL's
# limits on the number of parameters of one statement.
CHUNK_ROWS = 500



def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def with_keys(sql: str, n: int) -> str:
    """``sql`` with its ``{keys}`` replaced by ``n`` placeholders (for ``IN (…)``)."""
    return sql.replace("{keys}", ", ".join(["%s"] * n))


def insert_rows(head: str, width: int, rows: Sequence[Sequence[Any]],
                tail: str = "") -> Op[int]:
    """``head VALUES (%s, …), (%s, …) tail`` in chunks; returns the rows affected."""
    group = "(" + ", ".join(["%s"] * width) + ")"
    count = 0
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start:start + CHUNK_ROWS]
        params = [value for row in chunk for value in row]
        res = yield Stmt(f"{head} VALUES {', '.join([group] * len(chunk))} {tail}", params,
                         reuse=False)
        count += res.rowcount
    return count


def drive_sync(cursor: Any, dialect: Dialect, op: Op[T]) -> T:
    """Run an operation on a DB-API cursor (sqlite3, or psycopg2 in test helpers)."""
    try:
        stmt = next(op)
        while True:
            cursor.execute(dialect.sql(stmt.sql), tuple(stmt.params))
            rows = cursor.fetchall() if cursor.description is not None else []
            stmt = op.send(Result(rows, cursor.rowcount))
    except StopIteration as done:
        value: T = done.value
        return value




# One-statement operations.
def one(sql: str, params: Sequence[Any] = ()) -> Op[tuple[Any, ...] | None]:
    """The first row, or None."""
    res = yield Stmt(sql, params)
    return res.rows[0] if res.rows else None


def select(sql: str, params: Sequence[Any] = ()) -> Op[list[tuple[Any, ...]]]:
    res = yield Stmt(sql, params)
    return res.rows


def exec_(sql: str, params: Sequence[Any] = ()) -> Op[int]:
    """Run one statement; the number of rows it affected."""
    res = yield Stmt(sql, params)
    return res.rowcount
