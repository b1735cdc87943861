"""Room changes beside Dendrite, made by Dendrite's own admin API (SPEC 8).

The same checks as the package's own room services come first (the target is local
and has an account here, the notices user is not its own target), so that the answers
are this API's whichever side does the work; then :class:`~..dendrite_client.
DendriteClient` makes the change.  Like the package's own evacuations and notices, a
call once started runs to completion even if the client goes away.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import messages
from ..context import AdminContext
from ..dendrite_client import DendriteClient, notice_txn_id
from ..errors import NotFound
from ..identifiers import UserID
from ..storage.types import NoticeTxnKey
from .evacuation import run_to_completion
from .notices import Notice, system_user

__all__ = ["evacuate_room", "evacuate_user", "send_server_notice"]


def _client(ctx: AdminContext) -> DendriteClient:
    client = ctx.homeserver
    if client is None:  # the routes are mounted only with one; defensive
        raise RuntimeError("no homeserver.url configured")
    return client


async def evacuate_room(ctx: AdminContext, room_id: str) -> list[str]:
    """Dendrite's evacuateRoom: the user IDs parted.  Unknown room: 404."""
    return await run_to_completion(ctx, _client(ctx).evacuate_room(room_id))


async def evacuate_user(ctx: AdminContext, user: UserID) -> list[str]:
    """Dendrite's evacuateUser: the room IDs left.  Unknown account: 404 (checked
    here: Dendrite would answer an empty list)."""
    if await ctx.storage.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    return await run_to_completion(ctx, _client(ctx).evacuate_user(user))


async def send_server_notice(ctx: AdminContext, notice: Notice, body: Mapping[str, Any],
                             key: NoticeTxnKey | None = None) -> str:
    """Dendrite's send_server_notice with ``body`` as validated here; the event ID.
    With ``key`` (PUT with a txnId) the first event ID is returned again for a repeat:
    from this package's record (every worker, across restarts, for 24 hours), and
    Dendrite itself recognises a retry that arrives before the record is written."""
    if notice.user == system_user(ctx):
        raise NotFound(messages.CANNOT_NOTICE_SYSTEM_USER)
    if await ctx.storage.get_account(notice.user) is None:
        raise NotFound(messages.unknown_user(notice.user))
    client = _client(ctx)
    if key is None:
        return await run_to_completion(ctx, client.send_server_notice(body))
    return await run_to_completion(ctx, _send_once(ctx, client, body, key))


async def _send_once(ctx: AdminContext, client: DendriteClient, body: Mapping[str, Any],
                     key: NoticeTxnKey) -> str:
    async with ctx.locks(("notice_txn", key)):
        existing = await ctx.storage.get_notice_txn(key)
        if existing:
            return existing
        event_id = await client.send_server_notice(
            body, txn_id=notice_txn_id(key.user, key.device_id, key.txn_id))
        record = getattr(ctx.storage, "record_notice_txn", None)
        if record is not None:  # the SQL backends; a host's storage may not keep one
            await record(key, event_id, ctx.clock())
        return event_id
