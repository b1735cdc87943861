"""Operating the admin API itself: health check, OpenAPI document, audit log."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import messages
from ..audit import entry_to_json
from ..context import get_context
from ..errors import ServiceUnavailable, StorageUnavailableError
from ..openapi import OPENAPI_KEY
from ..query_params import int_param
from ..responses import json_response

__all__ = ["AUDIT_QUERY", "audit_log", "health", "openapi_json"]

HEALTH_TIMEOUT_S = 5.0
AUDIT_MAX_LIMIT = 1000
AUDIT_DEFAULT_LIMIT = 100

AUDIT_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("from", {"type": "string", "pattern": "^[1-9][0-9]{0,18}$",
              "description": "next_from of the previous page: entries older than it"}),
    ("limit", {"type": "string", "pattern": "^[0-9]{1,4}$",
               "description": f"1-{AUDIT_MAX_LIMIT}, default {AUDIT_DEFAULT_LIMIT}"}),
)


async def health(request: web.Request) -> web.Response:
    """No auth: for the proxy and orchestrators.  503 while the database is down."""
    ctx = get_context(request)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await ctx.storage.ping()
    except (StorageUnavailableError, OSError, TimeoutError):
        return ServiceUnavailable(messages.DATABASE_UNREACHABLE, extra={
            "status": "unavailable", "database": "unreachable"}).response()
    return json_response({"status": "ok", "database": "ok"})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.config_dict[OPENAPI_KEY])


async def audit_log(request: web.Request) -> web.Response:
    """Newest first.  ``next_from`` is present while older entries may remain."""
    ctx = get_context(request)
    before = int_param(request, "from", None, 1, 2**63 - 1)
    limit = int_param(request, "limit", AUDIT_DEFAULT_LIMIT, 1, AUDIT_MAX_LIMIT)
    assert limit is not None
    entries = await ctx.storage.get_audit_entries(before_id=before, limit=limit)
    body: dict[str, Any] = {"entries": [entry_to_json(e) for e in entries]}
    if len(entries) == limit and entries[-1].id is not None:
        body["next_from"] = str(entries[-1].id)
    return json_response(body)
