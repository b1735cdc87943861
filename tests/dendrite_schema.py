"""Dendrite's own database, as Dendrite 0.15.2 leaves it, for the tests of
``database.shared_with: dendrite`` (SPEC 8).

This is the project's own DDL, written from Dendrite's published table definitions and
migrations (element-hq/dendrite ``userapi/storage/{postgres,sqlite3}/*_table.go`` and
``deltas/``): the statements Dendrite runs, in the order it runs them, so that the
layouts are the ones a real Dendrite leaves — which differ between the engines:

* PostgreSQL, fresh: the layout of the ``*_table.go`` schemas as written.
* SQLite, first start: the schemas, then the "add is active", "add account type" and
  "add last_seen_ts" deltas, which rebuild ``userapi_accounts`` with
  ``localpart TEXT NOT NULL PRIMARY KEY`` (dropping ``userapi_accounts_idx`` with the
  old table) and ``userapi_devices`` with ``UNIQUE (localpart, device_id)`` and nullable
  columns.  A second start re-runs the schemas, which brings the index back.
* Upgraded: a layout from before server names (Dendrite 0.10), with a row written then,
  taken through the "server names" deltas (``server_name TEXT NOT NULL DEFAULT ''``,
  primary keys replaced by unique indexes on (localpart, server_name)).

:class:`DendriteDb` also writes rows the way Dendrite's statements do and reads rows
back with Dendrite's own SELECT statements (``$1`` placeholders as in the Go code).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

__all__ = ["DENDRITE_SELECT", "INVITE", "JOIN", "LEAVE_OR_BAN", "REGISTRATION_TOKENS",
           "ROOMSERVER_TABLES", "SERVER", "DendriteDb", "build_dendrite", "build_roomserver"]

SERVER = "test.example"

# -- PostgreSQL ---------------------------------------------------------------------------
# registration_tokens_table.go (since 0.13), the same text on both engines; pending and
# completed are written as 0 and scanned into plain integers.
REGISTRATION_TOKENS = """CREATE TABLE IF NOT EXISTS userapi_registration_tokens (
    token TEXT PRIMARY KEY,
    pending BIGINT,
    completed BIGINT,
    uses_allowed BIGINT,
    expiry_time BIGINT)"""

_PG_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS db_migrations (
    version TEXT PRIMARY KEY NOT NULL, time TEXT NOT NULL, dendrite_version TEXT NOT NULL)"""

PG_FRESH = (
    _PG_MIGRATIONS_TABLE,
    """CREATE TABLE IF NOT EXISTS userapi_accounts (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT FALSE,
        account_type SMALLINT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_accounts_idx"
    " ON userapi_accounts(localpart, server_name)",
    "CREATE SEQUENCE IF NOT EXISTS userapi_device_session_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS userapi_devices (
        access_token TEXT NOT NULL PRIMARY KEY,
        session_id BIGINT NOT NULL DEFAULT nextval('userapi_device_session_id_seq'),
        device_id TEXT NOT NULL,
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        display_name TEXT,
        last_seen_ts BIGINT NOT NULL,
        ip TEXT,
        user_agent TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_device_localpart_id_idx"
    " ON userapi_devices(localpart, server_name, device_id)",
    """CREATE TABLE IF NOT EXISTS userapi_profiles (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        display_name TEXT,
        avatar_url TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_profiles_idx"
    " ON userapi_profiles(localpart, server_name)",
    """CREATE TABLE IF NOT EXISTS userapi_account_datas (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        room_id TEXT,
        type TEXT NOT NULL,
        content TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_account_datas_idx"
    " ON userapi_account_datas(localpart, server_name, room_id, type)",
    REGISTRATION_TOKENS,
    "INSERT INTO db_migrations VALUES ('userapi: add last_seen_ts', '2025-08-15', '0.15.2')",
)

# Before server names (0.10): one server per database, localpart keys.
PG_OLD = (
    _PG_MIGRATIONS_TABLE,
    """CREATE TABLE userapi_accounts (
        localpart TEXT NOT NULL PRIMARY KEY,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT FALSE,
        account_type SMALLINT NOT NULL)""",
    "CREATE SEQUENCE userapi_device_session_id_seq START 1",
    """CREATE TABLE userapi_devices (
        access_token TEXT NOT NULL PRIMARY KEY,
        session_id BIGINT NOT NULL DEFAULT nextval('userapi_device_session_id_seq'),
        device_id TEXT NOT NULL,
        localpart TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        display_name TEXT)""",
    "CREATE UNIQUE INDEX userapi_device_localpart_id_idx ON userapi_devices(localpart, device_id)",
    """CREATE TABLE userapi_profiles (
        localpart TEXT NOT NULL PRIMARY KEY,
        display_name TEXT,
        avatar_url TEXT)""",
    """CREATE TABLE userapi_account_datas (
        localpart TEXT NOT NULL,
        room_id TEXT,
        type TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY(localpart, room_id, type))""",
    # A user from then, as that Dendrite wrote it.
    "INSERT INTO userapi_accounts VALUES ('olduser', 1600000000000, '$2a$10$x', NULL, FALSE, 1)",
    "INSERT INTO userapi_profiles VALUES ('olduser', '', '')",
    "INSERT INTO userapi_devices (access_token, device_id, localpart, created_ts, display_name)"
    " VALUES ('old-token', 'OLDDEVICE', 'olduser', 1600000000000, 'old phone')",
)

# "userapi: add last_seen_ts", then "userapi: server names" and its populate step.
PG_UPGRADE = (
    "ALTER TABLE userapi_devices ADD COLUMN IF NOT EXISTS last_seen_ts BIGINT NOT NULL"
    " DEFAULT EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)*1000",
    "ALTER TABLE userapi_devices ADD COLUMN IF NOT EXISTS ip TEXT",
    "ALTER TABLE userapi_devices ADD COLUMN IF NOT EXISTS user_agent TEXT",
    *(stmt for table in ("userapi_accounts", "userapi_devices", "userapi_profiles",
                         "userapi_account_datas")
      for stmt in (f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS server_name TEXT NOT NULL"
                   " DEFAULT ''",
                   # fixed names, no input
                   f"UPDATE {table} SET server_name = '{SERVER}' WHERE server_name = ''")),  # noqa: S608
    "ALTER TABLE userapi_accounts DROP CONSTRAINT IF EXISTS userapi_accounts_pkey",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_accounts_idx"
    " ON userapi_accounts(localpart, server_name)",
    "DROP INDEX IF EXISTS userapi_device_localpart_id_idx",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_device_localpart_id_idx"
    " ON userapi_devices(localpart, server_name, device_id)",
    "ALTER TABLE userapi_profiles DROP CONSTRAINT IF EXISTS userapi_profiles_pkey",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_profiles_idx"
    " ON userapi_profiles(localpart, server_name)",
    "ALTER TABLE userapi_account_datas DROP CONSTRAINT IF EXISTS userapi_account_datas_pkey",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_account_datas_idx"
    " ON userapi_account_datas(localpart, server_name, room_id, type)",
    "INSERT INTO db_migrations VALUES ('userapi: server names', '2023-01-01', '0.11.0')",
    REGISTRATION_TOKENS,  # a later start (0.13)
)

# -- SQLite -----------------------------------------------------------------------------------
_SQLITE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS db_migrations (
    version TEXT PRIMARY KEY NOT NULL, time TEXT NOT NULL, dendrite_version TEXT NOT NULL)"""

# What every start runs (the *_table.go schema constants).
SQLITE_SCHEMAS = (
    _SQLITE_MIGRATIONS_TABLE,
    """CREATE TABLE IF NOT EXISTS userapi_accounts (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT 0,
        account_type INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_accounts_idx"
    " ON userapi_accounts(localpart, server_name)",
    """CREATE TABLE IF NOT EXISTS userapi_devices (
        access_token TEXT PRIMARY KEY,
        session_id INTEGER,
        device_id TEXT ,
        localpart TEXT ,
        server_name TEXT NOT NULL,
        created_ts BIGINT,
        display_name TEXT,
        last_seen_ts BIGINT,
        ip TEXT,
        user_agent TEXT,
        UNIQUE (localpart, server_name, device_id))""",
    """CREATE TABLE IF NOT EXISTS userapi_profiles (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        display_name TEXT,
        avatar_url TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_profiles_idx"
    " ON userapi_profiles(localpart, server_name)",
    """CREATE TABLE IF NOT EXISTS userapi_account_datas (
        localpart TEXT NOT NULL,
        server_name TEXT NOT NULL,
        room_id TEXT,
        type TEXT NOT NULL,
        content TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS userapi_account_datas_idx"
    " ON userapi_account_datas(localpart, server_name, room_id, type)",
    REGISTRATION_TOKENS,
)

# The deltas a first start applies (each recorded in db_migrations).
SQLITE_FIRST_START_DELTAS = (
    # userapi: add is active
    "ALTER TABLE userapi_accounts RENAME TO userapi_accounts_tmp",
    """CREATE TABLE userapi_accounts (
        localpart TEXT NOT NULL PRIMARY KEY,
        server_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT 0)""",
    "INSERT INTO userapi_accounts (localpart, created_ts, password_hash, appservice_id)"
    " SELECT localpart, created_ts, password_hash, appservice_id FROM userapi_accounts_tmp",
    "DROP TABLE userapi_accounts_tmp",
    "INSERT INTO db_migrations VALUES ('userapi: add is active', 'now', '0.15.2')",
    # userapi: add account type
    "ALTER TABLE userapi_accounts RENAME TO userapi_accounts_tmp",
    """CREATE TABLE userapi_accounts (
        localpart TEXT NOT NULL PRIMARY KEY,
        server_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT 0,
        account_type INTEGER NOT NULL)""",
    "INSERT INTO userapi_accounts (localpart, created_ts, password_hash, appservice_id,"
    " account_type) SELECT localpart, created_ts, password_hash, appservice_id, 1"
    " FROM userapi_accounts_tmp",
    "UPDATE userapi_accounts SET account_type = 4 WHERE appservice_id <> ''",
    "UPDATE userapi_accounts SET account_type = 2 WHERE localpart GLOB '[0-9]*'",
    "DROP TABLE userapi_accounts_tmp",
    "INSERT INTO db_migrations VALUES ('userapi: add account type', 'now', '0.15.2')",
    # userapi: add last_seen_ts
    "ALTER TABLE userapi_devices RENAME TO userapi_devices_tmp",
    """CREATE TABLE userapi_devices (
        access_token TEXT PRIMARY KEY,
        session_id INTEGER,
        device_id TEXT ,
        localpart TEXT ,
        server_name TEXT NOT NULL,
        created_ts BIGINT,
        display_name TEXT,
        last_seen_ts BIGINT,
        ip TEXT,
        user_agent TEXT,
        UNIQUE (localpart, device_id))""",
    "INSERT INTO userapi_devices (access_token, session_id, device_id, localpart, created_ts,"
    " display_name, last_seen_ts, ip, user_agent) SELECT access_token, session_id, device_id,"
    " localpart, created_ts, display_name, created_ts, '', '' FROM userapi_devices_tmp",
    "DROP TABLE userapi_devices_tmp",
    "INSERT INTO db_migrations VALUES ('userapi: add last_seen_ts', 'now', '0.15.2')",
)

# Before server names: the layout after those three deltas, without server_name.
SQLITE_OLD = (
    _SQLITE_MIGRATIONS_TABLE,
    """CREATE TABLE userapi_accounts (
        localpart TEXT NOT NULL PRIMARY KEY,
        created_ts BIGINT NOT NULL,
        password_hash TEXT,
        appservice_id TEXT,
        is_deactivated BOOLEAN DEFAULT 0,
        account_type INTEGER NOT NULL)""",
    """CREATE TABLE userapi_devices (
        access_token TEXT PRIMARY KEY,
        session_id INTEGER,
        device_id TEXT ,
        localpart TEXT ,
        created_ts BIGINT,
        display_name TEXT,
        last_seen_ts BIGINT,
        ip TEXT,
        user_agent TEXT,
        UNIQUE (localpart, device_id))""",
    """CREATE TABLE userapi_profiles (
        localpart TEXT NOT NULL PRIMARY KEY,
        display_name TEXT,
        avatar_url TEXT)""",
    """CREATE TABLE userapi_account_datas (
        localpart TEXT NOT NULL,
        room_id TEXT,
        type TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY(localpart, room_id, type))""",
    "INSERT INTO db_migrations VALUES ('userapi: add is active', 'then', '0.10.0')",
    "INSERT INTO db_migrations VALUES ('userapi: add account type', 'then', '0.10.0')",
    "INSERT INTO db_migrations VALUES ('userapi: add last_seen_ts', 'then', '0.10.0')",
    "INSERT INTO userapi_accounts VALUES ('olduser', 1600000000000, '$2a$10$x', NULL, 0, 1)",
    "INSERT INTO userapi_profiles VALUES ('olduser', '', '')",
    "INSERT INTO userapi_devices VALUES ('old-token', 1, 'OLDDEVICE', 'olduser', 1600000000000,"
    " 'old phone', 1600000000000, '', '')",
)

SQLITE_UPGRADE = (
    *(stmt for table in ("userapi_accounts", "userapi_devices", "userapi_profiles",
                         "userapi_account_datas")
      for stmt in (f"ALTER TABLE {table} ADD COLUMN server_name TEXT NOT NULL DEFAULT ''",
                   # fixed names, no input
                   f"UPDATE {table} SET server_name = '{SERVER}' WHERE server_name = ''")),  # noqa: S608
    "INSERT INTO db_migrations VALUES ('userapi: server names', 'now', '0.11.0')",
    # The next start's schema constants add the (localpart, server_name) indexes.
    *SQLITE_SCHEMAS,
)

# -- the roomserver ----------------------------------------------------------------------------
# Only the three tables the room list reads, from roomserver/storage/{postgres,sqlite3}/
# rooms_table.go, membership_table.go (with its forgotten column) and
# event_state_keys_table.go, as Dendrite 0.15.2 creates them.  Dendrite may keep them
# in the userapi's database (PostgreSQL, one database for every component) or in a
# database of their own (SQLite's default: a file per component).
ROOMSERVER_PG = (
    "CREATE SEQUENCE IF NOT EXISTS roomserver_room_nid_seq",
    """CREATE TABLE IF NOT EXISTS roomserver_rooms (
        room_nid BIGINT PRIMARY KEY DEFAULT nextval('roomserver_room_nid_seq'),
        room_id TEXT NOT NULL CONSTRAINT roomserver_room_id_unique UNIQUE,
        latest_event_nids BIGINT[] NOT NULL DEFAULT '{}'::BIGINT[],
        last_event_sent_nid BIGINT NOT NULL DEFAULT 0,
        state_snapshot_nid BIGINT NOT NULL DEFAULT 0,
        room_version TEXT NOT NULL)""",
    "CREATE SEQUENCE IF NOT EXISTS roomserver_event_state_key_nid_seq START 65536",
    """CREATE TABLE IF NOT EXISTS roomserver_event_state_keys (
        event_state_key_nid BIGINT PRIMARY KEY
            DEFAULT nextval('roomserver_event_state_key_nid_seq'),
        event_state_key TEXT NOT NULL CONSTRAINT roomserver_event_state_key_unique UNIQUE)""",
    "INSERT INTO roomserver_event_state_keys (event_state_key_nid, event_state_key)"
    " VALUES (1, '') ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS roomserver_membership (
        room_nid BIGINT NOT NULL,
        target_nid BIGINT NOT NULL,
        sender_nid BIGINT NOT NULL DEFAULT 0,
        membership_nid BIGINT NOT NULL DEFAULT 1,
        event_nid BIGINT NOT NULL DEFAULT 0,
        target_local BOOLEAN NOT NULL DEFAULT false,
        forgotten BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (room_nid, target_nid))""",
)

ROOMSERVER_SQLITE = (
    """CREATE TABLE IF NOT EXISTS roomserver_rooms (
        room_nid INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL UNIQUE,
        latest_event_nids TEXT NOT NULL DEFAULT '[]',
        last_event_sent_nid INTEGER NOT NULL DEFAULT 0,
        state_snapshot_nid INTEGER NOT NULL DEFAULT 0,
        room_version TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS roomserver_event_state_keys (
        event_state_key_nid INTEGER PRIMARY KEY AUTOINCREMENT,
        event_state_key TEXT NOT NULL UNIQUE)""",
    "INSERT INTO roomserver_event_state_keys (event_state_key_nid, event_state_key)"
    " VALUES (1, '') ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS roomserver_membership (
        room_nid INTEGER NOT NULL,
        target_nid INTEGER NOT NULL,
        sender_nid INTEGER NOT NULL DEFAULT 0,
        membership_nid INTEGER NOT NULL DEFAULT 1,
        event_nid INTEGER NOT NULL DEFAULT 0,
        target_local BOOLEAN NOT NULL DEFAULT false,
        forgotten BOOLEAN NOT NULL DEFAULT false,
        UNIQUE (room_nid, target_nid))""",
)

# membership_nid values (roomserver/storage/tables: MembershipState*).
LEAVE_OR_BAN, INVITE, JOIN = 1, 2, 3
ROOMSERVER_TABLES = ("roomserver_rooms", "roomserver_event_state_keys",
                     "roomserver_membership")

# -- Dendrite's statements ---------------------------------------------------------------------
# From the *_table.go files; the comment says what Go scans each column into (a plain
# string or int cannot take NULL).
DENDRITE_SELECT = {
    # localpart, server_name: string; appservice_id: NullString; account_type: int
    "account": "SELECT localpart, server_name, appservice_id, account_type FROM"
               " userapi_accounts WHERE localpart = $1 AND server_name = $2",
    # password_hash: string
    "password_hash": "SELECT password_hash FROM userapi_accounts WHERE localpart = $1"
                     " AND server_name = $2 AND is_deactivated = {false}",
    # all four: string
    "profile": "SELECT localpart, server_name, display_name, avatar_url FROM userapi_profiles"
               " WHERE localpart = $1 AND server_name = $2",
    # session_id: int64; device_id, localpart, server_name: string
    "device_by_token": "SELECT session_id, device_id, localpart, server_name FROM"
                       " userapi_devices WHERE access_token = $1",
    # session_id: int64; the others Null*
    "devices_by_localpart": "SELECT device_id, display_name, last_seen_ts, ip, user_agent,"
                            " session_id FROM userapi_devices WHERE localpart = $1 AND"
                            " server_name = $2 AND device_id != $3 ORDER BY last_seen_ts DESC",
    # room_id, type: string; content: []byte
    "account_data": "SELECT room_id, type, content FROM userapi_account_datas WHERE"
                    " localpart = $1 AND server_name = $2",
}

# Columns Go scans into a plain string or int, by statement (None allowed elsewhere).
NOT_NULL = {
    "account": (0, 1, 3),
    "password_hash": (0,),
    "profile": (0, 1, 2, 3),
    "device_by_token": (0, 1, 2, 3),
    "devices_by_localpart": (5,),
    "account_data": (0, 1, 2),
}


@dataclass
class DendriteDb:
    """A database laid out by Dendrite: ``engine`` is "sqlite" or "postgres"."""

    engine: str
    layout: str
    path: Path | None = None
    dsn: str | None = None

    def _connect(self) -> Any:
        if self.engine == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path, isolation_level=None)
            return conn
        return psycopg2.connect(self.dsn, connect_timeout=5)

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{false}", "0" if self.engine == "sqlite" else "FALSE")
        if self.engine == "sqlite":
            return re.sub(r"\$(\d+)", r"?\1", sql)
        return re.sub(r"\$(\d+)", r"%(p\1)s", sql)

    def _params(self, args: Sequence[Any]) -> Any:
        if self.engine == "sqlite":
            return tuple(args)
        # No parameters: no %-formatting either (LIKE patterns use '%').
        return {f"p{i}": a for i, a in enumerate(args, 1)} if args else None

    def run(self, statements: Sequence[str]) -> None:
        """Run statements as Dendrite does at start-up (one transaction)."""
        conn = self._connect()
        try:
            if self.engine == "sqlite":
                conn.execute("BEGIN")
                for stmt in statements:
                    conn.execute(stmt)
                conn.execute("COMMIT")
            else:
                with conn, conn.cursor() as cur:
                    for stmt in statements:
                        cur.execute(stmt)
        finally:
            conn.close()

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """A statement of Dendrite's (``$1`` placeholders); the rows."""
        conn = self._connect()
        try:
            if self.engine == "sqlite":
                cur = conn.execute(self._sql(sql), self._params(args))
                rows = cur.fetchall() if cur.description is not None else []
                return [tuple(r) for r in rows]
            with conn, conn.cursor() as pg:
                pg.execute(self._sql(sql), self._params(args))
                return [tuple(r) for r in pg.fetchall()] if pg.description else []
        finally:
            conn.close()

    def select(self, name: str, *args: Any) -> list[tuple[Any, ...]]:
        """One of :data:`DENDRITE_SELECT`, checking that no column Go scans into a plain
        type is NULL (Dendrite would fail to read the row)."""
        rows = self.query(DENDRITE_SELECT[name], *args)
        for row in rows:
            for index in NOT_NULL[name]:
                assert row[index] is not None, f"Dendrite cannot scan {name} column {index}"
        return rows

    # Rows as Dendrite writes them -----------------------------------------------------------
    def create_account(self, localpart: str, *, account_type: int = 1,
                       password_hash: str = "$2a$10$notarealhashbutnotnull",  # noqa: S107
                       ) -> None:
        now = int(time.time() * 1000)
        self.query("INSERT INTO userapi_accounts(localpart, server_name, created_ts,"
                   " password_hash, appservice_id, account_type)"
                   " VALUES ($1, $2, $3, $4, $5, $6)",
                   localpart, SERVER, now, password_hash, None, account_type)
        self.query("INSERT INTO userapi_profiles(localpart, server_name, display_name,"
                   " avatar_url) VALUES ($1, $2, $3, $4)", localpart, SERVER, "", "")
        self.query("UPDATE userapi_profiles SET display_name = $1 WHERE localpart = $2 AND"
                   " server_name = $3", localpart, localpart, SERVER)

    def create_device(self, localpart: str, device_id: str, token: str, *, ip: str,
                      user_agent: str, created_ts: int | None = None) -> int:
        """Dendrite's InsertDevice; returns the session ID it allocated."""
        now = created_ts if created_ts is not None else int(time.time() * 1000)
        if self.engine == "postgres":
            rows = self.query(
                "INSERT INTO userapi_devices(device_id, localpart, server_name, access_token,"
                " created_ts, display_name, last_seen_ts, ip, user_agent)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING session_id",
                device_id, localpart, SERVER, token, now, "phone", now, ip, user_agent)
            return int(rows[0][0])
        count = int(self.query("SELECT COUNT(access_token) FROM userapi_devices")[0][0])
        self.query("INSERT INTO userapi_devices (device_id, localpart, server_name,"
                   " access_token, created_ts, display_name, session_id, last_seen_ts, ip,"
                   " user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                   device_id, localpart, SERVER, token, now, "phone", count + 1, now, ip,
                   user_agent)
        return count + 1

    def update_last_seen(self, localpart: str, device_id: str, ip: str, user_agent: str,
                         ts: int) -> None:
        self.query("UPDATE userapi_devices SET last_seen_ts = $1, ip = $2, user_agent = $3"
                   " WHERE localpart = $4 AND server_name = $5 AND device_id = $6",
                   ts, ip, user_agent, localpart, SERVER, device_id)

    def delete_device(self, localpart: str, device_id: str) -> None:
        self.query("DELETE FROM userapi_devices WHERE device_id = $1 AND localpart = $2"
                   " AND server_name = $3", device_id, localpart, SERVER)

    # The roomserver's rows, as Dendrite writes them ---------------------------------------------
    def create_room(self, room_id: str, room_version: str = "10") -> int:
        """InsertRoomNID, then UpdateLatestEventNIDs (the room's create event, 1, as
        its latest event and a state snapshot); returns the room NID."""
        if self.engine == "postgres":
            rows = self.query("INSERT INTO roomserver_rooms (room_id, room_version)"
                              " VALUES ($1, $2) ON CONFLICT ON CONSTRAINT"
                              " roomserver_room_id_unique DO NOTHING RETURNING (room_nid)",
                              room_id, room_version)
            nid = int(rows[0][0])
            self.query("UPDATE roomserver_rooms SET latest_event_nids = $2,"
                       " last_event_sent_nid = $3, state_snapshot_nid = $4"
                       " WHERE room_nid = $1", nid, [1], 1, 1)
            return nid
        rows = self.query("INSERT INTO roomserver_rooms (room_id, room_version)"
                          " VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING room_nid",
                          room_id, room_version)
        nid = int(rows[0][0])
        self.query("UPDATE roomserver_rooms SET latest_event_nids = $1,"
                   " last_event_sent_nid = $2, state_snapshot_nid = $3 WHERE room_nid = $4",
                   "[1]", 1, 1, nid)
        return nid

    def state_key_nid(self, state_key: str) -> int:
        """InsertEventStateKeyNID, or the NID the key already has."""
        if self.engine == "postgres":
            rows = self.query("INSERT INTO roomserver_event_state_keys (event_state_key)"
                              " VALUES ($1) ON CONFLICT ON CONSTRAINT"
                              " roomserver_event_state_key_unique DO NOTHING"
                              " RETURNING (event_state_key_nid)", state_key)
        else:
            rows = self.query("INSERT INTO roomserver_event_state_keys (event_state_key)"
                              " VALUES ($1) ON CONFLICT DO NOTHING"
                              " RETURNING event_state_key_nid", state_key)
        if rows:
            return int(rows[0][0])
        return int(self.query("SELECT event_state_key_nid FROM roomserver_event_state_keys"
                              " WHERE event_state_key = $1", state_key)[0][0])

    def set_membership(self, room_nid: int, user_id: str, membership_nid: int,
                       event_nid: int) -> None:
        """InsertMembership (target_local from the user's server), then
        UpdateMembership as the roomserver's membership updater does."""
        target = self.state_key_nid(user_id)
        local = user_id.endswith(":" + SERVER)
        self.query("INSERT INTO roomserver_membership (room_nid, target_nid, target_local)"
                   " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", room_nid, target, local)
        self.query("UPDATE roomserver_membership SET sender_nid = $3, membership_nid = $4,"
                   " event_nid = $5, forgotten = $6 WHERE room_nid = $1 AND target_nid = $2",
                   room_nid, target, target, membership_nid, event_nid, False)

    def table_rows(self, tables: Sequence[str] = ROOMSERVER_TABLES) -> dict[str, Any]:
        """Every row of each table, ordered (to show nothing changed)."""
        return {t: sorted(map(repr, self.query(f"SELECT * FROM {t}")))  # noqa: S608 (fixed names)
                for t in tables}

    # What the package must leave alone -------------------------------------------------------
    def catalogue(self) -> list[tuple[Any, ...]]:
        """Every definition that concerns Dendrite's tables: columns, indexes,
        constraints (also those of other tables pointing at them), sequences, and on
        SQLite the persistent journal mode."""
        if self.engine == "sqlite":
            # sqlite_sequence is SQLite's own (AUTOINCREMENT), which a real Dendrite
            # file has anyway (its notifications table uses AUTOINCREMENT too).
            rows = self.query("SELECT type, name, tbl_name, sql FROM sqlite_master"
                              " WHERE (tbl_name NOT LIKE 'dendrite_admin_%'"
                              " OR sql LIKE '%userapi_%') AND name <> 'sqlite_sequence'"
                              " ORDER BY type, name")
            return [*rows, ("journal_mode", *self.query("PRAGMA journal_mode")[0])]
        out: list[tuple[Any, ...]] = []
        out += self.query(
            "SELECT 'column', table_name, column_name, data_type, is_nullable,"
            " column_default FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name NOT LIKE 'dendrite_admin_%'"
            " ORDER BY table_name, column_name")
        out += self.query(
            "SELECT 'index', tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename NOT LIKE 'dendrite_admin_%'"
            " ORDER BY tablename, indexname")
        out += self.query(
            "SELECT 'constraint', c.conrelid::regclass::text, c.conname,"
            " pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " WHERE c.conrelid::regclass::text LIKE 'userapi_%'"
            " OR c.confrelid::regclass::text LIKE 'userapi_%' ORDER BY 2, 3")
        out += self.query(
            "SELECT 'sequence', sequence_name FROM information_schema.sequences"
            " WHERE sequence_schema = current_schema()"
            " AND sequence_name NOT LIKE 'dendrite_admin_%' ORDER BY 2")
        return out

    def tables(self) -> set[str]:
        if self.engine == "sqlite":
            return {r[0] for r in self.query("SELECT name FROM sqlite_master"
                                             " WHERE type = 'table'")}
        return {r[0] for r in self.query("SELECT table_name FROM information_schema.tables"
                                         " WHERE table_schema = current_schema()")}


def build_roomserver(db: DendriteDb) -> DendriteDb:
    """Add the roomserver's tables to ``db`` (its own database, or the userapi's)."""
    db.run(ROOMSERVER_PG if db.engine == "postgres" else ROOMSERVER_SQLITE)
    return db


def build_dendrite(db: DendriteDb) -> DendriteDb:
    """Lay the database out as Dendrite would for ``db.layout``: "fresh" (one start),
    "restarted" (SQLite: a second start), "upgraded" (an old layout through the deltas),
    or "empty" (Dendrite never started)."""
    if db.layout == "empty":
        return db
    if db.engine == "postgres":
        db.run(PG_FRESH if db.layout in ("fresh", "restarted") else (*PG_OLD, *PG_UPGRADE))
        return db
    if db.layout == "upgraded":
        db.run((*SQLITE_OLD, *SQLITE_UPGRADE))
        return db
    db.run((*SQLITE_SCHEMAS, *SQLITE_FIRST_START_DELTAS))
    if db.layout == "restarted":
        db.run(SQLITE_SCHEMAS)
    return db
