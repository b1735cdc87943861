"""Accounts, devices and profiles: whois, resetPassword, shared-secret registration."""

from __future__ import annotations

from typing import Protocol

from ...identifiers import UserID
from ..types import Account, DeviceInfo, NewAccount, NewDevice, Profile

__all__ = ["AccountStore"]


class AccountStore(Protocol):
    async def get_account(self, user: UserID) -> Account | None:
        """The account, deactivated or not, or None."""

    async def localpart_exists(self, user: UserID) -> bool:
        """True if an account on ``user.server_name`` has ``user.localpart``, compared
        case-insensitively (registration refuses such a name, SPEC 4.4)."""

    async def create_account(self, account: NewAccount, device: NewDevice | None) -> None:
        """Atomically create the account, its profile and optionally a device.  Raise
        UserInUseError if the localpart is taken (the unique constraint decides races:
        of two concurrent calls for one name exactly one succeeds)."""

    async def set_password(self, user: UserID, password_hash: str, *, logout_devices: bool,
                           keep_device_id: str | None = None) -> None:
        """Atomically set the hash and, with ``logout_devices``, delete every device and
        access token of the user except ``keep_device_id``."""

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        """Every device of the user with its connections, newest first."""

    async def get_profile(self, user: UserID) -> Profile | None:
        """The user's global profile, or None when the account has none.  A field
        without a value is None (Dendrite stores it as ``''``, never NULL: SPEC 8; the
        shipped backends read ``''`` back as None)."""

    async def set_profile(self, user: UserID, profile: Profile) -> None:
        """Replace the user's global profile (display name and avatar URL); None and
        ``''`` both mean "no value"."""
