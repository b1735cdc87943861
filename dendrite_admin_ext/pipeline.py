"""The admin request pipeline: named steps, composed per route at start-up.

Each step is one concern, and wraps the next (the innermost is the route's handler).
In order, outermost first:

=================  ==========================================================  =========
step               concern                                                      routes
=================  ==========================================================  =========
``request_id``     choose and bind the request ID, ``X-Request-ID``,            every
                   the access log line
``cors``           answer ``OPTIONS``; add the CORS headers (``http.cors``)     every
``errors``         render exceptions as Matrix JSON errors                      every
``rate_limit``     per-IP token bucket (``registration.rate_limit``)            rate-limited
``audit``          record the outcome in the audit trail                        audited
``deadline``       ``http.request_timeout`` → 504                               every route
``auth``           access token → requester; access level (SPEC 3)              not public
=================  ==========================================================  =========

:func:`compose` builds each route's chain once, from its :class:`RoutePolicy`, so a
request runs only the steps its route needs and no per-request decision.  One
middleware per admin sub-application (:func:`admin_middleware`) hands each request to
its route's chain; unknown paths and wrong methods (aiohttp's 404/405) get the first
three steps.  The audit sits inside error rendering (it sees the exception, hence the
errcode) and outside auth (refusals are recorded); rate-limited requests are not
recorded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from .addresses import client_ip
from .audit import Audited, AuditRecorder
from .auth import Access, authenticate
from .context import AdminContext
from .errors import LimitExceeded, error_response
from .limits import RateLimiter, RequestTimeout
from .observability import (
    access_log,
    bind_request_id,
    choose_request_id,
    log_access,
    unbind_request_id,
)
from .responses import json_response

__all__ = [
    "CORS_HEADERS",
    "Next",
    "RoutePolicy",
    "Step",
    "admin_middleware",
    "audit_step",
    "auth_step",
    "compose",
    "cors_step",
    "deadline_step",
    "errors_step",
    "rate_limit_step",
    "rendering_steps",
    "request_id_step",
    "steps_for",
]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Requested-With",
}

# The rest of a route's chain, as a step sees it.
Next = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A step: given the rest of the chain, the chain with this step in front.
Step = Callable[[Next], Next]


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    access: Access = Access.PUBLIC
    audit: Audited | None = None
    rate_limited: bool = False
    quiet: bool = False  # access log at DEBUG (a health check polled every few seconds)
    # A locked account may still use it (Matrix spec "Account locking": logout).
    allow_locked: bool = False


# -- the steps ------------------------------------------------------------------------------

def request_id_step(*, quiet: bool, record_ip: bool) -> Step:
    """Bind the request ID (the client's ``X-Request-ID`` if usable, else a new one) for
    the logs, answer it in ``X-Request-ID``, and write the access log line (at DEBUG
    for ``quiet`` routes; status 499 when the client went away)."""
    level = logging.DEBUG if quiet else logging.INFO

    def wrap(next_: Next) -> Next:
        async def request_id(request: web.Request) -> web.StreamResponse:
            request_id = choose_request_id(request.headers.get("X-Request-ID"))
            token = bind_request_id(request, request_id)
            start = time.perf_counter()
            status = 499  # stays so if the client goes away mid-request
            try:
                response = await next_(request)
                status = response.status
                response.headers["X-Request-ID"] = request_id
                return response
            finally:
                if access_log.isEnabledFor(level):  # skip the formatting work when off
                    log_access(request, level, status, start, record_ip)
                unbind_request_id(token)
        return request_id
    return wrap


def cors_step(*, enabled: bool) -> Step:
    """Answer ``OPTIONS`` (CORS preflight) with ``{}``; with ``enabled``, add the CORS
    headers to every answer."""
    headers = list(CORS_HEADERS.items()) if enabled else []

    def wrap(next_: Next) -> Next:
        async def cors(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                response: web.StreamResponse = json_response({})
            else:
                response = await next_(request)
            response.headers.extend(headers)
            return response
        return cors
    return wrap


def errors_step() -> Step:
    """Exceptions as Matrix JSON errors (:func:`.errors.error_response`); redirects and
    a client that went away pass through."""
    def wrap(next_: Next) -> Next:
        async def errors(request: web.Request) -> web.StreamResponse:
            try:
                return await next_(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return error_response(request, exc)
            except ConnectionResetError:  # the client is gone: nobody to answer
                raise
            except Exception as exc:
                return error_response(request, exc)
        return errors
    return wrap


def rate_limit_step(limiter: RateLimiter) -> Step:
    """429 ``M_LIMIT_EXCEEDED`` once the client address has used its bucket."""
    def wrap(next_: Next) -> Next:
        async def rate_limit(request: web.Request) -> web.StreamResponse:
            wait = limiter.check(client_ip(request))
            if wait > 0:
                raise LimitExceeded(wait)
            return await next_(request)
        return rate_limit
    return wrap


def audit_step(recorder: AuditRecorder, audit: Audited) -> Step:
    """Record the request's outcome (:meth:`.audit.AuditRecorder.run`)."""
    def wrap(next_: Next) -> Next:
        async def audited(request: web.Request) -> web.StreamResponse:
            return await recorder.run(request, audit, lambda: next_(request))
        return audited
    return wrap


def deadline_step(seconds: float) -> Step:
    """504 :class:`~.limits.RequestTimeout` once the request has run ``seconds``
    (``asyncio.timeout``: the request is cancelled then, shielded work runs on)."""
    message = (f"The request took longer than {_fmt(seconds)} s; the operation may "
               "still complete in the background")

    def wrap(next_: Next) -> Next:
        async def deadline(request: web.Request) -> web.StreamResponse:
            timeout = asyncio.timeout(seconds)
            try:
                async with timeout:
                    return await next_(request)
            except TimeoutError:
                if not timeout.expired():  # raised by the handler, not by us
                    raise
                raise RequestTimeout(message) from None
        return deadline
    return wrap


def auth_step(ctx: AdminContext, access: Access, *, allow_locked: bool = False) -> Step:
    """:func:`.auth.authenticate` for ``access`` before the handler runs; a locked
    account passes only where ``allow_locked`` (logout)."""
    def wrap(next_: Next) -> Next:
        async def auth(request: web.Request) -> web.StreamResponse:
            await authenticate(ctx, request, access, allow_locked=allow_locked)
            return await next_(request)
        return auth
    return wrap


# -- composition ----------------------------------------------------------------------------

def rendering_steps(ctx: AdminContext, *, quiet: bool = False) -> list[Step]:
    """The steps every request gets, matched by a route or not: request ID and access
    log, CORS, error rendering."""
    http = ctx.config.http
    return [request_id_step(quiet=quiet, record_ip=http.record_client_ip),
            cors_step(enabled=http.cors), errors_step()]


def steps_for(policy: RoutePolicy, ctx: AdminContext, limiter: RateLimiter,
              recorder: AuditRecorder) -> list[Step]:
    """The steps of a route with this policy, outermost first."""
    http = ctx.config.http
    steps = rendering_steps(ctx, quiet=policy.quiet)
    if policy.rate_limited:
        steps.append(rate_limit_step(limiter))
    if policy.audit is not None:
        steps.append(audit_step(recorder, policy.audit))
    steps.append(deadline_step(http.request_timeout))
    if policy.access is not Access.PUBLIC:
        steps.append(auth_step(ctx, policy.access, allow_locked=policy.allow_locked))
    return steps


def compose(handler: Next, steps: list[Step]) -> Next:
    """``handler`` behind ``steps`` (outermost first)."""
    chain = handler
    for step in reversed(steps):
        chain = step(chain)
    return chain


def admin_middleware(chains: Mapping[AbstractRoute, Next],
                     unmatched: list[Step]) -> Middleware:
    """Each request to its route's chain (built by :func:`compose` at start-up); a
    request no route of the sub-application takes (aiohttp's 404/405) behind the
    ``unmatched`` steps."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        chain = chains.get(request.match_info.route)
        if chain is None:
            chain = compose(handler, unmatched)
        return await chain(request)

    return middleware


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if math.isclose(seconds, round(seconds)) else f"{seconds:g}"
