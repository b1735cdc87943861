"""Room changes beside Dendrite, made by Dendrite's own admin API (SPEC 8).

The same checks as the package's own room services come first (the target is local
and has an account here, the notices user is not its own target), so that the answers
are this API's whichever side does the work; then :class:`~..dendrite_client.
DendriteClient` makes the change.  Like the package's own evacuations and notices, a
call once started runs to completion even if the client goes away.

Room deletion (``DELETE /_synapse/admin/v2/rooms/{roomId}``) is the durable job
:func:`run_room_delete` here: Dendrite's ``evacuateRoom`` (its local joined members
leave), recorded as one step with the parted users as the job's items
(``kicked_users``), then, with ``purge`` (default true), Dendrite's ``purgeRoom``,
which does not evacuate by itself (research/admin-apis.md §A).  A room Dendrite does
not know completes with nothing done, as Synapse's deletion of an unknown room does.
Blocking a room and moving its members to a new room have no Dendrite admin endpoint:
the handler refuses them beside Dendrite rather than pretend.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .. import messages
from ..context import AdminContext
from ..dendrite_client import DendriteClient, notice_txn_id
from ..errors import MatrixError, NotFound, ServiceUnavailable
from ..identifiers import UserID
from ..storage.types import JobStep, NoticeTxnKey
from .evacuation import run_to_completion
from .jobs import JobRun
from .notices import Notice, system_user

__all__ = ["evacuate_room", "evacuate_user", "purge_room", "run_room_delete",
           "send_server_notice"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# A job's call that Dendrite could not take (503: down, timed out, failed) is tried
# this many times, waiting RETRY_S, 2 * RETRY_S, … in between, before the job fails
# with the error.  Dendrite's evacuateRoom and purgeRoom are safe to repeat.
ATTEMPTS = 3
RETRY_S = 2.0


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


async def purge_room(ctx: AdminContext, room_id: str) -> None:
    """Dendrite's purgeRoom, as Dendrite documents it: the room's rows are deleted,
    joined members or not (Dendrite does not evacuate first; CHANGES 0.13.2), so that
    the same call means the same whichever server answers it.  Unknown room: 404."""
    await run_to_completion(ctx, _client(ctx).purge_room(room_id))
    log.info("room %s purged by the homeserver", room_id)


def _missing(exc: MatrixError) -> bool:
    return exc.http_status == 404 and exc.errcode == "M_NOT_FOUND"


async def _retrying(job_id: str, call: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except ServiceUnavailable:
            if attempt == ATTEMPTS:
                raise
            log.warning("job %s: the homeserver is unavailable; trying again", job_id)
            await asyncio.sleep(RETRY_S * attempt)
    raise AssertionError("unreachable")


async def run_room_delete(run: JobRun) -> Mapping[str, Any]:
    """The room deletion job beside Dendrite (module docstring); params as the
    package's own (services/room_admin.py), of which room_id and purge are used
    (the handler refused block and new_room_user_id).  The cursor is the phase,
    ``{"phase": "evacuate" | "purge"}``."""
    ctx, job = run.ctx, run.job
    client = _client(ctx)
    room_id: str = job.params["room_id"]
    phase = json.loads(run.cursor)["phase"] if run.cursor else "evacuate"
    exists = bool(job.result.get("exists", True))
    if phase == "evacuate":
        try:
            parted = await _retrying(job.job_id, lambda: client.evacuate_room(room_id))
        except MatrixError as exc:
            if not _missing(exc):
                raise
            parted, exists = [], False
        # A crash before this record re-runs the evacuation, which then finds nobody
        # joined: nobody leaves twice (the users parted then are not listed).
        await run.step(JobStep(json.dumps({"phase": "purge"}), done=len(parted),
                               total=len(parted), items=tuple(parted),
                               result={"exists": exists}))
    purged = False
    if job.params.get("purge", True) and exists:
        try:
            await _retrying(job.job_id, lambda: client.purge_room(room_id))
            purged = True
        except MatrixError as exc:
            if not _missing(exc):
                raise
            # Purged already: the step before a crash, or by another admin.
            purged = phase == "purge"
        log.info("job %s: room %s purged by the homeserver", job.job_id, room_id)
    return {"new_room_id": None, "purged": purged}
