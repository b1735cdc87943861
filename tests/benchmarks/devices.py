"""The speed devices of the admin API, each against its plain form, for the benchmark's
``devices`` section (issue 13: keep a device only where it gains at least 10% on the
figure it targets).

    python -m tests.benchmarks.run --quick --only devices

A benchmark server started with ``--form DEVICE=device`` or ``--form DEVICE=plain``
(``server.py``) runs with that one piece swapped before the app is built; everything
else is the package as shipped.  For each device, the form the package ships is a no-op
here and the other one is put in by patching:

* ``coalescing``: :class:`~dendrite_admin_ext.storage.coalescing.CoalescingStorage`
  around the SQL backends, against the bare backend (one statement per read).
* ``sqlite_worker``: the SQLite backend's own worker thread (results handed back in
  batches, one loop wake-up per batch), against a one-thread ``ThreadPoolExecutor``
  (``loop.run_in_executor``, one wake-up per call).
* ``deadline_sweeper``: one shared sweeper task cancelling the requests past
  ``http.request_timeout``, against ``asyncio.timeout`` per request.
* ``context_fast_path``: ``get_context`` reading the sub-application's own mapping
  first, against ``request.config_dict``.
* ``user_id_cache``: an ``lru_cache`` on ``parse_user_id``, against parsing each time.

The package ships the device for ``coalescing``, ``sqlite_worker`` and
``user_id_cache``, and the plain form for ``deadline_sweeper`` and
``context_fast_path`` (the figures and the reasons are in RESULTS.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["DEVICES", "FORMS", "apply_form", "unwrap_storage"]

T = TypeVar("T")

# Device → (what it targets, the plain form's description).
DEVICES: dict[str, tuple[tuple[str, ...], str]] = {
    "coalescing": (("sqlite", "postgres"), "one statement per read"),
    "sqlite_worker": (("sqlite",), "a one-thread ThreadPoolExecutor"),
    "deadline_sweeper": (("memory",), "asyncio.timeout per request"),
    "context_fast_path": (("memory",), "request.config_dict"),
    "user_id_cache": (("memory",), "parse_user_id without lru_cache"),
}
FORMS = ("device", "plain")


def _replace_everywhere(old: object, new: object) -> None:
    """Rebind every module-level name of the package that refers to ``old``."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("dendrite_admin_ext"):
            continue
        for attr, value in list(vars(module).items()):
            if value is old:
                setattr(module, attr, new)


# -- deadline: a shared sweeper ----------------------------------------------------------------

class SweptDeadlines:
    """Every request's deadline on one timer: a request enters and leaves a dict, and a
    sweeper task waking a few times per period cancels those past their deadline (so a
    request is abandoned between ``seconds`` and ``seconds * 1.25``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._interval = min(1.0, seconds / 4)
        self._inflight: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def enter(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        self._inflight[task] = time.monotonic() + self.seconds
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        del self._inflight[task]
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        if task not in self._expired:
            return False
        task.uncancel()
        return True

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            now = time.monotonic()
            for task, deadline in list(self._inflight.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()


def _swept_deadline_step(seconds: float) -> Any:
    from dendrite_admin_ext.limits import RequestTimeout
    from dendrite_admin_ext.pipeline import Next

    deadlines = _SWEPT.setdefault(seconds, SweptDeadlines(seconds))

    def wrap(next_: Next) -> Next:
        async def deadline(request: web.Request) -> web.StreamResponse:
            task = deadlines.enter()
            try:
                return await next_(request)
            except asyncio.CancelledError:
                if not deadlines.expired(task):
                    raise
                raise RequestTimeout("The request took too long") from None
            finally:
                deadlines.leave(task)
        return deadline
    return wrap


_SWEPT: dict[float, SweptDeadlines] = {}


# -- SQLite: a one-thread executor ---------------------------------------------------------------

class ExecutorWorker:
    """The SQLite backend's worker interface on a one-thread ``ThreadPoolExecutor``."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)

    def submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        return self._loop.run_in_executor(self._pool, call)

    def call_blocking(self, call: Callable[[], T]) -> T:
        return self._pool.submit(call).result()

    async def stop(self) -> None:
        await self._loop.run_in_executor(None, self._pool.shutdown)


# -- get_context: the sub-application's own mapping first ------------------------------------

def _fast_get_context(request: web.Request) -> Any:
    from dendrite_admin_ext.context import CONTEXT_KEY

    ctx = request.app.get(CONTEXT_KEY)
    if ctx is not None:
        return ctx
    return request.config_dict[CONTEXT_KEY]


def apply_form(device: str, form: str) -> None:
    """Swap ``device`` to ``form`` (``device`` or ``plain``) in this process, before
    the app is built.  The form the package ships is left as it is."""
    if device not in DEVICES or form not in FORMS:
        raise ValueError(f"unknown device form {device}={form}")
    if device == "coalescing":
        return  # the storage is unwrapped by the server (unwrap_storage)
    if device == "sqlite_worker":
        from dendrite_admin_ext.storage import sqlite

        if form == "plain":
            sqlite._Worker = ExecutorWorker  # type: ignore[misc,assignment]
        return
    if device == "deadline_sweeper":
        from dendrite_admin_ext import pipeline

        if form == "device":
            pipeline.deadline_step = _swept_deadline_step
        return
    if device == "context_fast_path":
        from dendrite_admin_ext import context

        if form == "device":
            _replace_everywhere(context.get_context, _fast_get_context)
        return
    if device == "user_id_cache":
        from dendrite_admin_ext import identifiers

        cached = getattr(identifiers.parse_user_id, "__wrapped__", None)
        if form == "plain" and cached is not None:
            _replace_everywhere(identifiers.parse_user_id, cached)
        elif form == "device" and cached is None:
            import functools

            _replace_everywhere(identifiers.parse_user_id,
                                functools.lru_cache(maxsize=4096)(identifiers.parse_user_id))
        return


def unwrap_storage(storage: Any, forms: dict[str, str]) -> Any:
    """The storage without the coalescing wrapper when ``coalescing=plain``."""
    if forms.get("coalescing") == "plain":
        with contextlib.suppress(AttributeError):
            return storage.inner
    return storage
