"""The storage contract of TokenStore: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio
from typing import Any

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.types import (
    AccountType,
    Activity,
    Connection,
    NewAccount,
    NewDevice,
)

from ..sql_backends import HeldReads
from .common import ALICE, BOB, SN, account


# -- authentication ------------------------------------------------------------------------
async def test_get_token_owner(st: Any) -> None:
    assert await st.get_token_owner("nope") is None
    await st.create_account(account("alice", AccountType.ADMIN), NewDevice("D1", "tok1"))
    session = await st.get_token_owner("tok1")
    assert session is not None
    assert (session.user, session.device_id) == (ALICE, "D1")
    assert session.account_type is AccountType.ADMIN and session.is_deactivated is False
    assert session.user == ALICE
    # read fresh: a deactivation or demotion is seen at once
    st.set_account_flags(ALICE, is_deactivated=True, account_type=AccountType.USER)
    session = await st.get_token_owner("tok1")
    assert session is not None and session.is_deactivated is True
    assert session.account_type is AccountType.USER


async def test_record_activity_and_get_devices(st: Any) -> None:
    await st.create_account(account("alice"), NewDevice("D1", "tok1", "phone"))
    st.add_device(ALICE, NewDevice("D2", "tok2", None))
    devices = await st.get_devices(ALICE)
    assert [(d.device_id, d.display_name, d.connections) for d in devices] == [
        ("D1", "phone", ()), ("D2", None, ())]

    seen = [
        Activity(UserID("alice", SN), "D1", "10.0.0.1", "ua-1", 5_000),
        Activity(UserID("alice", SN), "D1", "10.0.0.2", "ua-1", 7_000),
        Activity(UserID("alice", SN), "D1", "10.0.0.1", "ua-1", 6_000),  # newer for that pair
        Activity(UserID("alice", SN), "D1", "10.0.0.1", "ua-1", 5_500),  # older: ignored
        Activity(UserID("alice", SN), "D2", "10.0.0.3", "ua-2", 4_000),
        Activity(UserID("alice", SN), "GONE", "10.0.0.9", "ua-9", 9_000),  # unknown device
        Activity(UserID("carol", SN), "D1", "10.0.0.9", "ua-9", 9_000),  # unknown account
    ]
    await st.record_activity(seen)
    await st.record_activity(seen)  # idempotent
    await st.record_activity([Activity(UserID("alice", SN), "D1", "10.0.0.2", "ua-1", 1_000)])
    await st.record_activity([])
    devices = {d.device_id: d for d in await st.get_devices(ALICE)}
    assert set(devices) == {"D1", "D2"}
    assert devices["D1"].connections == (
        Connection("10.0.0.2", "ua-1", 7_000), Connection("10.0.0.1", "ua-1", 6_000))
    assert devices["D2"].connections == (Connection("10.0.0.3", "ua-2", 4_000),)
    assert await st.get_devices(BOB) == []

    # Re-adding a device id replaces the device: old token and sightings are gone.
    st.add_device(ALICE, NewDevice("D1", "tok1-new", "tablet"))
    assert await st.get_token_owner("tok1") is None
    assert (await st.get_token_owner("tok1-new")) is not None
    devices = {d.device_id: d for d in await st.get_devices(ALICE)}
    assert devices["D1"].connections == () and devices["D1"].display_name == "tablet"
    assert [d.device_id for d in await st.get_devices(ALICE)] == ["D2", "D1"]


async def test_devices_of_users_are_separate(st: Any) -> None:
    await st.create_account(account("alice"), NewDevice("SAME", "tok-a"))
    await st.create_account(account("bob"), NewDevice("SAME", "tok-b"))
    await st.record_activity([Activity(UserID("bob", SN), "SAME", "1.1.1.1", "b", 10)])
    assert (await st.get_devices(ALICE))[0].connections == ()
    assert (await st.get_devices(BOB))[0].connections == (Connection("1.1.1.1", "b", 10),)
    session = await st.get_token_owner("tok-b")
    assert session is not None and session.user == BOB


async def test_many_reads_at_once_each_get_their_own_answer(st: Any) -> None:
    """The SQL backends' reads are coalesced (storage/coalescing.py): more than one
    statement's worth, duplicates, unknown keys and two servers in one go."""
    n = 70
    for i in range(n):
        kind = AccountType.ADMIN if i % 3 == 0 else AccountType.USER
        await st.create_account(account(f"u{i}", kind), NewDevice(f"D{i}", f"tok{i}"))
        if i % 2:
            st.add_device(UserID(f"u{i}", SN), NewDevice(f"E{i}", f"tok{i}-e"))
    st.set_account_flags(UserID("u5", SN), is_deactivated=True)
    elsewhere = UserID("u1", "elsewhere.example")  # same localpart, other server
    await st.create_account(NewAccount(UserID("u1", elsewhere.server_name), None, AccountType.USER,
                                       1), NewDevice("FAR", "tok-far"))
    await st.record_activity([Activity(UserID("u1", SN), "D1", "10.0.0.1", "ua", 5)])

    tokens = [f"tok{i}" for i in range(n)] + ["tok1", "nope", "tok3-e", "tok-far"]
    sessions = await asyncio.gather(*(st.get_token_owner(t) for t in tokens))
    for token, session in zip(tokens, sessions, strict=True):
        assert session == (await st.get_token_owner(token)), token  # same as alone
    assert sessions[-3] is None
    by_token = dict(zip(tokens, sessions, strict=True))
    s5, s6, s3e, far = by_token["tok5"], by_token["tok6"], by_token["tok3-e"], by_token["tok-far"]
    assert s5 is not None and s5.is_deactivated and s5.device_id == "D5"
    assert s6 is not None and s6.account_type is AccountType.ADMIN and s6.user.localpart == "u6"
    assert s3e is not None and (s3e.user.localpart, s3e.device_id) == ("u3", "E3")
    assert far is not None and far.user == elsewhere

    users = [UserID(f"u{i}", SN) for i in range(n)] + [elsewhere, UserID("ghost", SN)]
    lists = await asyncio.gather(*(st.get_devices(u) for u in users))
    for user, devices in zip(users, lists, strict=True):
        assert devices == await st.get_devices(user), user
    assert [d.device_id for d in lists[1]] == ["D1", "E1"]
    assert lists[1][0].connections == (Connection("10.0.0.1", "ua", 5),)
    assert [d.device_id for d in lists[2]] == ["D2"]
    assert [d.device_id for d in lists[-2]] == ["FAR"]
    assert lists[-1] == []
    lists[-1].append(lists[1][0])
    assert await st.get_devices(UserID("ghost", SN)) == []


async def test_a_read_asked_while_another_is_in_flight_is_fresh(st: Any) -> None:
    """SPEC 3: a demotion committed after one request's token read and before the next
    request's is seen by the next, although the reads of the two may be coalesced."""
    await st.create_account(account("alice", AccountType.ADMIN), NewDevice("D1", "tok1"))
    spy: HeldReads | None = None
    if isinstance(st, CoalescingStorage):
        # Hold the first read's answer back once the database has given it, so the
        # second request asks while the first is still in flight.
        spy = HeldReads(st.inner, hold=True)
        st = CoalescingStorage(spy)
    first = asyncio.create_task(st.get_token_owner("tok1"))
    await (spy.read.wait() if spy is not None else first)  # memory: no I/O
    st.set_account_flags(ALICE, account_type=AccountType.USER)
    second = asyncio.create_task(st.get_token_owner("tok1"))
    await asyncio.sleep(0)
    if spy is not None:
        spy.answer.set()
    before, after = await first, await second
    assert before is not None and before.account_type is AccountType.ADMIN
    assert after is not None and after.account_type is AccountType.USER
    if spy is not None:  # the second was a read of its own
        assert spy.token_batches == [["tok1"], ["tok1"]]


async def test_callers_of_one_user_get_lists_of_their_own(st: Any) -> None:
    await st.create_account(account("alice"), NewDevice("D1", "tok1"))
    first, second = await asyncio.gather(st.get_devices(ALICE), st.get_devices(ALICE))
    assert first == second and first is not second
    first.clear()
    assert [d.device_id for d in second] == ["D1"]


async def test_open_while_closing_nests(st: Any) -> None:
    """A close that waits for reads in flight, and an open meanwhile: the storage stays
    open and usable (it must not reconnect over itself, nor disconnect after)."""
    await st.create_account(account("alice"), NewDevice("D1", "tok1"))
    await st.open()  # two openers now
    await st.close()
    reading = asyncio.create_task(st.get_token_owner("tok1"))
    await asyncio.sleep(0)
    closing = asyncio.create_task(st.close())  # the last opener
    await asyncio.sleep(0)
    await st.open()
    await closing
    assert (await reading) is not None
    session = await st.get_token_owner("tok1")
    assert session is not None and session.device_id == "D1"
