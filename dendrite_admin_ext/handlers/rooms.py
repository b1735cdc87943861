"""evacuateRoom and evacuateUser (GET, as the seed documents, and POST, as Dendrite
≥ 0.13 does)."""

from __future__ import annotations

from aiohttp import web

from .. import messages
from ..context import AdminContext, get_context
from ..errors import InvalidParam, NotFound
from ..identifiers import parse_room_id
from ..responses import json_response
from ..services import evacuation as rooms
from ..services import homeserver
from ..services.room_admin import preview_room_members, preview_user_rooms
from .rooms_admin import dry_run, dry_run_body
from .users import local_user

__all__ = ["evacuate_room", "evacuate_user"]


def _no_dry_run_beside_dendrite(ctx: AdminContext) -> None:
    """Beside Dendrite the memberships are Dendrite's, which its admin API cannot
    preview: a dry run there would answer from tables Dendrite never writes."""
    if ctx.homeserver is not None:
        raise InvalidParam(messages.DRY_RUN_BESIDE_DENDRITE)


async def evacuate_room(request: web.Request) -> web.Response:
    ctx = get_context(request)
    room_id = parse_room_id(request.match_info["room_id"])
    if dry_run(request):  # SPEC 11: who would be parted, nothing changed
        _no_dry_run_beside_dendrite(ctx)
        if not await ctx.storage.room_exists(room_id):
            raise NotFound(messages.unknown_room(room_id))
        return dry_run_body(*await preview_room_members(ctx, room_id))
    if ctx.homeserver is not None:  # beside Dendrite: Dendrite's rooms (SPEC 8)
        return json_response({"affected": await homeserver.evacuate_room(ctx, room_id)})
    return json_response({"affected": await rooms.evacuate_room(ctx, room_id)})


async def evacuate_user(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = local_user(request.match_info["user_id"], ctx.config.server_name)
    if dry_run(request):  # SPEC 11: the rooms it would leave, nothing changed
        _no_dry_run_beside_dendrite(ctx)
        if await ctx.storage.get_account(user) is None:
            raise NotFound(messages.unknown_user(user))
        return dry_run_body(*await preview_user_rooms(ctx, user))
    if ctx.homeserver is not None:
        return json_response({"affected": await homeserver.evacuate_user(ctx, user)})
    return json_response({"affected": await rooms.evacuate_user(ctx, user)})
