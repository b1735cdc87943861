"""Storage operations as generators of SQL statements, run by any SQL driver.

Each storage operation is a generator that *yields* statements and receives their
results (:class:`Stmt` → :class:`Result`), and finally returns the method's value.  It
does no I/O itself, so the same operation runs on sqlite3 inside a worker thread and on
aiopg inside the event loop: each backend only implements ``_run`` (:mod:`.base`), which
drives an operation inside one transaction (for writes) or none (single reads).

SQL is written with ``%s`` placeholders; values always travel as parameters.  Multi-row
statements are built by repeating the placeholder group, never by formatting values.

Rows are :class:`Row` tuples: read a column by its name (``row.access_token``, the name
the statement gives it: alias clashing or computed columns with ``AS``); positions
still work for code that has not moved to names.
"""

from __future__ import annotations

import functools
import json
import keyword
import operator
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .schema import Dialect

__all__ = ["CHUNK_ROWS", "KEY_GROUP_SIZES", "Op", "Result", "Row", "Stmt", "drive_sync",
           "dumps", "exec_", "insert_rows", "key_groups", "one", "rows_of", "select",
           "with_keys"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stmt:
    sql: str
    params: Sequence[Any] = ()
    # A statement run again and again with other values; PostgreSQL prepares it once
    # per connection (planning a join costs more than running it).  Statements whose
    # text varies (multi-row inserts) or DDL are not.
    reuse: bool = True


class Row(tuple[Any, ...]):
    """One result row: a tuple whose columns are also attributes named as the
    statement's result columns (``SELECT d.device_id, c.ip AS conn_ip`` → ``row.device_id``,
    ``row.conn_ip``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name that is not a column of this row.
        raise AttributeError(f"the row has no column {name!r}")


@functools.lru_cache(maxsize=1024)
def _row_class(columns: tuple[str, ...]) -> type[Row]:
    """A :class:`Row` subclass whose attributes read these columns by position."""
    attrs: dict[str, Any] = {"__slots__": ()}
    for i, name in enumerate(columns):
        if name.isidentifier() and not keyword.iskeyword(name) and name not in attrs:
            attrs[name] = property(operator.itemgetter(i))
    return type("Row", (Row,), attrs)


def rows_of(description: Sequence[Sequence[Any]] | None,
            rows: Iterable[Sequence[Any]]) -> list[Row]:
    """The driver's rows as :class:`Row` objects named by a DB-API ``description``."""
    if description is None:
        return []
    cls = _row_class(tuple(str(column[0]) for column in description))
    return [cls(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[Row]
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


# Key counts of ``IN (…)`` statements: a group of keys is padded (its last key repeated)
# to the next of these, so each backend sees a handful of statement texts, each prepared
# once (PostgreSQL), whatever the number of keys asked for.
KEY_GROUP_SIZES = (1, 2, 4, 8, 16, 32, 64)


def key_groups(keys: Sequence[T]) -> list[list[T]]:
    """``keys`` in groups of at most ``KEY_GROUP_SIZES[-1]``, each padded to one of
    :data:`KEY_GROUP_SIZES` (empty: no group)."""
    top = KEY_GROUP_SIZES[-1]
    groups = []
    for start in range(0, len(keys), top):
        group = list(keys[start:start + top])
        size = next(s for s in KEY_GROUP_SIZES if s >= len(group))
        groups.append(group + [group[-1]] * (size - len(group)))
    return groups


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
            rows = rows_of(cursor.description,
                           cursor.fetchall() if cursor.description is not None else ())
            stmt = op.send(Result(rows, cursor.rowcount))
    except StopIteration as done:
        value: T = done.value
        return value




# One-statement operations.
def one(sql: str, params: Sequence[Any] = ()) -> Op[Row | None]:
    """The first row, or None."""
    res = yield Stmt(sql, params)
    return res.rows[0] if res.rows else None


def select(sql: str, params: Sequence[Any] = ()) -> Op[list[Row]]:
    res = yield Stmt(sql, params)
    return res.rows


def exec_(sql: str, params: Sequence[Any] = ()) -> Op[int]:
    """Run one statement; the number of rows it affected."""
    res = yield Stmt(sql, params)
    return res.rowcount
