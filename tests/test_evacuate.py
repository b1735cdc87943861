"""evacuateRoom and evacuateUser through HTTP (SPEC 4.1, 4.2), on the shipped storage
and on an independent host implementation of the protocol."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.types import MembershipChange

from .conftest import (
    REMOTE,
    SERVER,
    Harness,
    HarnessFactory,
    User,
    make_room,
    room_events,
)

_uid = UserID.from_stored  # user IDs written as strings in these tests

EVENT_ID = re.compile(r"\$[A-Za-z0-9_-]{43}")
OWNER = f"@owner:{REMOTE}"
METHODS = ["GET", "POST"]


def local(name: str) -> str:
    return f"@{name}:{SERVER}"


def remote(name: str) -> str:
    return f"@{name}:{REMOTE}"


async def call(h: Harness, method: str, path: str, admin: User) -> tuple[int, Any]:
    resp = await h.client.request(method, path, headers=admin.auth)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


def evacuate_room_path(room_id: str) -> str:
    return "/_dendrite/admin/evacuateRoom/" + quote(room_id, safe="")


def evacuate_user_path(user_id: str) -> str:
    return "/_dendrite/admin/evacuateUser/" + quote(user_id, safe="")


async def membership(h: Harness, room_id: str, user_id: str) -> str | None:
    return await h.storage.get_membership(room_id, UserID.from_stored(user_id))


# -- evacuateRoom ---------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
async def test_evacuate_room_parts_local_joined_members_only(rh: Harness, method: str) -> None:
    admin = await rh.user("admin", admin=True)
    room_id = await make_room(
        rh.storage, OWNER,
        joined=[(local("alice"), "Alice", "mxc://x/a"), local("bob"), remote("carol")],
        invited=[local("dave"), remote("erin")])

    status, body = await call(rh, method, evacuate_room_path(room_id), admin)

    assert status == 200
    assert body == {"affected": [local("alice"), local("bob")]}
    assert await membership(rh, room_id, local("alice")) == "leave"
    assert await membership(rh, room_id, local("bob")) == "leave"
    # Remote members, invites (local or remote) and the remote owner are untouched.
    assert await membership(rh, room_id, remote("carol")) == "join"
    assert await membership(rh, room_id, local("dave")) == "invite"
    assert await membership(rh, room_id, remote("erin")) == "invite"
    assert await membership(rh, room_id, OWNER) == "join"


async def test_evacuate_room_leave_events_are_self_leaves_keeping_profile(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    room_id = await make_room(rh.storage, OWNER,
                              joined=[(local("alice"), "Alice", "mxc://x/a"), local("bob")])

    status, _ = await call(rh, "POST", evacuate_room_path(room_id), admin)
    assert status == 200

    leaves = [e for e in room_events(rh.storage, room_id)
              if e["type"] == "m.room.member" and e["content"]["membership"] == "leave"]
    assert [(e["sender"], e["state_key"]) for e in leaves] == [
        (local("alice"), local("alice")), (local("bob"), local("bob"))]
    assert leaves[0]["content"] == {"membership": "leave", "displayname": "Alice",
                                    "avatar_url": "mxc://x/a"}
    assert leaves[1]["content"] == {"membership": "leave"}
    for e in leaves:
        assert EVENT_ID.fullmatch(e["event_id"]), e["event_id"]
        assert isinstance(e["origin_server_ts"], int)
        assert e["room_id"] == room_id


@pytest.mark.parametrize("method", METHODS)
async def test_evacuate_room_nobody_joined_is_empty_list(rh: Harness, method: str) -> None:
    admin = await rh.user("admin", admin=True)
    room_id = await make_room(rh.storage, OWNER, joined=[remote("carol")],
                              invited=[local("dave")])
    status, body = await call(rh, method, evacuate_room_path(room_id), admin)
    assert (status, body) == (200, {"affected": []})


@pytest.mark.parametrize("method", METHODS)
async def test_evacuate_unknown_room_is_404(rh: Harness, method: str) -> None:
    admin = await rh.user("admin", admin=True)
    status, body = await call(rh, method, evacuate_room_path(f"!nope:{SERVER}"), admin)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("room_id", ["nope", "#alias:test.example", "!a b:test.example",
                                     "!" + "x" * 300 + ":test.example", "!abc:bad_host!"])
async def test_evacuate_malformed_room_is_400(rh: Harness, room_id: str) -> None:
    admin = await rh.user("admin", admin=True)
    status, body = await call(rh, "POST", evacuate_room_path(room_id), admin)
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_evacuate_room_accepts_unencoded_path(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    room_id = await make_room(rh.storage, OWNER, joined=[local("alice")])
    status, body = await call(rh, "GET", "/_dendrite/admin/evacuateRoom/" + room_id, admin)
    assert (status, body) == (200, {"affected": [local("alice")]})


async def test_evacuate_room_rerun_after_interruption_skips_parted(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    members = [local(f"u{i:03d}") for i in range(30)]
    room_id = await make_room(rh.storage, OWNER, joined=members)
    # An earlier run was interrupted after parting some of them.
    done = members[:7] + members[20:23]
    await rh.storage.apply_memberships(
        room_id, [MembershipChange(_uid(u), _uid(u), {"membership": "leave"}) for u in done])

    status, body = await call(rh, "POST", evacuate_room_path(room_id), admin)
    assert status == 200
    assert body["affected"] == [u for u in members if u not in done]

    status, body = await call(rh, "POST", evacuate_room_path(room_id), admin)
    assert (status, body) == (200, {"affected": []})
    leaves = [e for e in room_events(rh.storage, room_id)
              if e["type"] == "m.room.member" and e["content"]["membership"] == "leave"]
    assert sorted(e["state_key"] for e in leaves) == sorted(members)  # one leave each


async def test_evacuate_room_needs_admin_before_lookup(rh: Harness) -> None:
    user = await rh.user("mallory")
    for path in (evacuate_room_path(f"!nope:{SERVER}"), evacuate_room_path("garbage")):
        status, body = await call(rh, "POST", path, user)
        assert status == 403
        assert body == {"errcode": "M_FORBIDDEN",
                        "error": "This API can only be used by admin users."}
    resp = await rh.client.get(evacuate_room_path("garbage"))
    assert resp.status == 401
    assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_evacuate_large_room_is_fast(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    members = [local(f"user{i:05d}") for i in range(10_000)]
    room_id = await make_room(rh.storage, OWNER,
                              joined=[*members, *(remote(f"r{i}") for i in range(50))])

    started = time.monotonic()
    status, body = await call(rh, "POST", evacuate_room_path(room_id), admin)
    elapsed = time.monotonic() - started

    assert status == 200
    assert body["affected"] == members
    assert await rh.storage.get_local_joined_members(
        room_id, SERVER, after=None, limit=10) == []
    assert await membership(rh, room_id, remote("r7")) == "join"
    assert elapsed < 20, f"evacuating 10,000 members took {elapsed:.1f}s"


async def test_evacuate_disabled_is_not_mounted(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(endpoints={"evacuate": False})
    admin = await h.user("admin", admin=True)
    for path in (evacuate_room_path(f"!r:{SERVER}"), evacuate_user_path(local("admin"))):
        for method in METHODS:
            status, body = await call(h, method, path, admin)
            assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


# -- evacuateUser ---------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
async def test_evacuate_user_leaves_rooms_and_rejects_invites(rh: Harness, method: str) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    uid = str(alice.user_id)
    joined_a = await make_room(rh.storage, OWNER, joined=[(uid, "Alice A", "mxc://x/a")])
    joined_b = await make_room(rh.storage, OWNER, joined=[uid, local("bob")])
    invited = await make_room(rh.storage, OWNER, invited=[uid])
    left = await make_room(rh.storage, OWNER, joined=[uid])
    await rh.storage.apply_memberships(left, [MembershipChange(_uid(uid), _uid(uid),
                                                               {"membership": "leave"})])
    other = await make_room(rh.storage, OWNER, joined=[local("bob")])

    status, body = await call(rh, method, evacuate_user_path(uid), admin)

    assert status == 200
    assert sorted(body["affected"]) == sorted([joined_a, joined_b, invited])
    for room_id in (joined_a, joined_b, invited, left):
        assert await membership(rh, room_id, uid) == "leave"
    assert await membership(rh, joined_b, local("bob")) == "join"
    assert await membership(rh, other, local("bob")) == "join"
    leave = [e for e in room_events(rh.storage, joined_a) if e.get("state_key") == uid][-1]
    assert leave["sender"] == uid
    assert leave["content"] == {"membership": "leave", "displayname": "Alice A",
                                "avatar_url": "mxc://x/a"}
    assert EVENT_ID.fullmatch(leave["event_id"])

    status, body = await call(rh, method, evacuate_user_path(uid), admin)
    assert (status, body) == (200, {"affected": []})


async def test_evacuate_user_without_rooms_is_empty_list(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    await rh.user("alice")
    status, body = await call(rh, "GET", evacuate_user_path(local("alice")), admin)
    assert (status, body) == (200, {"affected": []})


async def test_evacuate_user_keeps_pending_server_notice_invite(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    uid = str(alice.user_id)
    resp = await rh.client.post("/_synapse/admin/v1/send_server_notice", headers=admin.auth,
                                json={"user_id": uid,
                                      "content": {"msgtype": "m.text", "body": "hi"}})
    assert resp.status == 200
    notice_room = await rh.storage.get_server_notice_room(alice.user_id)
    assert notice_room is not None
    joined = await make_room(rh.storage, OWNER, joined=[uid])

    status, body = await call(rh, "POST", evacuate_user_path(uid), admin)

    assert (status, body) == (200, {"affected": [joined]})
    assert await membership(rh, notice_room, uid) == "invite"
    assert await membership(rh, joined, uid) == "leave"


async def test_evacuate_user_leaves_joined_server_notice_room(
        room_harness_factory: HarnessFactory) -> None:
    h = await room_harness_factory(server_notices={"auto_join": True})
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    resp = await h.client.post("/_synapse/admin/v1/send_server_notice", headers=admin.auth,
                               json={"user_id": str(alice.user_id),
                                     "content": {"msgtype": "m.text", "body": "hi"}})
    assert resp.status == 200
    notice_room = await h.storage.get_server_notice_room(alice.user_id)
    assert notice_room is not None
    assert await membership(h, notice_room, str(alice.user_id)) == "join"

    status, body = await call(h, "POST", evacuate_user_path(str(alice.user_id)), admin)
    assert (status, body) == (200, {"affected": [notice_room]})


@pytest.mark.parametrize("method", METHODS)
async def test_evacuate_unknown_local_user_is_404(rh: Harness, method: str) -> None:
    admin = await rh.user("admin", admin=True)
    status, body = await call(rh, method, evacuate_user_path(local("ghost")), admin)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("user_id", [remote("alice"), "alice", "@Al:ice:test.example",
                                     "@alice", "@al ice:test.example",
                                     "@" + "a" * 260 + ":test.example"])
async def test_evacuate_remote_or_malformed_user_is_400(rh: Harness, user_id: str) -> None:
    admin = await rh.user("admin", admin=True)
    status, body = await call(rh, "POST", evacuate_user_path(user_id), admin)
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"
    assert set(body) == {"errcode", "error"}


async def test_evacuate_user_needs_admin_before_lookup(rh: Harness) -> None:
    user = await rh.user("mallory")
    for path in (evacuate_user_path(local("ghost")), evacuate_user_path("garbage")):
        status, body = await call(rh, "GET", path, user)
        assert status == 403
        assert body["errcode"] == "M_FORBIDDEN"
