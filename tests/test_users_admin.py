"""Synapse's user admin API (SPEC 9) through HTTP and below it, on memory, SQLite,
PostgreSQL and the independent test host (tests/host_storage.py)."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services import users as service
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import (
    USER_ORDERS,
    AccountType,
    Activity,
    NewAccount,
    NewDevice,
    Profile,
    UserCursor,
    UserQuery,
    UserRecord,
    user_sort_key,
)

from .conftest import REMOTE, SERVER, Harness, User, make_room


@pytest.fixture
async def h(room_harness_factory: Any) -> Harness:
    """Every HTTP test here runs on memory, SQLite, PostgreSQL and the test host."""
    harness: Harness = await room_harness_factory()
    return harness


V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
V3 = "/_synapse/admin/v3"


def uid(name: str, server: str = SERVER) -> UserID:
    return UserID(name, server)


def path_of(user: UserID | str) -> str:
    return quote(str(user), safe="")


async def call(h: Harness, method: str, path: str, admin: User | None,
               body: Any = None, **params: Any) -> tuple[int, Any]:
    resp = await h.client.request(method, path, headers=admin.auth if admin else {},
                                  json=body, params=params or None)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def seed(st: AdminStorage) -> None:
    """A population touching every filter and order: admins, guests, deactivated,
    locked, typed, named and unnamed accounts, one on another server."""
    specs: list[tuple[str, AccountType, str | None, str | None, int]] = [
        ("zed", AccountType.ADMIN, "Zed Admin", "mxc://x/z", 5_000),
        ("anna", AccountType.USER, "anna banana", None, 2_000),
        ("Bert", AccountType.USER, None, "mxc://x/b", 9_000),  # historical localpart
        ("carl", AccountType.GUEST, "Guest Carl", None, 2_000),
        ("dora", AccountType.USER, "Dora", None, 7_000),
        ("emil", AccountType.USER, "ÉMIL", None, 1_000),
        ("fritz", AccountType.ADMIN, "fritz", None, 3_000),
        ("gus_1", AccountType.USER, "100%", None, 4_000),
    ]
    for lp, kind, name, avatar, ts in specs:
        await st.create_account(NewAccount(uid(lp), None, kind, ts, display_name=name,
                                           avatar_url=avatar,
                                           user_type="bot" if lp == "dora" else None),
                                None)
    await st.create_account(NewAccount(uid("remote", REMOTE), None, AccountType.USER, 1),
                            None)
    await st.set_deactivated(uid("emil"), True)
    await st.update_account_state(uid("fritz"), locked=True)
    await st.set_user_type(uid("gus_1"), "support")
    # Two devices of anna seen at different times, one of zed.
    add: Any = st
    add.add_device(uid("anna"), NewDevice("A1", "tok-a1"))
    add.add_device(uid("anna"), NewDevice("A2", "tok-a2"))
    add.add_device(uid("zed"), NewDevice("Z1", "tok-z1"))
    await st.record_activity([
        Activity(uid("anna"), "A1", "10.0.0.1", "ua", 50_000),
        Activity(uid("anna"), "A2", "10.0.0.2", "ua", 60_000),
        Activity(uid("zed"), "Z1", "10.0.0.3", "ua", 55_000),
    ])


async def all_pages(st: AdminStorage, query: UserQuery, limit: int) -> list[str]:
    """Every page through the storage's keyset cursor."""
    out: list[str] = []
    after: UserCursor | None = None
    while True:
        page = await st.list_users(SERVER, query, after=after, offset=0, limit=limit)
        out += [u.user.localpart for u in page]
        if len(page) < limit:
            return out
        last = page[-1]
        after = UserCursor(user_sort_key(last, query.order_by), last.user.localpart)


def expected(records: list[UserRecord], query: UserQuery) -> list[str]:
    rows = sorted(records, key=lambda r: (user_sort_key(r, query.order_by),
                                          r.user.localpart),
                  reverse=query.direction == "b")
    return [r.user.localpart for r in rows]


# -- storage: filters, orders, keyset pages ----------------------------------------------

async def test_filters(room_storage: AdminStorage) -> None:
    st = room_storage
    await seed(st)

    async def names(**kw: Any) -> list[str]:
        q = UserQuery(**kw)
        got = [u.user.localpart for u in await st.list_users(SERVER, q, after=None,
                                                              offset=0, limit=100)]
        assert await st.count_users(SERVER, q) == len(got)
        return got

    # Synapse's defaults: deactivated and locked left out, guests in.
    assert await names() == ["Bert", "anna", "carl", "dora", "gus_1", "zed"]
    assert await names(deactivated=None, locked=True) == [
        "Bert", "anna", "carl", "dora", "emil", "fritz", "gus_1", "zed"]
    assert await names(deactivated=True) == ["emil"]
    assert await names(guests=False) == ["Bert", "anna", "dora", "gus_1", "zed"]
    assert await names(admins=True, locked=True) == ["fritz", "zed"]
    assert await names(admins=False) == ["Bert", "anna", "carl", "dora", "gus_1"]
    # name: localpart or display name, ASCII case-folded; wildcards are literal.
    assert await names(name="AN") == ["anna"]
    assert await names(name="admin") == ["zed"]
    assert await names(name="bert") == ["Bert"]
    assert await names(name="%") == ["gus_1"]
    assert await names(name="_") == ["gus_1"]
    assert await names(name="émil", deactivated=None) == []  # only ASCII is folded
    assert await names(name="ÉMIL", deactivated=None) == ["emil"]
    # user_id: substring of the whole ID; ignored when name is given.
    assert await names(user_id=f"NA:{SERVER}") == ["anna"]
    assert await names(user_id="a:", name="dora") == ["dora"]
    assert await names(not_user_types=("bot",)) == ["Bert", "anna", "carl", "gus_1", "zed"]
    assert await names(not_user_types=("",)) == ["dora", "gus_1"]
    assert await names(not_user_types=("", "bot", "support")) == []


@pytest.mark.parametrize("direction", ["f", "b"])
async def test_every_order_pages_by_cursor_and_offset(room_storage: AdminStorage,
                                                      direction: str) -> None:
    st = room_storage
    await seed(st)
    everyone = UserQuery(deactivated=None, locked=True)
    records = await st.list_users(SERVER, everyone, after=None, offset=0, limit=100)
    assert len(records) == 8
    for order_by in USER_ORDERS:
        q = UserQuery(deactivated=None, locked=True, order_by=order_by, direction=direction)
        want = expected(records, q)
        for limit in (1, 3, 8):
            assert await all_pages(st, q, limit) == want, (order_by, limit)
        for offset in (0, 2, 7, 8):
            page = await st.list_users(SERVER, q, after=None, offset=offset, limit=3)
            assert [u.user.localpart for u in page] == want[offset:offset + 3]
        # A cursor and an offset together: the offset counts from the cursor.
        third = next(r for r in records if r.user.localpart == want[2])
        cursor = UserCursor(user_sort_key(third, order_by), third.user.localpart)
        page = await st.list_users(SERVER, q, after=cursor, offset=2, limit=3)
        assert [u.user.localpart for u in page] == want[5:8], order_by


async def test_user_record(room_storage: AdminStorage) -> None:
    st = room_storage
    await seed(st)
    anna = await st.get_user(uid("anna"))
    assert anna is not None
    assert (anna.display_name, anna.created_ts, anna.last_seen_ts) == ("anna banana", 2_000,
                                                                       60_000)
    fritz = await st.get_user(uid("fritz"))
    assert fritz is not None and fritz.locked and not fritz.erased
    assert fritz.last_seen_ts is None
    assert (await st.get_user(uid("gus_1"))).user_type == "support"  # type: ignore[union-attr]
    assert await st.get_user(uid("nobody")) is None
    await st.update_account_state(uid("fritz"), erased=True)
    await st.update_account_state(uid("fritz"), locked=False)
    fritz = await st.get_user(uid("fritz"))
    assert fritz is not None and fritz.erased and not fritz.locked
    # Reactivation clears erased (Synapse's activate_account).
    await st.set_deactivated(uid("fritz"), True)
    await st.set_deactivated(uid("fritz"), False)
    fritz = await st.get_user(uid("fritz"))
    assert fritz is not None and not fritz.erased and not fritz.is_deactivated


async def test_writes(room_storage: AdminStorage) -> None:
    st = room_storage
    await seed(st)
    await st.set_admin(uid("anna"), True)
    await st.set_admin(uid("carl"), False)  # a guest stays a guest
    await st.set_admin(uid("zed"), False)
    assert (await st.get_account(uid("anna"))).account_type == AccountType.ADMIN  # type: ignore[union-attr]
    assert (await st.get_account(uid("carl"))).account_type == AccountType.GUEST  # type: ignore[union-attr]
    assert (await st.get_account(uid("zed"))).account_type == AccountType.USER  # type: ignore[union-attr]
    await st.delete_devices(uid("anna"), ["A1", "nope"])
    assert [d.device_id for d in await st.get_devices(uid("anna"))] == ["A2"]
    assert await st.get_token_owner("tok-a1") is None
    await st.revoke_credentials(uid("anna"))
    await st.revoke_credentials(uid("anna"))  # idempotent
    assert await st.get_devices(uid("anna")) == []
    assert await st.get_token_owner("tok-a2") is None
    await st.set_user_type(uid("dora"), None)
    assert (await st.get_user(uid("dora"))).user_type is None  # type: ignore[union-attr]


# -- HTTP: list ---------------------------------------------------------------------------

async def test_list_v2_v3_shapes_and_next_token(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    await seed(rh.storage)
    status, body = await call(rh, "GET", f"{V2}/users", admin, limit="3")
    assert status == 200
    assert body["total"] == 7  # the six of the seed + admin
    assert isinstance(body["next_token"], str)
    first = body["users"][0]
    assert first == {"name": f"@Bert:{SERVER}", "user_type": None, "is_guest": False,
                     "admin": False, "deactivated": False, "shadow_banned": False,
                     "displayname": None, "avatar_url": "mxc://x/b",
                     "creation_ts": 9_000, "approved": True, "erased": False,
                     "last_seen_ts": None, "locked": False}
    names = [u["name"] for u in body["users"]]
    token = body["next_token"]
    while token is not None:
        status, body = await call(rh, "GET", f"{V2}/users", admin, limit="3", **{"from": token})
        assert status == 200, body
        names += [u["name"] for u in body["users"]]
        token = body.get("next_token")
    assert len(names) == len(set(names)) == 7
    # from=offset (what the web UIs send) gives the same rows.
    status, body = await call(rh, "GET", f"{V2}/users", admin, limit="3", **{"from": "3"})
    assert [u["name"] for u in body["users"]] == names[3:6]
    status, body = await call(rh, "GET", f"{V2}/users", admin, limit="3", **{"from": "6"})
    assert "next_token" not in body and len(body["users"]) == 1
    # v2: deactivated=true includes them; v3: true only them, false none, absent both.
    _, v2 = await call(rh, "GET", f"{V2}/users", admin, deactivated="true")
    _, v3 = await call(rh, "GET", f"{V3}/users", admin, deactivated="true")
    _, v3_all = await call(rh, "GET", f"{V3}/users", admin)
    assert v2["total"] == 8 and v3["total"] == 1 and v3_all["total"] == 8
    assert v3["users"][0]["name"] == f"@emil:{SERVER}"


@pytest.mark.parametrize("params", [
    {"from": "-1"}, {"from": "k1.bad!"}, {"from": "abc"}, {"limit": "-5"},
    {"limit": "x"}, {"limit": "100001"}, {"order_by": "password_hash"}, {"dir": "up"},
    {"guests": "yes"}, {"deactivated": "1"}, {"admins": "True"},
])
async def test_list_bad_parameters(h: Harness, params: dict[str, str]) -> None:
    admin = await h.user("admin", admin=True)
    status, body = await call(h, "GET", f"{V2}/users", admin, **params)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), body


async def test_a_token_of_another_order_is_refused(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    for i in range(3):
        await h.user(f"u{i}")
    _, body = await call(h, "GET", f"{V2}/users", admin, limit="1", order_by="creation_ts")
    status, err = await call(h, "GET", f"{V2}/users", admin, limit="1",
                             **{"from": body["next_token"]})
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")


# -- HTTP: one user -------------------------------------------------------------------------

async def test_get_user(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    await seed(rh.storage)
    status, body = await call(rh, "GET", f"{V2}/users/{path_of(uid('anna'))}", admin)
    assert status == 200
    assert body["creation_ts"] == 2  # seconds here, ms in the list
    assert body["displayname"] == "anna banana" and body["last_seen_ts"] == 60_000
    assert body["threepids"] == [] and body["external_ids"] == []
    assert {"admin", "deactivated", "locked", "erased", "suspended", "user_type",
            "is_guest", "appservice_id", "shadow_banned"} <= set(body)
    status, body = await call(rh, "GET", f"{V2}/users/{path_of(uid('nobody'))}", admin)
    assert (status, body["errcode"], body["error"]) == (
        404, "M_NOT_FOUND", f"Unknown user @nobody:{SERVER}")
    status, body = await call(rh, "GET", f"{V2}/users/{path_of(uid('x', REMOTE))}", admin)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_put_creates_with_201_then_modifies_with_200(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    target = path_of(uid("newbie"))
    status, body = await call(rh, "PUT", f"{V2}/users/{target}", admin,
                              {"password": "a long password", "admin": True,
                               "user_type": "bot"})
    assert status == 201, body
    assert body["name"] == str(uid("newbie")) and body["admin"] is True
    assert body["displayname"] == "newbie" and body["user_type"] == "bot"
    assert body["creation_ts"] < 10**11  # seconds
    hashed = await rh.storage.get_account(uid("newbie"))
    assert hashed is not None
    status, body = await call(rh, "PUT", f"{V2}/users/{target}", admin,
                              {"displayname": "Newbie", "avatar_url": "mxc://x/n",
                               "admin": False, "user_type": None, "locked": True})
    assert status == 200, body
    assert (body["displayname"], body["avatar_url"], body["admin"], body["user_type"],
            body["locked"]) == ("Newbie", "mxc://x/n", False, None, True)
    status, body = await call(rh, "PUT", f"{V2}/users/{target}", admin, {"locked": False})
    assert body["locked"] is False and body["displayname"] == "Newbie"


@pytest.mark.parametrize(("body", "errcode"), [
    ({"admin": "yes"}, "M_BAD_JSON"),
    ({"deactivated": 1}, "M_BAD_JSON"),
    ({"locked": None}, "M_BAD_JSON"),
    ({"logout_devices": "no"}, "M_BAD_JSON"),
    ({"displayname": 5}, "M_BAD_JSON"),
    ({"password": 12345678}, "M_BAD_JSON"),
    ({"threepids": [{"medium": "email"}]}, "M_BAD_JSON"),
    ({"deactivated": True, "locked": True}, "M_INVALID_PARAM"),
    ({"user_type": "wizard"}, "M_INVALID_PARAM"),
    ({"password": "short"}, "M_WEAK_PASSWORD"),
])
async def test_put_refusals_change_nothing(h: Harness, body: dict[str, Any],
                                           errcode: str) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    before = await h.storage.get_user(alice.user_id)
    status, err = await call(h, "PUT", f"{V2}/users/{path_of(alice.user_id)}", admin,
                             {"displayname": "Changed", **body})
    assert (status, err["errcode"]) == (400, errcode), err
    assert await h.storage.get_user(alice.user_id) == before
    # Creation refused just the same.
    status, err = await call(h, "PUT", f"{V2}/users/{path_of(uid('fresh'))}", admin, body)
    assert (status, err["errcode"]) == (400, errcode), err
    assert await h.storage.get_account(uid("fresh")) is None


async def test_put_self_demotion_and_remote(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    me = path_of(admin.user_id)
    status, err = await call(h, "PUT", f"{V2}/users/{me}", admin, {"admin": False})
    assert (status, err["error"]) == (400, "You may not demote yourself.")
    status, body = await call(h, "PUT", f"{V2}/users/{me}", admin, {"admin": True})
    assert status == 200 and body["admin"] is True
    status, err = await call(h, "PUT", f"{V2}/users/{path_of(uid('a', REMOTE))}", admin,
                             {"displayname": "x"})
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    assert await h.storage.get_account(uid("a", REMOTE)) is None


async def test_put_password_logs_out_unless_told_not_to(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    target = f"{V2}/users/{path_of(alice.user_id)}"
    status, _ = await call(h, "PUT", target, admin, {"password": "another password",
                                                     "logout_devices": False})
    assert status == 200
    assert await h.storage.get_token_owner(alice.token) is not None
    status, _ = await call(h, "PUT", target, admin, {"password": "a third password"})
    assert status == 200
    assert await h.storage.get_token_owner(alice.token) is None
    # The admin changing their own password keeps the session they are using.
    status, _ = await call(h, "PUT", f"{V2}/users/{path_of(admin.user_id)}", admin,
                           {"password": "admin's new password"})
    assert status == 200
    assert await h.storage.get_token_owner(admin.token) is not None


async def test_put_deactivates_and_reactivates(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    room = await make_room(rh.storage, f"@owner:{REMOTE}", joined=[str(alice.user_id)])
    target = f"{V2}/users/{path_of(alice.user_id)}"
    status, body = await call(rh, "PUT", target, admin, {"deactivated": True})
    assert status == 200 and body["deactivated"] is True and body["erased"] is False
    assert await rh.storage.get_membership(room, alice.user_id) == "leave"
    assert body["displayname"] == "alice"  # not erased
    status, body = await call(rh, "PUT", target, admin, {"deactivated": False,
                                                         "password": "welcome back!"})
    assert status == 200 and body["deactivated"] is False


# -- deactivation ---------------------------------------------------------------------------

async def test_deactivate_with_erase(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await rh.storage.set_profile(alice.user_id, Profile("Alice", "mxc://x/a"))
    add: Any = rh.storage
    add.add_device(alice.user_id, NewDevice("SECOND", "second-token"))
    joined = await make_room(rh.storage, f"@owner:{REMOTE}", joined=[str(alice.user_id)])
    invited = await make_room(rh.storage, f"@owner:{REMOTE}", invited=[str(alice.user_id)])
    path = f"{V1}/deactivate/{path_of(alice.user_id)}"

    status, body = await call(rh, "POST", path, admin, {"erase": True})
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    assert await rh.storage.get_membership(joined, alice.user_id) == "leave"
    assert await rh.storage.get_membership(invited, alice.user_id) == "leave"
    assert await rh.storage.get_devices(alice.user_id) == []
    for token in (alice.token, "second-token"):
        assert await rh.storage.get_token_owner(token) is None
    record = await rh.storage.get_user(alice.user_id)
    assert record is not None and record.is_deactivated and record.erased
    assert (record.display_name, record.avatar_url) == (None, None)
    # The old session is dead everywhere (401), and a second run is harmless.
    status, err = await call(rh, "GET", f"{V2}/users", alice)
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await call(rh, "POST", path, admin)  # empty body: {}
    assert status == 200
    entries = await rh.storage.get_audit_entries(before_id=None, limit=10)
    assert [(e.action, e.target, e.outcome) for e in entries[:2]] == [
        ("deactivate", str(alice.user_id), "ok")] * 2


async def test_deactivate_refusals(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    path = f"{V1}/deactivate/{path_of(alice.user_id)}"
    status, err = await call(h, "POST", path, admin, {"erase": "yes"})
    assert (status, err["errcode"]) == (400, "M_BAD_JSON")
    status, err = await call(h, "POST", f"{V1}/deactivate/{path_of(uid('ghost'))}", admin, {})
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    status, err = await call(h, "POST", f"{V1}/deactivate/{path_of(uid('x', REMOTE))}",
                             admin, {})
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    assert await h.storage.get_token_owner(alice.token) is not None


class Flaky:
    """A storage whose room writes fail after ``allowed`` successful ones."""

    def __init__(self, inner: AdminStorage, allowed: int) -> None:
        self._inner = inner
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def apply_memberships(self, room_id: str, changes: Any) -> list[str]:
        if self.allowed <= 0:
            raise ConnectionError("database went away")
        self.allowed -= 1
        result: list[str] = await self._inner.apply_memberships(room_id, changes)
        return result


async def test_an_interrupted_deactivation_is_finished_by_a_rerun(
        room_storage: AdminStorage, room_harness_factory: Any) -> None:
    rh: Harness = await room_harness_factory()
    alice = await rh.user("alice")
    await rh.storage.set_profile(alice.user_id, Profile("Alice", None))
    rooms = [await make_room(room_storage, f"@owner:{REMOTE}", joined=[str(alice.user_id)])
             for _ in range(3)]
    flaky = Flaky(room_storage, allowed=1)
    rh.ctx.storage = flaky
    with pytest.raises(ConnectionError):
        await service.deactivate_account(rh.ctx, alice.user_id, erase=True)
    # Dead at once, even though the run stopped half-way.
    assert await room_storage.get_token_owner(alice.token) is None
    record = await room_storage.get_user(alice.user_id)
    assert record is not None and record.is_deactivated and not record.erased
    memberships = [await room_storage.get_membership(r, alice.user_id) for r in rooms]
    assert memberships.count("leave") == 1
    flaky.allowed = 100
    await service.deactivate_account(rh.ctx, alice.user_id, erase=True)
    assert [await room_storage.get_membership(r, alice.user_id) for r in rooms] == [
        "leave"] * 3
    record = await room_storage.get_user(alice.user_id)
    assert record is not None and record.erased and record.display_name is None


# -- the smaller endpoints ------------------------------------------------------------------

async def test_reset_password_v1(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    path = f"{V1}/reset_password/{path_of(alice.user_id)}"
    status, body = await call(h, "POST", path, admin, {"new_password": "brand new pass",
                                                       "logout_devices": False})
    assert (status, body) == (200, {})
    assert await h.storage.get_token_owner(alice.token) is not None
    hasher = h.ctx.hasher
    stored: Any = h.storage
    assert hasher.verify_sync("brand new pass", stored.password_hash(alice.user_id))
    status, body = await call(h, "POST", path, admin, {"new_password": "brand new pass 2"})
    assert status == 200 and await h.storage.get_token_owner(alice.token) is None
    status, err = await call(h, "POST", path, admin, {})
    assert (status, err["errcode"]) == (400, "M_MISSING_PARAM")
    status, err = await call(h, "POST", f"{V1}/reset_password/{path_of(uid('ghost'))}", admin,
                             {"new_password": "brand new pass"})
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")


async def test_admin_flag(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    path = f"{V1}/users/{path_of(alice.user_id)}/admin"
    assert await call(h, "GET", path, admin) == (200, {"admin": False})
    assert await call(h, "PUT", path, admin, {"admin": True}) == (200, {})
    assert await call(h, "GET", path, admin) == (200, {"admin": True})
    # alice is an admin now and may use the API.
    status, _ = await call(h, "GET", f"{V2}/users", alice)
    assert status == 200
    mine = f"{V1}/users/{path_of(admin.user_id)}/admin"
    status, err = await call(h, "PUT", mine, admin, {"admin": False})
    assert (status, err["error"]) == (400, "You may not demote yourself.")
    status, err = await call(h, "PUT", path, admin, {})
    assert (status, err["errcode"]) == (400, "M_MISSING_PARAM")
    status, err = await call(h, "GET", f"{V1}/users/{path_of(uid('x', REMOTE))}/admin", admin)
    assert (status, err["error"]) == (400, "Only local users can be admins of this homeserver")


async def test_devices(h: Harness) -> None:
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    add: Any = h.storage
    for i in range(3):
        add.add_device(alice.user_id, NewDevice(f"D{i}", f"token-{i}", f"phone {i}"))
    await h.storage.record_activity([Activity(alice.user_id, "D1", "10.1.1.1", "agent", 70_000)])
    path = f"{V2}/users/{path_of(alice.user_id)}/devices"
    status, body = await call(h, "GET", path, admin)
    assert status == 200 and body["total"] == 4
    by_id = {d["device_id"]: d for d in body["devices"]}
    assert by_id["D1"] == {"device_id": "D1", "display_name": "phone 1",
                           "last_seen_ip": "10.1.1.1", "last_seen_ts": 70_000,
                           "last_seen_user_agent": "agent", "user_id": str(alice.user_id)}
    assert await call(h, "DELETE", f"{path}/D0", admin) == (200, {})
    assert await call(h, "POST", f"{V2}/users/{path_of(alice.user_id)}/delete_devices",
                      admin, {"devices": ["D1", "unknown"]}) == (200, {})
    _, body = await call(h, "GET", path, admin)
    assert sorted(d["device_id"] for d in body["devices"]) == sorted(
        ["D2", alice.device_id])
    assert await h.storage.get_token_owner("token-0") is None
    status, err = await call(h, "GET", f"{V2}/users/{path_of(uid('ghost'))}/devices", admin)
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")


async def test_joined_rooms(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    joined = await make_room(rh.storage, f"@owner:{REMOTE}", joined=[str(alice.user_id)])
    await make_room(rh.storage, f"@owner:{REMOTE}", invited=[str(alice.user_id)])
    status, body = await call(rh, "GET", f"{V1}/users/{path_of(alice.user_id)}/joined_rooms",
                              admin)
    assert (status, body) == (200, {"joined_rooms": [joined], "total": 1})


async def test_server_version_needs_no_token(h: Harness) -> None:
    status, body = await call(h, "GET", f"{V1}/server_version", None)
    assert status == 200 and body["server_version"].startswith("dendrite_admin_ext ")


async def test_switched_off(harness_factory: Any) -> None:
    h: Harness = await harness_factory(endpoints={"users": False})
    admin = await h.user("admin", admin=True)
    for method, path in itertools.product(["GET"], [f"{V2}/users", f"{V1}/server_version"]):
        status, err = await call(h, method, path, admin)
        assert (status, err["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_migration_v4_gives_every_account_a_profile_row(tmp_path: Any) -> None:
    """The display name order is served from the profiles (an inner join): an account
    written without a profile row before schema v4 gets one, and is listed."""
    from dendrite_admin_ext.storage.sql.ops import exec_
    from dendrite_admin_ext.storage.sqlite import SqliteStorage

    path = tmp_path / "old.db"
    st = SqliteStorage(path)
    await st.open()
    await st.create_account(NewAccount(uid("old"), None, AccountType.USER, 1), None)
    await st._run(exec_("DELETE FROM userapi_profiles", ()), write=True)
    await st._run(exec_("DELETE FROM dendrite_admin_schema_version WHERE version >= 4", ()),
                  write=True)
    await st.close()
    st = SqliteStorage(path)
    await st.open()
    try:
        page = await st.list_users(SERVER, UserQuery(order_by="displayname"), after=None,
                                   offset=0, limit=10)
        assert [u.user.localpart for u in page] == ["old"]
    finally:
        await st.close()


# -- PUT creates only what registration would (found by an operator's first hour) ----------
@pytest.mark.parametrize(("localpart", "errcode"), [
    ("OPS", "M_INVALID_USERNAME"),  # a look-alike of the admin @ops
    ("alice7f", "M_USER_IN_USE"),  # a look-alike of the historical @Alice7f
    ("Upper", "M_INVALID_USERNAME"), ("we!rd$", "M_INVALID_USERNAME"),
    ("_hidden", "M_INVALID_USERNAME"), ("12345", "M_INVALID_USERNAME"),
])
async def test_put_never_creates_a_name_registration_would_refuse(
        h: Harness, localpart: str, errcode: str) -> None:
    admin = await h.user("ops", admin=True)
    await h.user("Alice7f")  # made by an older server, before the grammar was strict
    user_id = f"@{localpart}:{SERVER}"
    resp = await h.client.put(f"/_synapse/admin/v2/users/{quote(user_id)}",
                              headers=admin.auth, json={"password": "a long password"})
    assert resp.status == 400
    assert (await resp.json())["errcode"] == errcode
    assert await h.storage.get_account(UserID.from_stored(user_id)) is None
