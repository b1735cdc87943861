"""Room evacuation: part local users from a room, or a local user from every room.

Both operations only *send leaves*; they never delete anything, so they are safe to
re-run: a member who was parted by an interrupted run is no longer joined and is simply
not found again.  Members are read and parted one page at a time (``after`` cursor), so
a room of tens of thousands of members costs a bounded amount of memory per step and no
single transaction grows with the room.

An evacuation is an incident-response tool: once started it runs to completion even if
the client that asked for it goes away (the HTTP request only waits for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from .. import messages
from ..config import Config
from ..context import KeyedLocks
from ..errors import MatrixError, NotFound
from ..events import check_new_event
from ..identifiers import UserID
from ..storage.protocols import AccountStore, RoomStore
from ..storage.types import MembershipChange

__all__ = [
    "BATCH_SIZE",
    "Detaching",
    "EvacuationNeeds",
    "EvacuationStore",
    "evacuate_room",
    "evacuate_user",
    "member_content",
    "room_lock_key",
    "run_to_completion",
    "wait_for_running",
]

BATCH_SIZE = 500
# Profiles shorter than this (in characters) always fit in a member event: even at six
# bytes a character (JSON escapes) they stay far below the 65,536-byte limit.
_PROFILE_ALWAYS_FITS = 8_000
_LONGEST_USER_ID = f"@{'a' * 126}:{'b' * 127}"  # 255 bytes

T = TypeVar("T")


class Detaching(Protocol):
    """Where work that outlives its request is kept until it ends (the
    :class:`~dendrite_admin_ext.context.AdminContext` is one)."""

    @property
    def detached(self) -> set[asyncio.Task[Any]]: ...

    def detach(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]: ...


class EvacuationStore(AccountStore, RoomStore, Protocol):
    """The storage an evacuation reads and writes."""


class EvacuationNeeds(Detaching, Protocol):
    """What the evacuation services use (the ``AdminContext`` has it all): the server
    name, the storage, the per-room locks, and somewhere to detach the work."""

    @property
    def config(self) -> Config: ...

    @property
    def storage(self) -> EvacuationStore: ...

    @property
    def locks(self) -> KeyedLocks: ...

async def run_to_completion(ctx: Detaching, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in its own task and wait for it; cancelling the caller (a client
    disconnecting, with aiohttp's handler cancellation on) does not stop the work.

    asyncio keeps only weak references to tasks: the task is held in ``ctx.detached``
    until it ends, so a detached evacuation cannot be garbage-collected half-way."""
    return await asyncio.shield(ctx.detach(coro))


async def wait_for_running(ctx: Detaching, grace_s: float) -> None:
    """At shutdown: let detached work (evacuations, notice set-ups whose requests went
    away or timed out) finish before storage closes under it, for up to ``grace_s``
    seconds.  Anything still running after that is safe to re-run."""
    pending = [t for t in ctx.detached if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=grace_s)


def room_lock_key(room_id: str) -> tuple[str, str]:
    """The ``ctx.locks`` key under which membership changes to a room are serialised."""
    return ("room", room_id)


def member_content(membership: str, display_name: str | None = None,
                   avatar_url: str | None = None) -> dict[str, Any]:
    """``m.room.member`` content carrying a profile (leaves keep the member's, as
    Dendrite's evacuation does; invites and joins show the user's)."""
    content: dict[str, Any] = {"membership": membership}
    if display_name is not None:
        content["displayname"] = display_name
    if avatar_url is not None:
        content["avatar_url"] = avatar_url
    if len(display_name or "") + len(avatar_url or "") > _PROFILE_ALWAYS_FITS:
        # A profile that would push the event over the Matrix limits (SPEC §2) is left
        # out rather than failing the leave or invite it rides on.
        try:
            check_new_event(sender=_LONGEST_USER_ID, event_type="m.room.member",
                            content=content, state_key=_LONGEST_USER_ID)
        except MatrixError:
            return {"membership": membership}
    return content


async def evacuate_room(ctx: EvacuationNeeds, room_id: str, *,
                        batch_size: int = BATCH_SIZE) -> list[str]:
    """Part every local joined member of the room; return their user IDs in the
    order they were parted.  Unknown room: :class:`NotFound`."""
    if not await ctx.storage.room_exists(room_id):
        raise NotFound(messages.unknown_room(room_id))
    return await run_to_completion(ctx, _evacuate_room(ctx, room_id, batch_size))


async def _evacuate_room(ctx: EvacuationNeeds, room_id: str, batch_size: int) -> list[str]:
    storage = ctx.storage
    affected: list[str] = []
    after: UserID | None = None
    # Concurrent evacuations of one room queue up; the later ones find nobody left.
    async with ctx.locks(room_lock_key(room_id)):
        while True:
            members = await storage.get_local_joined_members(
                room_id, ctx.config.server_name, after=after, limit=batch_size)
            if not members:
                break
            await storage.apply_memberships(room_id, [
                MembershipChange(m.user, m.user,
                                 member_content("leave", m.display_name, m.avatar_url))
                for m in members
            ])
            affected.extend(str(m.user) for m in members)
            if len(members) < batch_size:
                break
            after = members[-1].user
            # Let other requests run between batches of a big room.
            await asyncio.sleep(0)
    return affected


async def evacuate_user(ctx: EvacuationNeeds, user: UserID) -> list[str]:
    """Part a local user from every joined room and reject every pending invite,
    except a pending server-notice invite (users may not reject it).  Return the IDs
    of the rooms left.  Unknown account: :class:`NotFound`."""
    if await ctx.storage.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    return await run_to_completion(ctx, _evacuate_user(ctx, user))


async def _evacuate_user(ctx: EvacuationNeeds, user: UserID) -> list[str]:
    storage = ctx.storage
    affected: list[str] = []
    for room in await storage.get_user_rooms(user):
        if room.membership == "invite" and room.is_server_notice_room:
            continue
        async with ctx.locks(room_lock_key(room.room_id)):
            # A room evacuation, or a notice, may have changed it since the list was read.
            membership = await storage.get_membership(room.room_id, user)
            if membership not in ("join", "invite") or (
                    membership == "invite" and room.is_server_notice_room):
                continue
            await storage.apply_memberships(room.room_id, [MembershipChange(
                user, user,
                member_content("leave", room.display_name, room.avatar_url))])
        affected.append(room.room_id)
    return affected
