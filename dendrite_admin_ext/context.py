"""Per-deployment state shared by every admin sub-application, stored under AppKeys."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from .activity import ActivityTracker
from .config import Config
from .passwords import PasswordHasher
from .storage.base import AdminStorage
from .validation import Schemas

__all__ = ["CONTEXT_KEY", "AdminContext", "KeyedLocks", "get_context", "now_ms"]


T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


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
