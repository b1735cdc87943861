"""Client login on the standalone server (SPEC 13): password login, logout.

Devices and access tokens are Dendrite's (``userapi_devices``): a device made here is
one the homeserver would have made on ``POST /login``, and the other way round.
"""

from __future__ import annotations

from typing import Protocol

from ...identifiers import UserID
from ..types import LoginAccount, NewDevice

__all__ = ["ClientLoginStore"]


class ClientLoginStore(Protocol):
    async def get_login_account(self, user: UserID) -> LoginAccount | None:
        """The account with exactly this user ID (localpart compared as stored, not
        case-folded), with its password hash and ``locked`` flag (False when the account
        has no account state), or None.  Deactivated accounts are returned too."""

    async def create_login_device(self, user: UserID, device: NewDevice,
                                  created_ts: int) -> bool:
        """Atomically create ``device`` (its ID, access token and display name) for the
        account, first deleting the account's device of the same ID with its access
        token, as Dendrite does on a login that names a known device.  Return False,
        changing nothing, when the account does not exist or is deactivated."""

    async def delete_login_device(self, user: UserID, device_id: str) -> bool:
        """Delete the user's device ``device_id`` and its access token (``POST
        /logout``).  False if there was no such device."""

    async def delete_login_devices(self, user: UserID) -> int:
        """Delete every device and access token of the user (``POST /logout/all``);
        return how many devices there were."""
