"""Every storage: opened at start-up, closed at clean-up, pinged by the health check."""

from __future__ import annotations

from typing import Protocol

__all__ = ["StorageLifecycle"]


class StorageLifecycle(Protocol):
    async def open(self) -> None:
        """Connect (and, for the shipped SQL backends, apply migrations).  Called once at
        application start-up when the admin API manages the storage's lifetime."""

    async def close(self) -> None:
        """Release connections.  Called once at application clean-up."""

    async def ping(self) -> None:
        """Raise StorageUnavailableError unless the database answers (health check)."""
