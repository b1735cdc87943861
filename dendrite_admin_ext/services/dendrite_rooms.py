"""The room list, details and members beside Dendrite (SPEC 8 and 11), in Synapse's
shapes, from Dendrite's roomserver tables read-only
(:mod:`..storage.sql.dendrite_rooms`).

What the roomserver tables give cheaply: ``room_id``, ``version``, ``joined_members``
and ``joined_local_members``.  Every key Synapse takes from room state (``name``,
``canonical_alias``, ``creator``, ``encryption``, ``join_rules``, ``guest_access``,
``history_visibility``, ``room_type``, ``avatar``, ``topic``, ``state_events``,
``joined_local_devices``, ``replacement_room``) is null, ``federatable`` and ``public``
are null too, not guessed.  Orders: :data:`DENDRITE_ROOM_ORDERS` (``name`` is the room
ID's order); others, and the filters that need state (``search_term``,
``public_rooms``), are 400 ``M_INVALID_PARAM``; ``empty_rooms`` is served.
"""

from __future__ import annotations

from typing import Any

from .. import messages
from ..errors import InvalidParam, NotFound
from ..storage.sql.dendrite_rooms import DENDRITE_ROOM_ORDERS, DendriteRoom, DendriteRoomReader

__all__ = ["check_list_query", "room_details", "room_list", "room_members"]

# Synapse's keys that come from room state, unknown here.
_STATE_KEYS = ("name", "canonical_alias", "creator", "encryption", "federatable", "public",
               "join_rules", "guest_access", "history_visibility", "state_events",
               "room_type")


def check_list_query(order_by: str, *, filtered: bool) -> None:
    """400 ``M_INVALID_PARAM`` for an order or a filter that needs room state."""
    if order_by not in DENDRITE_ROOM_ORDERS:
        raise InvalidParam(messages.room_order_beside_dendrite(list(DENDRITE_ROOM_ORDERS)))
    if filtered:
        raise InvalidParam(messages.ROOM_FILTER_BESIDE_DENDRITE)


def _room_json(room: DendriteRoom) -> dict[str, Any]:
    """One room of ``GET /_synapse/admin/v1/rooms``: Synapse's keys, state ones null."""
    body: dict[str, Any] = {"room_id": room.room_id, "version": room.version,
                            "joined_members": room.joined_members,
                            "joined_local_members": room.joined_local_members}
    body.update(dict.fromkeys(_STATE_KEYS))
    return body


async def room_list(reader: DendriteRoomReader, order_by: str, *, reverse: bool,
                    offset: int, limit: int, empty: bool | None = None) -> dict[str, Any]:
    """``{"offset", "rooms", "total_rooms", "next_batch"?, "prev_batch"?}`` (Synapse's
    rooms.py; integer batches), the page read by one statement and the total by
    another; ``empty``: Synapse's ``empty_rooms`` (no joined member), None = all."""
    total = await reader.count_rooms(empty=empty)
    rooms = await reader.list_rooms(order_by, reverse=reverse, offset=offset, limit=limit,
                                    empty=empty)
    body: dict[str, Any] = {"offset": offset, "rooms": [_room_json(r) for r in rooms],
                            "total_rooms": total}
    if offset + limit < total:
        body["next_batch"] = offset + limit
    if offset > 0:
        body["prev_batch"] = max(0, offset - limit)
    return body


async def room_details(reader: DendriteRoomReader, room_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/{roomId}``: the list's keys plus ``avatar``,
    ``topic``, ``joined_local_devices``, ``forgotten``, ``tombstoned``,
    ``replacement_room`` (null: state, or devices in another database); 404 for a room
    Dendrite does not know."""
    room = await reader.get_room(room_id)
    if room is None:
        raise NotFound(messages.unknown_room(room_id))
    body = _room_json(room)
    body.update({"avatar": None, "topic": None, "joined_local_devices": None,
                 "forgotten": None, "tombstoned": None, "replacement_room": None})
    return body


async def room_members(reader: DendriteRoomReader, room_id: str) -> dict[str, Any]:
    """``{"members": [user IDs joined now, ordered], "total": n}``; 404 for a room
    Dendrite does not know."""
    members = await reader.joined_members(room_id)
    if members is None:
        raise NotFound(messages.unknown_room(room_id))
    return {"members": members, "total": len(members)}
