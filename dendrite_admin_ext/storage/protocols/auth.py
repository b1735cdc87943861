"""Authentication: every request with an access token (SPEC 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..types import Activity, TokenOwner

__all__ = ["TokenStore"]


class TokenStore(Protocol):
    async def get_token_owner(self, access_token: str) -> TokenOwner | None:
        """The device owning ``access_token`` joined with its account, read fresh for
        each request (an admin demoted in the database loses access at once), or None
        for an unknown token."""

    async def record_activity(self, seen: Sequence[Activity]) -> None:
        """Store a batch of sightings: keep the newest ``last_seen_ts`` per (device, ip,
        user agent).  Called from a background flusher, never per request; must be
        idempotent."""
