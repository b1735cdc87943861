"""Account moderation: locking and suspension (SPEC 10, Matrix v1.18 / MSC4323).

The state lives beside the account (for the shipped backends: table
``dendrite_admin_account_state``); users administration (SPEC 9, the ``locked`` and
``suspended`` fields) reads and writes the same state.  A host implementing this
protocol must also report the state in
:meth:`~.auth.TokenStore.get_token_owner` (``TokenOwner.locked`` and
``TokenOwner.suspended``), read with the token: that is how the admin API refuses a
locked account, and how the host middleware (:mod:`dendrite_admin_ext.moderation`)
enforces both on the host's own routes.
"""

from __future__ import annotations

from typing import Protocol

from ...identifiers import UserID
from ..types import AccountState

__all__ = ["ModerationStore"]


class ModerationStore(Protocol):
    async def get_account_state(self, user: UserID) -> AccountState:
        """The account's state; all false for an account never marked (or no account:
        callers check the account exists first)."""

    async def set_locked(self, user: UserID, locked: bool) -> None:
        """Atomically set ``locked``, keeping the other fields (upsert).  Access tokens
        are kept: unlocking restores access (Matrix spec "Account locking")."""

    async def set_suspended(self, user: UserID, suspended: bool) -> None:
        """Atomically set ``suspended``, keeping the other fields (upsert)."""
