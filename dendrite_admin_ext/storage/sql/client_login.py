"""The SQL of client login (SPEC 13): Dendrite's own account and device tables, read and
written as Dendrite's ``POST /login`` and ``/logout`` do."""

from __future__ import annotations

from ...identifiers import UserID
from ..types import AccountType, LoginAccount, NewDevice
from .base import SqlBase
from .ops import Op, Stmt, exec_, one

__all__ = ["SqlClientLogin"]


class SqlClientLogin(SqlBase):
    """:class:`~..protocols.client_login.ClientLoginStore` over ``userapi_accounts``,
    ``userapi_devices`` and ``dendrite_admin_account_state``."""

    async def get_login_account(self, user: UserID) -> LoginAccount | None:
        row = await self._run(one(
            "SELECT a.password_hash, a.account_type, a.is_deactivated, s.locked"
            " FROM userapi_accounts a LEFT JOIN dendrite_admin_account_state s"
            " ON s.localpart = a.localpart AND s.server_name = a.server_name"
            " WHERE a.localpart = %s AND a.server_name = %s",
            (user.localpart, user.server_name)), write=False)
        if row is None:
            return None
        # '' is "no password" as Dendrite stores it (a cleared hash is written so too).
        return LoginAccount(user, row[0] or None, AccountType(row[1]), bool(row[2]),
                            bool(row[3]))

    async def create_login_device(self, user: UserID, device: NewDevice,
                                  created_ts: int) -> bool:
        return await self._run(self._create_login_device(user, device, created_ts),
                               write=True)

    @staticmethod
    def _create_login_device(user: UserID, device: NewDevice, now: int) -> Op[bool]:
        who = (user.localpart, user.server_name)
        # Locks the account row (PostgreSQL): a deactivation running now either finishes
        # first (no device) or waits for this one (and then deletes it).
        res = yield Stmt("SELECT 1 FROM userapi_accounts WHERE localpart = %s"
                         " AND server_name = %s AND (is_deactivated IS NULL"
                         " OR is_deactivated = %s) {for_update}", (*who, False))
        if not res.rows:
            return False
        yield Stmt("DELETE FROM userapi_devices"
                   " WHERE localpart = %s AND server_name = %s AND device_id = %s",
                   (*who, device.device_id))
        # ip stays NULL until the device is first seen, as for the devices of
        # shared-secret registration.
        yield Stmt(
            "INSERT INTO userapi_devices (access_token, session_id, device_id, localpart,"
            " server_name, created_ts, display_name, last_seen_ts, ip, user_agent)"
            " VALUES (%s, {next_session_id}, %s, %s, %s, %s, %s, %s, NULL, NULL)",
            (device.access_token, device.device_id, *who, now, device.display_name, now))
        return True

    async def delete_login_device(self, user: UserID, device_id: str) -> bool:
        count = await self._run(exec_(
            "DELETE FROM userapi_devices WHERE localpart = %s AND server_name = %s"
            " AND device_id = %s", (user.localpart, user.server_name, device_id)),
            write=True)
        return count > 0

    async def delete_login_devices(self, user: UserID) -> int:
        return await self._run(exec_(
            "DELETE FROM userapi_devices WHERE localpart = %s AND server_name = %s",
            (user.localpart, user.server_name)), write=True)
