"""The SQL backends as the tests use them: with the synchronous helpers MemoryStorage
has (set_account_flags, password_hash, add_device) and the readers conftest looks for
(room_events, room_tags).  The helpers read and write the tables directly, as the
homeserver sharing the database would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import pytest

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.sql import Op, SqlStorage, Stmt, drive_sync
from dendrite_admin_ext.storage.sql.ops import one, select
from dendrite_admin_ext.storage.sqlite import SqliteStorage
from dendrite_admin_ext.storage.types import MembershipChange, NewDevice, NewRoom

__all__ = ["BACKENDS", "HeldReads", "PostgresForTests", "SqliteForTests", "make_storage"]

T = TypeVar("T")

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

_ACCOUNT_COLUMNS = {"account_type", "is_deactivated", "appservice_id", "created_ts"}


class _Helpers(SqlStorage):
    def _blocking(self, op: Op[T]) -> T:
        raise NotImplementedError

    def set_account_flags(self, user: UserID, **changes: Any) -> None:
        self._blocking(self._set_flags(user, changes))

    @staticmethod
    def _set_flags(user: UserID, changes: dict[str, Any]) -> Op[None]:
        who = (user.localpart, user.server_name)
        for column, value in changes.items():
            if column == "user_type":
                yield Stmt("DELETE FROM dendrite_admin_user_types"
                           " WHERE localpart = %s AND server_name = %s", who)
                if value is not None:
                    yield Stmt("INSERT INTO dendrite_admin_user_types (localpart,"
                               " server_name, user_type) VALUES (%s, %s, %s)", (*who, value))
                continue
            if column not in _ACCOUNT_COLUMNS:
                raise TypeError(f"unknown account field {column}")
            if column == "account_type":
                value = int(value)
            # column is one of the fixed names above
            yield Stmt(f"UPDATE userapi_accounts SET {column} = %s"  # noqa: S608
                       " WHERE localpart = %s AND server_name = %s", (value, *who))

    def password_hash(self, user: UserID) -> str | None:
        row = self._blocking(one(
            "SELECT password_hash FROM userapi_accounts WHERE localpart = %s"
            " AND server_name = %s", (user.localpart, user.server_name)))
        if row is None:
            raise KeyError(user)
        return None if row[0] is None else str(row[0])

    def add_device(self, user: UserID, device: NewDevice) -> None:
        self._blocking(self._add_device(user.localpart, user.server_name, device,
                                        int(time.time() * 1000)))

    def room_events(self, room_id: str) -> list[dict[str, Any]]:
        rows = self._blocking(select(
            "SELECT event_json FROM dendrite_admin_events WHERE room_id = %s"
            " ORDER BY stream_ordering", (room_id,)))
        return [json.loads(r[0]) for r in rows]

    def room_tags(self, user: UserID, room_id: str) -> dict[str, Any]:
        row = self._blocking(one(
            "SELECT content FROM dendrite_admin_account_data WHERE user_id = %s"
            " AND room_id = %s AND type = 'm.tag'", (str(user), room_id)))
        return {} if row is None else dict(json.loads(row[0])["tags"])

    def count(self, table: str) -> int:
        # table names come from the tests themselves
        row = self._blocking(one(f"SELECT COUNT(*) FROM {table}", ()))  # noqa: S608
        assert row is not None
        return int(row[0])


class SqliteForTests(_Helpers, SqliteStorage):
    def _blocking(self, op: Op[T]) -> T:
        # On the storage's own worker thread, so it sees (and orders with) every write.
        assert self._worker is not None, "open the storage first"
        return self._worker.call_blocking(lambda: self._run_sync(op, True))


class PostgresForTests(_Helpers, PostgresStorage):
    def _blocking(self, op: Op[T]) -> T:
        conn = psycopg2.connect(self.dsn, connect_timeout=5)
        try:
            with conn, conn.cursor() as cur:
                return drive_sync(cur, self.dialect, op)
        finally:
            conn.close()


def unwrapped(storage: object) -> object:
    """The backend behind a :class:`CoalescingStorage` (what tests ask the type of)."""
    return storage.inner if isinstance(storage, CoalescingStorage) else storage


async def make_storage(request: pytest.FixtureRequest, kind: str,
                       folder: Path) -> AdminStorage:
    """An opened storage of that kind, as ``storage_from_config`` makes it (the SQL ones
    in a CoalescingStorage); the caller closes it.  The test helpers above are reached
    through the wrapper."""
    storage: AdminStorage
    if kind == "memory":
        storage = MemoryStorage()
    elif kind == "sqlite":
        storage = CoalescingStorage(SqliteForTests(folder / "admin.db"))
    elif kind == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        storage = CoalescingStorage(PostgresForTests(dsn, pool_size=4, connect_timeout=5,
                                                     statement_timeout=30))
    else:
        raise ValueError(kind)
    await storage.open()
    return storage


class HeldReads:
    """A spy in front of a storage with many-key reads (``get_token_owners``,
    ``get_devices_of``): records each call's keys, and with ``hold`` set keeps each
    answer back, once the storage has given it, until ``answer`` is set.  Everything
    else is the storage's own."""

    def __init__(self, inner: Any, *, hold: bool = False) -> None:
        self.inner = inner
        self.hold = hold
        self.token_batches: list[list[str]] = []
        self.device_batches: list[list[UserID]] = []
        self.read = asyncio.Event()
        self.answer = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def _held(self, rows: T) -> T:
        self.read.set()
        if self.hold:
            await self.answer.wait()
        return rows

    async def get_token_owners(self, tokens: Sequence[str]) -> Any:
        self.token_batches.append(list(tokens))
        return await self._held(await self.inner.get_token_owners(tokens))

    async def get_devices_of(self, users: Sequence[UserID]) -> Any:
        self.device_batches.append(list(users))
        return await self._held(await self.inner.get_devices_of(users))


def open_for_tests(database: Mapping[str, Any]) -> SqliteForTests | PostgresForTests:
    """A test storage (not yet opened) on a standalone server's database settings, as
    written by ``tests/standalone.py`` (``backend`` plus ``path`` or ``dsn``)."""
    if database["backend"] == "sqlite":
        return SqliteForTests(database["path"])
    return PostgresForTests(database["dsn"])


async def seed_joined_room(database: Mapping[str, Any], creator: str, members: int,
                           server_name: str, *, batch: int = 2_000,
                           with_names: bool = False) -> tuple[str, list[str]]:
    """A room made directly in storage by ``creator`` with ``members`` local users
    ``@memberNNNNN`` joined (display names from their IDs with ``with_names``), in
    batches; the room ID and every member, the creator first."""
    storage = open_for_tests(database)
    await storage.open()
    try:
        owner = UserID.from_stored(creator)
        room_id = await storage.create_room(NewRoom(
            owner, "10", {"creator": creator},
            (("m.room.member", creator, {"membership": "join"}),)))
        users = [f"@member{i:05d}:{server_name}" for i in range(members)]
        for start in range(0, members, batch):
            await storage.apply_memberships(room_id, [
                MembershipChange(UserID.from_stored(u), UserID.from_stored(u),
                                 {"membership": "join",
                                  **({"displayname": u[1:9]} if with_names else {})})
                for u in users[start:start + batch]])
        return room_id, [creator, *users]
    finally:
        await storage.close()
