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
from collections.abc import Mapping

from .errors import StorageUnavailableError
from .identifiers import UserID
from .storage.protocols import AdminStorage
from .storage.types import Activity, Connection, DeviceInfo

__all__ = ["ActivityTracker", "merge_pending"]

log = logging.getLogger(__name__)

# One sighting of a user: (device_id, ip, user_agent).
_Sighting = tuple[str, str, str]


class ActivityTracker:
    # Beyond this many distinct pending sightings (storage down for long), the oldest
    # user's are dropped: losing a last-seen time is better than exhausting memory.
    MAX_PENDING = 100_000

    def __init__(self, storage: AdminStorage, interval: float = 1.0) -> None:
        self.storage = storage
        self.interval = interval
        # Newest time of each sighting, by user: whois reads its own user's pending
        # sightings in O(devices), without scanning the whole server's.
        self._pending: dict[UserID, dict[_Sighting, int]] = {}
        self._count = 0
        # The batch being written: still shown by whois until the write is done.
        self._flushing: dict[UserID, dict[_Sighting, int]] = {}
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def note(self, user: UserID, device_id: str, ip: str, user_agent: str, ts: int) -> None:
        """Called on every authenticated request: a dict update, nothing more."""
        sightings = self._pending.get(user)
        if sightings is None:
            if self._count >= self.MAX_PENDING:
                self._count -= len(self._pending.pop(next(iter(self._pending))))
            sightings = self._pending[user] = {}
        key = (device_id, ip, user_agent)
        old = sightings.get(key)
        if old is None:
            self._count += 1
            sightings[key] = ts
        elif old < ts:
            sightings[key] = ts

    def pending_for(self, user: UserID) -> Mapping[_Sighting, int]:
        pending = self._pending.get(user, {})
        flushing = self._flushing.get(user)
        if not flushing:
            return pending
        merged = dict(flushing)
        for key, ts in pending.items():
            if merged.get(key, -1) < ts:
                merged[key] = ts
        return merged

    async def flush(self) -> None:
        """Write every sighting noted before the call; when this returns they are stored
        (or, the storage being down, put back for the next flush).  A flush already
        under way (the background one) is waited for first, so a caller never returns
        while sightings it noted are still being written."""
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending, self._count = self._pending, {}, 0
        self._flushing = batch
        try:
            await self.storage.record_activity([
                Activity(user, device, ip, ua, ts)
                for user, sightings in batch.items()
                for (device, ip, ua), ts in sightings.items()
            ])
        except (StorageUnavailableError, OSError) as exc:
            # Put them back (newer sightings that arrived meanwhile win) and retry later.
            for user, sightings in batch.items():
                for (device, ip, ua), ts in sightings.items():
                    self.note(user, device, ip, ua, ts)
            log.warning("could not record device activity (%s); will retry",
                        type(exc).__name__)
        finally:
            self._flushing = {}

    async def _run(self) -> None:
        # The flag as well as cancel(): a cancellation that lands as a database call
        # completes can be swallowed by the driver, and the loop must still end.
        while not self._stopping:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("device activity flush failed")

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()  # puts back and logs what storage refused
        except Exception:
            log.exception("last device activity flush failed; those sightings are lost")


def merge_pending(devices: list[DeviceInfo],
                  pending: Mapping[_Sighting, int]) -> list[DeviceInfo]:
    """Overlay not-yet-flushed sightings on the devices read from storage (newest
    connection first).  A device nothing new was seen of is returned as it was."""
    if not pending:
        return devices
    extra: dict[str, list[tuple[str, str, int]]] = {}
    for (device_id, ip, ua), ts in pending.items():
        extra.setdefault(device_id, []).append((ip, ua, ts))
    out = []
    for dev in devices:
        more = extra.get(dev.device_id)
        if more is None:
            out.append(dev)
            continue
        conns = {(c.ip, c.user_agent): c for c in dev.connections}
        changed = False
        for ip, ua, ts in more:
            old = conns.get((ip, ua))
            if old is None or old.last_seen_ts < ts:
                conns[(ip, ua)] = Connection(ip, ua, ts)
                changed = True
        if not changed:
            out.append(dev)
            continue
        merged = tuple(sorted(conns.values(), key=_newest_first))
        out.append(DeviceInfo(dev.device_id, dev.display_name, merged))
    return out


def _newest_first(c: Connection) -> int:
    return -c.last_seen_ts
