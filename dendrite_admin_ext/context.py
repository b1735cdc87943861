"""Per-deployment state shared by every admin sub-application, stored under AppKeys."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from .activity import ActivityTracker
from .config import Config
from .events import now_ms
from .passwords import PasswordHasher
from .storage.base import AdminStorage
from .validation import Schemas, read_json_body

__all__ = ["CONTEXT_KEY", "AdminContext", "KeyedLocks", "get_context", "now_ms"]


T = TypeVar("T")


class KeyedLocks:
    """One asyncio.Lock per key, forgotten once nobody holds a reference to it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def __call__(self, key: Hashable) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


@dataclass
class AdminContext:
    config: Config
    storage: AdminStorage
    schemas: Schemas
    hasher: PasswordHasher
    activity: ActivityTracker
    clock: Callable[[], int] = now_ms
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    # Work that outlives its request (evacuations, notice set-ups, housekeeping): held
    # here until it ends (asyncio keeps only weak references to tasks), and waited for
    # at shutdown (rooms.wait_for_running).
    detached: set[asyncio.Task[Any]] = field(default_factory=set)
    # The body schema of each mounted route that takes a body (RouteSpec.body_schema):
    # the route table is the one place that names it.
    body_schemas: dict[AbstractRoute, str] = field(default_factory=dict)

    async def read_body(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON body: size-checked, parsed, and valid against its route's
        schema (400/413 Matrix errors otherwise)."""
        schema = self.schemas[self.body_schemas[request.match_info.route]]
        return await read_json_body(request, schema, self.config.http.max_body_size)

    def detach(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in a task of its own, kept until it ends."""
        task = asyncio.ensure_future(coro)
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)
        return task


CONTEXT_KEY = web.AppKey("dendrite_admin_ext.context", AdminContext)


def get_context(request: web.Request) -> AdminContext:
    # The admin sub-application itself carries the context: one dict lookup, where
    # config_dict would build a chain of every enclosing application's mappings.
    ctx = request.app.get(CONTEXT_KEY)
    if ctx is not None:
        return ctx
    try:
        return request.config_dict[CONTEXT_KEY]
    except KeyError:
        raise RuntimeError(
            "dendrite_admin_ext is not set up on this application: "
            "call dendrite_admin_ext.setup_admin(app, config, storage) first") from None
