"""The SQL of room administration (SPEC 11): the summary kept per room as events are
appended, the room list and details, blocks, emptyRooms and purge (room creation is
core's ``create_room``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...identifiers import UserID
from ..types import RoomBlock, RoomListQuery, RoomPage, RoomSummary
from .base import SqlBase
from .ops import CHUNK_ROWS, Op, Stmt, exec_, insert_rows, one, select, with_keys

__all__ = ["SUMMARY_COLUMNS", "SqlRoomDirectory", "summary_fields"]

# The summary's columns each state event type sets: (type, content key, column).
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("m.room.name", "name", "name"),
    ("m.room.canonical_alias", "alias", "canonical_alias"),
    ("m.room.topic", "topic", "topic"),
    ("m.room.avatar", "url", "avatar"),
    ("m.room.join_rules", "join_rule", "join_rules"),
    ("m.room.guest_access", "guest_access", "guest_access"),
    ("m.room.history_visibility", "history_visibility", "history_visibility"),
    ("m.room.encryption", "algorithm", "encryption"),
    ("m.room.tombstone", "replacement_room", "replacement_room"),
)


def summary_fields(event_type: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The summary columns a state event (state key "") sets, by column name."""
    out: dict[str, Any] = {}
    for etype, key, column in SUMMARY_COLUMNS:
        if etype == event_type:
            value = content.get(key)
            out[column] = value if isinstance(value, str) else None
    if event_type == "m.room.create":
        room_type = content.get("type")
        out["room_type"] = room_type if isinstance(room_type, str) else None
        out["federatable"] = content.get("m.federate") is not False
    return out


# Column expressions of the orders (fixed SQL, chosen from this table by name only).
_ORDER_SQL = {
    "name": "(s.name IS NULL) {d}, s.name {d}",
    "canonical_alias": "(s.canonical_alias IS NULL) {d}, s.canonical_alias {d}",
    "joined_members": "s.joined_members {d}",
    "joined_local_members": "COALESCE(l.joined, 0) {d}",
    "version": "r.room_version {d}",
    "creator": "r.creator {d}",
    "encryption": "(s.encryption IS NULL) {d}, s.encryption {d}",
    "federatable": "s.federatable {d}",
    "public": "(CASE WHEN s.join_rules = 'public' THEN 1 ELSE 0 END) {d}",
    "join_rules": "(s.join_rules IS NULL) {d}, s.join_rules {d}",
    "guest_access": "(s.guest_access IS NULL) {d}, s.guest_access {d}",
    "history_visibility": "(s.history_visibility IS NULL) {d}, s.history_visibility {d}",
    "state_events": "s.state_events {d}",
}

_SUMMARY_SELECT = (
    "SELECT s.room_id, s.name, s.canonical_alias, s.joined_members, COALESCE(l.joined, 0),"
    " r.room_version, r.creator, s.encryption, s.federatable, s.join_rules, s.guest_access,"
    " s.history_visibility, s.state_events, s.room_type, s.avatar, s.topic,"
    " s.replacement_room FROM dendrite_admin_room_summary s"
    " JOIN dendrite_admin_rooms r ON r.room_id = s.room_id"
    " LEFT JOIN dendrite_admin_room_server_members l ON l.room_id = s.room_id"
    " AND l.server_name = %s")


def _summary(row: tuple[Any, ...]) -> RoomSummary:
    return RoomSummary(
        room_id=row[0], name=row[1], canonical_alias=row[2], joined_members=int(row[3]),
        joined_local_members=int(row[4]), version=row[5], creator=row[6],
        encryption=row[7], federatable=bool(row[8]), public=row[9] == "public",
        join_rules=row[9], guest_access=row[10], history_visibility=row[11],
        state_events=int(row[12]), room_type=row[13], avatar=row[14], topic=row[15],
        replacement_room=row[16])


def _filters(query: RoomListQuery) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.search_term is not None:
        term = query.search_term
        where.append("({strpos}(lower(s.name), %s) > 0"
                     " OR {strpos}(lower(s.canonical_alias), %s) > 0"
                     " OR {strpos}(s.room_id, %s) > 0)")
        params += [term.lower(), term.lower(), term]
    if query.public_rooms is not None:
        where.append("(s.join_rules = 'public')" if query.public_rooms
                     else "(s.join_rules IS NULL OR s.join_rules <> 'public')")
    if query.empty_rooms is not None:
        where.append("s.joined_members = 0" if query.empty_rooms else "s.joined_members > 0")
    return (" WHERE " + " AND ".join(where)) if where else "", params


class SqlRoomDirectory(SqlBase):
    """:class:`~..protocols.room_directory.RoomDirectoryStore` over the summary tables."""

    # -- the summary, in the transaction that appends events (sql/core.py) -------------
    def _update_room_summary(
        self, room_id: str, changes: Mapping[tuple[str, str], Mapping[str, Any]]
    ) -> Op[None]:
        creating = ("m.room.create", "") in changes
        if creating:
            # A new room: everything in it is new, nothing to compare with.
            yield Stmt("INSERT INTO dendrite_admin_room_summary (room_id) VALUES (%s)"
                       " ON CONFLICT DO NOTHING", (room_id,))
        members = [sk for (t, sk) in changes if t == "m.room.member"]
        others = [] if creating else sorted({t for (t, _sk) in changes
                                             if t != "m.room.member"})
        members_to_read = [] if creating else members
        old_members: dict[str, str] = {}
        for start in range(0, len(members_to_read), CHUNK_ROWS):
            chunk = members_to_read[start:start + CHUNK_ROWS]
            res = yield Stmt(with_keys(
                "SELECT user_id, membership FROM dendrite_admin_memberships"
                " WHERE room_id = %s AND user_id IN ({keys})", len(chunk)),
                (room_id, *chunk), reuse=False)
            old_members.update((r[0], r[1]) for r in res.rows)
        old_state: set[tuple[str, str]] = set()
        if others:
            res = yield Stmt(with_keys(
                "SELECT type, state_key FROM dendrite_admin_current_state"
                " WHERE room_id = %s AND type IN ({keys})", len(others)),
                (room_id, *others), reuse=False)
            old_state = {(r[0], r[1]) for r in res.rows}
        new_keys = sum(1 for sk in members if sk not in old_members) + sum(
            1 for key in changes if key[0] != "m.room.member" and key not in old_state)
        per_server: dict[str, int] = {}
        for user_id in members:
            was = old_members.get(user_id) == "join"
            now = changes[("m.room.member", user_id)].get("membership") == "join"
            if was != now:
                server = UserID.from_stored(user_id).server_name
                per_server[server] = per_server.get(server, 0) + (1 if now else -1)
        sets = ["joined_members = joined_members + %s", "state_events = state_events + %s"]
        params: list[Any] = [sum(per_server.values()), new_keys]
        for (event_type, state_key), content in changes.items():
            if state_key != "":
                continue
            for column, value in summary_fields(event_type, content).items():
                sets.append(f"{column} = %s")  # column names come from SUMMARY_COLUMNS
                params.append(value)
        yield Stmt("UPDATE dendrite_admin_room_summary SET " + ", ".join(sets)  # noqa: S608
                   + " WHERE room_id = %s", (*params, room_id), reuse=False)
        deltas = [(room_id, server, delta) for server, delta in sorted(per_server.items())
                  if delta]
        if deltas:
            yield from insert_rows(
                "INSERT INTO dendrite_admin_room_server_members (room_id, server_name,"
                " joined)", 3, deltas,
                "ON CONFLICT (room_id, server_name) DO UPDATE"
                " SET joined = dendrite_admin_room_server_members.joined + excluded.joined")

    # -- reads -------------------------------------------------------------------------
    async def list_rooms(self, query: RoomListQuery, server_name: str) -> RoomPage:
        return await self._run(self._list_rooms(query, server_name), write=False)

    @staticmethod
    def _list_rooms(query: RoomListQuery, server_name: str) -> Op[RoomPage]:
        where, params = _filters(query)
        res = yield Stmt("SELECT COUNT(*) FROM dendrite_admin_room_summary s" + where,  # noqa: S608
                         params, reuse=False)
        total = int(res.rows[0][0])
        offset, limit = max(0, query.offset), max(0, query.limit)
        # A page in the second half is read from the other end (the exact reverse
        # order, then turned round): no page walks more than half the rooms.
        backwards = total // 2 < offset < total
        if backwards:
            limit = min(limit, total - offset)
            offset = max(0, total - offset - limit)
        d = "DESC" if query.reverse != backwards else "ASC"
        order = _ORDER_SQL[query.order_by].replace("{d}", d) + f", s.room_id {{binary}} {d}"
        # The rows skipped by the offset are walked on the summary's own index (joins
        # only where the order needs them); only the page's rows are joined for their
        # other columns, so a deep page costs an index walk more than the first.
        inner = "SELECT s.room_id FROM dendrite_admin_room_summary s"
        inner_params: list[Any] = []
        if query.order_by in ("version", "creator"):
            inner += " JOIN dendrite_admin_rooms r ON r.room_id = s.room_id"
        if query.order_by == "joined_local_members":
            inner += (" LEFT JOIN dendrite_admin_room_server_members l"
                      " ON l.room_id = s.room_id AND l.server_name = %s")
            inner_params.append(server_name)
        res = yield Stmt(
            _SUMMARY_SELECT + " JOIN (" + inner + where + f" ORDER BY {order}"
            " LIMIT %s OFFSET %s) p ON p.room_id = s.room_id ORDER BY " + order,
            (server_name, *inner_params, *params, limit, offset), reuse=False)
        rooms = [_summary(r) for r in res.rows]
        if backwards:
            rooms.reverse()
        return RoomPage(rooms, total)

    async def get_room_summary(self, room_id: str, server_name: str) -> RoomSummary | None:
        row = await self._run(one(_SUMMARY_SELECT + " WHERE s.room_id = %s",
                                  (server_name, room_id)), write=False)
        return None if row is None else _summary(row)

    async def count_joined_local_devices(self, room_id: str, server_name: str) -> int:
        row = await self._run(one(
            "SELECT COUNT(*) FROM dendrite_admin_memberships m JOIN userapi_devices d"
            " ON d.server_name = m.server_name"
            " AND '@' || d.localpart || ':' || d.server_name = m.user_id"
            " WHERE m.room_id = %s AND m.membership = 'join' AND m.server_name = %s",
            (room_id, server_name)), write=False)
        return 0 if row is None else int(row[0])

    async def get_joined_members(self, room_id: str) -> list[UserID]:
        rows = await self._run(select(
            "SELECT user_id FROM dendrite_admin_memberships WHERE room_id = %s"
            " AND membership = 'join' ORDER BY user_id", (room_id,)), write=False)
        return [UserID.from_stored(r[0]) for r in rows]

    async def get_current_state(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self._run(select(
            "SELECT e.event_json FROM dendrite_admin_current_state s"
            " JOIN dendrite_admin_events e ON e.event_id = s.event_id"
            " WHERE s.room_id = %s ORDER BY e.stream_ordering", (room_id,)), write=False)
        return [json.loads(r[0]) for r in rows]

    async def get_room_block(self, room_id: str) -> RoomBlock | None:
        row = await self._run(one(
            "SELECT user_id, ts FROM dendrite_admin_room_blocks WHERE room_id = %s",
            (room_id,)), write=False)
        if row is None:
            return None
        return RoomBlock(room_id, None if row[0] is None else UserID.from_stored(row[0]),
                         int(row[1]))

    async def set_room_block(self, room_id: str, user: UserID | None, ts: int, *,
                             block: bool) -> None:
        if block:
            op = exec_("INSERT INTO dendrite_admin_room_blocks (room_id, user_id, ts)"
                       " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                       (room_id, None if user is None else str(user), ts))
        else:
            op = exec_("DELETE FROM dendrite_admin_room_blocks WHERE room_id = %s",
                       (room_id,))
        await self._run(op, write=True)

    async def get_empty_rooms(self, server_name: str) -> list[str]:
        rows = await self._run(select(
            "SELECT r.room_id FROM dendrite_admin_rooms r"
            " LEFT JOIN dendrite_admin_room_server_members l ON l.room_id = r.room_id"
            " AND l.server_name = %s WHERE COALESCE(l.joined, 0) = 0 ORDER BY r.room_nid",
            (server_name,)), write=False)
        return [r[0] for r in rows]

    # -- writes ------------------------------------------------------------------------
    async def purge_room(self, room_id: str) -> bool:
        return await self._run(self._purge_room(room_id), write=True)

    @staticmethod
    def _purge_room(room_id: str) -> Op[bool]:
        res = yield Stmt("DELETE FROM dendrite_admin_rooms WHERE room_id = %s", (room_id,))
        if res.rowcount == 0:
            return False
        for table in ("dendrite_admin_events", "dendrite_admin_current_state",
                      "dendrite_admin_memberships", "dendrite_admin_room_summary",
                      "dendrite_admin_room_server_members", "dendrite_admin_account_data"):
            # table names are the fixed ones above
            yield Stmt(f"DELETE FROM {table} WHERE room_id = %s", (room_id,))  # noqa: S608
        return True
