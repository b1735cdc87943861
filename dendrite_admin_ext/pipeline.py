"""The admin request pipeline: one middleware per admin sub-application.

Each request goes, in order, through:

request id + access log → CORS / OPTIONS → error rendering → rate limit → audit →
time limit → authentication → handler

These are steps of one middleware rather than a stack of middlewares: aiohttp wraps
every middleware of a sub-application in extra layers per request, and whois (the
hottest admin path) would pay for each of them.  Each step that applies only to some
routes (rate limit, audit, auth) is decided once per route at start-up
(:class:`RoutePolicy`), so a request pays only for the steps its route needs.

The audit sits inside the error rendering (it sees the exception, hence the errcode)
and outside auth (refusals are recorded); rate-limited requests are not recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from .addresses import client_ip
from .audit import Audited, AuditRecorder
from .auth import Access, authenticate
from .context import AdminContext
from .errors import LimitExceeded, error_response
from .limits import Deadlines, RateLimiter
from .observability import (
    access_log,
    bind_request_id,
    choose_request_id,
    log_access,
    unbind_request_id,
)
from .responses import json_response

__all__ = ["CORS_HEADERS", "RoutePolicy", "admin_middleware"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Requested-With",
}


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    access: Access = Access.PUBLIC
    audit: Audited | None = None
    rate_limited: bool = False
    quiet: bool = False  # access log at DEBUG (a health check polled every few seconds)
    # A locked account may still use it (Matrix spec "Account locking": logout).
    allow_locked: bool = False


# Unknown paths and wrong methods (aiohttp's 404/405 "routes"): rendered, nothing else.
_UNMATCHED = RoutePolicy()


def admin_middleware(ctx: AdminContext, policies: Mapping[AbstractRoute, RoutePolicy],
                     limiter: RateLimiter, deadlines: Deadlines,
                     recorder: AuditRecorder) -> Middleware:
    http = ctx.config.http
    # Added to every answer in one call: the CORS headers (when enabled), then the id.
    cors = list(CORS_HEADERS.items()) if http.cors else []
    record_ip = http.record_client_ip

    async def guarded(request: web.Request, handler: Handler,
                      policy: RoutePolicy) -> web.StreamResponse:
        """Time limit, then authentication, then the handler."""
        task = deadlines.enter()
        try:
            if policy.access is not Access.PUBLIC:
                await authenticate(ctx, request, policy.access,
                                   allow_locked=policy.allow_locked)
            return await handler(request)
        except asyncio.CancelledError:
            timeout = deadlines.timed_out(task)
            if timeout is None:
                raise
            raise timeout from None
        finally:
            deadlines.leave(task)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = choose_request_id(request.headers.get("X-Request-ID"))
        token = bind_request_id(request, request_id)
        start = time.perf_counter()
        policy = policies.get(request.match_info.route, _UNMATCHED)
        status = 499  # stays so if the client goes away mid-request
        try:
            try:
                if request.method == "OPTIONS":
                    response: web.StreamResponse = json_response({})
                else:
                    if policy.rate_limited:
                        wait = limiter.check(client_ip(request))
                        if wait > 0:
                            raise LimitExceeded(wait)
                    audit = policy.audit
                    if audit is None:
                        response = await guarded(request, handler, policy)
                    else:
                        response = await recorder.run(
                            request, audit, lambda: guarded(request, handler, policy))
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = error_response(request, exc)
            except ConnectionResetError:  # the client is gone: nobody to answer
                raise
            except Exception as exc:
                response = error_response(request, exc)
            status = response.status
            response.headers.extend(cors)
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            level = logging.DEBUG if policy.quiet else logging.INFO
            if access_log.isEnabledFor(level):  # skip the formatting work when off
                log_access(request, level, status, start, record_ip)
            unbind_request_id(token)

    return middleware
