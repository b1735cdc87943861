"""Broadcast of a server notice to every local user (SPEC 11), as the durable job kind
:data:`BROADCAST`.

Recipients are read page by page in localpart order (the job's cursor is the last
localpart of the last recorded page), skipping deactivated accounts and the notices
user.  Each notice goes through the server-notices module (the user's one notices room,
created or re-joined as ``send_server_notice`` does) with a transaction key of its own,
(notices user, ``broadcast:<job>``, user ID): the event and that key's record are
written in one storage transaction, so a page repeated after a crash sends nothing to
the users it had already reached — each user gets the notice exactly once.  The
notices of one page are sent a few at a time concurrently; memory holds one page.
A storage with ``send_first_notices`` (the shipped SQL backends) creates the rooms and
sends the notices of every user of a page who has no notices room yet in one
transaction of a few multi-row statements, with the same transaction keys.

Beside Dendrite (``database.shared_with`` with ``homeserver.url``, SPEC 8) the rooms
are Dendrite's: each notice is sent by Dendrite's own ``send_server_notice`` (its
notices room logic), as ``PUT …/send_server_notice/{txnId}`` with a txnId derived from
(job, user), and the same transaction key is recorded here once Dendrite answered
(``dendrite_admin_notice_txns``).  A user whose key is recorded is skipped when a page
is repeated; the window between Dendrite's answer and the record is covered by
Dendrite's own per-txnId deduplication.  Recipients are read from Dendrite's
``userapi_accounts`` as above.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..context import AdminContext
from ..dendrite_client import DendriteClient, notice_txn_id
from ..errors import MatrixError, ServiceUnavailable, StorageUnavailableError
from ..identifiers import UserID
from ..storage.types import JobStep, NoticeTxnKey
from .jobs import JobRun
from .notices import (
    SERVER_NOTICE_TAG,
    Notice,
    ensure_system_user,
    notice_room_template,
    send_recorded_notice,
    system_user,
)

__all__ = ["BROADCAST", "run_broadcast"]

log = logging.getLogger(__name__)

BROADCAST = "broadcast_server_notice"
# Notices of one page in flight at once: enough to overlap the database's round trips,
# few enough to leave connections for requests.
IN_FLIGHT = 16
# Beside Dendrite: calls in flight at once (each one is a signed event in Dendrite),
# and how often, and after how long, a notice Dendrite could not take (503: down,
# timed out, failed) is tried again before it counts as failed.
DENDRITE_IN_FLIGHT = 4
DENDRITE_ATTEMPTS = 3
DENDRITE_RETRY_S = 2.0


async def run_broadcast(run: JobRun) -> Mapping[str, Any]:
    """The :data:`BROADCAST` job; params: content, type, user_id_prefix, admins,
    not_user_type."""
    ctx, job = run.ctx, run.job
    if ctx.homeserver is not None:
        return await _run_beside_dendrite(run, ctx.homeserver)
    params = job.params
    system = system_user(ctx)
    gate = asyncio.Semaphore(IN_FLIGHT)
    event_type = str(params.get("type") or "m.room.message")
    content = dict(params["content"])

    async def notify(user: UserID) -> bool:
        async with gate:
            try:
                # The account was just listed, and the send records the key with the
                # event (a repeat returns the first event): no pre-reads needed.
                await send_recorded_notice(
                    ctx, Notice(user, event_type, content),
                    NoticeTxnKey(system, f"broadcast:{job.job_id}", str(user)))
                return True
            except StorageUnavailableError:
                raise  # the whole page is tried again
            except Exception:
                log.warning("job %s: notice to %s failed", job.job_id, user, exc_info=True)
                return False

    # Optional (the shipped SQL backends have it): first notices of a page in bulk.
    bulk: Any = getattr(ctx.storage, "send_first_notices", None)

    async def send_page(targets: list[UserID]) -> list[bool]:
        first: Mapping[UserID, str] = {}
        if bulk is not None and targets:
            # Users without a notices room yet get room and notice in one go.
            await ensure_system_user(ctx)
            first = await bulk(
                targets, notice_room_template(ctx, system), tag=SERVER_NOTICE_TAG,
                auto_join=ctx.config.server_notices.auto_join, event_type=event_type,
                content=content, txn_device=f"broadcast:{job.job_id}",
                txn_ts=ctx.clock())
        return [True] * len(first) + list(await asyncio.gather(
            *(notify(u) for u in targets if u not in first)))

    return await _page_through(run, send_page)


async def _page_through(run: JobRun,
                        send_page: Callable[[list[UserID]], Awaitable[list[bool]]]
                        ) -> Mapping[str, Any]:
    """The recipients page by page from the job's cursor (the notices user left out),
    each page sent by ``send_page`` (True per user notified) and recorded as one step;
    a page the storage could not finish is tried again (what it sent is recorded with
    its key, so nobody gets it twice)."""
    ctx, job, params = run.ctx, run.job, run.job.params
    system = system_user(ctx)
    after = None if run.cursor is None else UserID(run.cursor, ctx.config.server_name)
    batch = ctx.config.jobs.batch_size
    while True:
        users = await ctx.storage.get_notice_recipients(
            ctx.config.server_name, after=after, limit=batch,
            user_id_prefix=params.get("user_id_prefix"), admins=params.get("admins"),
            not_user_types=tuple(params.get("not_user_type") or ()))
        if not users:
            break
        targets = [u for u in users if u != system]
        try:
            sent = await send_page(targets)
        except StorageUnavailableError:
            log.warning("job %s: storage unavailable; retrying the page", job.job_id)
            await asyncio.sleep(1.0)
            continue
        ok = sum(sent)
        after = users[-1]
        await run.step(JobStep(after.localpart, done=ok, failed=len(targets) - ok))
        if len(users) < batch:
            break
    # Known only now (the list is read page by page, never counted ahead).
    await run.step(JobStep(run.cursor, total=run.done + run.failed))
    return {"recipients": run.done + run.failed}


async def _run_beside_dendrite(run: JobRun, client: DendriteClient) -> Mapping[str, Any]:
    """The broadcast through Dendrite's ``send_server_notice`` (module docstring)."""
    ctx, job = run.ctx, run.job
    params = job.params
    system = system_user(ctx)
    gate = asyncio.Semaphore(DENDRITE_IN_FLIGHT)
    event_type = str(params.get("type") or "m.room.message")
    content = dict(params["content"])
    # Optional in the protocol; the shipped SQL backends (the only ones beside
    # Dendrite) have it.
    record: Any = getattr(ctx.storage, "record_notice_txn", None)

    async def notify(user: UserID) -> bool:
        key = NoticeTxnKey(system, f"broadcast:{job.job_id}", str(user))
        async with gate:
            if await ctx.storage.get_notice_txn(key) is not None:
                return True  # sent before the page was interrupted
            body = {"user_id": str(user), "type": event_type, "content": content}
            txn_id = notice_txn_id(key.user, key.device_id, key.txn_id)
            for attempt in range(1, DENDRITE_ATTEMPTS + 1):
                try:
                    event_id = await client.send_server_notice(body, txn_id=txn_id)
                    break
                except ServiceUnavailable:
                    if attempt == DENDRITE_ATTEMPTS:
                        log.warning("job %s: notice to %s failed: the homeserver is "
                                    "unavailable", job.job_id, user)
                        return False
                    await asyncio.sleep(DENDRITE_RETRY_S * attempt)
                except MatrixError as exc:
                    log.warning("job %s: notice to %s refused by the homeserver: %s",
                                job.job_id, user, exc.errcode)
                    return False
            if record is not None:
                await record(key, event_id, ctx.clock())
            return True

    async def send_page(targets: list[UserID]) -> list[bool]:
        return list(await asyncio.gather(*(notify(u) for u in targets)))

    return await _page_through(run, send_page)


def broadcast_params(ctx: AdminContext, body: Mapping[str, Any]) -> dict[str, Any]:
    """The job's params from a body that passed ``broadcast_server_notice.schema.json``."""
    filters: Mapping[str, Any] = body.get("filters") or {}
    return {"content": body["content"], "type": body.get("type", "m.room.message"),
            "user_id_prefix": filters.get("user_id_prefix"),
            "admins": filters.get("admins"),
            "not_user_type": list(filters.get("not_user_type") or ())}
