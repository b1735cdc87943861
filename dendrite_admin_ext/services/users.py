"""User administration (SPEC 9): the rules behind Synapse's user admin API.

Listing pages with an opaque keyset cursor (``next_token``) besides Synapse's integer
offset; modifying follows Synapse's ``PUT /_synapse/admin/v2/users/{userId}``
(synapse/rest/admin/users.py); deactivation is one action that can be re-run to
completion (:func:`deactivate_account`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import messages
from ..context import AdminContext
from ..errors import InvalidParam, InvalidUsername, NotFound, UserInUse, UserInUseError
from ..identifiers import UserID
from ..passwords import check_password_policy
from ..storage.types import (
    AccountType,
    NewAccount,
    Profile,
    UserCursor,
    UserQuery,
    UserRecord,
    user_sort_key,
)
from . import homeserver
from .evacuation import evacuate_user, run_to_completion
from .registration import validate_username

__all__ = [
    "MAX_LIMIT",
    "RoomParter",
    "UserPage",
    "deactivate_account",
    "decode_from",
    "encode_cursor",
    "leave_all_rooms",
    "list_users",
    "list_entry",
    "modify_or_create",
    "user_details",
]

MAX_LIMIT = 10_000
_TOKEN_PREFIX = "k1."  # noqa: S105 (a version tag of the cursor, not a secret)


# -- listing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Position:
    """Where a page starts: after a cursor, or at an offset; ``index`` is the number of
    rows before the page (for ``next_token`` and Synapse's ``from + limit < total``)."""

    cursor: UserCursor | None
    offset: int
    index: int


def encode_cursor(query: UserQuery, cursor: UserCursor, index: int) -> str:
    """An opaque ``next_token``: the last row's sort key, tied to the order it belongs
    to, and how many rows came before the next page."""
    raw = json.dumps([query.order_by, query.direction, cursor.key, cursor.localpart, index],
                     separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_from(raw: str | None, query: UserQuery) -> _Position:
    """Synapse's ``from``: a non-negative integer offset, or a ``next_token`` of this
    package.  Anything else, or a token of another order, is 400 M_INVALID_PARAM."""
    if raw is None:
        return _Position(None, 0, 0)
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return _Position(None, int(raw), int(raw))
    bad = InvalidParam(messages.BAD_USER_LIST_FROM)
    if not raw.startswith(_TOKEN_PREFIX):
        raise bad
    body = raw[len(_TOKEN_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 5 and isinstance(data[3], str)
            and type(data[2]) in (int, str) and type(data[4]) is int and data[4] >= 0):
        raise bad
    if data[0] != query.order_by or data[1] != query.direction:
        raise InvalidParam(messages.NEXT_TOKEN_OF_ANOTHER_ORDER)
    return _Position(UserCursor(data[2], data[3]), 0, data[4])


@dataclass(frozen=True)
class UserPage:
    users: list[UserRecord]
    total: int
    next_token: str | None


async def list_users(ctx: AdminContext, query: UserQuery, from_: str | None,
                     limit: int) -> UserPage:
    """One page of local accounts.  ``next_token`` (only while ``from + limit <
    total``, as Synapse) is a keyset cursor: passed back as ``from`` it costs what the
    first page costs.  An integer ``from`` is an SQL offset (what the web UIs send,
    page by page from 0: cheap at the offsets a person clicks through)."""
    pos = decode_from(from_, query)
    server = ctx.config.server_name
    users = await ctx.storage.list_users(server, query, after=pos.cursor,
                                         offset=pos.offset, limit=limit)
    total = await ctx.storage.count_users(server, query)
    token: str | None = None
    if pos.index + limit < total:
        if users:
            last = users[-1]
            token = encode_cursor(query, UserCursor(user_sort_key(last, query.order_by),
                                                    last.user.localpart),
                                  pos.index + len(users))
        else:
            token = from_ or "0"
    return UserPage(users, total, token)


def list_entry(record: UserRecord) -> dict[str, Any]:
    """One ``users[]`` entry of Synapse's list: ``creation_ts`` in **ms**."""
    return {
        "name": str(record.user),
        "user_type": record.user_type,
        "is_guest": record.account_type == AccountType.GUEST,
        "admin": record.account_type == AccountType.ADMIN,
        "deactivated": record.is_deactivated,
        "shadow_banned": False,
        "displayname": record.display_name,
        "avatar_url": record.avatar_url,
        "creation_ts": record.created_ts,
        "approved": True,
        "erased": record.erased,
        "last_seen_ts": record.last_seen_ts,
        "locked": record.locked,
    }


def user_details(record: UserRecord) -> dict[str, Any]:
    """``GET /_synapse/admin/v2/users/{userId}``: ``creation_ts`` in **seconds**
    (Synapse's handlers/admin.py); no 3PIDs or external IDs exist here."""
    return {
        "name": str(record.user),
        "admin": record.account_type == AccountType.ADMIN,
        "deactivated": record.is_deactivated,
        "locked": record.locked,
        "shadow_banned": False,
        "creation_ts": record.created_ts // 1000,
        "appservice_id": record.appservice_id,
        "consent_server_notice_sent": None,
        "consent_version": None,
        "consent_ts": None,
        "user_type": record.user_type,
        "is_guest": record.account_type == AccountType.GUEST,
        "suspended": record.suspended,
        "displayname": record.display_name,
        "avatar_url": record.avatar_url,
        "threepids": [],
        "external_ids": [],
        "erased": record.erased,
        "last_seen_ts": record.last_seen_ts,
    }


async def get_record(ctx: AdminContext, user: UserID) -> UserRecord:
    record = await ctx.storage.get_user(user)
    if record is None:
        raise NotFound(messages.unknown_user(user))
    return record


# -- deactivation -------------------------------------------------------------------------
# How a deactivated user leaves their rooms: (ctx, user) -> the rooms left.  The rooms
# kept by this package are left through evacuation (server-notice invites stay); a
# deployment whose rooms live in Dendrite passes its own (SPEC 8).
RoomParter = Callable[[AdminContext, UserID], Awaitable[list[str]]]


async def leave_all_rooms(ctx: AdminContext, user: UserID) -> list[str]:
    """Leave every joined room and reject every invite, as evacuateUser does."""
    return await evacuate_user(ctx, user)


def user_lock_key(user: UserID) -> tuple[str, str]:
    return ("user", str(user))


def room_parter(ctx: AdminContext) -> RoomParter:
    """How this deployment's users leave their rooms: beside Dendrite, through
    Dendrite's evacuateUser (``homeserver.url``, SPEC 8); beside Dendrite without it,
    not at all — 400 ``M_INVALID_PARAM``, before anything changes, since only Dendrite
    can change its rooms; otherwise the package's own rooms (:func:`leave_all_rooms`)."""
    if ctx.homeserver is not None:
        return homeserver.evacuate_user
    if ctx.config.database.shared_with is not None:
        raise InvalidParam(messages.DEACTIVATION_NEEDS_HOMESERVER)
    return leave_all_rooms


async def deactivate_account(ctx: AdminContext, user: UserID, *, erase: bool,
                             part_rooms: RoomParter | None = None) -> None:
    """Deactivate a local account (SPEC 9), in steps that are each idempotent, so a
    run interrupted anywhere is finished by running it again:

    1. ``is_deactivated`` — from here on every token of the account is refused (401);
    2. every device and access token deleted, the password hash cleared;
    3. every room left and every invite rejected (``part_rooms``, by default
       :func:`room_parter`'s);
    4. with ``erase``: display name and avatar cleared, the account marked erased.

    Unknown account: :class:`NotFound`.  Runs to completion even if the client goes."""
    await get_record(ctx, user)
    parter = part_rooms or room_parter(ctx)
    await run_to_completion(ctx, _deactivate(ctx, user, erase, parter))


async def _deactivate(ctx: AdminContext, user: UserID, erase: bool,
                      part_rooms: RoomParter) -> None:
    storage = ctx.storage
    async with ctx.locks(user_lock_key(user)):
        await storage.set_deactivated(user, True)
        await storage.revoke_credentials(user)
        await part_rooms(ctx, user)
        if erase:
            await storage.set_profile(user, Profile(None, None))
            await storage.update_account_state(user, erased=True)


# -- PUT /_synapse/admin/v2/users/{userId} ----------------------------------------------------
def _checked_user_type(ctx: AdminContext, body: Mapping[str, Any]) -> str | None:
    user_type = body.get("user_type")
    if user_type is not None and user_type not in ctx.config.registration.user_types:
        raise InvalidParam(messages.invalid_user_type(str(user_type)))
    return user_type if isinstance(user_type, str) else None


async def _check_new_localpart(ctx: AdminContext, user: UserID) -> None:
    """An account created here follows the grammar registration enforces (SPEC 2: only
    ``[a-z0-9._=-/+]``, no leading ``_``, not all digits; Synapse's ``check_username``):
    400 ``M_INVALID_USERNAME``; historical localparts are reachable, never created.  A
    name taken case-insensitively (``@OPS`` beside ``@ops``) is 400 ``M_USER_IN_USE``,
    so nobody can be made to look like an existing account."""
    if validate_username(user.localpart, user.server_name) != user.localpart:
        raise InvalidUsername(messages.USERNAME_GRAMMAR)
    if await ctx.storage.localpart_exists(user):
        raise UserInUse(messages.USER_IN_USE)


async def modify_or_create(ctx: AdminContext, requester: UserID, user: UserID,
                           body: Mapping[str, Any], *,
                           keep_device_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """Synapse's create-or-modify: (201, details) when the account was created, (200,
    details) when it existed.  ``body`` is schema-valid (types checked).  Every check
    comes before any change: self-demotion and ``deactivated`` with ``locked`` are
    400 M_INVALID_PARAM, an unknown ``user_type`` too, a short password 400
    M_WEAK_PASSWORD."""
    user_type = _checked_user_type(ctx, body)
    if body.get("deactivated") is True and body.get("locked") is True:
        raise InvalidParam(messages.DEACTIVATED_AND_LOCKED)
    password = body.get("password")
    if password is not None:
        check_password_policy(password, ctx.config.passwords)
    existing = await ctx.storage.get_user(user)
    if existing is None:
        await _check_new_localpart(ctx, user)
    if existing is not None and "admin" in body and user == requester and not body["admin"] \
            and existing.account_type == AccountType.ADMIN:
        raise InvalidParam(messages.CANNOT_DEMOTE_SELF)
    password_hash = None if password is None else await ctx.hasher.hash(password)
    storage = ctx.storage
    if existing is None:
        display_name = body.get("displayname")
        try:
            await storage.create_account(NewAccount(
                user, password_hash,
                AccountType.ADMIN if body.get("admin") else AccountType.USER,
                ctx.clock(),
                # Synapse's register_user: the localpart unless a name is given.
                display_name=user.localpart if display_name is None else display_name,
                avatar_url=body.get("avatar_url"), user_type=user_type), None)
        except UserInUseError:
            raise UserInUse(messages.USER_IN_USE) from None
        return 201, user_details(await get_record(ctx, user))

    if "displayname" in body or "avatar_url" in body:
        profile = await storage.get_profile(user) or Profile(None, None)
        await storage.set_profile(user, Profile(
            body.get("displayname", profile.display_name),
            body.get("avatar_url", profile.avatar_url)))
    if "admin" in body and body["admin"] != (existing.account_type == AccountType.ADMIN):
        await storage.set_admin(user, bool(body["admin"]))
    if password_hash is not None:
        await storage.set_password(user, password_hash,
                                   logout_devices=body.get("logout_devices", True),
                                   keep_device_id=keep_device_id)
    if "deactivated" in body:
        if body["deactivated"] and not existing.is_deactivated:
            await deactivate_account(ctx, user, erase=False)
        elif not body["deactivated"] and existing.is_deactivated:
            await storage.set_deactivated(user, False)
    if "locked" in body and body["locked"] != existing.locked:
        await storage.update_account_state(user, locked=bool(body["locked"]))
    if "user_type" in body and user_type != existing.user_type:
        await storage.set_user_type(user, user_type)
    return 200, user_details(await get_record(ctx, user))
