"""The storage contract of AccountStore: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dendrite_admin_ext.errors import UserInUseError
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType, Activity, Connection, NewDevice, Profile

from .common import ALICE, BOB, SN, account


# -- accounts ------------------------------------------------------------------------------
async def test_create_and_get_account(st: AdminStorage) -> None:
    assert await st.get_account(ALICE) is None
    await st.create_account(account("alice", AccountType.ADMIN, created_ts=42,
                                    display_name="Alice", avatar_url="mxc://x/y",
                                    user_type="bot"), None)
    acc = await st.get_account(ALICE)
    assert acc is not None
    assert (acc.user.localpart, acc.user.server_name, acc.created_ts, acc.account_type) == (
        "alice", SN, 42, AccountType.ADMIN)
    assert (acc.is_deactivated, acc.appservice_id, acc.user_type) == (False, None, "bot")
    assert await st.get_profile(ALICE) == Profile("Alice", "mxc://x/y")
    assert await st.get_account(UserID("alice", "other.example")) is None
    # no device was asked for
    assert await st.get_devices(ALICE) == []

    await st.create_account(account("bob", display_name=None), None)
    bob = await st.get_account(BOB)
    assert bob is not None and bob.user_type is None
    assert await st.get_profile(BOB) == Profile(None, None)


async def test_create_account_taken_is_atomic(st: Any) -> None:
    await st.create_account(account("alice", password_hash="first"), NewDevice("D1", "t1"))
    with pytest.raises(UserInUseError):
        await st.create_account(account("alice", AccountType.ADMIN, password_hash="second",
                                        display_name="Mallory"), NewDevice("D2", "t2"))
    assert await st.get_token_owner("t2") is None
    assert await st.get_token_owner("t1") is not None
    assert st.password_hash(ALICE) == "first"
    acc = await st.get_account(ALICE)
    assert acc is not None and acc.account_type is AccountType.USER
    assert await st.get_profile(ALICE) == Profile(None, None)


async def test_concurrent_create_account_exactly_one_wins(st: AdminStorage) -> None:
    async def attempt(i: int) -> bool:
        try:
            await st.create_account(account("racer", password_hash=f"h{i}"),
                                    NewDevice(f"D{i}", f"race-{i}"))
        except UserInUseError:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await st.get_token_owner(f"race-{winner}") is not None
    for i in range(8):
        if i != winner:
            assert await st.get_token_owner(f"race-{i}") is None


async def test_localpart_exists_case_insensitive(st: AdminStorage) -> None:
    assert await st.localpart_exists(UserID("alice", SN)) is False
    await st.create_account(account("alice"), None)
    assert await st.localpart_exists(UserID("alice", SN)) is True
    assert await st.localpart_exists(UserID("ALICE", SN)) is True
    assert await st.localpart_exists(UserID("aLiCe", SN)) is True
    assert await st.localpart_exists(UserID("alice", "other.example")) is False
    assert await st.localpart_exists(UserID("alic", SN)) is False
    assert await st.localpart_exists(UserID("alice_", SN)) is False


async def test_set_password_logout(st: Any) -> None:
    await st.create_account(account("alice"), NewDevice("D1", "t1"))
    st.add_device(ALICE, NewDevice("D2", "t2"))
    st.add_device(ALICE, NewDevice("D3", "t3"))
    await st.create_account(account("bob"), NewDevice("D1", "tb"))
    await st.record_activity([Activity(UserID("alice", SN), "D2", "1.2.3.4", "ua", 5)])

    await st.set_password(ALICE, "h-1", logout_devices=False)
    assert st.password_hash(ALICE) == "h-1"
    assert [await st.get_token_owner(t) is not None for t in ("t1", "t2", "t3")] == [True] * 3

    await st.set_password(ALICE, "h-2", logout_devices=True, keep_device_id="D2")
    assert st.password_hash(ALICE) == "h-2"
    assert [await st.get_token_owner(t) is not None for t in ("t1", "t2", "t3")] == [
        False, True, False]
    devices = await st.get_devices(ALICE)
    assert [d.device_id for d in devices] == ["D2"]
    assert devices[0].connections == (Connection("1.2.3.4", "ua", 5),)

    await st.set_password(ALICE, "h-3", logout_devices=True)
    assert await st.get_token_owner("t2") is None and await st.get_devices(ALICE) == []
    assert await st.get_token_owner("tb") is not None  # other users untouched
    assert st.password_hash(BOB) == "hash-bob"
    # unknown user: nothing happens, nothing raised
    await st.set_password(UserID("nobody", SN), "h", logout_devices=True)


async def test_profiles(st: AdminStorage) -> None:
    assert await st.get_profile(ALICE) is None
    await st.create_account(account("alice", display_name="A"), None)
    await st.set_profile(ALICE, Profile("Alice", "mxc://a/b"))
    assert await st.get_profile(ALICE) == Profile("Alice", "mxc://a/b")
    await st.set_profile(ALICE, Profile(None, None))
    assert await st.get_profile(ALICE) == Profile(None, None)
    # the server-notices user may get a profile before (or without) an account row
    # '' is "no value": Dendrite's columns hold '' for it and never NULL (SPEC 8)
    await st.set_profile(UserID("_server", SN), Profile("Server Alerts", ""))
    assert await st.get_profile(UserID("_server", SN)) == Profile("Server Alerts", None)
