"""Account locking and suspension (SPEC 10): the Matrix v1.18 endpoints (MSC4323, also
under the unstable ``uk.timedout.msc4323`` prefix) and Synapse's suspend endpoint.

``GET|PUT …/admin/lock/{userId}`` → ``{"locked": bool}``,
``GET|PUT …/admin/suspend/{userId}`` → ``{"suspended": bool}``;
``PUT /_synapse/admin/v1/suspend/{userId}`` ``{"suspend": bool}`` →
``{"user_<userId>_suspended": bool}``.  Errors: 403 ``M_FORBIDDEN``, 400
``M_INVALID_PARAM``, 404 ``M_NOT_FOUND`` in the order of
:mod:`..services.moderation`.
"""

from __future__ import annotations

from aiohttp import web

from .. import messages
from ..auth import get_requester
from ..context import get_context
from ..errors import NotFound
from ..responses import json_response
from ..services.moderation import Action, check_target, find_target, set_state
from .users import local_user

__all__ = ["get_lock", "get_suspend", "put_lock", "put_suspend", "synapse_suspend"]

# The JSON key of each action's state, in requests and answers alike.
_KEYS: dict[Action, str] = {"lock": "locked", "suspend": "suspended"}


async def _get(request: web.Request, action: Action) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = check_target(requester, request.match_info["user_id"], ctx.config.server_name,
                        action=action, change=False)
    await find_target(ctx.storage, requester, user, action=action)
    state = await ctx.storage.get_account_state(user)
    value = state.locked if action == "lock" else state.suspended
    return json_response({_KEYS[action]: value})


async def _put(request: web.Request, action: Action) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = check_target(requester, request.match_info["user_id"], ctx.config.server_name,
                        action=action, change=True)
    # The body is read after the checks that need no lookup and before the lookup: a
    # bad request costs no database read and changes nothing.
    body = await ctx.read_body(request)
    value: bool = body[_KEYS[action]]
    await find_target(ctx.storage, requester, user, action=action)
    await set_state(ctx.storage, user, action, value)
    return json_response({_KEYS[action]: value})


async def get_lock(request: web.Request) -> web.Response:
    return await _get(request, "lock")


async def put_lock(request: web.Request) -> web.Response:
    return await _put(request, "lock")


async def get_suspend(request: web.Request) -> web.Response:
    return await _get(request, "suspend")


async def put_suspend(request: web.Request) -> web.Response:
    return await _put(request, "suspend")


async def synapse_suspend(request: web.Request) -> web.Response:
    """Synapse's ``PUT /_synapse/admin/v1/suspend/{userId}`` (its ``rest/admin/users.py``):
    no self or admin-target rule there; a remote user is 400, an unknown (or, here, also
    a deactivated) one 404."""
    ctx = get_context(request)
    user = local_user(request.match_info["user_id"], ctx.config.server_name)
    body = await ctx.read_body(request)
    suspend: bool = body["suspend"]
    account = await ctx.storage.get_account(user)
    if account is None or account.is_deactivated:
        raise NotFound(messages.unknown_user(user))
    await set_state(ctx.storage, user, "suspend", suspend)
    return json_response({f"user_{user}_suspended": suspend})
