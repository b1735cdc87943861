"""Room administration (SPEC 11): the room list's JSON, purge, dry runs, and room
deletion as a durable job.

Deletion (``DELETE /_synapse/admin/v2/rooms/{roomId}``, Synapse's Delete Room API) runs
as the job kind :data:`ROOM_DELETE`, in phases recorded in the job's cursor:

1. ``start``: block the room (``block``), and with ``new_room_user_id`` create the new
   room (public, members at power -10 so they cannot speak, named ``room_name``) and
   post ``message`` there, as Synapse's shutdown does.
2. ``part``: page through the local joined members; each page is joined to the new
   room (if any) and then parted from the old one, and recorded as one step (the
   parted users are the step's items: ``kicked_users``).  Joining first makes a crash
   between the two harmless: the re-run finds the members still joined and does both
   again (a repeated join changes nothing), where parting first would strand them.
   Members already parted are no longer listed, so nobody is parted twice.
3. ``purge``: delete the room's rows (``purge``, default true).

An unknown room is only blocked (when asked), as Synapse allows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .. import messages
from ..context import AdminContext
from ..errors import NotFound
from ..events import ROOM_VERSION
from ..identifiers import UserID
from ..storage.types import Job, JobStep, Member, MembershipChange, NewRoom, RoomSummary
from . import homeserver
from .evacuation import BATCH_SIZE, member_content, room_lock_key, run_to_completion
from .jobs import JobRun

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_ROOM_NAME",
    "DRY_RUN_MAX",
    "ROOM_DELETE",
    "delete_status_json",
    "preview_room_members",
    "preview_user_rooms",
    "purge_room",
    "room_json",
    "run_room_delete",
]

log = logging.getLogger(__name__)

ROOM_DELETE = "room_delete"
# Synapse's defaults (docs/admin_api/rooms.md, Delete Room API).
DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = ("Sharing illegal content on this server is not permitted and rooms in "
                   "violation will be blocked.")
# A dry run lists at most this many IDs (SPEC 11).
DRY_RUN_MAX = 1000


def room_json(room: RoomSummary) -> dict[str, Any]:
    """One room of ``GET /_synapse/admin/v1/rooms`` (Synapse's keys)."""
    return {
        "room_id": room.room_id, "name": room.name, "canonical_alias": room.canonical_alias,
        "joined_members": room.joined_members,
        "joined_local_members": room.joined_local_members, "version": room.version,
        "creator": room.creator, "encryption": room.encryption,
        "federatable": room.federatable, "public": room.public,
        "join_rules": room.join_rules, "guest_access": room.guest_access,
        "history_visibility": room.history_visibility, "state_events": room.state_events,
        "room_type": room.room_type,
    }


async def purge_room(ctx: AdminContext, room_id: str) -> None:
    """Dendrite's ``purgeRoom``: delete everything stored for the room, members or
    not (Dendrite does not evacuate first either).  Unknown room: :class:`NotFound`."""
    async def purge() -> bool:
        async with ctx.locks(room_lock_key(room_id)):
            return await ctx.storage.purge_room(room_id)

    if not await run_to_completion(ctx, purge()):
        raise NotFound(messages.unknown_room(room_id))
    log.info("room %s purged", room_id)


async def preview_room_members(ctx: AdminContext, room_id: str) -> tuple[int, list[str]]:
    """Dry run of a room evacuation or deletion: how many local members are joined
    and the first :data:`DRY_RUN_MAX` of them; reads page by page (flat memory)."""
    count, first = 0, list[str]()
    after: UserID | None = None
    while True:
        page = await ctx.storage.get_local_joined_members(
            room_id, ctx.config.server_name, after=after, limit=BATCH_SIZE)
        count += len(page)
        first += [str(m.user) for m in page[:max(0, DRY_RUN_MAX - len(first))]]
        if len(page) < BATCH_SIZE:
            return count, first
        after = page[-1].user


async def preview_user_rooms(ctx: AdminContext, user: UserID) -> tuple[int, list[str]]:
    """Dry run of a user evacuation: the rooms it would leave (server-notice invites
    excepted, as the evacuation does)."""
    rooms = [r.room_id for r in await ctx.storage.get_user_rooms(user)
             if not (r.membership == "invite" and r.is_server_notice_room)]
    return len(rooms), rooms[:DRY_RUN_MAX]


def _cursor(phase: str, after: str | None = None) -> str:
    return json.dumps({"phase": phase, "after": after})


async def run_room_delete(run: JobRun) -> Mapping[str, Any]:
    """The :data:`ROOM_DELETE` job (module docstring); params: room_id, block, purge,
    message, room_name, new_room_user_id, requester."""
    ctx, job = run.ctx, run.job
    if ctx.homeserver is not None:  # beside Dendrite: Dendrite's rooms (SPEC 8)
        return await homeserver.run_room_delete(run)
    params = job.params
    room_id: str = params["room_id"]
    state = json.loads(run.cursor) if run.cursor else {"phase": "start", "after": None}
    new_room_id: str | None = job.result.get("new_room_id")
    exists = await ctx.storage.room_exists(room_id)
    if state["phase"] == "start":
        if params.get("block"):
            requester = params.get("requester")
            await ctx.storage.set_room_block(
                room_id, None if requester is None else UserID.from_stored(requester),
                ctx.clock(), block=True)
        summary = await ctx.storage.get_room_summary(room_id, ctx.config.server_name)
        total = 0 if summary is None else summary.joined_local_members
        if exists and params.get("new_room_user_id") and new_room_id is None:
            new_room_id = await _new_room(ctx, params)
        await run.step(JobStep(_cursor("part"), total=total,
                               result={"new_room_id": new_room_id}))
        state = {"phase": "part", "after": None}
    if state["phase"] == "part":
        if exists:
            await _part_members(run, room_id, new_room_id, state)
        await run.step(JobStep(_cursor("purge")))
        state = {"phase": "purge"}
    if params.get("purge", True) and exists:
        async with ctx.locks(room_lock_key(room_id)):
            await ctx.storage.purge_room(room_id)
        log.info("job %s: room %s purged", job.job_id, room_id)
    return {"new_room_id": new_room_id, "purged": bool(params.get("purge", True)) and exists}


async def _new_room(ctx: AdminContext, params: Mapping[str, Any]) -> str:
    owner = UserID.from_stored(params["new_room_user_id"])
    creator = str(owner)
    room_id = await ctx.storage.create_room(NewRoom(
        creator=owner, room_version=ROOM_VERSION,
        create_content={"creator": creator},
        initial_state=(
            ("m.room.member", creator, member_content("join")),
            ("m.room.power_levels", "", {"users": {creator: 100}, "users_default": -10,
                                         "events_default": 0, "state_default": 50,
                                         "invite": 50, "kick": 50, "ban": 50,
                                         "redact": 50}),
            ("m.room.join_rules", "", {"join_rule": "public"}),
            ("m.room.history_visibility", "", {"history_visibility": "shared"}),
            ("m.room.name", "", {"name": params.get("room_name") or DEFAULT_ROOM_NAME}),
        )))
    await ctx.storage.send_event(room_id, owner, "m.room.message", {
        "msgtype": "m.text", "body": params.get("message") or DEFAULT_MESSAGE})
    return room_id


async def _part_members(run: JobRun, room_id: str, new_room_id: str | None,
                        state: Mapping[str, Any]) -> None:
    """Part the local members page by page.  Each page is recorded twice: before its
    leaves (its members as the job's items, the page's last user as ``pending``) and
    after (the cursor moves on, ``done`` grows).  A resumed page whose leaves were
    under way re-sends them to whoever is still joined and counts the whole page, so
    ``done`` and ``kicked_users`` are exact even when a crash fell in between."""
    ctx = run.ctx
    batch = ctx.config.jobs.batch_size
    after_id: str | None = state.get("after")
    pending: str | None = state.get("pending")
    pending_count = int(state.get("pending_count") or 0)
    while True:
        after = None if after_id is None else UserID.from_stored(after_id)
        if pending is not None:
            async with ctx.locks(room_lock_key(room_id)):
                still = [m for m in await ctx.storage.get_local_joined_members(
                    room_id, ctx.config.server_name, after=after, limit=batch)
                    if str(m.user) <= pending]
                await _move(ctx, room_id, new_room_id, still)
            after_id, pending = pending, None
            await run.step(JobStep(_cursor("part", after_id), done=pending_count))
            continue
        # The room lock keeps this process's other membership changes out from the
        # listing to the leaves.
        async with ctx.locks(room_lock_key(room_id)):
            members = await ctx.storage.get_local_joined_members(
                room_id, ctx.config.server_name, after=after, limit=batch)
            if not members:
                return
            last = str(members[-1].user)
            await run.step(JobStep(
                json.dumps({"phase": "part", "after": after_id, "pending": last,
                            "pending_count": len(members)}),
                items=tuple(str(m.user) for m in members)))
            await _move(ctx, room_id, new_room_id, members)
        after_id = last
        await run.step(JobStep(_cursor("part", after_id), done=len(members)))
        if len(members) < batch:
            return


async def _move(ctx: AdminContext, room_id: str, new_room_id: str | None,
                members: list[Member]) -> None:
    """Join the members to the new room (if any), then part them from the room."""
    if not members:
        return
    if new_room_id is not None:
        await ctx.storage.apply_memberships(new_room_id, [
            MembershipChange(m.user, m.user,
                             member_content("join", m.display_name, m.avatar_url))
            for m in members])
    await ctx.storage.apply_memberships(room_id, [
        MembershipChange(m.user, m.user, member_content("leave", m.display_name,
                                                        m.avatar_url))
        for m in members])


async def delete_status_json(ctx: AdminContext, job: Job) -> dict[str, Any]:
    """One task of Synapse's ``delete_status`` answers: ``delete_id``, ``room_id``,
    ``status``, ``shutdown_room`` and ``error`` when it failed."""
    kicked = await ctx.storage.get_job_items(job.job_id, limit=1_000_000)
    out: dict[str, Any] = {
        "delete_id": job.job_id, "room_id": job.target, "status": job.status,
        "shutdown_room": {"kicked_users": kicked, "failed_to_kick_users": [],
                          "local_aliases": [],
                          "new_room_id": job.result.get("new_room_id")},
    }
    if job.error is not None:
        out["error"] = job.error
    return out
