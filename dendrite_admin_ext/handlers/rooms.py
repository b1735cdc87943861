"""evacuateRoom and evacuateUser (GET, as the seed documents, and POST, as Dendrite
≥ 0.13 does)."""

from __future__ import annotations

from aiohttp import web

from ..context import get_context
from ..identifiers import parse_room_id
from ..responses import json_response
from ..services import evacuation as rooms
from ..services import homeserver
from .users import local_user

__all__ = ["evacuate_room", "evacuate_user"]


async def evacuate_room(request: web.Request) -> web.Response:
    ctx = get_context(request)
    room_id = parse_room_id(request.match_info["room_id"])
    if ctx.homeserver is not None:  # beside Dendrite: Dendrite's rooms (SPEC 8)
        return json_response({"affected": await homeserver.evacuate_room(ctx, room_id)})
    return json_response({"affected": await rooms.evacuate_room(ctx, room_id)})


async def evacuate_user(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = local_user(request.match_info["user_id"], ctx.config.server_name)
    if ctx.homeserver is not None:
        return json_response({"affected": await homeserver.evacuate_user(ctx, user)})
    return json_response({"affected": await rooms.evacuate_user(ctx, user)})
