"""Room administration (SPEC 11): Synapse's room list, details, members, state, block,
delete and delete status; Dendrite's purgeRoom and emptyRooms."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..auth import get_requester
from ..context import get_context
from ..errors import InvalidParam, NotFound
from ..identifiers import parse_room_id
from ..query_params import bool_param, int_param
from ..responses import json_response
from ..services import dendrite_rooms, homeserver, room_admin
from ..services.jobs import submit_job
from ..storage.types import ROOM_ORDERS, Job, RoomListQuery
from .users import local_user

__all__ = [
    "ROOM_LIST_QUERY",
    "delete_room",
    "delete_status",
    "delete_status_by_room",
    "dry_run",
    "empty_rooms",
    "get_block",
    "list_rooms",
    "purge_room",
    "put_block",
    "room_details",
    "room_members",
    "room_state",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Synapse's deprecated aliases of two orders.
_ORDER_ALIASES = {"alphabetical": "name", "size": "joined_members"}
# Counts list the largest first unless dir=b, as Synapse does.
_LARGEST_FIRST = {"joined_members", "joined_local_members", "state_events"}

ROOM_LIST_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("from", {"type": "string", "pattern": "^[0-9]{1,9}$", "description": "offset, default 0"}),
    ("limit", {"type": "string", "pattern": "^[0-9]{1,4}$",
               "description": f"0-{MAX_LIMIT}, default {DEFAULT_LIMIT}"}),
    ("order_by", {"enum": [*ROOM_ORDERS, *_ORDER_ALIASES]}),
    ("dir", {"enum": ["f", "b"]}),
    ("search_term", {"type": "string", "minLength": 1}),
    ("public_rooms", {"enum": ["true", "false"]}),
    ("empty_rooms", {"enum": ["true", "false"]}),
)


def _room(request: web.Request) -> str:
    return parse_room_id(request.match_info["room_id"])


async def list_rooms(request: web.Request) -> web.Response:
    """``GET /_synapse/admin/v1/rooms``: ``{"offset", "rooms", "total_rooms",
    "next_batch"?, "prev_batch"?}`` (Synapse's rooms.py; integer batches)."""
    ctx = get_context(request)
    start = int_param(request, "from", 0, 0, 999_999_999)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
    order = request.query.get("order_by", "name")
    order = _ORDER_ALIASES.get(order, order)
    if order not in ROOM_ORDERS:
        raise InvalidParam(messages.not_one_of("order_by", list(ROOM_ORDERS)))
    direction = request.query.get("dir", "f")
    if direction not in ("f", "b"):
        raise InvalidParam(messages.not_one_of("dir", ["f", "b"]))
    search = request.query.get("search_term")
    if search is not None and not search:
        raise InvalidParam(messages.EMPTY_SEARCH_TERM)
    reverse = (direction == "b") != (order in _LARGEST_FIRST)
    if ctx.dendrite_rooms is not None:  # beside Dendrite: its tables, read-only (SPEC 8)
        dendrite_rooms.check_list_query(order, filtered=any(
            key in request.query for key in ("search_term", "public_rooms")))
        return json_response(await dendrite_rooms.room_list(
            ctx.dendrite_rooms, order, reverse=reverse, offset=start, limit=limit,
            empty=bool_param(request, "empty_rooms", None)))
    query = RoomListQuery(
        order_by=order, reverse=reverse,
        offset=start, limit=limit, search_term=search,
        public_rooms=bool_param(request, "public_rooms", None),
        empty_rooms=bool_param(request, "empty_rooms", None))
    page = await ctx.storage.list_rooms(query, ctx.config.server_name)
    body: dict[str, Any] = {"offset": start,
                            "rooms": [room_admin.room_json(r) for r in page.rooms],
                            "total_rooms": page.total}
    if start + limit < page.total:
        body["next_batch"] = start + limit
    if start > 0:
        body["prev_batch"] = max(0, start - limit)
    return json_response(body)


async def room_details(request: web.Request) -> web.Response:
    """``GET /_synapse/admin/v1/rooms/{roomId}``: the list's keys plus avatar, topic,
    joined_local_devices, forgotten, tombstoned, replacement_room; 404 "Room not
    found"."""
    ctx = get_context(request)
    room_id = _room(request)
    if ctx.dendrite_rooms is not None:
        return json_response(await dendrite_rooms.room_details(ctx.dendrite_rooms, room_id))
    summary = await ctx.storage.get_room_summary(room_id, ctx.config.server_name)
    if summary is None:
        raise NotFound(messages.unknown_room(room_id))
    body = room_admin.room_json(summary)
    body.update({
        "avatar": summary.avatar, "topic": summary.topic,
        "joined_local_devices": await ctx.storage.count_joined_local_devices(
            room_id, ctx.config.server_name),
        # This package keeps no per-user "forgotten" flag.
        "forgotten": False,
        "tombstoned": summary.replacement_room is not None,
        "replacement_room": summary.replacement_room,
    })
    return json_response(body)


async def _existing(request: web.Request) -> str:
    room_id = _room(request)
    if not await get_context(request).storage.room_exists(room_id):
        raise NotFound(messages.unknown_room(room_id))
    return room_id


async def room_members(request: web.Request) -> web.Response:
    """``{"members": [user IDs joined now], "total": n}``."""
    ctx = get_context(request)
    if ctx.dendrite_rooms is not None:
        return json_response(await dendrite_rooms.room_members(ctx.dendrite_rooms,
                                                               _room(request)))
    room_id = await _existing(request)
    members = [str(u) for u in await get_context(request).storage.get_joined_members(room_id)]
    return json_response({"members": members, "total": len(members)})


async def room_state(request: web.Request) -> web.Response:
    """``{"state": [current state events]}``."""
    room_id = await _existing(request)
    return json_response({"state": await get_context(request).storage.get_current_state(
        room_id)})


async def get_block(request: web.Request) -> web.Response:
    """``{"block": bool, "user_id"?: who blocked it}``; any valid room ID."""
    block = await get_context(request).storage.get_room_block(_room(request))
    if block is None:
        return json_response({"block": False})
    body: dict[str, Any] = {"block": True}
    if block.user is not None:
        body["user_id"] = str(block.user)
    return json_response(body)


async def put_block(request: web.Request) -> web.Response:
    """Body ``{"block": bool}`` → ``{"block": bool}``; rooms not known here can be
    blocked too (as in Synapse)."""
    ctx = get_context(request)
    room_id = _room(request)
    body = await ctx.read_body(request)
    await ctx.storage.set_room_block(room_id, get_requester(request).user, ctx.clock(),
                                     block=body["block"])
    return json_response({"block": body["block"]})


async def empty_rooms(request: web.Request) -> web.Response:
    """Dendrite's ``{"empty_rooms": [room IDs]}``: rooms no local user is joined to."""
    ctx = get_context(request)
    return json_response({"empty_rooms": await ctx.storage.get_empty_rooms(
        ctx.config.server_name)})


async def purge_room(request: web.Request) -> web.Response:
    """Dendrite's ``purgeRoom`` → ``{}``, with Matrix errors where Dendrite answers 500:
    malformed ID 400 ``M_INVALID_PARAM``, unknown room 404 ``M_NOT_FOUND``."""
    ctx = get_context(request)
    if ctx.homeserver is not None:  # beside Dendrite: Dendrite's purge (SPEC 8)
        await homeserver.purge_room(ctx, _room(request))
    else:
        await room_admin.purge_room(ctx, _room(request))
    return json_response({})


def dry_run(request: web.Request) -> bool:
    """``?dry_run=true`` (SPEC 11); anything but true/false is 400."""
    return bool_param(request, "dry_run", False)


def dry_run_body(count: int, affected: list[str]) -> web.Response:
    return json_response({"dry_run": True, "count": count, "affected": affected})


async def delete_room(request: web.Request) -> web.Response:
    """``DELETE /_synapse/admin/v2/rooms/{roomId}`` → 200 ``{"delete_id"}`` once the
    job is recorded (the job's ID); ``?dry_run=true`` → the local members it would
    part.  A deletion already scheduled or running for the room: 400 (Synapse)."""
    ctx = get_context(request)
    room_id = _room(request)
    body = await ctx.read_body(request)
    new_owner = body.get("new_room_user_id")
    if ctx.homeserver is not None:
        # Beside Dendrite (SPEC 8): only what Dendrite's admin API can do.
        if body.get("block"):
            raise InvalidParam(messages.BLOCK_BESIDE_DENDRITE)
        if new_owner is not None:
            raise InvalidParam(messages.NEW_ROOM_BESIDE_DENDRITE)
        if dry_run(request):
            raise InvalidParam(messages.DRY_RUN_BESIDE_DENDRITE)
    if new_owner is not None:
        owner = local_user(new_owner, ctx.config.server_name)
        if await ctx.storage.get_account(owner) is None:
            raise NotFound(messages.unknown_user(owner))
    if dry_run(request):
        if not await ctx.storage.room_exists(room_id):
            raise NotFound(messages.unknown_room(room_id))
        return dry_run_body(*await room_admin.preview_room_members(ctx, room_id))
    job = await submit_job(ctx, room_admin.ROOM_DELETE, room_id, {
        "room_id": room_id, "block": body.get("block", False),
        "purge": body.get("purge", True), "force_purge": body.get("force_purge", False),
        "message": body.get("message"), "room_name": body.get("room_name"),
        "new_room_user_id": new_owner,
        "requester": str(get_requester(request).user)}, exclusive=True)
    if job is None:  # one deletion of a room at a time, whichever worker took it
        raise InvalidParam(messages.deletion_in_progress(room_id))
    return json_response({"delete_id": job.job_id})


async def _status(request: web.Request, job: Job) -> dict[str, Any]:
    return await room_admin.delete_status_json(get_context(request), job)


async def delete_status(request: web.Request) -> web.Response:
    """``GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`` → the task; 404
    ``M_NOT_FOUND`` for an unknown ID."""
    job = await get_context(request).storage.get_job(request.match_info["delete_id"])
    if job is None or job.kind != room_admin.ROOM_DELETE:
        raise NotFound(messages.UNKNOWN_DELETE_ID)
    return json_response(await _status(request, job))


async def delete_status_by_room(request: web.Request) -> web.Response:
    """``GET /_synapse/admin/v2/rooms/{roomId}/delete_status`` → ``{"results":
    [tasks, newest first]}``; 404 when the room was never deleted."""
    ctx = get_context(request)
    room_id = _room(request)
    jobs = await ctx.storage.list_jobs(kind=room_admin.ROOM_DELETE, status=None,
                                       target=room_id, before_seq=None, limit=100)
    if not jobs:
        raise NotFound(messages.NO_DELETE_TASK)
    return json_response({"results": [await _status(request, j) for j in jobs]})
