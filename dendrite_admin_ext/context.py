"""Per-deployment state shared by every admin sub-application, stored under AppKeys."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute
from jsonschema import Draft202012Validator

from .activity import ActivityTracker
from .config import Config
from .dendrite_client import DendriteClient
from .events import now_ms
from .passwords import PasswordHasher
from .storage.protocols import AdminStorage
from .validation import Schemas, read_json_body

if TYPE_CHECKING:
    from .services.client_login import LoginGuard
    from .services.jobs import JobRunner
    from .storage.sql.dendrite_rooms import DendriteRoomReader

__all__ = ["CONTEXT_KEY", "AdminContext", "KeyedLocks", "RecentChecks", "get_context"]


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


class RecentChecks:
    """What this process found true in storage a moment ago, so that a hot path need
    not read it again on every request (the notices user's account and profile, the
    system user's member event in each notices room).  A check is trusted for
    ``ttl_ms`` of the context's clock; at most ``max_entries`` are kept (the oldest
    go first).  Only for facts the admin API itself keeps true: a host changing one
    behind its back is seen again within ``ttl_ms``."""

    def __init__(self, ttl_ms: int = 60_000, max_entries: int = 10_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._checked_at: dict[Hashable, int] = {}

    def fresh(self, key: Hashable, now: int) -> bool:
        at = self._checked_at.get(key)
        return at is not None and 0 <= now - at < self.ttl_ms

    def mark(self, key: Hashable, now: int) -> None:
        self._checked_at.pop(key, None)  # re-inserted last: the dict stays oldest-first
        if len(self._checked_at) >= self.max_entries:
            del self._checked_at[next(iter(self._checked_at))]
        self._checked_at[key] = now


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
    recent: RecentChecks = field(default_factory=RecentChecks)
    # The body validator of each mounted route that takes a body, from its
    # RouteSpec.body_schema: the route table is the one place that names the schema.
    body_validators: dict[AbstractRoute, Draft202012Validator] = field(default_factory=dict)
    # Client login's failed-attempt limits (services/client_login.py), made on first use.
    login_guard: LoginGuard | None = None
    # Beside Dendrite with homeserver.url: Dendrite's admin API, through which room
    # changes are made (SPEC 8).  None otherwise: rooms are the storage's.
    homeserver: DendriteClient | None = None
    # This worker's runner of durable jobs (SPEC 11); None when no feature uses jobs.
    jobs: JobRunner | None = None
    # Beside Dendrite: its roomserver tables, read-only, for the room list, details and
    # members (SPEC 8).  None otherwise: rooms are the storage's.
    dendrite_rooms: DendriteRoomReader | None = None

    async def read_body(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON body: size-checked, parsed, and valid against its route's
        schema (400/413 Matrix errors otherwise)."""
        return await read_json_body(request, self.body_validators[request.match_info.route],
                                    self.config.http.max_body_size)

    def detach(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in a task of its own, kept until it ends."""
        task = asyncio.ensure_future(coro)
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)
        return task


CONTEXT_KEY = web.AppKey("dendrite_admin_ext.context", AdminContext)


def get_context(request: web.Request) -> AdminContext:
    """The admin API's context, from any request to the application it is set up on (an
    admin sub-application's, or the host's own)."""
    try:
        return request.config_dict[CONTEXT_KEY]
    except KeyError:
        raise RuntimeError(
            "dendrite_admin_ext is not set up on this application: "
            "call dendrite_admin_ext.setup_admin(app, config, storage) first") from None
