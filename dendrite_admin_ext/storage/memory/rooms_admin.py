"""In-memory room administration (SPEC 11): summaries folded from each room's current
state per request (the reference; the SQL backends keep summary rows instead)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...identifiers import UserID
from ..types import RoomBlock, RoomListQuery, RoomPage, RoomSummary
from .base import MemoryBase, _Room

__all__ = ["MemoryRoomDirectory", "summary_sort_key"]


def _text(content: Mapping[str, Any] | None, key: str) -> str | None:
    value = None if content is None else content.get(key)
    return value if isinstance(value, str) else None


def summary_sort_key(order_by: str, room: RoomSummary) -> tuple[Any, ...]:
    """The ascending sort key of a room for ``order_by`` (ties by room ID; rooms
    without a text value last), as the SQL backends order."""
    value: Any
    if order_by == "public":
        value = int(room.public)
    else:
        value = getattr(room, {"version": "version"}.get(order_by, order_by))
    if isinstance(value, bool):
        value = int(value)
    return (value is None, value if value is not None else 0, room.room_id)


def matches(query: RoomListQuery, room: RoomSummary) -> bool:
    """The room list's filters (SPEC 11, Synapse's room list)."""
    if query.search_term is not None:
        term = query.search_term
        if not ((room.name is not None and term.lower() in room.name.lower())
                or (room.canonical_alias is not None
                    and term.lower() in room.canonical_alias.lower())
                or term in room.room_id):
            return False
    if query.public_rooms is not None and room.public != query.public_rooms:
        return False
    return query.empty_rooms is None or (room.joined_members == 0) == query.empty_rooms


class MemoryRoomDirectory(MemoryBase):
    def __init__(self) -> None:
        super().__init__()
        self.room_creators: dict[str, str] = {}
        self.room_blocks: dict[str, RoomBlock] = {}

    def _append(self, room: _Room, sender: str, event_type: str,
                content: Mapping[str, Any], state_key: str | None = None) -> str:
        event_id: str = super()._append(  # type: ignore[misc]
            room, sender, event_type, content, state_key)
        if event_type == "m.room.create":
            self.room_creators[room.room_id] = sender
        return event_id

    def _summary(self, room: _Room, server_name: str) -> RoomSummary:
        state = room.state_content
        create = state.get(("m.room.create", ""), {})
        join_rule = _text(state.get(("m.room.join_rules", "")), "join_rule")
        suffix = ":" + server_name
        version = create.get("room_version")
        return RoomSummary(
            room_id=room.room_id,
            name=_text(state.get(("m.room.name", "")), "name"),
            canonical_alias=_text(state.get(("m.room.canonical_alias", "")), "alias"),
            joined_members=len(room.joined),
            joined_local_members=sum(1 for u in room.joined if u.endswith(suffix)),
            version=str(version) if version is not None else "",
            creator=self.room_creators.get(room.room_id, ""),
            encryption=_text(state.get(("m.room.encryption", "")), "algorithm"),
            federatable=create.get("m.federate") is not False,
            public=join_rule == "public",
            join_rules=join_rule,
            guest_access=_text(state.get(("m.room.guest_access", "")), "guest_access"),
            history_visibility=_text(state.get(("m.room.history_visibility", "")),
                                     "history_visibility"),
            state_events=len(room.state),
            room_type=_text(create, "type"),
            avatar=_text(state.get(("m.room.avatar", "")), "url"),
            topic=_text(state.get(("m.room.topic", "")), "topic"),
            replacement_room=_text(state.get(("m.room.tombstone", "")), "replacement_room"),
        )

    async def list_rooms(self, query: RoomListQuery, server_name: str) -> RoomPage:
        rooms = [s for s in (self._summary(r, server_name) for r in self.rooms.values())
                 if matches(query, s)]
        rooms.sort(key=lambda s: summary_sort_key(query.order_by, s), reverse=query.reverse)
        start = max(0, query.offset)
        return RoomPage(rooms[start:start + max(0, query.limit)], len(rooms))

    async def get_room_summary(self, room_id: str, server_name: str) -> RoomSummary | None:
        room = self.rooms.get(room_id)
        return None if room is None else self._summary(room, server_name)

    async def count_joined_local_devices(self, room_id: str, server_name: str) -> int:
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        total = 0
        for user_id in room.joined:
            user = UserID.from_stored(user_id)
            row = self.accounts.get(user)
            if user.server_name == server_name and row is not None:
                total += len(row.devices)
        return total

    async def get_joined_members(self, room_id: str) -> list[UserID]:
        room = self.rooms.get(room_id)
        return [] if room is None else [UserID.from_stored(u) for u in room.joined]

    async def get_current_state(self, room_id: str) -> list[dict[str, Any]]:
        room = self.rooms.get(room_id)
        if room is None:
            return []
        wanted = set(room.state.values())
        return [copy.deepcopy(e) for e in self.events
                if e["room_id"] == room_id and e["event_id"] in wanted]

    async def get_room_block(self, room_id: str) -> RoomBlock | None:
        return self.room_blocks.get(room_id)

    async def set_room_block(self, room_id: str, user: UserID | None, ts: int, *,
                             block: bool) -> None:
        if not block:
            self.room_blocks.pop(room_id, None)
        elif room_id not in self.room_blocks:
            self.room_blocks[room_id] = RoomBlock(room_id, user, ts)

    async def get_empty_rooms(self, server_name: str) -> list[str]:
        suffix = ":" + server_name
        return [r.room_id for r in self.rooms.values()
                if not any(u.endswith(suffix) for u in r.joined)]

    async def purge_room(self, room_id: str) -> bool:
        if self.rooms.pop(room_id, None) is None:
            return False
        self.room_creators.pop(room_id, None)
        self.events = [e for e in self.events if e["room_id"] != room_id]
        for key in [k for k in self.account_data if k[1] == room_id]:
            del self.account_data[key]
        return True
