"""Synapse's user admin API (SPEC 9; docs/admin_api/user_admin_api.md), for synadm,
synapse-admin and Ketesa: list, show, create/modify, deactivate, reset password, admin
flag, devices, joined rooms, and the server version.  Parse → service → render; the
pipeline has already authorised the caller (admins only, before any lookup)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..activity import merge_pending
from ..auth import get_requester
from ..context import AdminContext, get_context
from ..errors import InvalidParam, NotFound
from ..identifiers import UserID, parse_user_id
from ..passwords import check_password_policy
from ..query_params import bool_param, int_param
from ..responses import json_response
from ..services import users as service
from ..storage.types import USER_ORDERS, AccountType, UserQuery
from .users import local_user

__all__ = [
    "LIST_QUERY",
    "delete_device",
    "delete_devices",
    "get_admin",
    "get_user",
    "joined_rooms",
    "list_users_v2",
    "list_users_v3",
    "post_deactivate",
    "put_admin",
    "put_user",
    "reset_password",
    "server_version",
    "user_devices",
]

DEFAULT_LIMIT = 100

_BOOL = {"type": "string", "enum": ["true", "false"]}
LIST_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("from", {"type": "string", "description": "An offset (integer) or the next_token of "
              "the previous page (a keyset cursor: deep pages cost what the first does)"}),
    ("limit", {"type": "string", "pattern": "^[0-9]{1,5}$",
               "description": f"0-{service.MAX_LIMIT}, default {DEFAULT_LIMIT}"}),
    ("user_id", {"type": "string", "description": "Substring of the user ID"}),
    ("name", {"type": "string", "description": "Substring of the localpart or display name"}),
    ("guests", {**_BOOL, "description": "false excludes guests (default true)"}),
    ("deactivated", {**_BOOL, "description": "v2: true includes deactivated accounts; "
                     "v3: true only them, false none, absent both"}),
    ("admins", {**_BOOL, "description": "true only admins, false no admins"}),
    ("locked", {**_BOOL, "description": "true includes locked accounts (default false)"}),
    ("not_user_type", {"type": "string", "description": "Exclude this user type "
                       "(repeatable; empty: accounts without a type)"}),
    ("order_by", {"type": "string", "enum": list(USER_ORDERS)}),
    ("dir", {"type": "string", "enum": ["f", "b"]}),
)


def _query(request: web.Request, deactivated: bool | None) -> UserQuery:
    order_by = request.query.get("order_by", "name")
    if order_by not in USER_ORDERS:
        raise InvalidParam(messages.not_one_of("order_by", list(USER_ORDERS)))
    direction = request.query.get("dir", "f")
    if direction not in ("f", "b"):
        raise InvalidParam(messages.not_one_of("dir", ["f", "b"]))
    return UserQuery(
        user_id=request.query.get("user_id"),
        name=request.query.get("name"),
        guests=bool_param(request, "guests", True),
        deactivated=deactivated,
        admins=bool_param(request, "admins", None),
        locked=bool_param(request, "locked", False),
        not_user_types=tuple(dict.fromkeys(request.query.getall("not_user_type", []))),
        order_by=order_by,
        direction=direction,
    )


async def _list(request: web.Request, deactivated: bool | None) -> web.Response:
    ctx = get_context(request)
    query = _query(request, deactivated)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 0, service.MAX_LIMIT)
    page = await service.list_users(ctx, query, request.query.get("from"), limit)
    body: dict[str, Any] = {"users": [service.list_entry(u) for u in page.users],
                            "total": page.total}
    if page.next_token is not None:
        body["next_token"] = page.next_token
    return json_response(body)


async def list_users_v2(request: web.Request) -> web.Response:
    """v2: ``deactivated=true`` includes deactivated accounts, otherwise they are left
    out."""
    return await _list(request, None if bool_param(request, "deactivated", False)
                       else False)


async def list_users_v3(request: web.Request) -> web.Response:
    """v3: ``deactivated`` absent = everyone, true = only, false = none of them."""
    return await _list(request, bool_param(request, "deactivated", None))


def _local(ctx: AdminContext, request: web.Request,
           message: str = "Can only look up local users") -> UserID:
    user = parse_user_id(request.match_info["user_id"])
    if user.server_name != ctx.config.server_name:
        raise InvalidParam(message)
    return user


async def get_user(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = _local(ctx, request)
    return json_response(service.user_details(await service.get_record(ctx, user)))


async def put_user(request: web.Request) -> web.Response:
    """201 with the new account's details, or 200 with the modified one's."""
    ctx = get_context(request)
    requester = get_requester(request)
    user = _local(ctx, request, "This endpoint can only be used with local users")
    body = await ctx.read_body(request)
    keep = requester.device_id if requester.user == user else None
    status, details = await service.modify_or_create(ctx, requester.user, user, body,
                                                     keep_device_id=keep)
    return json_response(details, status=status)


async def _optional_body(ctx: AdminContext, request: web.Request) -> dict[str, Any]:
    """Synapse's ``allow_empty_body``: no body is ``{}``."""
    if not request.body_exists:
        return {}
    return await ctx.read_body(request)


async def post_deactivate(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = _local(ctx, request, "Can only deactivate local users")
    await service.get_record(ctx, user)
    body = await _optional_body(ctx, request)
    await service.deactivate_account(ctx, user, erase=body.get("erase", False))
    # No identity servers are bound by this server, so there was nothing to unbind.
    return json_response({"id_server_unbind_result": "success"})


async def reset_password(request: web.Request) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = local_user(request.match_info["user_id"], ctx.config.server_name)
    body = await ctx.read_body(request)
    password = check_password_policy(body["new_password"], ctx.config.passwords)
    await service.get_record(ctx, user)
    password_hash = await ctx.hasher.hash(password)
    keep = requester.device_id if requester.user == user else None
    await ctx.storage.set_password(user, password_hash,
                                   logout_devices=body.get("logout_devices", True),
                                   keep_device_id=keep)
    return json_response({})


_ADMINS_ONLY_LOCAL = "Only local users can be admins of this homeserver"


async def get_admin(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = _local(ctx, request, _ADMINS_ONLY_LOCAL)
    record = await service.get_record(ctx, user)
    return json_response({"admin": record.account_type == AccountType.ADMIN})


async def put_admin(request: web.Request) -> web.Response:
    ctx = get_context(request)
    requester = get_requester(request)
    user = _local(ctx, request, _ADMINS_ONLY_LOCAL)
    body = await ctx.read_body(request)
    if user == requester.user and not body["admin"]:
        raise InvalidParam(messages.CANNOT_DEMOTE_SELF)
    await service.get_record(ctx, user)
    await ctx.storage.set_admin(user, body["admin"])
    return json_response({})


async def user_devices(request: web.Request) -> web.Response:
    """``{"devices": [{device_id, display_name, last_seen_ip, last_seen_ts,
    last_seen_user_agent, user_id}], "total": n}`` (newest sighting of each device,
    including sightings not yet written)."""
    ctx = get_context(request)
    user = _local(ctx, request)
    pending = ctx.activity.pending_for(user)
    stored = await ctx.storage.get_devices(user)
    if not stored and await ctx.storage.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    devices = []
    for d in merge_pending(stored, pending):
        newest = d.connections[0] if d.connections else None
        devices.append({
            "device_id": d.device_id,
            "display_name": d.display_name,
            "last_seen_ip": newest.ip if newest else None,
            "last_seen_ts": newest.last_seen_ts if newest else None,
            "last_seen_user_agent": newest.user_agent if newest else None,
            "user_id": str(user),
        })
    return json_response({"devices": devices, "total": len(devices)})


async def delete_device(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = _local(ctx, request)
    await service.get_record(ctx, user)
    await ctx.storage.delete_devices(user, [request.match_info["device_id"]])
    return json_response({})


async def delete_devices(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user = _local(ctx, request)
    body = await ctx.read_body(request)
    await service.get_record(ctx, user)
    await ctx.storage.delete_devices(user, body["devices"])
    return json_response({})


async def joined_rooms(request: web.Request) -> web.Response:
    """The rooms the user is joined to (as Synapse: any user ID, no 404)."""
    ctx = get_context(request)
    user = parse_user_id(request.match_info["user_id"])
    rooms = [r.room_id for r in await ctx.storage.get_user_rooms(user)
             if r.membership == "join"]
    return json_response({"joined_rooms": rooms, "total": len(rooms)})


async def server_version(request: web.Request) -> web.Response:
    """No auth (Synapse's too): what the web UIs show on their login page."""
    from .. import __version__  # here: the package __init__ imports this module
    return json_response({"server_version": f"dendrite_admin_ext {__version__}"})
