"""User administration (SPEC 9): Synapse's user list, user record and the writes of
``PUT /_synapse/admin/v2/users/{userId}`` and of deactivation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ...identifiers import UserID
from ..types import UserCursor, UserQuery, UserRecord

__all__ = ["UserAdminStore"]


class UserAdminStore(Protocol):
    async def list_users(self, server_name: str, query: UserQuery, *,
                         after: UserCursor | None, offset: int,
                         limit: int) -> list[UserRecord]:
        """At most ``limit`` accounts on ``server_name`` matching ``query``, in its
        order: by :func:`~..types.user_sort_key` then localpart (both descending when
        ``query.direction`` is ``"b"``).  With ``after``, only rows strictly after that
        position (keyset pagination: a deep page costs what the first costs);
        ``offset`` rows are then skipped (0 with a cursor)."""

    async def count_users(self, server_name: str, query: UserQuery) -> int:
        """How many accounts on ``server_name`` match ``query`` (the list's
        ``total``)."""

    async def get_user(self, user: UserID) -> UserRecord | None:
        """The account's record, deactivated or not, or None."""

    async def set_admin(self, user: UserID, admin: bool) -> None:
        """Make the account an admin (account type 3) or, if it is one, a plain user
        (1).  No change for an unknown account."""

    async def set_deactivated(self, user: UserID, deactivated: bool) -> None:
        """Set ``is_deactivated`` alone (a deactivated account's tokens stop working at
        once, SPEC 3).  Reactivating also clears ``erased``, as Synapse does."""

    async def revoke_credentials(self, user: UserID) -> None:
        """Atomically delete every device and access token of the user and clear the
        password hash (deactivation, SPEC 9).  Idempotent."""

    async def delete_devices(self, user: UserID, device_ids: Sequence[str]) -> None:
        """Delete these devices of the user (and their tokens); unknown ones are
        ignored."""

    async def update_account_state(self, user: UserID, *, erased: bool | None = None,
                                   locked: bool | None = None) -> None:
        """Set the given flags of :class:`~..types.AccountState` (None: unchanged)."""

    async def set_user_type(self, user: UserID, user_type: str | None) -> None:
        """Set or (None) clear the account's user type."""
