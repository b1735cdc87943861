"""What a token lookup costs through the storage, against the bare driver making one
statement per lookup.  This measures what coalescing buys (the storage sends the
lookups waiting together as one statement) as much as the storage's own overhead.

    python -m tests.benchmarks.run --only calls [--backends sqlite,postgres]

Each figure is the CPU time of this process per call (``time.process_time``: the event
loop thread and any worker thread alike), with 32 calls in flight, measured in-process
so that no HTTP is involved.  The statement is the token lookup every authenticated
admin request makes (``get_session``); successive calls take successive tokens of 64
seeded devices, so no two calls in flight ask for the same one.  The storage is the
backend as ``storage_from_config`` makes it: it sends the lookups that wait at the same
moment as one statement (storage/coalescing.py); each reference makes the one-token
statement once per call.  References:

* Both: the same backend without the coalescing wrapper (a statement per call through
  the storage).
* SQLite: the one-token statement through ``sqlite3`` on a thread of a one-thread
  ``ThreadPoolExecutor`` — the usual way to keep SQLite off the event loop, as the
  contract requires — and on the event loop itself (what the loop would pay without
  any thread; the contract forbids it, it is the bare statement's own cost).
* PostgreSQL: the one-token statement on one psycopg2 asynchronous connection driven by a
  minimal ``add_reader`` loop (no pool, no timeout: about the least any asyncio program
  on psycopg2 can pay per round trip; an ``asyncio.Lock`` hands the one connection from
  caller to caller), and the same through aiopg on a held connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.protocols import AdminStorage

from .server import WHOIS_ADMINS, seed, whois_token

__all__ = ["measure_calls"]

SESSION_SQL = ("SELECT d.localpart, d.server_name, d.device_id, a.account_type,"
               " a.is_deactivated FROM userapi_devices d JOIN userapi_accounts a"
               " ON a.localpart = d.localpart AND a.server_name = d.server_name"
               " WHERE d.access_token = %s")

Call = Callable[[], Awaitable[Any]]


async def cpu_per_call(call: Call, total: int, concurrency: int = 32) -> float:
    """Microseconds of process CPU per call, ``concurrency`` callers at once."""
    async def caller(n: int) -> None:
        for _ in range(n):
            await call()

    await asyncio.gather(*(caller(max(1, total // 20 // concurrency))
                           for _ in range(concurrency)))
    started = time.process_time()
    await asyncio.gather(*(caller(total // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (total // concurrency * concurrency) * 1e6


async def rounds_of(calls: dict[str, Call], total: int,
                    rounds: int) -> dict[str, list[float]]:
    """Each call's CPU per call, ``rounds`` times, the calls taking turns; each round
    starts with the next one, so none is always measured first (or last)."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            out[name].append(await cpu_per_call(calls[name], total))
    return out


def _tokens() -> itertools.cycle[str]:
    return itertools.cycle([whois_token(i) for i in range(WHOIS_ADMINS)])


async def _storage_call(storage: AdminStorage, server_name: str) -> Call:
    await seed(storage, server_name)
    tokens = _tokens()

    async def call() -> None:
        assert await storage.get_token_owner(next(tokens)) is not None
    return call


async def sqlite_figures(path: Path, server_name: str, total: int,
                         rounds: int) -> dict[str, list[float]]:
    from dendrite_admin_ext.storage.sqlite import SqliteStorage

    storage = CoalescingStorage(SqliteStorage(path))
    await storage.open()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    sql = SESSION_SQL.replace("%s", "?")
    loop = asyncio.get_running_loop()
    tokens = _tokens()

    def query() -> list[Any]:
        return conn.execute(sql, (next(tokens),)).fetchall()

    async def hop() -> None:
        assert await loop.run_in_executor(pool, query)

    async def inline() -> None:
        assert query()

    try:
        return await rounds_of({"storage": await _storage_call(storage, server_name),
                                "uncoalesced": await _storage_call(storage.inner, server_name),
                                "thread": hop, "loop": inline}, total, rounds)
    finally:
        pool.shutdown()
        conn.close()
        await storage.close()


async def postgres_figures(dsn: str, server_name: str, total: int,
                           rounds: int) -> dict[str, list[float]]:
    import aiopg
    import psycopg2
    import psycopg2.extensions

    from dendrite_admin_ext.storage.postgres import PostgresStorage

    storage = CoalescingStorage(PostgresStorage(dsn))
    await storage.open()
    loop = asyncio.get_running_loop()
    raw = psycopg2.connect(dsn, async_=1)

    async def ready() -> None:
        while True:
            state = raw.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            waiter = loop.create_future()
            if state == psycopg2.extensions.POLL_READ:
                loop.add_reader(raw.fileno(), waiter.set_result, None)
                try:
                    await waiter
                finally:
                    loop.remove_reader(raw.fileno())
            else:
                loop.add_writer(raw.fileno(), waiter.set_result, None)
                try:
                    await waiter
                finally:
                    loop.remove_writer(raw.fileno())

    await ready()
    cursor = raw.cursor()
    tokens = _tokens()
    lock = asyncio.Lock()  # one connection: one statement at a time

    async def bare() -> None:
        async with lock:
            cursor.execute(SESSION_SQL, (next(tokens),))
            await ready()
            assert cursor.fetchall()

    held = await aiopg.connect(dsn, enable_json=False, enable_hstore=False,
                               enable_uuid=False)
    held_cursor = await held.cursor()

    async def aiopg_held() -> None:
        async with lock:
            await held_cursor.execute(SESSION_SQL, (next(tokens),))
            assert await held_cursor.fetchall()

    try:
        return await rounds_of({"storage": await _storage_call(storage, server_name),
                                "uncoalesced": await _storage_call(storage.inner, server_name),
                                "driver": bare, "aiopg": aiopg_held}, total, rounds)
    finally:
        held_cursor.close()
        await held.close()
        raw.close()
        await storage.close()


def measure_calls(backend: str, target: str | Path, server_name: str, total: int,
                  rounds: int) -> dict[str, list[float]]:
    if backend == "sqlite":
        return asyncio.run(sqlite_figures(Path(target), server_name, total, rounds))
    return asyncio.run(postgres_figures(str(target), server_name, total, rounds))
