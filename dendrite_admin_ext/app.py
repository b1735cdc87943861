"""Assembling the admin API and mounting it into a host application.

The admin paths live under four prefixes, so the API is mounted as one sub-application
per prefix.  They share one :class:`~.context.AdminContext`; each carries the admin
pipeline (:mod:`.pipeline`: request id, CORS, errors, rate limit, audit, deadline,
auth — each route's steps composed here, once), which therefore applies to admin paths
only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from .activity import ActivityTracker
from .audit import AuditRecorder
from .config import Config
from .context import CONTEXT_KEY, AdminContext
from .events import now_ms
from .features import check_storage, enabled_features
from .limits import RateLimiter
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
from .routes import PREFIXES, RouteSpec, enabled_routes
from .services.evacuation import wait_for_running
from .storage.protocols import AdminStorage, StorageLifecycle
from .validation import Schemas, load_schemas

__all__ = ["setup_admin"]

# At shutdown, how long detached work (an evacuation whose client went away) may take to
# finish before storage is closed.
DETACHED_WORK_GRACE_S = 60.0


def _build_subapp(ctx: AdminContext, routes: list[RouteSpec], limiter: RateLimiter,
                  recorder: AuditRecorder, openapi: dict[str, Any]) -> web.Application:
    chains: dict[AbstractRoute, Next] = {}
    # Unknown paths and wrong methods: rendered, nothing else.
    sub = web.Application(middlewares=[admin_middleware(chains, rendering_steps(ctx))])
    sub[CONTEXT_KEY] = ctx
    sub[OPENAPI_KEY] = openapi
    for spec in routes:
        route = sub.router.add_route(spec.method, spec.path, spec.handler)
        if spec.body_schema is not None:
            ctx.body_validators[route] = ctx.schemas[spec.body_schema]
        policy = RoutePolicy(spec.access, spec.audit, spec.rate_limited, spec.quiet)
        chains[route] = compose(spec.handler, steps_for(policy, ctx, limiter, recorder))
    return sub


def _lifecycle(ctx: AdminContext, manage_storage: bool
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        if manage_storage:
            await ctx.storage.open()
        ctx.hasher.start()
        ctx.activity.start()
        try:
            yield
        finally:
            await wait_for_running(ctx, DETACHED_WORK_GRACE_S)
            await ctx.activity.stop()
            ctx.hasher.close()
            if manage_storage:
                await ctx.storage.close()

    return lifecycle


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
        # a Matrix JSON 404 rather than the host's (or aiohttp's) plain-text one.
        app.add_subapp(prefix, _build_subapp(ctx, by_prefix.get(prefix, []), limiter,
                                             recorder, openapi))
    app.cleanup_ctx.append(_lifecycle(ctx, manage_storage))
    return ctx
