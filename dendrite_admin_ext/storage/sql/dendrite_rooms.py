"""Dendrite's rooms, read from its roomserver tables beside it (SPEC 8: "room listings
read Dendrite's tables read-only").

Rooms are Dendrite's: only Dendrite changes them.  This reader runs SELECT statements
only, outside any transaction (never ``write``), on a connection of its own: the
roomserver's database may be another one than the userapi's (Dendrite configures each
component's database apart; on SQLite each has its own file by default), named by
``homeserver.roomserver_database`` (absent: ``database`` itself).

What it reads (element-hq/dendrite ``roomserver/storage/{postgres,sqlite3}/*_table.go``):

* ``roomserver_rooms``: ``room_nid``, ``room_id`` (unique), ``room_version``.
* ``roomserver_membership``: one row per (``room_nid``, ``target_nid``) with
  ``membership_nid`` 1 leave or ban, 2 invite, 3 join, and ``target_local`` (the
  target is a user of this server).
* ``roomserver_event_state_keys``: ``event_state_key_nid`` → ``event_state_key`` (the
  member's user ID).

The room name, canonical alias and every other field taken from room state live in
Dendrite's state snapshots and event JSON, which are not read here: they are None.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ... import messages
from ...errors import Unrecognized
from .ops import Op, Row, Stmt

if TYPE_CHECKING:
    from ...config import DatabaseConfig
    from .base import SqlBase

__all__ = ["DENDRITE_ROOM_ORDERS", "DendriteRoom", "DendriteRoomReader", "room_reader"]

log = logging.getLogger(__name__)

# Dendrite's membership_nid values (roomserver/storage/tables: MembershipState*): 1
# leave or ban, 2 invite, 3 join (written as the literal 3 in the statements below).

# Orders the roomserver tables answer, with their ORDER BY (fixed SQL, never input);
# "name" is the room ID here (no names are read).  Ties: room ID ascending.
DENDRITE_ROOM_ORDERS: dict[str, tuple[str, str]] = {
    "name": ("r.room_id ASC", "r.room_id DESC"),
    "version": ("r.room_version ASC, r.room_id ASC", "r.room_version DESC, r.room_id ASC"),
    "joined_members": ("joined_members ASC, r.room_id ASC",
                       "joined_members DESC, r.room_id ASC"),
    "joined_local_members": ("joined_local_members ASC, r.room_id ASC",
                             "joined_local_members DESC, r.room_id ASC"),
}

_ROOMS = (
    "SELECT r.room_id, r.room_version,"
    " COUNT(m.room_nid) AS joined_members,"
    " COUNT(CASE WHEN m.target_local THEN 1 END) AS joined_local_members"
    " FROM roomserver_rooms r"
    " LEFT JOIN roomserver_membership m ON m.room_nid = r.room_nid"
    " AND m.membership_nid = 3"  # JOIN
)
_TABLES = ("roomserver_rooms", "roomserver_membership", "roomserver_event_state_keys")
_GROUP = " GROUP BY r.room_nid, r.room_id, r.room_version"


@dataclass(frozen=True, slots=True)
class DendriteRoom:
    """One room of Dendrite's: what the roomserver tables say cheaply."""

    room_id: str
    version: str
    joined_members: int
    joined_local_members: int


def _room(row: Row) -> DendriteRoom:
    return DendriteRoom(row.room_id, row.room_version, int(row.joined_members),
                        int(row.joined_local_members))


def _tables_found_sqlite() -> Op[bool]:
    res = yield Stmt("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'"
                     " AND name IN (%s, %s, %s)", _TABLES)
    return int(res.rows[0].n) == len(_TABLES)


def _tables_found_pg() -> Op[bool]:
    res = yield Stmt("SELECT COUNT(*) AS n FROM information_schema.tables"
                     " WHERE table_schema = current_schema() AND table_name IN (%s, %s, %s)",
                     _TABLES)
    return int(res.rows[0].n) == len(_TABLES)


# Synapse's empty_rooms filter: a room is empty when nobody is joined.
_EMPTY = {None: "", True: " HAVING COUNT(m.room_nid) = 0", False: " HAVING COUNT(m.room_nid) > 0"}


def _count_rooms(empty: bool | None) -> Op[int]:
    if empty is None:
        res = yield Stmt("SELECT COUNT(*) AS n FROM roomserver_rooms")
    else:
        rooms = f"{_ROOMS}{_GROUP}{_EMPTY[empty]}"  # fixed fragments, no input
        res = yield Stmt(f"SELECT COUNT(*) AS n FROM ({rooms}) t")  # noqa: S608
    return int(res.rows[0].n)


def _list_rooms(order_by: str, reverse: bool, offset: int, limit: int, empty: bool | None
                ) -> Op[list[DendriteRoom]]:
    order = DENDRITE_ROOM_ORDERS[order_by][1 if reverse else 0]
    res = yield Stmt(f"{_ROOMS}{_GROUP}{_EMPTY[empty]} ORDER BY {order} LIMIT %s OFFSET %s",
                     (limit, offset))
    return [_room(r) for r in res.rows]


def _get_room(room_id: str) -> Op[DendriteRoom | None]:
    res = yield Stmt(f"{_ROOMS} WHERE r.room_id = %s{_GROUP}", (room_id,))
    return _room(res.rows[0]) if res.rows else None


def _joined_members(room_id: str) -> Op[list[str] | None]:
    found = yield Stmt("SELECT room_nid FROM roomserver_rooms WHERE room_id = %s",
                       (room_id,))
    if not found.rows:
        return None
    res = yield Stmt(
        "SELECT k.event_state_key AS user_id FROM roomserver_membership m"
        " JOIN roomserver_event_state_keys k ON k.event_state_key_nid = m.target_nid"
        " WHERE m.room_nid = %s AND m.membership_nid = 3"  # JOIN
        " ORDER BY k.event_state_key", (found.rows[0].room_nid,))
    return [str(r.user_id) for r in res.rows]


class DendriteRoomReader:
    """Read-only room queries on Dendrite's roomserver tables, through ``db`` (a SQL
    backend used only for its connection: never opened as a storage, so it creates
    and migrates nothing)."""

    def __init__(self, db: SqlBase, where: str, *, detail: str = "") -> None:
        # Where the tables are looked for: the config key (answers), and for the log
        # the SQLite file too (a DSN is never logged: it may hold a password).
        self._db = db
        self._where = where
        self._detail = detail
        self._found = False

    async def open(self) -> None:
        """Connect.  Without the roomserver's tables (SPEC 8: never created here) the
        rest of the package still starts: a warning says where they were looked for,
        and the room reads answer 404 ``M_UNRECOGNIZED`` with that text until they
        appear."""
        await self._db._connect()
        if not await self._tables_found():
            log.warning("%s (%s)", messages.roomserver_tables_missing(self._where),
                        self._detail or "the configured database")

    async def close(self) -> None:
        await self._db._disconnect()

    async def _tables_found(self) -> bool:
        if not self._found:
            op = _tables_found_pg() if self._db.dialect.name == "postgres" else (
                _tables_found_sqlite())
            self._found = await self._db._run(op, write=False)
        return self._found

    async def _ready(self) -> None:
        if not await self._tables_found():
            raise Unrecognized(messages.roomserver_tables_missing(self._where))

    async def count_rooms(self, *, empty: bool | None = None) -> int:
        """How many rooms Dendrite knows (rows of ``roomserver_rooms``); with
        ``empty``, only those nobody is joined to (True) or the others (False)."""
        await self._ready()
        return await self._db._run(_count_rooms(empty), write=False)

    async def list_rooms(self, order_by: str, *, reverse: bool, offset: int, limit: int,
                         empty: bool | None = None) -> list[DendriteRoom]:
        """A page of rooms in ``order_by`` (a key of :data:`DENDRITE_ROOM_ORDERS`;
        ascending, or descending with ``reverse``; ties by room ID ascending),
        filtered by ``empty`` as :meth:`count_rooms`."""
        await self._ready()
        return await self._db._run(_list_rooms(order_by, reverse, offset, limit, empty),
                                   write=False)

    async def get_room(self, room_id: str) -> DendriteRoom | None:
        """The room, or None when Dendrite does not know it."""
        await self._ready()
        return await self._db._run(_get_room(room_id), write=False)

    async def joined_members(self, room_id: str) -> list[str] | None:
        """The user IDs joined to the room now (any server), ordered; None when the
        room is unknown."""
        await self._ready()
        return await self._db._run(_joined_members(room_id), write=False)


def room_reader(db: DatabaseConfig, roomserver_database: str | None) -> DendriteRoomReader:
    """A reader of Dendrite's roomserver tables in ``roomserver_database`` (an SQLite
    file or a DSN, by ``db.backend``), or in the database ``db`` itself when None.  Its
    connection is its own and read-only by the database's own rule: SQLite's
    ``query_only`` on one connection on a worker thread (the file keeps Dendrite's
    journal mode), PostgreSQL's ``default_transaction_read_only`` on a pool of two."""
    if db.backend == "sqlite":
        from ..sqlite import SqliteStorage

        class ReadOnlySqlite(SqliteStorage):
            def _open_sync(self) -> None:
                super()._open_sync()
                assert self._conn is not None
                # A setting of this connection only, not of the file.
                self._conn.execute("PRAGMA query_only = ON")

        path = roomserver_database or str(db.path)
        # Named by its key in answers; the log line adds the file.
        where = "homeserver.roomserver_database" if roomserver_database else "database.path"
        return DendriteRoomReader(ReadOnlySqlite(
            path, busy_timeout=db.connect_timeout, shared_with=db.shared_with), where,
            detail=path)
    from ..postgres import PostgresStorage

    class ReadOnlyPostgres(PostgresStorage):
        def _options(self) -> str:
            return f"{super()._options()} -c default_transaction_read_only=on"

    dsn = roomserver_database or db.dsn
    if not dsn:
        raise ValueError("the postgres backend needs a dsn")
    # The DSN may hold a password: named by its key only.
    where = "homeserver.roomserver_database" if roomserver_database else "database.dsn"
    return DendriteRoomReader(ReadOnlyPostgres(
        dsn, pool_size=2, connect_timeout=db.connect_timeout,
        statement_timeout=db.statement_timeout, shared_with=db.shared_with), where)
