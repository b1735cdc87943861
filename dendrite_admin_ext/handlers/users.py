"""whois and resetPassword."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..activity import merge_pending
from ..auth import get_requester
from ..context import get_context
from ..errors import Forbidden, InvalidParam, NotFound
from ..identifiers import (
    UserID,
    parse_local_user_id,
    parse_localpart_or_user_id,
    parse_user_id,
)
from ..passwords import check_password_policy
from ..responses import json_response

__all__ = ["reset_password", "whois"]


def local_user(value: str, server_name: str) -> UserID:
    """Parse a user ID that must belong to this server (400 otherwise)."""
    return parse_local_user_id(value, server_name)


async def whois(request: web.Request) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    raw = request.match_info["user_id"]
    # Self-or-admin comes before parsing or lookup: strangers learn nothing.
    if not requester.is_admin and raw != requester.user_id:
        raise Forbidden(messages.NOT_SELF_OR_ADMIN)
    user = parse_user_id(raw)
    if user.server_name != ctx.config.server_name:
        raise InvalidParam(messages.NOT_LOCAL_USER_WHOIS)
    # Taken before the read: a flush that completes while we wait would otherwise
    # take its sightings out of "pending" after the read missed them.
    pending = ctx.activity.pending_for(user)
    stored = await ctx.storage.get_devices(user)
    # Devices only exist for existing accounts: the account lookup (another database
    # round trip) is needed only to tell "no devices" from "no such user".
    if not stored and await ctx.storage.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    devices = merge_pending(stored, pending)
    body: dict[str, Any] = {
        "user_id": str(user),
        "devices": {
            d.device_id: {"sessions": [{"connections": [
                {"ip": c.ip, "last_seen": c.last_seen_ts, "user_agent": c.user_agent}
                for c in d.connections
            ]}]}
            for d in devices
        },
    }
    return json_response(body)


async def reset_password(request: web.Request) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = parse_localpart_or_user_id(request.match_info["user"], ctx.config.server_name)
    if await ctx.storage.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    body = await ctx.read_body(request)
    password = check_password_policy(body.get("password"), ctx.config.passwords)
    logout_devices: bool = body.get("logout_devices", True)
    password_hash = await ctx.hasher.hash(password)
    keep = requester.device_id if requester.user == user else None
    await ctx.storage.set_password(user, password_hash, logout_devices=logout_devices,
                                   keep_device_id=keep)
    return json_response({"password_updated": True})
