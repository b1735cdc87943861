"""Account rules: password reset (Dendrite's ``POST /_dendrite/admin/resetPassword``,
SPEC 4.4)."""

from __future__ import annotations

from .. import messages
from ..auth import Requester
from ..config import PasswordConfig
from ..errors import NotFound
from ..identifiers import UserID
from ..passwords import PasswordHasher, check_password_policy
from ..storage.protocols import AccountStore
from ..storage.types import Account

__all__ = ["require_account", "reset_password"]


async def require_account(store: AccountStore, user: UserID) -> Account:
    """The account (deactivated or not); 404 ``M_NOT_FOUND`` if there is none."""
    account = await store.get_account(user)
    if account is None:
        raise NotFound(messages.unknown_user(user))
    return account


async def reset_password(store: AccountStore, hasher: PasswordHasher,
                         policy: PasswordConfig, requester: Requester, user: UserID,
                         password: object, *, logout_devices: bool = True) -> None:
    """Set ``user``'s password: checked against ``policy`` (400 ``M_MISSING_PARAM`` when
    absent, ``M_WEAK_PASSWORD`` when too short, ``M_BAD_JSON`` when too long), hashed
    off the event loop by ``hasher`` (503 when its queue is full).  With
    ``logout_devices`` every device and access token of the user is deleted — except
    the requester's own device when admins reset their own password, so the request
    does not log out the one making it."""
    checked = check_password_policy(password, policy)
    password_hash = await hasher.hash(checked)
    keep = requester.device_id if requester.user == user else None
    await store.set_password(user, password_hash, logout_devices=logout_devices,
                             keep_device_id=keep)
