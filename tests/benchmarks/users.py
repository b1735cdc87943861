"""Synapse's user list on a big server: page 1 against a page deep in the list.

Seeds ``count`` accounts straight into the database (bulk inserts, as an existing
homeserver's database would have them), starts the real admin server on it, and for
each ``order_by`` times ``GET /_synapse/admin/v2/users?limit=100&deactivated=true``
(everyone) for the first page and for the page at offset ``count - 100``, reached
through the keyset cursor (the ``next_token`` of a one-row page just before it).
Rounds alternate the two; the row shows the p50 of each and their ratio (target: deep
<= 2x first, SPEC 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import statistics
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dendrite_admin_ext.storage.types import USER_ORDERS

from ..standalone import Server
from .server import ADMIN_TOKEN

__all__ = ["PAGE", "bench_user_list", "seed_accounts"]

PAGE = 100


def _rows(count: int, server_name: str) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(account row, profile row) of ``count`` accounts in a shuffled creation order,
    a few admins, guests, deactivated ones and unnamed ones."""
    rng = random.Random(15)
    order = list(range(count))
    rng.shuffle(order)
    for i, n in enumerate(order):
        kind = 3 if i % 997 == 0 else 2 if i % 499 == 0 else 1
        account = (f"u{n:07d}", server_name, 1_600_000_000_000 + i * 1000, None,
                   i % 211 == 0, kind)
        name = None if i % 7 == 0 else f"User {rng.randrange(10**9):09d}"
        profile = (f"u{n:07d}", server_name, name,
                   None if i % 3 else f"mxc://bench/{rng.randrange(10**6)}")
        yield account, profile


ACCOUNT_SQL = ("INSERT INTO userapi_accounts (localpart, server_name, created_ts,"
               " password_hash, is_deactivated, account_type) VALUES ")
PROFILE_SQL = ("INSERT INTO userapi_profiles (localpart, server_name, display_name,"
               " avatar_url) VALUES ")


def seed_accounts(database: dict[str, Any], count: int, server_name: str) -> None:
    """Bulk-insert ``count`` accounts and profiles into a migrated database."""
    rows = list(_rows(count, server_name))
    accounts = [a for a, _ in rows]
    profiles = [p for _, p in rows]
    if database["backend"] == "sqlite":
        with contextlib.closing(sqlite3.connect(database["path"])) as conn, conn:
            conn.executemany(ACCOUNT_SQL + "(?, ?, ?, ?, ?, ?)", accounts)
            conn.executemany(PROFILE_SQL + "(?, ?, ?, ?)", profiles)
            conn.execute("ANALYZE")
        return
    import psycopg2
    from psycopg2.extras import execute_values

    with contextlib.closing(psycopg2.connect(database["dsn"])) as pg:
        with pg, pg.cursor() as cur:
            execute_values(cur, ACCOUNT_SQL + "%s", accounts, page_size=5000)
            execute_values(cur, PROFILE_SQL + "%s", profiles, page_size=5000)
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("ANALYZE")


def migrate_sqlite(path: Path) -> None:
    from dendrite_admin_ext.storage.sqlite import SqliteStorage

    async def go() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        await storage.close()

    asyncio.run(go())


def _get(server: Server, query: dict[str, str]) -> tuple[float, dict[str, Any]]:
    url = f"{server.url}/_synapse/admin/v2/users?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return time.perf_counter() - started, body


def bench_user_list(server: Server, rounds: int, add_row: Callable[..., None],
                    backend: str, seeded: int, orders: Sequence[str] = USER_ORDERS) -> None:
    """Time page 1 and the page at offset ``seeded - 100`` for each order (every
    account listed: ``deactivated=true``); ``add_row(order, first_s, deep_s, offset)``
    reports them."""
    for order in orders:
        base = {"order_by": order, "limit": str(PAGE), "deactivated": "true"}
        deep_at = max(0, seeded - PAGE)
        # The cursor of the row just before the deep page.
        _, before = _get(server, {**base, "from": str(max(0, deep_at - 1)), "limit": "1"})
        token = before["next_token"]
        _, check = _get(server, {**base, "from": token})
        _, by_offset = _get(server, {**base, "from": str(deep_at)})
        if [u["name"] for u in check["users"]] != [u["name"] for u in by_offset["users"]]:
            raise RuntimeError(f"{backend} {order}: the cursor page is not the offset page")
        first: list[float] = []
        deep: list[float] = []
        for r in range(rounds):
            runs = [(first, base), (deep, {**base, "from": token})]
            for samples, query in (runs if r % 2 == 0 else runs[::-1]):
                samples.append(_get(server, query)[0])
        add_row(order, statistics.median(first), statistics.median(deep), deep_at)
