"""Account moderation (lock, suspend) in ``dendrite_admin_account_state`` (schema v2)."""

from __future__ import annotations

from ...identifiers import UserID
from ..types import AccountState
from .base import SqlBase
from .ops import exec_, one

__all__ = ["SqlModeration"]

# One statement each: the upsert is atomic on both SQLite and PostgreSQL, and leaves
# the row's other columns as they are.
_SET_LOCKED = (
    "INSERT INTO dendrite_admin_account_state (localpart, server_name, locked)"
    " VALUES (%s, %s, %s) ON CONFLICT (localpart, server_name)"
    " DO UPDATE SET locked = excluded.locked")
_SET_SUSPENDED = (
    "INSERT INTO dendrite_admin_account_state (localpart, server_name, suspended)"
    " VALUES (%s, %s, %s) ON CONFLICT (localpart, server_name)"
    " DO UPDATE SET suspended = excluded.suspended")


class SqlModeration(SqlBase):
    """:class:`~..protocols.moderation.ModerationStore` over SQL."""

    async def get_account_state(self, user: UserID) -> AccountState:
        row = await self._run(one(
            "SELECT erased, locked, suspended FROM dendrite_admin_account_state"
            " WHERE localpart = %s AND server_name = %s",
            (user.localpart, user.server_name)), write=False)
        if row is None:
            return AccountState()
        return AccountState(bool(row[0]), bool(row[1]), bool(row[2]))

    async def set_locked(self, user: UserID, locked: bool) -> None:
        await self._run(exec_(_SET_LOCKED, (user.localpart, user.server_name, locked)),
                        write=True)

    async def set_suspended(self, user: UserID, suspended: bool) -> None:
        await self._run(exec_(_SET_SUSPENDED, (user.localpart, user.server_name, suspended)),
                        write=True)
