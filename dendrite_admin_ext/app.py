"""Assembling the admin API and mounting it into a host application.

The admin paths live under four prefixes, so the API is mounted as one sub-application
per prefix.  They share one :class:`~.context.AdminContext`; each carries the admin
pipeline (:mod:`.pipeline`: request id, CORS, errors, rate limit, audit, deadline,
auth — each route's steps composed here, once), which therefore applies to admin paths
only.

Client login (SPEC 13) is the exception: its paths (``/_matrix/client/versions``,
``/_matrix/client/v3/login`` …) sit beside the host's own client API, which a
sub-application mounted at ``/_matrix/client/v3`` would swallow whole (aiohttp hands
every path under a sub-application's prefix to it).  So they are added to the host's
router as exact paths, each handler behind the same composed steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractRoute

from .activity import ActivityTracker
from .audit import AuditRecorder
from .config import Config
from .context import CONTEXT_KEY, AdminContext
from .dendrite_client import DendriteClient
from .events import now_ms
from .features import check_storage, enabled_features
from .limits import RateLimiter
from .observability import warn_if_logs_unseen
from .openapi import OPENAPI_KEY, build_openapi
from .passwords import PasswordHasher
from .pipeline import (
    Next,
    RoutePolicy,
    admin_middleware,
    compose,
    rendering_steps,
    steps_for,
)
from .routes import HOST_PREFIXES, PREFIXES, RouteSpec, enabled_routes
from .services.broadcast import BROADCAST, run_broadcast
from .services.evacuation import wait_for_running
from .services.jobs import JobFunction, JobRunner
from .services.room_admin import ROOM_DELETE, run_room_delete
from .storage.protocols import AdminStorage, StorageLifecycle
from .storage.sql.dendrite_rooms import room_reader
from .validation import Schemas, load_schemas

__all__ = ["setup_admin"]

# At shutdown, how long detached work (an evacuation whose client went away) may take to
# finish before storage is closed.
DETACHED_WORK_GRACE_S = 60.0


def _policy(spec: RouteSpec) -> RoutePolicy:
    return RoutePolicy(spec.access, spec.audit, spec.rate_limited, spec.quiet,
                       spec.allow_locked)


def _build_subapp(ctx: AdminContext, routes: list[RouteSpec], limiter: RateLimiter,
                  recorder: AuditRecorder, openapi: dict[str, Any]) -> web.Application:
    chains: dict[AbstractRoute, Next] = {}
    # Unknown paths and wrong methods: rendered, nothing else.
    sub = web.Application(middlewares=[admin_middleware(chains, rendering_steps(ctx))])
    sub[CONTEXT_KEY] = ctx
    sub[OPENAPI_KEY] = openapi
    for spec in routes:
        # HEAD is answered wherever GET is (SPEC 2): the same handler, auth, audit and
        # limits; aiohttp sends the status and headers of the GET answer, no body.
        methods = (spec.method, "HEAD") if spec.method == "GET" else (spec.method,)
        for method in methods:
            route = sub.router.add_route(method, spec.path, spec.handler)
            if spec.body_schema is not None:
                ctx.body_validators[route] = ctx.schemas[spec.body_schema]
            chains[route] = compose(spec.handler,
                                    steps_for(_policy(spec), ctx, limiter, recorder))
    return sub


def _add_exact_routes(app: web.Application, ctx: AdminContext, routes: list[RouteSpec],
                      limiter: RateLimiter, recorder: AuditRecorder) -> None:
    """Routes outside the admin prefixes, added to ``app``'s own router path by path.

    Each handler runs behind its route's composed steps, as in a sub-app.  A GET also
    answers HEAD.  After a path's own methods, a catch-all route of that path answers
    OPTIONS (the CORS preflight) and any other method (405 ``M_UNRECOGNIZED`` with
    ``Allow``): nothing else of the host's is touched.  A host that serves one of
    these paths itself must leave client login off.
    """
    # The handlers find the shared context on the application that owns their route.
    app[CONTEXT_KEY] = ctx
    by_path: dict[str, list[RouteSpec]] = defaultdict(list)
    for spec in routes:
        by_path[spec.full_path].append(spec)
    for path, specs in by_path.items():
        allowed = {"OPTIONS"}
        for spec in specs:
            for method in (spec.method, "HEAD") if spec.method == "GET" else (spec.method,):
                chain = compose(spec.handler, steps_for(_policy(spec), ctx, limiter, recorder))
                route = app.router.add_route(method, path, chain)
                if spec.body_schema is not None:
                    ctx.body_validators[route] = ctx.schemas[spec.body_schema]
                allowed.add(method)
        app.router.add_route("*", path, compose(_method_not_allowed(allowed),
                                                rendering_steps(ctx)))


def _method_not_allowed(allowed: set[str]) -> Handler:
    async def refuse(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))

    return refuse


def _lifecycle(ctx: AdminContext, manage_storage: bool
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        warn_if_logs_unseen()
        if manage_storage:
            await ctx.storage.open()
        ctx.hasher.start()
        ctx.activity.start()
        if ctx.homeserver is not None:
            await ctx.homeserver.start()
        if ctx.dendrite_rooms is not None:
            await ctx.dendrite_rooms.open()
        if ctx.jobs is not None:
            ctx.jobs.start()
        try:
            yield
        finally:
            if ctx.jobs is not None:
                await ctx.jobs.stop()
            await wait_for_running(ctx, DETACHED_WORK_GRACE_S)
            await ctx.activity.stop()
            if ctx.homeserver is not None:
                await ctx.homeserver.close()
            if ctx.dendrite_rooms is not None:
                await ctx.dendrite_rooms.close()
            ctx.hasher.close()
            if manage_storage:
                await ctx.storage.close()

    return lifecycle


def _job_runner(ctx: AdminContext, config: Config) -> JobRunner | None:
    """This worker's runner of durable jobs, for the kinds the enabled features use."""
    kinds: dict[str, JobFunction] = {}
    if config.endpoints.rooms:
        kinds[ROOM_DELETE] = run_room_delete
    if config.server_notices.enabled:
        kinds[BROADCAST] = run_broadcast
    if not kinds:
        return None
    return JobRunner(ctx, kinds, lease_ms=int(config.jobs.lease_seconds * 1000),
                     poll_interval_s=config.jobs.poll_interval,
                     concurrency=config.jobs.concurrency)


def setup_admin(
    app: web.Application,
    config: Config,
    storage: StorageLifecycle,
    *,
    schemas: Schemas | None = None,
    manage_storage: bool = True,
    clock: Callable[[], int] = now_ms,
) -> AdminContext:
    """Mount the admin API into ``app`` (the host homeserver's application).

    ``storage`` implements the storage protocols (:mod:`.storage.protocols`) of every
    feature the config switches on; otherwise :class:`~.features.MissingStorageError`
    names the feature, its switch and the missing methods.  With
    ``manage_storage`` (the default) the admin API opens it on start-up and closes it on
    clean-up; pass False when the host manages its lifetime.  Disabled features are not
    mounted at all, so their paths answer 404 ``M_UNRECOGNIZED``.  Returns the shared
    context (useful to hosts and tests).
    """
    check_storage(storage, enabled_features(config))
    shared_with = config.database.shared_with
    if shared_with is not None and getattr(storage, "shared_with", shared_with) != shared_with:
        # A storage that owns its schema would create and alter Dendrite's tables.
        raise ValueError(f"database.shared_with is {shared_with} but the storage given to "
                         f"setup_admin was not made with shared_with={shared_with!r}")
    # Checked above for what the enabled features use; handlers of features switched
    # off are never mounted, so nothing calls the methods a host left out.
    full = cast(AdminStorage, storage)
    ctx = AdminContext(
        config=config,
        storage=full,
        schemas=schemas or load_schemas(),
        hasher=PasswordHasher(config.passwords.bcrypt_cost,
                              config.passwords.max_concurrent_hashes,
                              config.passwords.max_queued_hashes),
        activity=ActivityTracker(full, config.http.activity_flush_interval),
        clock=clock,
    )
    hs = config.homeserver
    if config.database.shared_with is not None and hs.url and hs.access_token:
        ctx.homeserver = DendriteClient(hs.url, hs.access_token, timeout=hs.timeout)
    if config.database.shared_with is not None and config.endpoints.rooms:
        ctx.dendrite_rooms = room_reader(config.database, hs.roomserver_database)
    ctx.jobs = _job_runner(ctx, config)
    routes = enabled_routes(config)
    openapi = build_openapi(config, routes, ctx.schemas)
    rate = config.registration.rate_limit
    limiter = RateLimiter(rate.per_second, rate.burst)
    recorder = AuditRecorder(ctx)
    by_prefix: dict[str, list[RouteSpec]] = defaultdict(list)
    for spec in routes:
        by_prefix[spec.prefix].append(spec)
    for prefix in PREFIXES:
        # Every prefix is mounted even when empty, so unknown paths under it still get
        # a Matrix JSON 404 rather than the host's (or aiohttp's) plain-text one —
        # except inside the host's own client API, which stays the host's when no
        # route of ours is there.
        if prefix in HOST_PREFIXES and prefix not in by_prefix:
            continue
        app.add_subapp(prefix, _build_subapp(ctx, by_prefix.get(prefix, []), limiter,
                                             recorder, openapi))
    exact = [spec for spec in routes if spec.prefix not in PREFIXES]
    if exact:
        _add_exact_routes(app, ctx, exact, limiter, recorder)
    app.cleanup_ctx.append(_lifecycle(ctx, manage_storage))
    return ctx
