"""Shared-secret registration nonces (SPEC 4.4): single use, shared by every worker."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NonceStore"]


class NonceStore(Protocol):
    async def add_nonce(self, nonce: str, expires_ts: int, max_nonces: int) -> None:
        """Store a nonce.  Expired nonces are purged and at most about ``max_nonces``
        are kept (the oldest go first), so a flood cannot exhaust storage."""

    async def take_nonce(self, nonce: str, now_ts: int) -> bool:
        """Delete the nonce; True if it existed and had not expired (single use)."""
