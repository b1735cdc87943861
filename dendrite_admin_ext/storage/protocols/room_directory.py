"""Room administration (SPEC 11): Synapse's room list, details, members, state and
block, Dendrite's ``emptyRooms`` and ``purgeRoom``, and room creation for deletions
that move members to a new room.

The list is asked for on every page a web UI shows, so it must not recompute rooms
from their state per request: the shipped SQL backends keep a summary row per room,
updated as events are appended, with indexes on the orders.
"""

from __future__ import annotations

from typing import Any, Protocol

from ...identifiers import UserID
from ..types import NewRoom, RoomBlock, RoomListQuery, RoomPage, RoomSummary

__all__ = ["RoomDirectoryStore"]


class RoomDirectoryStore(Protocol):
    async def list_rooms(self, query: RoomListQuery, server_name: str) -> RoomPage:
        """The rooms matching the query's filters, ordered by ``query.order_by``
        (descending with ``reverse``; ties broken by room ID, ascending), skipping
        ``offset`` and at most ``limit``; ``total`` counts every match.  Text orders
        put rooms without the value (None) last, also when reversed.
        ``joined_local_members`` counts members whose server is ``server_name``."""

    async def get_room_summary(self, room_id: str, server_name: str) -> RoomSummary | None:
        """The room's summary (with ``avatar``, ``topic``, ``replacement_room``), or
        None for an unknown room."""

    async def count_joined_local_devices(self, room_id: str, server_name: str) -> int:
        """How many devices the joined members of ``server_name`` have (Synapse's
        ``joined_local_devices``)."""

    async def get_joined_members(self, room_id: str) -> list[UserID]:
        """Every user joined to the room now (any server), ordered by user ID."""

    async def get_current_state(self, room_id: str) -> list[dict[str, Any]]:
        """The room's current state events, complete as stored, in any order."""

    async def get_room_block(self, room_id: str) -> RoomBlock | None:
        """The block of the room, or None when it is not blocked.  A room need not
        exist to be blocked."""

    async def set_room_block(self, room_id: str, user: UserID | None, ts: int, *,
                             block: bool) -> None:
        """Block (recording ``user`` and ``ts``; blocking again keeps the first
        record) or unblock the room.  A host refuses joins to blocked rooms."""

    async def get_empty_rooms(self, server_name: str) -> list[str]:
        """Rooms with a create event that no member of ``server_name`` is joined to
        (Dendrite's ``emptyRooms``), in any order."""

    async def purge_room(self, room_id: str) -> bool:
        """Delete everything stored for the room (events, state, memberships, its
        summary and its users' account data for it), atomically; False if it was
        unknown.  Its block, if any, stays."""

    async def create_room(self, room: NewRoom) -> str:
        """Create ``room`` (as :meth:`.notices.ServerNoticeStore.create_server_notice_room`
        does, without the record) atomically; return the new room's ID."""
