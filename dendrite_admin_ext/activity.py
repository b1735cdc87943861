"""Coalesced recording of device activity (last seen time, IP, user agent).

Every authenticated request notes its device here in memory; a background task writes
the newest sighting per (device, ip, user agent) to storage every
``http.activity_flush_interval`` seconds, so load does not turn into one database write
per request.  whois merges the pending sightings, so within one process it shows every
earlier request even before the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from .errors import StorageUnavailableError
from .identifiers import UserID
from .storage.base import Activity, AdminStorage, Connection, DeviceInfo

__all__ = ["ActivityTracker", "merge_pending"]

log = logging.getLogger(__name__)

_Key = tuple[str, str, str, str, str]


class ActivityTracker:
    # Beyond this many distinct pending sightings (storage down for long), the oldest
    # are dropped: losing a last-seen time is better than exhausting memory.
    MAX_PENDING = 100_000

    def __init__(self, storage: AdminStorage, interval: float = 1.0) -> None:
        self.storage = storage
        self.interval = interval
        self._pending: dict[_Key, int] = {}
        # The same sightings by user, so whois reads its own user's in O(devices), not
        # every pending sighting of the server (up to MAX_PENDING) on each call.
        self._by_user: dict[tuple[str, str], set[_Key]] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, user: UserID, device_id: str, ip: str, user_agent: str, ts: int) -> None:
        key = (user.localpart, user.server_name, device_id, ip, user_agent)
        pending = self._pending
        if key in pending:
            if pending[key] < ts:
                pending[key] = ts
            return
        if len(pending) >= self.MAX_PENDING:
            oldest = next(iter(pending))
            del pending[oldest]
            self._forget(oldest)
        pending[key] = ts
        self._by_user.setdefault(key[:2], set()).add(key)

    def _forget(self, key: _Key) -> None:
        keys = self._by_user.get(key[:2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[key[:2]]

    def pending_for(self, user: UserID) -> Iterable[Activity]:
        for key in self._by_user.get((user.localpart, user.server_name), ()):
            ts = self._pending.get(key)
            if ts is not None:
                yield Activity(*key, last_seen_ts=ts)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._by_user = {}
        try:
            await self.storage.record_activity(
                [Activity(*key, last_seen_ts=ts) for key, ts in batch.items()])
        except (StorageUnavailableError, OSError) as exc:
            # Put them back (newer sightings that arrived meanwhile win) and retry later.
            for key, ts in batch.items():
                if self._pending.get(key, -1) < ts:
                    self._pending[key] = ts
                    self._by_user.setdefault(key[:2], set()).add(key)
            log.warning("could not record device activity (%s); will retry",
                        type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("device activity flush failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()


def merge_pending(devices: list[DeviceInfo], pending: Iterable[Activity]) -> list[DeviceInfo]:
    """Overlay not-yet-flushed sightings on the devices read from storage."""
    extra: dict[str, dict[tuple[str, str], int]] = {}
    for a in pending:
        extra.setdefault(a.device_id, {})[(a.ip, a.user_agent)] = a.last_seen_ts
    if not extra:
        return devices
    out = []
    for dev in devices:
        more = extra.get(dev.device_id)
        if not more:
            out.append(dev)
            continue
        conns = {(c.ip, c.user_agent): c.last_seen_ts for c in dev.connections}
        for key, ts in more.items():
            if conns.get(key, -1) < ts:
                conns[key] = ts
        merged = sorted((Connection(ip, ua, ts) for (ip, ua), ts in conns.items()),
                        key=lambda c: c.last_seen_ts, reverse=True)
        out.append(DeviceInfo(dev.device_id, dev.display_name, tuple(merged)))
    return out
