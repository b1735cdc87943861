"""Durable jobs (SPEC 11): status, list, cancel; and the broadcast that starts one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..context import get_context
from ..errors import InvalidParam, NotFound
from ..query_params import int_param
from ..responses import json_response
from ..services.broadcast import BROADCAST, broadcast_params
from ..services.jobs import cancel_job, job_json, submit_job
from ..services.room_admin import ROOM_DELETE
from ..storage.types import JOB_STATUSES

# The kinds of job this package runs (a host may run its own alongside).
JOB_KINDS = (ROOM_DELETE, BROADCAST)

__all__ = ["JOBS_QUERY", "broadcast_notice", "cancel", "get_job", "list_jobs"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

JOBS_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("kind", {"type": "string"}),
    ("status", {"enum": list(JOB_STATUSES)}),
    ("from", {"type": "string", "pattern": "^[1-9][0-9]{0,17}$",
              "description": "next_from of the previous page: older jobs"}),
    ("limit", {"type": "string", "pattern": "^[0-9]{1,4}$",
               "description": f"1-{MAX_LIMIT}, default {DEFAULT_LIMIT}"}),
)


async def get_job(request: web.Request) -> web.Response:
    """``{job_id, kind, status, total?, done, failed, created_ts, started_ts?,
    finished_ts?, error?}``; 404 ``M_NOT_FOUND`` for an unknown ID."""
    job = await get_context(request).storage.get_job(request.match_info["job_id"])
    if job is None:
        raise NotFound(messages.UNKNOWN_JOB)
    return json_response(job_json(job))


async def list_jobs(request: web.Request) -> web.Response:
    """``{"jobs": [newest first], "next_from"?}``; filters ``kind``, ``status``."""
    ctx = get_context(request)
    status = request.query.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidParam(messages.not_one_of("status", list(JOB_STATUSES)))
    before = int_param(request, "from", None, 1, 10**18)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    assert limit is not None
    kind = request.query.get("kind")
    if kind is not None and kind not in JOB_KINDS:
        raise InvalidParam(messages.not_one_of("kind", list(JOB_KINDS)))
    jobs = await ctx.storage.list_jobs(kind=kind, status=status,
                                       target=None, before_seq=before, limit=limit)
    body: dict[str, Any] = {"jobs": [job_json(j) for j in jobs]}
    if len(jobs) == limit:
        body["next_from"] = str(jobs[-1].seq)
    return json_response(body)


async def cancel(request: web.Request) -> web.Response:
    """Cancel a scheduled or running job → the job as it is now (a job that had
    already ended is unchanged); 404 for an unknown ID."""
    job = await cancel_job(get_context(request), request.match_info["job_id"])
    if job is None:
        raise NotFound(messages.UNKNOWN_JOB)
    return json_response(job_json(job))


async def broadcast_notice(request: web.Request) -> web.Response:
    """``POST /_dendrite/admin/broadcastServerNotice`` → 200 ``{"job_id"}`` once the
    job is recorded."""
    ctx = get_context(request)
    body = await ctx.read_body(request)
    job = await submit_job(ctx, BROADCAST, None, broadcast_params(ctx, body))
    return json_response({"job_id": job.job_id})
