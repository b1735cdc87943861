"""whois and resetPassword: parse, authorise, call the service (:mod:`..services.whois`,
:mod:`..services.accounts`), render."""

from __future__ import annotations

from aiohttp import web

from ..auth import get_requester
from ..context import get_context
from ..errors import InvalidParam
from ..identifiers import MAX_ID_BYTES, UserID, is_valid_localpart, parse_user_id
from ..responses import json_response
from ..services import accounts
from ..services import whois as whois_service

__all__ = ["reset_password", "whois"]


def local_user(value: str, server_name: str) -> UserID:
    """Parse a user ID that must belong to this server (400 otherwise)."""
    user = parse_user_id(value)
    if user.server_name != server_name:
        raise InvalidParam(f"{value} is not a local user of {server_name}")
    return user


async def whois(request: web.Request) -> web.Response:
    ctx = get_context(request)
    found = await whois_service.whois(ctx.storage, ctx.activity, ctx.config.server_name,
                                      get_requester(request), request.match_info["user_id"])
    return json_response({
        "user_id": str(found.user),
        "devices": {
            d.device_id: {"sessions": [{"connections": [
                {"ip": c.ip, "last_seen": c.last_seen_ts, "user_agent": c.user_agent}
                for c in d.connections
            ]}]}
            for d in found.devices
        },
    })


def parse_localpart_or_user_id(value: str, server_name: str) -> UserID:
    if value.startswith("@"):
        return local_user(value, server_name)
    if not is_valid_localpart(value):
        raise InvalidParam(f"Invalid localpart: {value!r}")
    user = UserID(value, server_name)
    if len(str(user).encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidParam(f"User ID is longer than {MAX_ID_BYTES} bytes")
    return user


async def reset_password(request: web.Request) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = parse_localpart_or_user_id(request.match_info["user"], ctx.config.server_name)
    # Unknown user before the body: 404 whatever was sent.
    await accounts.require_account(ctx.storage, user)
    body = await ctx.read_body(request)
    await accounts.reset_password(ctx.storage, ctx.hasher, ctx.config.passwords, requester,
                                  user, body.get("password"),
                                  logout_devices=body.get("logout_devices", True))
    return json_response({"password_updated": True})
