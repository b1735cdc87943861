"""The whois and password-reset services called directly, without HTTP, on every
backend (the HTTP behaviour is in test_whois.py and test_reset_password.py)."""

from __future__ import annotations

import pytest

from dendrite_admin_ext.activity import ActivityTracker
from dendrite_admin_ext.auth import Requester
from dendrite_admin_ext.config import PasswordConfig
from dendrite_admin_ext.errors import Forbidden, InvalidParam, MissingParam, NotFound, WeakPassword
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.passwords import PasswordHasher
from dendrite_admin_ext.services.accounts import require_account, reset_password
from dendrite_admin_ext.services.whois import whois
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType, Connection

from .conftest import SERVER, make_user


def requester(user: UserID, device_id: str, admin: bool = False) -> Requester:
    return Requester(user, device_id, AccountType.ADMIN if admin else AccountType.USER)


async def test_whois_rules(storage: AdminStorage) -> None:
    alice = await make_user(storage, "alice")
    root = await make_user(storage, "root", AccountType.ADMIN)
    activity = ActivityTracker(storage)
    as_alice = requester(alice.user_id, alice.device_id)
    as_root = requester(root.user_id, root.device_id, admin=True)
    # A sighting not flushed yet is part of the answer.
    activity.note(alice.user_id, alice.device_id, "10.0.0.1", "ua", 5_000)

    found = await whois(storage, activity, SERVER, as_alice, str(alice.user_id))
    assert found.user == alice.user_id
    assert [(d.device_id, d.connections) for d in found.devices] == [
        (alice.device_id, (Connection("10.0.0.1", "ua", 5_000),))]
    assert (await whois(storage, activity, SERVER, as_root, str(alice.user_id))).user \
        == alice.user_id

    # Strangers are refused before the target is even parsed.
    with pytest.raises(Forbidden):
        await whois(storage, activity, SERVER, as_alice, str(root.user_id))
    with pytest.raises(Forbidden):
        await whois(storage, activity, SERVER, as_alice, "not an id")
    with pytest.raises(InvalidParam):
        await whois(storage, activity, SERVER, as_root, "not an id")
    with pytest.raises(InvalidParam):
        await whois(storage, activity, SERVER, as_root, "@alice:elsewhere.example")
    with pytest.raises(NotFound):
        await whois(storage, activity, SERVER, as_root, f"@ghost:{SERVER}")


async def test_reset_password_rules(storage: AdminStorage) -> None:
    alice = await make_user(storage, "alice")
    root = await make_user(storage, "root", AccountType.ADMIN)
    hasher = PasswordHasher(cost=4, max_concurrent=1, max_queued=4)
    hasher.start()
    policy = PasswordConfig()
    as_root = requester(root.user_id, root.device_id, admin=True)
    try:
        assert (await require_account(storage, alice.user_id)).user == alice.user_id
        with pytest.raises(NotFound):
            await require_account(storage, UserID("ghost", SERVER))
        with pytest.raises(MissingParam):
            await reset_password(storage, hasher, policy, as_root, alice.user_id, None)
        with pytest.raises(WeakPassword):
            await reset_password(storage, hasher, policy, as_root, alice.user_id, "x")
        # Nothing changed by the refusals: alice's device is still logged in.
        assert await storage.get_token_owner(alice.token) is not None

        await reset_password(storage, hasher, policy, as_root, alice.user_id,
                             "a long enough password", logout_devices=False)
        assert await storage.get_token_owner(alice.token) is not None
        await reset_password(storage, hasher, policy, as_root, alice.user_id,
                             "another long password")
        assert await storage.get_token_owner(alice.token) is None
        # Admins resetting their own password keep the device they asked from.
        await reset_password(storage, hasher, policy, as_root, root.user_id,
                             "root's long password")
        assert await storage.get_token_owner(root.token) is not None
    finally:
        hasher.close()
