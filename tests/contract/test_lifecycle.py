"""The storage contract of StorageLifecycle: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.sql import SqlStorage
from dendrite_admin_ext.storage.sql.ops import select
from dendrite_admin_ext.storage.sql.schema import MIGRATIONS
from dendrite_admin_ext.storage.sqlite import SqliteStorage
from dendrite_admin_ext.storage.types import NewDevice

from ..postgres import PgServer
from ..sql_backends import BACKENDS, make_storage
from .common import ALICE, SN, account


# -- lifecycle ------------------------------------------------------------------------------
async def test_ping_and_nested_open_close(st: AdminStorage) -> None:
    await st.ping()
    # The admin app opens a storage the host (here: the fixture) has opened already.
    await st.open()
    await st.close()
    await st.ping()
    await st.create_account(account("alice"), None)
    assert await st.get_account(ALICE) is not None


@pytest.mark.parametrize("kind", [b for b in BACKENDS if b != "memory"])
async def test_data_survives_reopen_and_migrations_are_idempotent(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    first = await make_storage(request, kind, tmp_path)
    await first.create_account(account("alice"), NewDevice("DEV", "tok-alice"))
    await first.close()
    # a second start (and a third, concurrently) finds the schema in place
    again = [await make_storage(request, kind, tmp_path) for _ in range(2)]
    try:
        session = await again[1].get_token_owner("tok-alice")
        assert session is not None and session.device_id == "DEV"
        sql = again[0].inner if isinstance(again[0], CoalescingStorage) else again[0]
        assert isinstance(sql, SqlStorage)
        versions = await sql._run(select(
            "SELECT version FROM dendrite_admin_schema_version", ()), write=False)
        assert [v[0] for v in versions] == [m.version for m in MIGRATIONS]
    finally:
        for s in again:
            await s.close()


@pytest.mark.parametrize("kind", [b for b in BACKENDS if b != "memory"])
async def test_concurrent_first_start_migrates_once(request: pytest.FixtureRequest,
                                                    tmp_path: Path, kind: str) -> None:
    """Several workers starting at once on an empty database: one migrates, the others
    wait for it and find the schema in place."""
    storages: list[SqlStorage]
    if kind == "sqlite":
        storages = [SqliteStorage(tmp_path / "fresh.db") for _ in range(4)]
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        name = pg.new_database(empty=True)
        request.addfinalizer(lambda: pg.drop_database(name))
        storages = [PostgresStorage(pg.dsn_for(name), pool_size=2) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in storages))
        for i, s in enumerate(storages):
            await s.create_account(account(f"user{i}"), None)
            versions = await s._run(select(
                "SELECT version FROM dendrite_admin_schema_version", ()), write=False)
            assert [v[0] for v in versions] == [m.version for m in MIGRATIONS]
            assert await s.localpart_exists(UserID("user0", SN))
    finally:
        for s in storages:
            await s.close()
