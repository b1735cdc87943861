"""In-memory user administration (SPEC 9): the reference for the SQL backends.

Listing filters and sorts every account (it is the reference, not the fast path); the
order and the keyset cursor are exactly those the SQL backends serve from indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ...identifiers import UserID
from ..types import (
    AccountState,
    AccountType,
    Profile,
    UserCursor,
    UserQuery,
    UserRecord,
    user_sort_key,
)
from .base import MemoryBase

__all__ = ["MemoryUsers", "ascii_lower"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Case-fold ASCII letters only (what SQL ``lower()`` does in both backends)."""
    return text.translate(_ASCII_LOWER)


def matches(record: UserRecord, query: UserQuery) -> bool:
    """Whether ``record`` passes ``query``'s filters (see :class:`UserQuery`)."""
    acc_type = record.account_type
    if query.name is not None:
        needle = ascii_lower(query.name)
        if (needle not in ascii_lower(record.user.localpart)
                and needle not in ascii_lower(record.display_name or "")):
            return False
    elif query.user_id is not None and (
            ascii_lower(query.user_id) not in ascii_lower(str(record.user))):
        return False
    if not query.guests and acc_type == AccountType.GUEST:
        return False
    if query.deactivated is not None and record.is_deactivated != query.deactivated:
        return False
    if query.admins is not None and (acc_type == AccountType.ADMIN) != query.admins:
        return False
    if not query.locked and record.locked:
        return False
    return (record.user_type or "") not in query.not_user_types


class MemoryUsers(MemoryBase):
    def _record(self, user: UserID) -> UserRecord | None:
        row = self.accounts.get(user)
        if row is None:
            return None
        acc = row.account
        profile = self.profiles.get(user) or Profile(None, None)
        state = self.account_state.get(user) or AccountState()
        seen = [d.last_seen_ts for d in row.devices.values() if d.last_seen_ts is not None]
        return UserRecord(
            user, acc.account_type, acc.is_deactivated, acc.created_ts, acc.user_type,
            acc.appservice_id, profile.display_name, profile.avatar_url, state.erased,
            state.locked, state.suspended, max(seen) if seen else None)

    async def list_users(self, server_name: str, query: UserQuery, *,
                         after: UserCursor | None, offset: int,
                         limit: int) -> list[UserRecord]:
        rows = []
        for user in self.accounts:
            if user.server_name != server_name:
                continue
            record = self._record(user)
            assert record is not None
            if matches(record, query):
                rows.append(((user_sort_key(record, query.order_by), user.localpart),
                             record))
        backwards = query.direction == "b"
        rows.sort(key=lambda r: r[0], reverse=backwards)
        if after is not None:
            mark = (after.key, after.localpart)
            rows = [r for r in rows if (r[0] < mark if backwards else r[0] > mark)]
        return [r[1] for r in rows[max(0, offset):max(0, offset) + max(0, limit)]]

    async def count_users(self, server_name: str, query: UserQuery) -> int:
        count = 0
        for user in self.accounts:
            record = self._record(user)
            if record is not None and user.server_name == server_name and matches(
                    record, query):
                count += 1
        return count

    async def get_user(self, user: UserID) -> UserRecord | None:
        return self._record(user)

    async def set_admin(self, user: UserID, admin: bool) -> None:
        row = self.accounts.get(user)
        if row is None:
            return
        if admin:
            row.account = replace(row.account, account_type=AccountType.ADMIN)
        elif row.account.account_type == AccountType.ADMIN:
            row.account = replace(row.account, account_type=AccountType.USER)

    async def set_deactivated(self, user: UserID, deactivated: bool) -> None:
        row = self.accounts.get(user)
        if row is None:
            return
        row.account = replace(row.account, is_deactivated=deactivated)
        if not deactivated:
            self._set_state(user, erased=False)

    async def revoke_credentials(self, user: UserID) -> None:
        row = self.accounts.get(user)
        if row is None:
            return
        row.password_hash = None
        for device in row.devices.values():
            self.tokens.pop(device.access_token, None)
        row.devices.clear()

    async def delete_devices(self, user: UserID, device_ids: Sequence[str]) -> None:
        row = self.accounts.get(user)
        if row is None:
            return
        for device_id in device_ids:
            device = row.devices.pop(device_id, None)
            if device is not None:
                self.tokens.pop(device.access_token, None)

    async def update_account_state(self, user: UserID, *, erased: bool | None = None,
                                   locked: bool | None = None) -> None:
        self._set_state(user, erased=erased, locked=locked)

    def _set_state(self, user: UserID, *, erased: bool | None = None,
                   locked: bool | None = None) -> None:
        state = self.account_state.get(user) or AccountState()
        if erased is not None:
            state = replace(state, erased=erased)
        if locked is not None:
            state = replace(state, locked=locked)
        if state == AccountState():
            self.account_state.pop(user, None)
        else:
            self.account_state[user] = state

    async def set_user_type(self, user: UserID, user_type: str | None) -> None:
        row = self.accounts.get(user)
        if row is not None:
            row.account = replace(row.account, user_type=user_type)
