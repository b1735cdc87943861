"""The storage contract: every backend behaves like the in-memory reference.

One suite, parametrised over memory, SQLite and PostgreSQL, covering every method of
:class:`~dendrite_admin_ext.storage.base.AdminStorage`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.errors import UserInUseError
from dendrite_admin_ext.events import reference_event_id
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.sql import SqlStorage
from dendrite_admin_ext.storage.sql.ops import select
from dendrite_admin_ext.storage.sql.schema import MIGRATIONS
from dendrite_admin_ext.storage.sqlite import SqliteStorage
from dendrite_admin_ext.storage.types import (
    AccountType,
    Activity,
    AuditEntry,
    Connection,
    Member,
    MembershipChange,
    NewAccount,
    NewDevice,
    NewRoom,
    NoticeTxnKey,
    Profile,
)

from .conftest import room_events, room_tags
from .postgres import PgServer
from .sql_backends import BACKENDS, HeldReads, make_storage

SN = "contract.example"
U = UserID.from_stored
ALICE = UserID("alice", SN)
BOB = UserID("bob", SN)
SERVER_USER = f"@_server:{SN}"
FAR = 10**13  # a timestamp far in the future


@pytest.fixture(params=BACKENDS)
async def st(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    storage = await make_storage(request, request.param, tmp_path)
    yield storage
    await storage.close()


def account(localpart: str, kind: AccountType = AccountType.USER, **kw: Any) -> NewAccount:
    return NewAccount(UserID(localpart, SN), kw.pop("password_hash", "hash-" + localpart), kind,
                      kw.pop("created_ts", 1_000), **kw)


async def make_room(st: AdminStorage, creator: str = SERVER_USER) -> str:
    maker: Any = st  # create_room is a test utility of every backend, not a protocol method
    room_id: str = await maker.create_room(NewRoom(
        creator=U(creator), room_version="10", create_content={"creator": creator},
        initial_state=(
            ("m.room.member", creator, {"membership": "join", "displayname": "Srv"}),
            ("m.room.power_levels", "", {"users": {creator: 100}}),
            ("m.room.join_rules", "", {"join_rule": "invite"}),
        )))
    return room_id


def joins(*user_ids: str, **names: str) -> list[MembershipChange]:
    return [MembershipChange(U(u), U(u), {"membership": "join",
                                    **({"displayname": names[u[1:].split(":")[0]]}
                                       if u[1:].split(":")[0] in names else {})})
            for u in user_ids]


# -- lifecycle ------------------------------------------------------------------------------
async def test_ping_and_nested_open_close(st: AdminStorage) -> None:
    await st.ping()
    # The admin app opens a storage the host (here: the fixture) has opened already.
    await st.open()
    await st.close()
    await st.ping()
    await st.create_account(account("alice"), None)
    assert await st.get_account(ALICE) is not None


@pytest.mark.parametrize("kind", [b for b in BACKENDS if b != "memory"])
async def test_data_survives_reopen_and_migrations_are_idempotent(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    first = await make_storage(request, kind, tmp_path)
    await first.create_account(account("alice"), NewDevice("DEV", "tok-alice"))
    await first.close()
    # a second start (and a third, concurrently) finds the schema in place
    again = [await make_storage(request, kind, tmp_path) for _ in range(2)]
    try:
        session = await again[1].get_token_owner("tok-alice")
        assert session is not None and session.device_id == "DEV"
        sql = again[0].inner if isinstance(again[0], CoalescingStorage) else again[0]
        assert isinstance(sql, SqlStorage)
        versions = await sql._run(select(
            "SELECT version FROM dendrite_admin_schema_version", ()), write=False)
        assert [v[0] for v in versions] == [m.version for m in MIGRATIONS]
    finally:
        for s in again:
            await s.close()


@pytest.mark.parametrize("kind", [b for b in BACKENDS if b != "memory"])
async def test_concurrent_first_start_migrates_once(request: pytest.FixtureRequest,
                                                    tmp_path: Path, kind: str) -> None:
    """Several workers starting at once on an empty database: one migrates, the others
    wait for it and find the schema in place."""
    storages: list[SqlStorage]
    if kind == "sqlite":
        storages = [SqliteStorage(tmp_path / "fresh.db") for _ in range(4)]
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        name = pg.new_database(empty=True)
        request.addfinalizer(lambda: pg.drop_database(name))
        storages = [PostgresStorage(pg.dsn_for(name), pool_size=2) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in storages))
        for i, s in enumerate(storages):
            await s.create_account(account(f"user{i}"), None)
            versions = await s._run(select(
                "SELECT version FROM dendrite_admin_schema_version", ()), write=False)
            assert [v[0] for v in versions] == [m.version for m in MIGRATIONS]
            assert await s.localpart_exists(UserID("user0", SN))
    finally:
        for s in storages:
            await s.close()


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


# -- nonces --------------------------------------------------------------------------------
async def test_nonce_single_use_and_expiry(st: AdminStorage) -> None:
    now = int(time.time() * 1000)
    await st.add_nonce("n-live", now + 60_000, 100)
    await st.add_nonce("n-old", now - 1, 100)
    assert await st.take_nonce("n-unknown", now) is False
    assert await st.take_nonce("n-live", now) is True
    assert await st.take_nonce("n-live", now) is False  # single use
    assert await st.take_nonce("n-old", now) is False  # expired
    await st.add_nonce("n-edge", 5_000, 100)
    assert await st.take_nonce("n-edge", 5_000) is False  # expiry is exclusive
    await st.add_nonce("n-edge2", 5_001, 100)
    assert await st.take_nonce("n-edge2", 5_000) is True


async def test_nonces_are_bounded_oldest_first(st: Any) -> None:
    for i in range(5):
        await st.add_nonce(f"n{i}", FAR, 3)
    assert [await st.take_nonce(f"n{i}", 0) for i in range(5)] == [
        False, False, True, True, True]
    for i in range(300):
        await st.add_nonce(f"m{i}", FAR, 10)
    kept = len(st.nonces) if isinstance(st, MemoryStorage) else st.count(
        "dendrite_admin_nonces")
    assert kept <= 10
    assert await st.take_nonce("m299", 0) is True


# -- rooms ---------------------------------------------------------------------------------
async def test_create_room_and_its_events(st: AdminStorage) -> None:
    room_id = await make_room(st)
    assert room_id.startswith("!") and room_id.endswith(":" + SN)
    assert await st.room_exists(room_id) is True
    assert await st.room_exists(f"!unknown:{SN}") is False
    assert await st.get_membership(room_id, U(SERVER_USER)) == "join"
    assert await st.get_membership(room_id, U(f"@x:{SN}")) is None
    assert await st.get_membership(f"!unknown:{SN}", U(SERVER_USER)) is None

    events = room_events(st, room_id)
    assert [(e["type"], e.get("state_key")) for e in events] == [
        ("m.room.create", ""), ("m.room.member", SERVER_USER), ("m.room.power_levels", ""),
        ("m.room.join_rules", "")]
    assert events[0]["content"] == {"creator": SERVER_USER, "room_version": "10"}
    for i, e in enumerate(events):
        assert e["event_id"] == reference_event_id(e)
        assert e["sender"] == SERVER_USER and e["room_id"] == room_id
        assert e["depth"] == i + 1
        assert e["prev_events"] == ([events[i - 1]["event_id"]] if i else [])

    message = {"msgtype": "m.text", "body": "hi", "format": "org.matrix.custom.html",
               "formatted_body": "<b>hi</b>"}
    event_id = await st.send_event(room_id, U(SERVER_USER), "m.room.message", message)
    last = room_events(st, room_id)[-1]
    assert last["event_id"] == event_id and last["content"] == message
    assert "state_key" not in last and last["prev_events"] == [events[-1]["event_id"]]
    other = await make_room(st)
    assert other != room_id and len(room_events(st, other)) == 4


async def test_apply_memberships_and_paging(st: AdminStorage) -> None:
    room_id = await make_room(st)
    local = [f"@u{i:03d}:{SN}" for i in range(30)]
    changes = joins(*local, u001="One") + joins("@zed:remote.example", "@aaa:remote.example")
    changes.append(MembershipChange(U(SERVER_USER), U(f"@invited:{SN}"), {"membership": "invite"}))
    ids = await st.apply_memberships(room_id, changes)
    assert len(ids) == len(changes) == len(set(ids))
    events = room_events(st, room_id)
    assert [e["event_id"] for e in events[-len(ids):]] == ids
    assert await st.apply_memberships(room_id, []) == []

    everyone = sorted([*local, SERVER_USER])
    page = await st.get_local_joined_members(room_id, SN, after=None, limit=5)
    assert [str(m.user) for m in page] == everyone[:5]
    # "@_server" sorts before "@u…" byte-wise ('_' < 'u')
    assert page[0] == Member(U(SERVER_USER), "Srv", None)
    assert Member(U(f"@u001:{SN}"), "One", None) in page
    collected: list[str] = []
    after: UserID | None = None
    while True:
        page = await st.get_local_joined_members(room_id, SN, after=after, limit=7)
        if not page:
            break
        collected += [str(m.user) for m in page]
        after = page[-1].user
    assert collected == everyone  # no remote users, no invitees, no duplicates
    assert await st.get_local_joined_members(room_id, SN, after=None, limit=0) == []
    assert await st.get_local_joined_members(f"!nope:{SN}", SN, after=None, limit=5) == []
    assert await st.get_local_joined_members(room_id, SN, after=U(everyone[-1]), limit=5) == []

    # leaves (as an evacuation sends them) remove members from the joined set
    leaves = [MembershipChange(U(u), U(u), {"membership": "leave", "displayname": "x"})
              for u in local[:10]]
    await st.apply_memberships(room_id, leaves)
    rest = await st.get_local_joined_members(room_id, SN, after=None, limit=100)
    assert [str(m.user) for m in rest] == sorted([*local[10:], SERVER_USER])
    assert await st.get_membership(room_id, U(local[0])) == "leave"
    assert await st.get_membership(room_id, U(f"@invited:{SN}")) == "invite"
    # re-joining puts them back
    await st.apply_memberships(room_id, joins(local[0]))
    assert local[0] in [str(m.user) for m in await st.get_local_joined_members(
        room_id, SN, after=None, limit=100)]


async def test_member_order_is_bytewise(st: AdminStorage) -> None:
    room_id = await make_room(st)
    users = [f"@{lp}:{SN}" for lp in ("b", "a", "a.b", "a-b", "a_b", "a0", "z", "0", "=")]
    await st.apply_memberships(room_id, joins(*users))
    got = [str(m.user) for m in await st.get_local_joined_members(room_id, SN, after=None,
                                                                  limit=100)]
    assert got == sorted([*users, SERVER_USER])


async def test_large_batch(st: AdminStorage) -> None:
    room_id = await make_room(st)
    users = [f"@m{i:05d}:{SN}" for i in range(1_234)]
    ids = await st.apply_memberships(room_id, joins(*users))
    assert len(set(ids)) == 1_234
    got = await st.get_local_joined_members(room_id, SN, after=U(users[600]), limit=1_000)
    assert [str(m.user) for m in got] == users[601:]
    await st.apply_memberships(room_id, [
        MembershipChange(U(u), U(u), {"membership": "leave"}) for u in users[:700]])
    left = await st.get_local_joined_members(room_id, SN, after=None, limit=10_000)
    assert len(left) == 1_234 - 700 + 1


async def test_repeated_target_in_one_batch(st: AdminStorage) -> None:
    room_id = await make_room(st)
    u = f"@flip:{SN}"
    await st.apply_memberships(room_id, [
        MembershipChange(U(SERVER_USER), U(u), {"membership": "invite"}),
        MembershipChange(U(u), U(u), {"membership": "join", "displayname": "Flip"}),
        MembershipChange(U(u), U(u), {"membership": "leave"}),
    ])
    assert await st.get_membership(room_id, U(u)) == "leave"
    assert room_events(st, room_id)[-1]["content"] == {"membership": "leave"}


async def test_get_user_rooms(st: AdminStorage) -> None:
    me = f"@alice:{SN}"
    r_joined, r_invited, r_left = [await make_room(st) for _ in range(3)]
    await st.apply_memberships(r_joined, [MembershipChange(U(
        me), U(me), {"membership": "join", "displayname": "Al", "avatar_url": "mxc://a/1"})])
    await st.apply_memberships(r_invited, [
        MembershipChange(U(SERVER_USER), U(me), {"membership": "invite"})])
    await st.apply_memberships(r_left, [MembershipChange(U(me), U(me), {"membership": "join"}),
                                        MembershipChange(U(me), U(me), {"membership": "leave"})])
    r_notice = await st.create_server_notice_room(
        ALICE, notice_room_spec(me), replacing=None, tag="m.server_notice")
    assert r_notice is not None
    rooms = {r.room_id: r for r in await st.get_user_rooms(ALICE)}
    assert set(rooms) == {r_joined, r_invited, r_notice}
    assert (rooms[r_joined].membership, rooms[r_joined].is_server_notice_room) == (
        "join", False)
    assert (rooms[r_joined].display_name, rooms[r_joined].avatar_url) == ("Al", "mxc://a/1")
    assert rooms[r_invited].membership == "invite"
    assert (rooms[r_notice].membership, rooms[r_notice].is_server_notice_room) == (
        "invite", True)
    assert await st.get_user_rooms(BOB) == []


async def test_room_tags(st: AdminStorage) -> None:
    room_id = await make_room(st)
    assert room_tags(st, ALICE, room_id) == {}
    await st.set_room_tag(ALICE, room_id, "m.server_notice", {})
    await st.set_room_tag(ALICE, room_id, "u.work", {"order": 0.5})
    await st.set_room_tag(ALICE, room_id, "m.server_notice", {"order": 1})  # replaces
    assert room_tags(st, ALICE, room_id) == {"m.server_notice": {"order": 1},
                                             "u.work": {"order": 0.5}}
    assert room_tags(st, BOB, room_id) == {}


async def test_state_content_and_state_events(st: AdminStorage) -> None:
    room_id = await make_room(st)
    assert await st.get_state_content(f"!unknown:{SN}", "m.room.name", "") is None
    assert await st.get_state_content(room_id, "m.room.name", "") is None
    assert await st.get_state_content(room_id, "m.room.join_rules", "") == {
        "join_rule": "invite"}
    assert await st.get_state_content(room_id, "m.room.member", SERVER_USER) == {
        "membership": "join", "displayname": "Srv"}

    first = await st.send_state_event(room_id, U(SERVER_USER), "m.room.name", "",
                                      {"name": "Old", "x": {"kept": [1]}})
    second = await st.send_state_event(room_id, U(SERVER_USER), "m.room.name", "",
                                       {"name": "New"})
    assert first != second
    events = room_events(st, room_id)
    assert [(e["event_id"], e["type"], e["state_key"]) for e in events[-2:]] == [
        (first, "m.room.name", ""), (second, "m.room.name", "")]
    assert events[-1]["prev_events"] == [first]
    got = await st.get_state_content(room_id, "m.room.name", "")
    assert got == {"name": "New"}
    got["name"] = "changed by the caller"  # a copy: the stored state is not touched
    assert await st.get_state_content(room_id, "m.room.name", "") == {"name": "New"}
    await st.send_state_event(room_id, U(SERVER_USER), "m.room.topic", "k", {"topic": "t"})
    assert await st.get_state_content(room_id, "m.room.topic", "") is None
    assert await st.get_state_content(room_id, "m.room.topic", "k") == {"topic": "t"}

    # Atomic: content that is not JSON sends nothing and changes nothing.
    with pytest.raises(ValueError, match="JSON compliant"):
        await st.send_state_event(room_id, U(SERVER_USER), "m.room.name", "",
                                  {"name": float("nan")})
    assert len(room_events(st, room_id)) == len(events) + 1
    assert await st.get_state_content(room_id, "m.room.name", "") == {"name": "New"}


def notice_room_spec(target: str) -> NewRoom:
    return NewRoom(creator=U(SERVER_USER), room_version="10", create_content={},
                   initial_state=(
                       ("m.room.member", SERVER_USER, {"membership": "join"}),
                       ("m.room.member", target, {"membership": "invite"}),
                   ))


async def test_create_server_notice_room(st: AdminStorage) -> None:
    me = str(ALICE)
    assert await st.get_server_notice_room(ALICE) is None
    first = await st.create_server_notice_room(
        ALICE, notice_room_spec(me), replacing=None, tag="m.server_notice",
        joins=[MembershipChange(U(me), U(me), {"membership": "join", "displayname": "Al"})])
    assert first is not None
    assert await st.get_server_notice_room(ALICE) == first
    assert [(e["type"], e.get("state_key"), e["content"].get("membership"))
            for e in room_events(st, first)] == [
        ("m.room.create", "", None), ("m.room.member", SERVER_USER, "join"),
        ("m.room.member", me, "invite"), ("m.room.member", me, "join")]
    assert room_tags(st, ALICE, first) == {"m.server_notice": {}}
    rooms = {r.room_id: r for r in await st.get_user_rooms(ALICE)}
    assert (rooms[first].membership, rooms[first].is_server_notice_room,
            rooms[first].display_name) == ("join", True, "Al")

    # The record no longer names what the caller thought: nothing is created.
    for stale in (None, "!other:x"):
        assert await st.create_server_notice_room(
            ALICE, notice_room_spec(me), replacing=stale, tag="m.server_notice") is None
    assert [r.room_id for r in await st.get_user_rooms(ALICE)] == [first]
    assert await st.get_server_notice_room(ALICE) == first

    # Replacing the recorded room; another user's record is left alone.
    bob = await st.create_server_notice_room(
        BOB, notice_room_spec(str(BOB)), replacing=None, tag="m.server_notice")
    second = await st.create_server_notice_room(
        ALICE, notice_room_spec(me), replacing=first, tag="m.server_notice")
    assert second is not None and second not in (first, bob)
    assert await st.get_server_notice_room(ALICE) == second
    assert await st.get_server_notice_room(BOB) == bob
    rooms = {r.room_id: r for r in await st.get_user_rooms(ALICE)}
    assert (rooms[second].membership, rooms[second].is_server_notice_room) == ("invite", True)
    assert rooms[first].is_server_notice_room is False


async def test_create_server_notice_room_failing_part_way_leaves_nothing(
        st: AdminStorage) -> None:
    me = str(ALICE)
    unserialisable = {"membership": "join", "bad": float("nan")}  # fails at the last event
    with pytest.raises(ValueError):  # noqa: PT011 - whatever the backend's JSON encoder says
        await st.create_server_notice_room(
            ALICE, notice_room_spec(me), replacing=None, tag="m.server_notice",
            joins=[MembershipChange(U(me), U(me), unserialisable)])
    assert await st.get_server_notice_room(ALICE) is None
    assert await st.get_user_rooms(ALICE) == []
    # and the next attempt works
    assert await st.create_server_notice_room(
        ALICE, notice_room_spec(me), replacing=None, tag="m.server_notice") is not None


@pytest.mark.parametrize("kind", [b for b in BACKENDS if b != "memory"])
async def test_two_workers_setting_up_one_notices_room_make_one(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """Two workers (two storages on one database) create the same user's first notices
    room at the same moment: one wins, the other changes nothing."""
    storages = [await make_storage(request, kind, tmp_path) for _ in range(2)]
    first = storages[0]
    try:
        for attempt in range(5):
            user = UserID(f"racer{attempt}", SN)
            made = await asyncio.gather(*(
                s.create_server_notice_room(user, notice_room_spec(str(user)), replacing=None,
                                            tag="m.server_notice") for s in storages))
            winners = [m for m in made if m is not None]
            assert len(winners) == 1, made
            assert await first.get_server_notice_room(user) == winners[0]
            assert [r.room_id for r in await first.get_user_rooms(user)] == winners
            # and the same notice PUT reaching both workers at once is sent once
            key = NoticeTxnKey(U(f"@admin:{SN}"), "DEV", f"race{attempt}")
            sent = await asyncio.gather(*(send_once(s, winners[0], key, "once", 1)
                                          for s in storages))
            assert sent[0] == sent[1]
            assert message_bodies(first, winners[0]) == ["once"]
    finally:
        for s in storages:
            await s.close()


# -- notice transactions --------------------------------------------------------------------
def message_bodies(st: AdminStorage, room_id: str) -> list[str]:
    return [e["content"]["body"] for e in room_events(st, room_id)
            if e["type"] == "m.room.message"]


async def send_once(st: AdminStorage, room_id: str, key: NoticeTxnKey, body: str,
                    ts: int) -> str:
    return await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                               {"msgtype": "m.text", "body": body}, txn=key, txn_ts=ts)


async def test_notice_txns(st: AdminStorage) -> None:
    room_id = await make_room(st)
    key = NoticeTxnKey(U(f"@admin:{SN}"), "DEV", "txn-1")
    assert await st.get_notice_txn(key) is None
    first = await send_once(st, room_id, key, "first", 1_000)
    # Recorded with the event, in the same write: a repeat sends nothing.
    assert await st.get_notice_txn(key) == first
    assert await send_once(st, room_id, key, "second", 2_000) == first
    assert message_bodies(st, room_id) == ["first"]
    other_device = NoticeTxnKey(key.user, "DEV2", "txn-1")
    other_txn = NoticeTxnKey(key.user, "DEV", "txn-2")
    d2 = await send_once(st, room_id, other_device, "d2", 3_000)
    t2 = await send_once(st, room_id, other_txn, "t2", 5_000)
    assert len({first, d2, t2}) == 3
    # without a transaction id every send is a new event
    plain = [await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                                 {"msgtype": "m.text", "body": "plain"}) for _ in range(2)]
    assert len(set(plain)) == 2

    assert await st.purge_notice_txns(1_000) == 0  # strictly older only
    assert await st.purge_notice_txns(3_001) == 2
    assert await st.get_notice_txn(key) is None
    assert await st.get_notice_txn(other_device) is None
    assert await st.get_notice_txn(other_txn) == t2
    # once purged, the key is free again
    third = await send_once(st, room_id, key, "third", 6_000)
    assert third != first and await st.get_notice_txn(key) == third


async def test_failed_writes_leave_the_room_as_it_was(st: AdminStorage) -> None:
    room_id = await make_room(st)
    before = room_events(st, room_id)
    me = str(ALICE)
    with pytest.raises(ValueError, match="JSON compliant"):
        await st.apply_memberships(room_id, [
            MembershipChange(U(me), U(me), {"membership": "join"}),
            MembershipChange(U(me), U(me), {"membership": "leave", "reason": float("nan")})])
    with pytest.raises(ValueError, match="JSON compliant"):
        await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                            {"msgtype": "m.text", "body": float("inf")})
    assert room_events(st, room_id) == before
    assert await st.get_membership(room_id, U(me)) is None
    # and the next event follows on from the last one that was written
    await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                        {"msgtype": "m.text", "body": "next"})
    after = room_events(st, room_id)
    assert after[-1]["depth"] == before[-1]["depth"] + 1
    assert after[-1]["prev_events"] == [before[-1]["event_id"]]


async def test_concurrent_sends_of_one_txn_send_once(st: AdminStorage) -> None:
    room_id = await make_room(st)
    key = NoticeTxnKey(U(f"@admin:{SN}"), "DEV", "race")
    kept = await asyncio.gather(*(send_once(st, room_id, key, f"try {i}", i)
                                  for i in range(6)))
    assert len(set(kept)) == 1
    assert await st.get_notice_txn(key) == kept[0]
    assert len(message_bodies(st, room_id)) == 1


async def test_a_failed_send_records_no_txn(st: AdminStorage) -> None:
    room_id = await make_room(st)
    key = NoticeTxnKey(U(f"@admin:{SN}"), "DEV", "fails")
    with pytest.raises(ValueError, match="JSON compliant"):
        await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                            {"msgtype": "m.text", "body": float("nan")}, txn=key, txn_ts=1)
    assert await st.get_notice_txn(key) is None
    with pytest.raises(KeyError):
        await st.send_event("!missing:x", U(SERVER_USER), "m.room.message",
                            {"msgtype": "m.text", "body": "x"}, txn=key, txn_ts=1)
    assert await st.get_notice_txn(key) is None
    assert message_bodies(st, room_id) == []
    assert await send_once(st, room_id, key, "works", 2) == await st.get_notice_txn(key)


# -- audit ---------------------------------------------------------------------------------
async def test_audit_entries(st: AdminStorage) -> None:
    assert await st.get_audit_entries(before_id=None, limit=10) == []
    for i in range(5):
        await st.add_audit_entry(AuditEntry(
            ts=100 + i, request_id=f"r{i}", requester=f"@admin:{SN}" if i else None,
            action="resetPassword", target=f"@u{i}:{SN}", outcome="ok" if i % 2 else
            "M_NOT_FOUND", detail={"i": i, "nested": {"x": [1, "y"]}}))
    newest = await st.get_audit_entries(before_id=None, limit=2)
    assert [e.request_id for e in newest] == ["r4", "r3"]
    ids = [e.id for e in newest]
    assert all(isinstance(i, int) for i in ids) and ids[0] is not None and ids[1] is not None
    assert ids[0] > ids[1]
    older = await st.get_audit_entries(before_id=ids[1], limit=10)
    assert [e.request_id for e in older] == ["r2", "r1", "r0"]
    e0 = older[-1]
    assert (e0.ts, e0.requester, e0.action, e0.target, e0.outcome) == (
        100, None, "resetPassword", f"@u0:{SN}", "M_NOT_FOUND")
    assert dict(e0.detail) == {"i": 0, "nested": {"x": [1, "y"]}}
    assert await st.get_audit_entries(before_id=None, limit=0) == []
    assert await st.get_audit_entries(before_id=e0.id, limit=10) == []


async def test_audit_purge_by_age_keeps_ids(st: AdminStorage) -> None:
    for i in range(6):
        await st.add_audit_entry(AuditEntry(
            ts=1_000 * (i + 1), request_id=f"r{i}", requester=None, action="register",
            target=None, outcome="ok"))
    before = await st.get_audit_entries(before_id=None, limit=10)
    ids = {e.request_id: e.id for e in before}
    assert await st.purge_audit_entries(3_000) == 2  # r0 (1000) and r1 (2000)
    assert await st.purge_audit_entries(3_000) == 0
    kept = await st.get_audit_entries(before_id=None, limit=10)
    assert [e.request_id for e in kept] == ["r5", "r4", "r3", "r2"]
    assert all(e.id == ids[e.request_id] for e in kept)  # the survivors keep their ids
    page = await st.get_audit_entries(before_id=ids["r4"], limit=10)
    assert [e.request_id for e in page] == ["r3", "r2"]
    # A new entry never takes a purged id, nor one below the survivors'.
    await st.add_audit_entry(AuditEntry(ts=9_000, request_id="r6", requester=None,
                                        action="register", target=None, outcome="ok"))
    newest = (await st.get_audit_entries(before_id=None, limit=1))[0]
    assert newest.request_id == "r6" and newest.id is not None
    assert newest.id > max(i for i in ids.values() if i is not None)
    assert await st.purge_audit_entries(10_000) == 5
    assert await st.get_audit_entries(before_id=None, limit=10) == []


async def test_cancellation_is_never_lost(st: AdminStorage) -> None:
    """A task looping over storage calls stops when cancelled, whenever the cancel
    lands (a background flusher is stopped exactly so)."""
    await st.create_account(account("alice"), NewDevice("D1", "tok"))

    async def loop_forever() -> None:
        while True:
            await st.get_token_owner("tok")
            await asyncio.sleep(0)  # MemoryStorage never suspends by itself

    for i in range(150):
        task = asyncio.create_task(loop_forever())
        await asyncio.sleep(0.0003 * (i % 7))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done, "a cancelled task kept running"
        assert task.cancelled()
