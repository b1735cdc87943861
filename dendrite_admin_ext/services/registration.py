"""Shared-secret registration (Synapse's ``/_synapse/admin/v1/register`` dance).

The client fetches a nonce, then posts the account with
``mac = hex(HMAC-SHA1(secret, nonce \\0 username \\0 password \\0 admin|notadmin
[\\0 user_type]))``.  Everything cheap (shape, nonce, MAC) is checked before anything
costly (bcrypt), so bad requests cost microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import messages
from ..config import Config
from ..errors import (
    Forbidden,
    InvalidParam,
    InvalidUsername,
    MatrixError,
    Unrecognized,
    UserInUse,
    UserInUseError,
)
from ..identifiers import MAX_ID_BYTES, UserID, is_valid_localpart
from ..passwords import PasswordHasher, check_password_policy
from ..storage.protocols import AccountStore, NonceStore
from ..storage.sql.dendrite import SHARED_SECRET_DEVICE_ID
from ..storage.types import AccountType, NewAccount, NewDevice

__all__ = [
    "RegistrationNeeds",
    "RegistrationResult",
    "RegistrationStore",
    "compute_mac",
    "generate_access_token",
    "generate_device_id",
    "issue_nonce",
    "register_user",
    "validate_username",
]


def compute_mac(secret: str, nonce: str, username: str, password: str, admin: bool,
                user_type: str | None = None) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type is not None:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


def generate_access_token() -> str:
    return secrets.token_urlsafe(32)


def generate_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


class RegistrationStore(AccountStore, NonceStore, Protocol):
    """The storage shared-secret registration reads and writes."""


class RegistrationNeeds(Protocol):
    """What the registration services use (the ``AdminContext`` has it all)."""

    @property
    def config(self) -> Config: ...

    @property
    def storage(self) -> RegistrationStore: ...

    @property
    def hasher(self) -> PasswordHasher: ...

    @property
    def clock(self) -> Callable[[], int]: ...


async def issue_nonce(ctx: RegistrationNeeds) -> str:
    nonce = secrets.token_hex(32)
    reg = ctx.config.registration
    await ctx.storage.add_nonce(nonce, ctx.clock() + int(reg.nonce_lifetime * 1000),
                                reg.max_nonces)
    return nonce


def validate_username(username: str, server_name: str) -> str:
    """Lowercase and check a requested localpart; returns the localpart to create."""
    localpart = username.lower()
    if not is_valid_localpart(localpart):
        raise InvalidUsername(messages.USERNAME_GRAMMAR)
    if localpart.startswith("_"):
        raise InvalidUsername(messages.USERNAME_UNDERSCORE)
    if localpart.isdigit():
        raise InvalidUsername(messages.USERNAME_NUMERIC)
    if len(f"@{localpart}:{server_name}".encode()) > MAX_ID_BYTES:
        raise InvalidUsername(messages.USERNAME_TOO_LONG)
    return localpart


@dataclass(frozen=True)
class RegistrationResult:
    user_id: str
    home_server: str
    access_token: str | None
    device_id: str | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_id": self.user_id, "home_server": self.home_server}
        if self.access_token is not None:
            out["access_token"] = self.access_token
            out["device_id"] = self.device_id
        return out


async def register_user(ctx: RegistrationNeeds, body: dict[str, Any], *,
                        client_ip: str | None = None,
                        user_agent: str | None = None) -> RegistrationResult:
    """Run the checks of SPEC 4.4 in order and create the account.  ``body`` has
    already passed ``register.schema.json``.

    Beside Dendrite (``database.shared_with``) the new device is the one Dendrite's
    own shared-secret registration creates (SPEC 8): device ID
    ``shared_secret_registration`` unless the client names one, the localpart as its
    display name, and the client's address (``client_ip``, '' when not recorded) and
    ``user_agent`` as its first sighting."""
    secret = ctx.config.registration.shared_secret
    if secret is None:  # the route is not mounted without a secret; defensive only
        raise Unrecognized(messages.REGISTRATION_DISABLED)

    nonce: str = body["nonce"]
    username: str = body["username"]
    password: str = body["password"]
    admin: bool = body.get("admin", False)
    user_type: str | None = body.get("user_type")

    if not await ctx.storage.take_nonce(nonce, ctx.clock()):
        raise MatrixError(messages.UNRECOGNISED_NONCE)
    want = compute_mac(secret, nonce, username, password, admin, user_type)
    if not hmac.compare_digest(want.encode("ascii"), body["mac"].lower().encode("ascii")):
        raise Forbidden(messages.HMAC_INCORRECT)

    server_name = ctx.config.server_name
    localpart = validate_username(username, server_name)
    user = UserID(localpart, server_name)
    if await ctx.storage.localpart_exists(user):
        raise UserInUse(messages.USER_IN_USE)
    check_password_policy(password, ctx.config.passwords)
    if user_type is not None and user_type not in ctx.config.registration.user_types:
        raise InvalidParam(messages.invalid_user_type(user_type))

    display_name = body.get("displayname", localpart)
    if display_name is None:
        display_name = localpart
    inhibit_login: bool = body.get("inhibit_login", False)
    device: NewDevice | None = None
    if not inhibit_login and ctx.config.database.shared_with is not None:
        record_ip = ctx.config.http.record_client_ip
        device = NewDevice(
            device_id=body.get("device_id") or SHARED_SECRET_DEVICE_ID,
            access_token=generate_access_token(),
            display_name=body.get("initial_device_display_name") or localpart,
            ip=(client_ip or "") if record_ip else "",
            user_agent=user_agent or "",
        )
    elif not inhibit_login:
        device = NewDevice(
            device_id=body.get("device_id") or generate_device_id(),
            access_token=generate_access_token(),
            display_name=body.get("initial_device_display_name"),
        )
    password_hash = await ctx.hasher.hash(password)
    account = NewAccount(
        user=user,
        password_hash=password_hash,
        account_type=AccountType.ADMIN if admin else AccountType.USER,
        created_ts=ctx.clock(),
        display_name=display_name or None,
        user_type=user_type,
    )
    try:
        await ctx.storage.create_account(account, device)
    except UserInUseError:
        raise UserInUse(messages.USER_IN_USE) from None
    user_id = str(UserID(localpart, server_name))
    if device is None:
        return RegistrationResult(user_id, server_name, None, None)
    return RegistrationResult(user_id, server_name, device.access_token, device.device_id)
