"""Client login on the standalone server (SPEC 13): the few client-API endpoints the
admin web UIs call around their admin calls — versions, login, whoami, profile, logout.

Rules are in :mod:`..services.client_login`; these only parse, authorise and render.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..audit import AUDIT_TARGET_KEY
from ..auth import REQUESTER_KEY, Requester, get_requester
from ..context import get_context
from ..errors import NotFound
from ..identifiers import parse_user_id
from ..moderation import moderation_unstable_features
from ..responses import json_response
from ..services.client_login import (
    LOGIN_FLOWS,
    SPEC_VERSIONS,
    parse_login,
    password_login,
)
from ..storage.types import AccountType

__all__ = ["login", "login_flows", "logout", "logout_all", "profile", "versions", "whoami"]

async def versions(request: web.Request) -> web.Response:
    """``GET /_matrix/client/versions``: no auth.  ``unstable_features`` names MSC4323
    while the lock and suspend endpoints are mounted, so moderation tools find them."""
    config = get_context(request).config
    return json_response({"versions": list(SPEC_VERSIONS),
                          "unstable_features": moderation_unstable_features(config)})


async def login_flows(request: web.Request) -> web.Response:
    """``GET /login``: ``{"flows": [{"type": "m.login.password"}]}``, no auth."""
    return json_response(LOGIN_FLOWS)


async def login(request: web.Request) -> web.Response:
    """``POST /login``: 200 ``{user_id, access_token, device_id, home_server}``."""
    ctx = get_context(request)
    body = await ctx.read_body(request)
    attempt = parse_login(body, ctx.config.server_name)
    request[AUDIT_TARGET_KEY] = attempt.target
    result = await password_login(ctx, attempt, request.remote or "")
    # The audit entry names the account that logged in as its requester too.
    request[REQUESTER_KEY] = Requester(result.user, result.device_id, result.account_type)
    # The login is the new device's first sighting (whois shows it), as Dendrite
    # records the address and user agent of a device it creates.
    ctx.activity.note(result.user, result.device_id,
                      (request.remote or "") if ctx.config.http.record_client_ip else "",
                      request.headers.get("User-Agent", ""), ctx.clock())
    return json_response(result.to_json())


async def whoami(request: web.Request) -> web.Response:
    """``GET /account/whoami``: ``{user_id, device_id, is_guest}`` of the token."""
    requester = get_requester(request)
    return json_response({"user_id": requester.user_id, "device_id": requester.device_id,
                          "is_guest": requester.account_type == AccountType.GUEST})


async def profile(request: web.Request) -> web.Response:
    """``GET /profile/{userId}``: ``{displayname?, avatar_url?}`` (absent or empty values
    left out).  Needs an access token (as Synapse with
    ``require_auth_for_profile_requests``: nobody can list accounts anonymously).  400
    ``M_INVALID_PARAM`` for a malformed ID; 404 ``M_NOT_FOUND`` for an unknown or remote
    user (this server does not ask other servers)."""
    ctx = get_context(request)
    user = parse_user_id(request.match_info["user_id"])
    if (user.server_name != ctx.config.server_name
            or await ctx.storage.get_account(user) is None):
        raise NotFound(messages.PROFILE_NOT_FOUND)
    found = await ctx.storage.get_profile(user)
    body: dict[str, Any] = {}
    if found is not None:
        if found.display_name:
            body["displayname"] = found.display_name
        if found.avatar_url:
            body["avatar_url"] = found.avatar_url
    return json_response(body)


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: delete this device and its access token; 200 ``{}``."""
    ctx = get_context(request)
    requester = get_requester(request)
    request[AUDIT_TARGET_KEY] = requester.user_id
    await ctx.storage.delete_login_device(requester.user, requester.device_id)
    return json_response({})


async def logout_all(request: web.Request) -> web.Response:
    """``POST /logout/all``: delete every device and access token of the user; 200
    ``{}``."""
    ctx = get_context(request)
    requester = get_requester(request)
    request[AUDIT_TARGET_KEY] = requester.user_id
    await ctx.storage.delete_login_devices(requester.user)
    return json_response({})
