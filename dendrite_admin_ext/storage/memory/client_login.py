"""In-memory storage of client login (SPEC 13)."""

from __future__ import annotations

from ...identifiers import UserID
from ..types import AccountState, LoginAccount, NewDevice
from .base import MemoryBase, _Device

__all__ = ["MemoryClientLogin"]


class MemoryClientLogin(MemoryBase):
    """:class:`~..protocols.client_login.ClientLoginStore` in memory.  No method awaits,
    so each is atomic."""

    async def get_login_account(self, user: UserID) -> LoginAccount | None:
        row = self.accounts.get(user)
        if row is None:
            return None
        acc = row.account
        state = self.account_state.get(user, AccountState())
        return LoginAccount(user, row.password_hash, acc.account_type, acc.is_deactivated,
                            state.locked)

    async def create_login_device(self, user: UserID, device: NewDevice,
                                  created_ts: int) -> bool:
        row = self.accounts.get(user)
        if row is None or row.account.is_deactivated:
            return False
        old = row.devices.pop(device.device_id, None)
        if old is not None:
            self.tokens.pop(old.access_token, None)
        self._session_seq += 1
        row.devices[device.device_id] = _Device(device.device_id, device.access_token,
                                                device.display_name, created_ts,
                                                self._session_seq)
        self.tokens[device.access_token] = (user, device.device_id)
        return True

    async def delete_login_device(self, user: UserID, device_id: str) -> bool:
        row = self.accounts.get(user)
        device = row.devices.pop(device_id, None) if row is not None else None
        if device is None:
            return False
        self.tokens.pop(device.access_token, None)
        return True

    async def delete_login_devices(self, user: UserID) -> int:
        row = self.accounts.get(user)
        if row is None:
            return 0
        for device in row.devices.values():
            self.tokens.pop(device.access_token, None)
        count = len(row.devices)
        row.devices.clear()
        return count
