"""Benchmarks of room administration and durable jobs (SPEC 11, issue 17).

    python -m tests.benchmarks.jobs                 # the sizes of the issue
    python -m tests.benchmarks.jobs --scale 0.1     # a tenth of every size
    python -m tests.benchmarks.jobs --only listing,broadcast --backends sqlite

Run from the repository root.  Everything runs in this process on the package's own
storage and services (no HTTP: both sides of each comparison pay the same), PostgreSQL
on a throw-away cluster (``tests/postgres.py``, fsync off).  Figures:

* ``delete``: deleting a room of 50,000 local members on PostgreSQL (the job: part
  everyone page by page, record each step, purge) against evacuating another room of
  the same size (target: at most 2x).
* ``broadcast``: a server notice to 100,000 users on SQLite and PostgreSQL — each user
  gets a new notices room — in notices per second (target on PostgreSQL: at least
  1,000/s) with the peak RSS growth of this process during the job (target: at most
  100 MiB).
* ``listing``: ``list_rooms`` over 20,000 rooms, the first page against the middle
  one (``from`` = 10,000: the deepest walk, as pages in the second half are read from
  the other end) and the last (``from`` = 19,900), median of 21 calls each (target:
  at most 2x).

Seeding writes rows directly (accounts, room and summary rows) where the figure does
not depend on how they were made; rooms to part are made through the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2
from aiohttp import web

from dendrite_admin_ext import parse_config, setup_admin
from dendrite_admin_ext.context import AdminContext
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services.broadcast import BROADCAST
from dendrite_admin_ext.services.evacuation import evacuate_room
from dendrite_admin_ext.services.jobs import submit_job
from dendrite_admin_ext.services.room_admin import ROOM_DELETE
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.sql import SqlStorage
from dendrite_admin_ext.storage.sql.ops import insert_rows
from dendrite_admin_ext.storage.sqlite import SqliteStorage
from dendrite_admin_ext.storage.types import MembershipChange, NewRoom, RoomListQuery

from ..postgres import local_cluster

SERVER = "bench.example"


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def context(storage: SqlStorage) -> AdminContext:
    config = parse_config({"server_name": SERVER, "database": {"backend": "memory"},
                           "server_notices": {"enabled": True},
                           "jobs": {"batch_size": 500}})
    return setup_admin(web.Application(), config, storage, manage_storage=False)


async def seed_room(storage: SqlStorage, members: int) -> str:
    creator = f"@owner:{SERVER}"
    room_id = await storage.create_room(NewRoom(
        UserID.from_stored(creator), "10", {"creator": creator},
        (("m.room.member", creator, {"membership": "join"}),
         ("m.room.join_rules", "", {"join_rule": "public"}))))
    for start in range(0, members, 1000):
        await storage.apply_memberships(room_id, [
            MembershipChange(u, u, {"membership": "join", "displayname": f"member {i}"})
            for i in range(start, min(members, start + 1000))
            for u in [UserID(f"m{i:06d}", SERVER)]])
    return room_id


async def run_job(ctx: AdminContext, kind: str, target: str | None,
                  params: dict[str, Any]) -> tuple[float, Any]:
    job = await submit_job(ctx, kind, target, params)
    assert ctx.jobs is not None
    started = time.perf_counter()
    assert await ctx.jobs.run_once()
    elapsed = time.perf_counter() - started
    done = await ctx.storage.get_job(job.job_id)
    assert done is not None and done.status == "complete", done
    return elapsed, done


async def bench_delete(storage: SqlStorage, members: int, rounds: int) -> list[str]:
    ctx = context(storage)
    times: dict[str, list[float]] = {"evacuate": [], "delete": []}
    for r in range(rounds):
        rooms = [await seed_room(storage, members) for _ in range(2)]
        order = ["evacuate", "delete"] if r % 2 == 0 else ["delete", "evacuate"]
        for what, room in zip(order, rooms, strict=True):
            if what == "evacuate":
                started = time.perf_counter()
                affected = await evacuate_room(ctx, room)
                times[what].append(time.perf_counter() - started)
                assert len(affected) == members + 1
            else:
                elapsed, job = await run_job(ctx, ROOM_DELETE, room, {
                    "room_id": room, "block": True, "purge": True})
                assert job.done == members + 1, job
                times[what].append(elapsed)
    ev, de = statistics.median(times["evacuate"]), statistics.median(times["delete"])
    return [f"| delete a room of {members:,} local members, postgres | {de:.2f} s |"
            f" evacuateRoom, same size: {ev:.2f} s | {de / ev:.2f}x | <= 2x |"
            f" {'ok' if de / ev <= 2 else 'MISSED'} |"]


async def bench_broadcast(storage: SqlStorage, name: str, users: int) -> list[str]:
    ctx = context(storage)
    rows = [(f"u{i:06d}", SERVER, 1, None, False, 1) for i in range(users)]
    await storage._run(insert_rows(
        "INSERT INTO userapi_accounts (localpart, server_name, created_ts, password_hash,"
        " is_deactivated, account_type)", 6, rows), write=True)
    base = rss_mib()
    reset_peak()
    elapsed, job = await run_job(ctx, BROADCAST, None, {
        "content": {"msgtype": "m.text", "body": "Maintenance tonight"},
        "type": "m.room.message"})
    growth = rss_mib("VmHWM") - base
    rate = job.done / elapsed
    target = 1000 if name == "postgres" else None
    ok = growth <= 100 and (target is None or rate >= target)
    return [f"| broadcast to {users:,} users (new notices rooms), {name} |"
            f" {rate:,.0f} notices/s ({elapsed:.1f} s), RSS +{growth:.1f} MiB peak | | |"
            f" {'>= 1,000/s, ' if target else ''}<= 100 MiB | {'ok' if ok else 'MISSED'} |"]


async def bench_listing(storage: SqlStorage, name: str, rooms: int) -> list[str]:
    ctx = context(storage)
    await storage._run(insert_rows(
        "INSERT INTO dendrite_admin_rooms (room_id, room_version, creator, depth,"
        " latest_event_id, created_ts)", 6,
        [(f"!r{i:06d}:{SERVER}", "10", f"@owner:{SERVER}", 3, None, 1)
         for i in range(rooms)]), write=True)
    await storage._run(insert_rows(
        "INSERT INTO dendrite_admin_room_summary (room_id, name, join_rules,"
        " joined_members, state_events)", 5,
        [(f"!r{i:06d}:{SERVER}", f"room {(i * 7919) % rooms:06d}", "public", i % 50, 3)
         for i in range(rooms)]), write=True)
    if isinstance(storage, PostgresStorage):
        # The steady state autovacuum keeps: statistics and the visibility map (for
        # index-only scans).  VACUUM needs a connection outside any transaction.
        conn = psycopg2.connect(storage.dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for table in ("dendrite_admin_room_summary", "dendrite_admin_rooms"):
                    cur.execute(f"VACUUM ANALYZE {table}")  # fixed names
        finally:
            conn.close()
    out = []
    middle, last = rooms // 2, rooms - 100
    for order in ("name", "joined_members"):
        timings: dict[int, list[float]] = {0: [], middle: [], last: []}
        for r in range(21):
            offsets = [0, middle, last]
            for offset in offsets[r % 3:] + offsets[:r % 3]:
                started = time.perf_counter()
                page = await storage.list_rooms(RoomListQuery(order_by=order, offset=offset,
                                                              limit=100), SERVER)
                timings[offset].append(time.perf_counter() - started)
                assert len(page.rooms) == 100 and page.total == rooms
        first = statistics.median(timings[0]) * 1000
        for offset in (middle, last):
            deep = statistics.median(timings[offset]) * 1000
            out.append(f"| room list over {rooms:,} rooms, order_by={order}, {name} |"
                       f" page from={offset:,}: {deep:.1f} ms |"
                       f" first page {first:.1f} ms | {deep / first:.2f}x | <= 2x |"
                       f" {'ok' if deep / first <= 2 else 'MISSED'} |")
    del ctx
    return out


async def main_async(args: argparse.Namespace, dsn: str | None, folder: Path) -> list[str]:
    rows: list[str] = []

    async def storage_for(name: str, tag: str) -> SqlStorage:
        st: SqlStorage
        if name == "postgres":
            assert dsn is not None
            st = PostgresStorage(dsn, pool_size=10, statement_timeout=600)
        else:
            st = SqliteStorage(folder / f"{tag}.db")
        await st.open()
        return st

    sizes = {k: max(100, int(v * args.scale)) for k, v in
             {"delete": 50_000, "broadcast": 100_000, "listing": 20_000}.items()}
    if args.broadcast_users:
        sizes["broadcast"] = args.broadcast_users
    for name in args.backends:
        if "listing" in args.only:
            st = await storage_for(name, "listing")
            try:
                rows += await bench_listing(st, name, sizes["listing"])
            finally:
                await st.close()
        if "broadcast" in args.only:
            st = await storage_for(name, "broadcast")
            try:
                rows += await bench_broadcast(st, name, sizes["broadcast"])
            finally:
                await st.close()
        if "delete" in args.only and name == "postgres":
            st = await storage_for(name, "delete")
            try:
                rows += await bench_delete(st, sizes["delete"], args.rounds)
            finally:
                await st.close()
        print("\n".join(rows), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--broadcast-users", type=int, default=0,
                        help="users of the broadcast figure (default 100,000 x scale)")
    parser.add_argument("--only", default="listing,broadcast,delete")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args(argv)
    args.only = args.only.split(",")
    args.backends = args.backends.split(",")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "postgres" in args.backends:
            with local_cluster() as cluster:
                rows = asyncio.run(main_async(args, cluster.dsn, Path(tmp)))
        else:
            rows = asyncio.run(main_async(args, None, Path(tmp)))
    print("| figure | measured | reference | ratio | target | |")
    print("\n".join(rows))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
