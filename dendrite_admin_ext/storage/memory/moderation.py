"""In-memory account moderation (lock, suspend) over ``MemoryBase.account_state``."""

from __future__ import annotations

from dataclasses import replace

from ...identifiers import UserID
from ..types import AccountState
from .base import MemoryBase

__all__ = ["MemoryModeration"]


class MemoryModeration(MemoryBase):
    """:class:`~..protocols.moderation.ModerationStore` in memory; no method awaits."""

    async def get_account_state(self, user: UserID) -> AccountState:
        return self.account_state.get(user, AccountState())

    async def set_locked(self, user: UserID, locked: bool) -> None:
        self.account_state[user] = replace(self.account_state.get(user, AccountState()),
                                           locked=locked)

    async def set_suspended(self, user: UserID, suspended: bool) -> None:
        self.account_state[user] = replace(self.account_state.get(user, AccountState()),
                                           suspended=suspended)
