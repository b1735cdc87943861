"""whois and resetPassword: parse, authorise, call the service (:mod:`..services.whois`,
:mod:`..services.accounts`), render."""

from __future__ import annotations

from aiohttp import web

from ..auth import get_requester
from ..context import get_context
from ..identifiers import UserID, parse_local_user_id, parse_localpart_or_user_id
from ..responses import json_response
from ..services import accounts
from ..services import whois as whois_service

__all__ = ["reset_password", "whois"]


def local_user(value: str, server_name: str) -> UserID:
    """Parse a user ID that must belong to this server (400 otherwise)."""
    return parse_local_user_id(value, server_name)


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
