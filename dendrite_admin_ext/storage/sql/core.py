"""The SQL of the core features (auth, accounts, nonces, rooms, notices, audit), and the
lifecycle (connect, migrate) every SQL backend shares."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ...errors import StartupRefusedError, StorageUnavailableError, UserInUseError
from ...events import ROOM_VERSION, build_event, member_profile, new_room_id, now_ms
from ...identifiers import UserID
from ..types import (
    Account,
    AccountType,
    Activity,
    AuditEntry,
    Connection,
    DeviceInfo,
    Member,
    MembershipChange,
    NewAccount,
    NewDevice,
    NewRoom,
    NoticeTxnKey,
    Profile,
    TokenOwner,
    UserRoom,
)
from .base import SqlBase
from .dendrite import PUSH_RULES_TYPE, default_push_rules
from .ops import Op, Row, Stmt, dumps, exec_, insert_rows, key_groups, one, select, with_keys
from .schema import DENDRITE_TABLES, MIGRATIONS, OWNED_MARKER_INDEX, SCHEMA_VERSION_TABLE

__all__ = ["SqlCore"]

# Nonce bookkeeping: every insert trims to the newest ``max_nonces`` (one indexed range
# delete); every PURGE_EVERY-th insert also deletes the expired ones.
NONCE_PURGE_EVERY = 64

T = TypeVar("T")


def _device_infos(rows: Sequence[Row]) -> list[DeviceInfo]:
    """One user's devices from rows of :meth:`SqlCore._devices_of`, in order, one row
    per connection.

    The device's own last-seen columns are the homeserver's latest sighting (Dendrite
    updates them on every request it serves): shown together with ours, one connection
    per (ip, user agent) at its newest time, newest first (SPEC 8)."""
    devices: dict[str, tuple[str | None, dict[tuple[str, str], int], Row]] = {}
    for row in rows:
        entry = devices.setdefault(row.device_id, (row.display_name, {}, row))
        if row.conn_last_seen_ts is not None:
            entry[1][(row.conn_ip, row.conn_user_agent)] = int(row.conn_last_seen_ts)
    out = []
    for device_id, (display_name, seen, row) in devices.items():
        if row.ip is not None:
            # NULL last_seen_ts (Dendrite's SQLite layout allows it) reads as 0, as
            # Dendrite's own whois does.
            key, ts = (row.ip, row.user_agent or ""), int(row.last_seen_ts or 0)
            if seen.get(key, -1) < ts:
                seen[key] = ts
        conns = sorted((Connection(ip, ua, ts) for (ip, ua), ts in seen.items()),
                       key=lambda c: (-c.last_seen_ts, c.ip, c.user_agent))
        out.append(DeviceInfo(device_id, display_name, tuple(conns)))
    return out


_INSERT_DEVICE = (
    "INSERT INTO userapi_devices (access_token, session_id, device_id, localpart,"
    " server_name, created_ts, display_name, last_seen_ts, ip, user_agent)"
    " VALUES (%s, {session_id}, %s, %s, %s, %s, %s, %s, %s, %s)")

_DELETE_DEVICES = "DELETE FROM {table} WHERE localpart = %s AND server_name = %s"

# A notice transaction's record, by its key.
_TXN_EVENT = ("SELECT event_id FROM dendrite_admin_notice_txns"
              " WHERE user_id = %s AND device_id = %s AND txn_id = %s")


def _txn_key(key: NoticeTxnKey) -> tuple[str, str, str]:
    return (str(key.user), key.device_id, key.txn_id)




class SqlCore(SqlBase):
    """:class:`~.base.AdminStorage` over Dendrite's tables and ours (see schema.py).

    Subclasses provide :meth:`_run`, :meth:`_connect` and :meth:`_disconnect`.
    ``open``/``close`` nest: the storage stays open until every opener has closed it,
    so a host (or a test) may hold it open around the admin app's own lifecycle.

    :meth:`get_token_owners` and :meth:`get_devices_of` read many keys in one
    statement: :class:`~dendrite_admin_ext.storage.coalescing.CoalescingStorage` sends
    the single-key reads waiting at the same moment through them.
    """

    # "dendrite": the database is Dendrite's (database.shared_with, SPEC 8): no DDL on
    # its tables, rows written as Dendrite writes them, its device columns never
    # written.  None: the package owns the schema.
    shared_with: str | None = None

    @property
    def shared(self) -> bool:
        return self.shared_with is not None

    def __init__(self) -> None:
        self._open_count = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        self._open_count += 1
        if self._open_count > 1:
            return
        try:
            await self._connect()
            await self._run(self._migrate(), write=True)
        except BaseException:
            self._open_count -= 1
            await self._disconnect()
            raise

    async def close(self) -> None:
        if self._open_count == 0:
            return
        self._open_count -= 1
        if self._open_count == 0:
            await self._disconnect()

    async def ping(self) -> None:
        await self._run(one("SELECT 1", ()), write=False)

    def _migrate(self) -> Op[int]:
        """Apply the missing migrations; returns the schema version reached."""
        d = self.dialect
        if d.migration_lock:
            yield Stmt(d.migration_lock, reuse=False)
        if self.shared:
            # Before anything is created: a package first would leave tables that
            # Dendrite's own first start then trips over (SPEC 8).
            res = yield Stmt("SELECT name FROM {index_catalog} i WHERE name = %s",
                             (OWNED_MARKER_INDEX,), reuse=False)
            if res.rows:
                raise StartupRefusedError(
                    "this database was set up by dendrite_admin_ext without "
                    "database.shared_with (it created or altered Dendrite's tables), so "
                    "it is not a database Dendrite created: give the package Dendrite's "
                    "own database, which Dendrite has started on first")
            res = yield Stmt(with_keys("SELECT name FROM {table_catalog} t"
                                       " WHERE name IN ({keys})", len(DENDRITE_TABLES)),
                             DENDRITE_TABLES, reuse=False)
            missing = sorted(set(DENDRITE_TABLES) - {str(r[0]) for r in res.rows})
            if missing:
                raise StartupRefusedError(
                    f"database.shared_with is {self.shared_with} but Dendrite's tables "
                    f"are missing ({', '.join(missing)}): start Dendrite once first, so "
                    f"that it creates its schema, then start dendrite_admin_ext")
        yield Stmt(SCHEMA_VERSION_TABLE, reuse=False)
        res = yield Stmt("SELECT COALESCE(MAX(version), 0) AS version"
                         " FROM dendrite_admin_schema_version", reuse=False)
        current = int(res.rows[0].version)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.for_dialect(d, shared=self.shared):
                yield Stmt(statement, reuse=False)
            yield Stmt("INSERT INTO dendrite_admin_schema_version "
                       "(version, description, applied_ts) VALUES (%s, %s, %s)",
                       (migration.version, migration.description, now_ms()), reuse=False)
            current = migration.version
        return current

    # -- authentication ------------------------------------------------------------------
    async def get_token_owner(self, access_token: str) -> TokenOwner | None:
        return (await self.get_token_owners([access_token])).get(access_token)

    async def get_token_owners(self, tokens: Sequence[str]) -> dict[str, TokenOwner]:
        """:meth:`get_token_owner` of many tokens at once (a handful of statements
        whatever their number); unknown tokens are left out."""
        rows = await self._run(self._token_owners(tokens), write=False)
        return {row.access_token: TokenOwner(
            UserID(row.localpart, row.server_name), row.device_id,
            AccountType(row.account_type), bool(row.is_deactivated), bool(row.locked),
            bool(row.suspended)) for row in rows}

    @staticmethod
    def _token_owners(tokens: Sequence[str]) -> Op[list[Row]]:
        rows: list[Row] = []
        for keys in key_groups(tokens):
            res = yield Stmt(with_keys(
                "SELECT d.access_token, d.localpart, d.server_name, d.device_id,"
                " a.account_type, a.is_deactivated, s.locked, s.suspended"
                " FROM userapi_devices d JOIN userapi_accounts a"
                " ON a.localpart = d.localpart AND a.server_name = d.server_name"
                # Moderation state (SPEC 10) in the same round trip: a primary-key
                # probe, where a second query would cost every request another one.
                " LEFT JOIN dendrite_admin_account_state s"
                " ON s.localpart = d.localpart AND s.server_name = d.server_name"
                " WHERE d.access_token IN ({keys})", len(keys)), keys)
            rows += res.rows
        return rows

    async def record_activity(self, seen: Sequence[Activity]) -> None:
        if seen:
            await self._run(self._record_activity(seen), write=True)

    def _record_activity(self, seen: Sequence[Activity]) -> Op[None]:
        conns: dict[tuple[str, str, str, str, str], int] = {}
        newest: dict[tuple[str, str, str], Activity] = {}
        for a in seen:
            key = (a.user.localpart, a.user.server_name, a.device_id, a.ip, a.user_agent)
            if conns.get(key, -1) < a.last_seen_ts:
                conns[key] = a.last_seen_ts
            dev = (a.user.localpart, a.user.server_name, a.device_id)
            if dev not in newest or newest[dev].last_seen_ts < a.last_seen_ts:
                newest[dev] = a
        # Sightings of devices that no longer exist are dropped by the join.
        yield from insert_rows(
            "INSERT INTO dendrite_admin_device_connections"
            " (localpart, server_name, device_id, ip, user_agent, last_seen_ts)"
            " SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6"
            # Rows in key order, here and below: two workers flushing sightings of the
            # same devices then lock them in the same order and cannot deadlock.
            " FROM (", 6, [(*k, ts) for k, ts in sorted(conns.items())],
            ") AS v JOIN userapi_devices d ON d.localpart = v.column1"
            " AND d.server_name = v.column2 AND d.device_id = v.column3"
            # "WHERE true" resolves SQLite's parsing ambiguity between ON and ON CONFLICT.
            " WHERE true ON CONFLICT (localpart, server_name, device_id, ip, user_agent)"
            " DO UPDATE SET last_seen_ts = {greatest}("
            "dendrite_admin_device_connections.last_seen_ts, excluded.last_seen_ts)")
        if self.shared:
            # Dendrite's device columns are Dendrite's last sighting: never written
            # beside it (whois shows both).
            return
        yield from insert_rows(
            "UPDATE userapi_devices SET last_seen_ts = v.column4, ip = v.column5,"
            " user_agent = v.column6 FROM (", 6,
            [(a.user.localpart, a.user.server_name, a.device_id, a.last_seen_ts, a.ip,
              a.user_agent)
             for _, a in sorted(newest.items())],
            ") AS v WHERE userapi_devices.localpart = v.column1"
            " AND userapi_devices.server_name = v.column2"
            " AND userapi_devices.device_id = v.column3"
            # Our own devices start with ip NULL (never seen); last_seen_ts is NOT NULL
            # in Dendrite's schema, so it holds the creation time until then.
            " AND (userapi_devices.ip IS NULL OR userapi_devices.last_seen_ts < v.column4)")

    # -- accounts --------------------------------------------------------------------------
    async def get_account(self, user: UserID) -> Account | None:
        row = await self._run(one(
            "SELECT a.created_ts, a.account_type, a.is_deactivated, a.appservice_id,"
            " t.user_type FROM userapi_accounts a LEFT JOIN dendrite_admin_user_types t"
            " ON t.localpart = a.localpart AND t.server_name = a.server_name"
            " WHERE a.localpart = %s AND a.server_name = %s",
            (user.localpart, user.server_name)), write=False)
        if row is None:
            return None
        return Account(user, int(row.created_ts), AccountType(row.account_type),
                       bool(row.is_deactivated), row.appservice_id, row.user_type)

    async def localpart_exists(self, user: UserID) -> bool:
        row = await self._run(one(
            "SELECT 1 FROM userapi_accounts WHERE lower(localpart) = %s AND server_name = %s"
            " LIMIT 1", (user.localpart.lower(), user.server_name)), write=False)
        return row is not None

    async def create_account(self, account: NewAccount, device: NewDevice | None) -> None:
        await self._run(self._create_account(account, device), write=True)

    def _create_account(self, account: NewAccount, device: NewDevice | None) -> Op[None]:
        lp, sn = account.user.localpart, account.user.server_name
        password_hash = account.password_hash
        if password_hash is None and self.shared:
            # Dendrite writes '' for an account without a password; its login scans
            # the column into a plain string.
            password_hash = ""
        res = yield Stmt(
            "INSERT INTO userapi_accounts (localpart, server_name, created_ts, password_hash,"
            " is_deactivated, account_type) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (lp, sn, account.created_ts, password_hash, False,
             int(account.account_type)))
        if res.rowcount == 0:
            # The unique index decided: someone else has (or just took) this name.
            raise UserInUseError(lp)
        yield from self._put_profile(lp, sn, Profile(account.display_name, account.avatar_url))
        if account.user_type is not None:
            yield Stmt("INSERT INTO dendrite_admin_user_types (localpart, server_name,"
                       " user_type) VALUES (%s, %s, %s) ON CONFLICT (localpart, server_name)"
                       " DO UPDATE SET user_type = excluded.user_type",
                       (lp, sn, account.user_type))
        else:
            yield Stmt("DELETE FROM dendrite_admin_user_types"
                       " WHERE localpart = %s AND server_name = %s", (lp, sn))
        if self.shared:
            # Dendrite creates every account with its default push rules.
            yield Stmt("INSERT INTO userapi_account_datas (localpart, server_name, room_id,"
                       " type, content) VALUES (%s, %s, %s, %s, %s)"
                       " ON CONFLICT (localpart, server_name, room_id, type) DO NOTHING",
                       (lp, sn, "", PUSH_RULES_TYPE, dumps(default_push_rules(lp, sn))))
        if device is not None:
            yield from self._add_device(lp, sn, device, account.created_ts)

    def _add_device(self, localpart: str, server_name: str, device: NewDevice,
                    now: int) -> Op[None]:
        # A device id names one device per user: re-adding it replaces the old one
        # (and its token and connections).
        yield Stmt("DELETE FROM userapi_devices"
                   " WHERE localpart = %s AND server_name = %s AND device_id = %s",
                   (localpart, server_name, device.device_id))
        if self.shared:  # no foreign key cascades beside Dendrite
            yield Stmt("DELETE FROM dendrite_admin_device_connections"
                       " WHERE localpart = %s AND server_name = %s AND device_id = %s",
                       (localpart, server_name, device.device_id))
        yield Stmt(
            _INSERT_DEVICE.replace("{session_id}", "{dendrite_session_id}" if self.shared
                                   else "{next_session_id}"),
            (device.access_token, device.device_id, localpart, server_name, now,
             device.display_name, now, device.ip, device.user_agent))

    async def set_password(
        self, user: UserID, password_hash: str, *, logout_devices: bool,
        keep_device_id: str | None = None,
    ) -> None:
        await self._run(self._set_password(user, password_hash, logout_devices,
                                           keep_device_id), write=True)

    def _set_password(self, user: UserID, password_hash: str, logout_devices: bool,
                      keep_device_id: str | None) -> Op[None]:
        who = (user.localpart, user.server_name)
        res = yield Stmt("UPDATE userapi_accounts SET password_hash = %s"
                         " WHERE localpart = %s AND server_name = %s", (password_hash, *who))
        if res.rowcount == 0 or not logout_devices:
            return
        tables = ("userapi_devices", "dendrite_admin_device_connections") if self.shared else (
            "userapi_devices",)  # beside Dendrite no foreign key cascades to our sightings
        for table in tables:
            if keep_device_id is None:
                yield Stmt(_DELETE_DEVICES.replace("{table}", table), who)
            else:
                yield Stmt(_DELETE_DEVICES.replace("{table}", table) + " AND device_id <> %s",
                           (*who, keep_device_id))

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        return (await self.get_devices_of([user]))[user]

    async def get_devices_of(self, users: Sequence[UserID]) -> dict[UserID, list[DeviceInfo]]:
        """:meth:`get_devices` of many users at once (a handful of statements whatever
        their number): every user asked for is a key, with a list of its own."""
        by_server: dict[str, list[str]] = {}
        for user in users:
            by_server.setdefault(user.server_name, []).append(user.localpart)
        rows = await self._run(self._devices_of(by_server), write=False)
        grouped: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            grouped.setdefault((row.localpart, row.server_name), []).append(row)
        return {user: _device_infos(grouped.get((user.localpart, user.server_name), ()))
                for user in users}

    def _devices_of(self, by_server: Mapping[str, Sequence[str]]) -> Op[list[Row]]:
        rows: list[Row] = []
        # Beside Dendrite no foreign key removes the sightings of a device Dendrite
        # deleted: those of an earlier device with the same ID are older than it.
        current = (" AND c.last_seen_ts >= COALESCE(d.created_ts, 0)" if self.shared
                   else "")
        for server_name, localparts in by_server.items():
            for keys in key_groups(localparts):
                res = yield Stmt(with_keys(
                    "SELECT d.localpart, d.server_name,"
                    " d.device_id, d.display_name, d.last_seen_ts, d.ip, d.user_agent,"
                    " c.ip AS conn_ip, c.user_agent AS conn_user_agent,"
                    " c.last_seen_ts AS conn_last_seen_ts"
                    " FROM userapi_devices d LEFT JOIN dendrite_admin_device_connections c"
                    " ON c.localpart = d.localpart AND c.server_name = d.server_name"
                    " AND c.device_id = d.device_id{current}"
                    " WHERE d.server_name = %s AND d.localpart IN ({keys})"
                    " ORDER BY d.localpart, d.session_id, d.device_id, c.last_seen_ts DESC,"
                    " c.ip, c.user_agent", len(keys)).replace("{current}", current),
                    (server_name, *keys))
                rows += res.rows
        return rows

    async def get_profile(self, user: UserID) -> Profile | None:
        # '' is how Dendrite stores "none" (see _put_profile).
        row = await self._run(one(
            "SELECT NULLIF(display_name, '') AS display_name,"
            " NULLIF(avatar_url, '') AS avatar_url FROM userapi_profiles"
            " WHERE localpart = %s AND server_name = %s",
            (user.localpart, user.server_name)), write=False)
        return None if row is None else Profile(row.display_name, row.avatar_url)

    async def set_profile(self, user: UserID, profile: Profile) -> None:
        await self._run(self._put_profile(user.localpart, user.server_name, profile),
                        write=True)

    @staticmethod
    def _put_profile(localpart: str, server_name: str, profile: Profile) -> Op[None]:
        yield Stmt("INSERT INTO userapi_profiles (localpart, server_name, display_name,"
                   " avatar_url) VALUES (%s, %s, %s, %s) ON CONFLICT (localpart, server_name)"
                   " DO UPDATE SET display_name = excluded.display_name,"
                   " avatar_url = excluded.avatar_url",
                   # Never NULL: Dendrite scans both into plain strings and fails on a
                   # NULL (profile lookups, room creation); it writes '' for "none".
                   (localpart, server_name, profile.display_name or "",
                    profile.avatar_url or ""))

    # -- nonces ------------------------------------------------------------------------------
    async def add_nonce(self, nonce: str, expires_ts: int, max_nonces: int) -> None:
        await self._run(self._add_nonce(nonce, expires_ts, max_nonces), write=True)

    @staticmethod
    def _add_nonce(nonce: str, expires_ts: int, max_nonces: int) -> Op[None]:
        res = yield Stmt("INSERT INTO dendrite_admin_nonces (nonce, expires_ts) VALUES (%s, %s)"
                         " ON CONFLICT (nonce) DO UPDATE SET expires_ts = excluded.expires_ts"
                         " RETURNING id", (nonce, expires_ts))
        new_id = int(res.rows[0].id)
        # Ids grow with every insert, so "id > new_id - max_nonces" are at most
        # max_nonces rows: the bound holds without counting anything.
        # Concurrent GETs trim overlapping ranges: rows another transaction holds are
        # skipped, not waited for (a flood of GETs deadlocked on them, answering 503).
        yield Stmt("DELETE FROM dendrite_admin_nonces WHERE id IN (SELECT id FROM"
                   " dendrite_admin_nonces WHERE id <= %s {skip_locked})",
                   (new_id - max_nonces,))
        if new_id % NONCE_PURGE_EVERY == 0:
            yield Stmt("DELETE FROM dendrite_admin_nonces WHERE id IN (SELECT id FROM"
                       " dendrite_admin_nonces WHERE expires_ts <= %s {skip_locked})",
                       (now_ms(),))

    async def take_nonce(self, nonce: str, now_ts: int) -> bool:
        row = await self._run(one(
            "DELETE FROM dendrite_admin_nonces WHERE nonce = %s RETURNING expires_ts",
            (nonce,)), write=True)
        return row is not None and int(row.expires_ts) > now_ts

    # -- rooms ---------------------------------------------------------------------------------
    async def room_exists(self, room_id: str) -> bool:
        row = await self._run(one(
            "SELECT 1 FROM dendrite_admin_rooms WHERE room_id = %s", (room_id,)), write=False)
        return row is not None

    async def get_local_joined_members(
        self, room_id: str, server_name: str, *, after: UserID | None, limit: int
    ) -> list[Member]:
        rows = await self._run(select(
            "SELECT user_id, display_name, avatar_url FROM dendrite_admin_memberships"
            " WHERE room_id = %s AND membership = 'join' AND server_name = %s"
            " AND user_id > %s ORDER BY user_id LIMIT %s",
            # Every user ID starts with "@", so "" is before them all.
            (room_id, server_name, "" if after is None else str(after), max(0, limit))),
            write=False)
        return [Member(UserID.from_stored(r.user_id), r.display_name, r.avatar_url)
                for r in rows]

    async def get_user_rooms(self, user: UserID) -> list[UserRoom]:
        rows = await self._run(select(
            "SELECT m.room_id, m.membership, n.room_id AS notice_room_id, m.display_name,"
            " m.avatar_url"
            " FROM dendrite_admin_memberships m"
            " JOIN dendrite_admin_rooms r ON r.room_id = m.room_id"
            " LEFT JOIN dendrite_admin_server_notice_rooms n"
            " ON n.user_id = m.user_id AND n.room_id = m.room_id"
            " WHERE m.user_id = %s AND m.membership IN ('join', 'invite')"
            " ORDER BY r.room_nid", (str(user),)), write=False)
        return [UserRoom(r.room_id, r.membership, r.notice_room_id is not None,
                         r.display_name, r.avatar_url) for r in rows]

    async def get_membership(self, room_id: str, user: UserID) -> str | None:
        row = await self._run(one(
            "SELECT membership FROM dendrite_admin_memberships"
            " WHERE room_id = %s AND user_id = %s", (room_id, str(user))), write=False)
        return None if row is None else str(row.membership)

    async def apply_memberships(
        self, room_id: str, changes: Sequence[MembershipChange]
    ) -> list[str]:
        if not changes:
            return []
        return await self._run(self._append_to_room(
            room_id, [(str(c.sender), "m.room.member", str(c.target), c.content) for c in changes]),
            write=True)

    async def create_room(self, room: NewRoom) -> str:
        return await self._run(self._create_room(room), write=True)

    def _create_room(self, room: NewRoom, room_id: str | None = None) -> Op[str]:
        room_id = room_id or new_room_id(room.creator.server_name)
        version = room.room_version or ROOM_VERSION
        yield Stmt("INSERT INTO dendrite_admin_rooms (room_id, room_version, creator, depth,"
                   " latest_event_id, created_ts) VALUES (%s, %s, %s, 0, NULL, %s)",
                   (room_id, version, str(room.creator), now_ms()))
        create = {**room.create_content, "room_version": version}
        yield from self._append_to_room(room_id, [
            (str(room.creator), "m.room.create", "", create),
            *((str(room.creator), t, sk, c) for t, sk, c in room.initial_state),
        ])
        return room_id

    async def send_event(
        self, room_id: str, sender: UserID, event_type: str, content: Mapping[str, Any],
        /, *, state_key: str | None = None, txn: NoticeTxnKey | None = None, txn_ts: int = 0,
    ) -> str:
        return await self._run(self._send_event(room_id, str(sender), event_type, content,
                                                state_key, txn, txn_ts), write=True)

    def _send_event(self, room_id: str, sender: str, event_type: str,
                    content: Mapping[str, Any], state_key: str | None,
                    txn: NoticeTxnKey | None, txn_ts: int) -> Op[str]:
        if txn is not None:
            recorded = yield from self._claim_notice_txn(txn, txn_ts)
            if recorded is not None:
                return recorded
        ids = yield from self._append_to_room(room_id,
                                              [(sender, event_type, state_key, content)])
        if txn is not None:
            yield Stmt("UPDATE dendrite_admin_notice_txns SET event_id = %s"
                       " WHERE user_id = %s AND device_id = %s AND txn_id = %s",
                       (ids[0], *_txn_key(txn)))
        return ids[0]

    @staticmethod
    def _claim_notice_txn(txn: NoticeTxnKey, ts: int) -> Op[str | None]:
        """Claim the key for this transaction (None), or the event ID already recorded.
        A concurrent worker with the same key waits on the claim until this transaction
        ends, then finds the record.  (Twice: a record that a purge deletes between the
        two statements frees the key again.)"""
        for _ in range(2):
            res = yield Stmt("INSERT INTO dendrite_admin_notice_txns (user_id, device_id,"
                             " txn_id, event_id, ts) VALUES (%s, %s, %s, '', %s)"
                             " ON CONFLICT DO NOTHING", (*_txn_key(txn), ts))
            if res.rowcount == 1:
                return None
            res = yield Stmt(_TXN_EVENT, _txn_key(txn))
            if res.rows:
                return str(res.rows[0].event_id)
        raise StorageUnavailableError("the transaction record kept changing")

    def _append_to_room(
        self, room_id: str,
        items: Sequence[tuple[str, str, str | None, Mapping[str, Any]]],
    ) -> Op[list[str]]:
        """Append events (sender, type, state_key, content) to the room in order, and
        update its current state and memberships: a handful of statements whatever the
        number of events."""
        res = yield Stmt("SELECT depth, latest_event_id FROM dendrite_admin_rooms"
                         " WHERE room_id = %s {for_update}", (room_id,))
        if not res.rows:
            raise KeyError(room_id)
        depth, latest = int(res.rows[0].depth), res.rows[0].latest_event_id
        now = now_ms()
        events: list[tuple[Any, ...]] = []
        state: dict[tuple[str, str], str] = {}
        state_content: dict[tuple[str, str], Mapping[str, Any]] = {}
        members: dict[str, tuple[Any, ...]] = {}
        ids: list[str] = []
        for sender, event_type, state_key, content in items:
            depth += 1
            event = build_event(
                room_id=room_id, sender=sender, event_type=event_type, content=content,
                origin_server_ts=now, depth=depth,
                prev_events=[latest] if latest else [], state_key=state_key)
            latest = event["event_id"]
            ids.append(latest)
            events.append((latest, room_id, sender, event_type, state_key,
                           dumps(event["content"]), now, depth, dumps(event)))
            if state_key is None:
                continue
            state[(event_type, state_key)] = latest
            state_content[(event_type, state_key)] = content
            if event_type == "m.room.member":
                members[state_key] = (
                    room_id, state_key, UserID.from_stored(state_key).server_name,
                    str(content.get("membership")),
                    *member_profile(content), latest)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_events (event_id, room_id, sender, type, state_key,"
            " content, origin_server_ts, depth, event_json)", 9, events)
        if state:
            # Before the state changes: the summary compares with the state it replaces.
            yield from self._update_room_summary(room_id, state_content)
            yield from insert_rows(
                "INSERT INTO dendrite_admin_current_state (room_id, type, state_key, event_id)",
                4, [(room_id, t, sk, eid) for (t, sk), eid in state.items()],
                "ON CONFLICT (room_id, type, state_key) DO UPDATE"
                " SET event_id = excluded.event_id")
        if members:
            yield from insert_rows(
                "INSERT INTO dendrite_admin_memberships (room_id, user_id, server_name,"
                " membership, display_name, avatar_url, event_id)", 7, list(members.values()),
                "ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,"
                " display_name = excluded.display_name, avatar_url = excluded.avatar_url,"
                " event_id = excluded.event_id")
        yield Stmt("UPDATE dendrite_admin_rooms SET depth = %s, latest_event_id = %s"
                   " WHERE room_id = %s", (depth, latest, room_id))
        return ids

    def _update_room_summary(
        self, room_id: str, changes: Mapping[tuple[str, str], Mapping[str, Any]]
    ) -> Op[None]:
        """Keep the room's summary (room administration, sql/rooms_admin.py) in step
        with state changes about to be stored; overridden there."""
        return None
        yield  # a generator that yields nothing

    async def set_room_tag(
        self, user: UserID, room_id: str, tag: str, content: Mapping[str, Any]
    ) -> None:
        await self._run(self._set_room_tag(str(user), room_id, tag, content), write=True)

    def _set_room_tag(self, user_id: str, room_id: str, tag: str,
                      content: Mapping[str, Any]) -> Op[None]:
        key = (user_id, room_id, "m.tag")
        # Create the row first so that the locked read-modify-write below is safe
        # against a concurrent writer even for the first tag.
        yield Stmt("INSERT INTO dendrite_admin_account_data (user_id, room_id, type, content)"
                   " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                   (*key, dumps({"tags": {}})))
        res = yield Stmt("SELECT content FROM dendrite_admin_account_data WHERE user_id = %s"
                         " AND room_id = %s AND type = %s {for_update}", key)
        data = json.loads(res.rows[0].content)
        data.setdefault("tags", {})[tag] = dict(content)
        yield Stmt("UPDATE dendrite_admin_account_data SET content = %s WHERE user_id = %s"
                   " AND room_id = %s AND type = %s", (dumps(data), *key))

    async def get_state_content(
        self, room_id: str, event_type: str, state_key: str
    ) -> dict[str, Any] | None:
        row = await self._run(one(
            "SELECT e.content FROM dendrite_admin_current_state s"
            " JOIN dendrite_admin_events e ON e.event_id = s.event_id"
            " WHERE s.room_id = %s AND s.type = %s AND s.state_key = %s",
            (room_id, event_type, state_key)), write=False)
        if row is None:
            return None
        content: dict[str, Any] = json.loads(row.content)
        return content

    async def send_state_event(
        self, room_id: str, sender: UserID, event_type: str, state_key: str,
        content: Mapping[str, Any], /,
    ) -> str:
        ids = await self._run(self._append_to_room(
            room_id, [(str(sender), event_type, state_key, content)]), write=True)
        return ids[0]

    async def get_server_notice_room(self, user: UserID) -> str | None:
        row = await self._run(one(
            "SELECT room_id FROM dendrite_admin_server_notice_rooms WHERE user_id = %s",
            (str(user),)), write=False)
        return None if row is None else str(row.room_id)

    async def create_server_notice_room(
        self, user: UserID, room: NewRoom, *, replacing: str | None, tag: str,
        joins: Sequence[MembershipChange] = (),
    ) -> str | None:
        return await self._run(self._create_notice_room(str(user), room, replacing, tag,
                                                        joins), write=True)

    def _create_notice_room(self, user_id: str, room: NewRoom, replacing: str | None,
                            tag: str, joins: Sequence[MembershipChange]) -> Op[str | None]:
        room_id = new_room_id(room.creator.server_name)
        # The claim comes first: a second worker doing the same waits here on the
        # first one's row (or key) until it commits, then finds it changed and backs off.
        if replacing is None:
            res = yield Stmt("INSERT INTO dendrite_admin_server_notice_rooms (user_id, room_id)"
                             " VALUES (%s, %s) ON CONFLICT DO NOTHING", (user_id, room_id))
        else:
            res = yield Stmt("UPDATE dendrite_admin_server_notice_rooms SET room_id = %s"
                             " WHERE user_id = %s AND room_id = %s",
                             (room_id, user_id, replacing))
        if res.rowcount != 1:
            return None
        yield from self._create_room(room, room_id)
        if joins:
            yield from self._append_to_room(room_id, [
                (str(c.sender), "m.room.member", str(c.target), c.content)
                for c in joins])
        yield from self._set_room_tag(user_id, room_id, tag, {})
        return room_id

    # -- notice transactions ---------------------------------------------------------------
    async def get_notice_txn(self, key: NoticeTxnKey) -> str | None:
        row = await self._run(one(_TXN_EVENT, _txn_key(key)), write=False)
        return None if row is None else str(row.event_id)

    async def record_notice_txn(self, key: NoticeTxnKey, event_id: str, ts: int) -> None:
        """Remember a notice the homeserver sent for this transaction (beside Dendrite,
        where the event is Dendrite's: services/homeserver.py).  The first record
        stays."""
        await self._run(exec_(
            "INSERT INTO dendrite_admin_notice_txns (user_id, device_id, txn_id, event_id,"
            " ts) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (*_txn_key(key), event_id, ts)), write=True)

    async def purge_notice_txns(self, older_than_ts: int) -> int:
        return await self._run(exec_(
            "DELETE FROM dendrite_admin_notice_txns WHERE ts < %s", (older_than_ts,)),
            write=True)

    # -- audit -----------------------------------------------------------------------------
    async def add_audit_entry(self, entry: AuditEntry) -> None:
        await self._run(exec_(
            "INSERT INTO dendrite_admin_audit (ts, request_id, requester, action, target,"
            " outcome, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (entry.ts, entry.request_id, entry.requester, entry.action, entry.target,
             entry.outcome, dumps(dict(entry.detail)))), write=True)

    async def get_audit_entries(
        self, *, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        cols = ("SELECT id, ts, request_id, requester, action, target, outcome, detail"
                " FROM dendrite_admin_audit")
        if before_id is None:
            op = select(cols + " ORDER BY id DESC LIMIT %s", (max(0, limit),))
        else:
            op = select(cols + " WHERE id < %s ORDER BY id DESC LIMIT %s",
                              (before_id, max(0, limit)))
        rows = await self._run(op, write=False)
        return [AuditEntry(int(r.ts), r.request_id, r.requester, r.action, r.target,
                           r.outcome, json.loads(r.detail), int(r.id)) for r in rows]

    async def purge_audit_entries(self, older_than_ts: int) -> int:
        return await self._run(exec_(
            "DELETE FROM dendrite_admin_audit WHERE ts < %s", (older_than_ts,)), write=True)

