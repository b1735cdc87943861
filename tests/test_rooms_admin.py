"""Room administration through HTTP (SPEC 11): Synapse's room list, details, members,
state and block; Dendrite's emptyRooms and purgeRoom; on every shipped backend and the
independent host implementation."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dendrite_admin_ext.identifiers import UserID

from .conftest import REMOTE, SERVER, Harness, User, make_room
from .sql_backends import unwrapped

ROOMS = "/_synapse/admin/v1/rooms"


def local(name: str) -> str:
    return f"@{name}:{SERVER}"


def q(room_id: str) -> str:
    return quote(room_id, safe="")


async def get(h: Harness, path: str, admin: User, **params: str) -> tuple[int, Any]:
    resp = await h.client.get(path, headers=admin.auth, params=params)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def named_room(h: Harness, name: str | None, creator: str, **kwargs: Any) -> str:
    room_id = await make_room(h.storage, creator, **kwargs)
    if name is not None:
        await h.storage.send_state_event(room_id, UserID.from_stored(creator), "m.room.name",
                                         "", {"name": name})
    return room_id


async def three_rooms(h: Harness) -> dict[str, str]:
    return {
        "beta": await named_room(h, "Beta", local("u1"),
                                 joined=[local("a"), local("b"), f"@r:{REMOTE}"]),
        "alpha": await named_room(h, "alpha team", local("u2"), joined=[local("c")]),
        "none": await named_room(h, None, local("u3")),
    }


async def test_list_orders_filters_and_pages(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    rooms = await three_rooms(rh)
    status, body = await get(rh, ROOMS, admin)
    assert status == 200
    assert body["total_rooms"] == 3 and body["offset"] == 0
    assert "next_batch" not in body and "prev_batch" not in body
    # Byte order: "Beta" < "alpha team"; unnamed rooms last.
    assert [r["room_id"] for r in body["rooms"]] == [rooms["beta"], rooms["alpha"],
                                                       rooms["none"]]
    beta = body["rooms"][0]
    assert beta["name"] == "Beta" and beta["joined_members"] == 4
    assert beta["joined_local_members"] == 3 and beta["creator"] == local("u1")
    assert beta["version"] == "10" and beta["public"] is True
    assert beta["join_rules"] == "public" and beta["federatable"] is True
    # 4 members; create, power levels, join rules, name.
    assert beta["state_events"] == 4 + 4
    # dir=b is the exact reverse.
    _, back = await get(rh, ROOMS, admin, dir="b")
    assert [r["room_id"] for r in back["rooms"]] == [rooms["none"], rooms["alpha"],
                                                       rooms["beta"]]
    # Counts: largest first by default, as Synapse.
    _, size = await get(rh, ROOMS, admin, order_by="size")
    assert [r["joined_members"] for r in size["rooms"]] == [4, 2, 1]
    _, size_b = await get(rh, ROOMS, admin, order_by="joined_local_members", dir="b")
    assert [r["joined_local_members"] for r in size_b["rooms"]] == [1, 2, 3]
    # Pages.
    _, first = await get(rh, ROOMS, admin, limit="2")
    assert len(first["rooms"]) == 2 and first["next_batch"] == 2
    _, second = await get(rh, ROOMS, admin, limit="2", **{"from": "2"})
    assert [r["room_id"] for r in second["rooms"]] == [rooms["none"]]
    assert second["prev_batch"] == 0 and "next_batch" not in second
    # Filters.
    _, found = await get(rh, ROOMS, admin, search_term="ALPHA")
    assert [r["room_id"] for r in found["rooms"]] == [rooms["alpha"]]
    assert found["total_rooms"] == 1
    opaque = rooms["none"][1:8]
    _, by_id = await get(rh, ROOMS, admin, search_term=opaque)
    assert rooms["none"] in [r["room_id"] for r in by_id["rooms"]]
    _, empty = await get(rh, ROOMS, admin, empty_rooms="true")
    assert empty["total_rooms"] == 0
    _, public = await get(rh, ROOMS, admin, public_rooms="false")
    assert public["total_rooms"] == 0


async def test_list_refuses_bad_parameters(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    for params in ({"search_term": ""}, {"order_by": "bogus"}, {"dir": "x"},
                   {"limit": "-1"}, {"limit": "100000"}, {"from": "x"},
                   {"public_rooms": "yes"}):
        status, body = await get(rh, ROOMS, admin, **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params


async def test_details_members_state(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    await rh.user("a")
    room = await named_room(rh, "Beta", local("u1"), joined=[local("a"), f"@r:{REMOTE}"])
    await rh.storage.send_state_event(room, UserID.from_stored(local("u1")),
                                      "m.room.topic", "", {"topic": "things"})
    status, body = await get(rh, f"{ROOMS}/{q(room)}", admin)
    assert status == 200
    assert body["room_id"] == room and body["topic"] == "things"
    assert body["joined_local_devices"] == 1  # a's device; u1 has no account
    assert body["forgotten"] is False and body["tombstoned"] is False
    assert body["avatar"] is None
    status, members = await get(rh, f"{ROOMS}/{q(room)}/members", admin)
    assert status == 200
    assert members == {"members": sorted([local("a"), local("u1"), f"@r:{REMOTE}"]),
                       "total": 3}
    status, state = await get(rh, f"{ROOMS}/{q(room)}/state", admin)
    assert status == 200
    types = sorted((e["type"], e["state_key"]) for e in state["state"])
    assert ("m.room.topic", "") in types and ("m.room.create", "") in types
    assert len(types) == 8
    missing = f"!nothere:{SERVER}"
    for suffix in ("", "/members", "/state"):
        status, body = await get(rh, f"{ROOMS}/{q(missing)}{suffix}", admin)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert body["error"] == f"Unknown room {missing}"
    status, body = await get(rh, f"{ROOMS}/{q('not-a-room')}", admin)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_block_and_unblock(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    room = await make_room(rh.storage, local("u1"))
    path = f"{ROOMS}/{q(room)}/block"
    assert await get(rh, path, admin) == (200, {"block": False})
    resp = await rh.client.put(path, headers=admin.auth, json={"block": True})
    assert (resp.status, await resp.json()) == (200, {"block": True})
    assert await get(rh, path, admin) == (200, {"block": True, "user_id": local("root")})
    resp = await rh.client.put(path, headers=admin.auth, json={"block": "yes"})
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_BAD_JSON")
    resp = await rh.client.put(path, headers=admin.auth, json={})
    assert resp.status == 400
    resp = await rh.client.put(path, headers=admin.auth, json={"block": False})
    assert (resp.status, await resp.json()) == (200, {"block": False})
    assert await get(rh, path, admin) == (200, {"block": False})
    # Rooms unknown here can be blocked too.
    unknown = f"{ROOMS}/{q('!elsewhere:' + REMOTE)}/block"
    resp = await rh.client.put(unknown, headers=admin.auth, json={"block": True})
    assert resp.status == 200
    assert (await get(rh, unknown, admin))[1]["block"] is True


async def test_empty_rooms_and_purge(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    busy = await make_room(rh.storage, local("u1"), joined=[local("a")])
    remote_only = await make_room(rh.storage, f"@x:{REMOTE}", joined=[f"@y:{REMOTE}"])
    status, body = await get(rh, "/_dendrite/admin/emptyRooms", admin)
    assert status == 200 and body == {"empty_rooms": [remote_only]}
    purge = "/_dendrite/admin/purgeRoom/"
    resp = await rh.client.post(purge + q(busy), headers=admin.auth)
    assert (resp.status, await resp.json()) == (200, {})
    assert not await rh.storage.room_exists(busy)
    status, _ = await get(rh, f"{ROOMS}/{q(busy)}", admin)
    assert status == 404
    assert (await get(rh, ROOMS, admin))[1]["total_rooms"] == 1
    resp = await rh.client.post(purge + q(busy), headers=admin.auth)
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await rh.client.post(purge + "nonsense", headers=admin.auth)
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM")


async def test_summary_follows_state_changes(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    creator = UserID.from_stored(local("u1"))
    room = await named_room(rh, "Old", str(creator), joined=[local("a")])
    await rh.storage.send_state_event(room, creator, "m.room.name", "", {"name": "New"})
    await rh.storage.send_state_event(room, creator, "m.room.encryption", "",
                                      {"algorithm": "m.megolm.v1.aes-sha2"})
    await rh.storage.send_state_event(room, creator, "m.room.canonical_alias", "",
                                      {"alias": "#new:" + SERVER})
    from dendrite_admin_ext.storage.types import MembershipChange
    await rh.storage.apply_memberships(room, [MembershipChange(
        UserID.from_stored(local("a")), UserID.from_stored(local("a")),
        {"membership": "leave"})])
    _, body = await get(rh, ROOMS, admin)
    [r] = body["rooms"]
    assert r["name"] == "New" and r["encryption"] == "m.megolm.v1.aes-sha2"
    assert r["canonical_alias"] == "#new:" + SERVER
    assert r["joined_members"] == 1 and r["joined_local_members"] == 1
    assert r["state_events"] == 2 + 3 + 3  # members a, u1; create, pl, rules; 3 more
    _, found = await get(rh, ROOMS, admin, search_term="#NEW")
    assert found["total_rooms"] == 1


async def test_v5_backfill_matches_live_summaries(rh: Harness) -> None:
    """Rooms stored before schema v5 get the summaries that v5's back-fill computes
    from their state: the same as the ones kept up to date live."""
    from dendrite_admin_ext.storage.sql import SqlStorage
    from dendrite_admin_ext.storage.sql.ops import exec_
    from dendrite_admin_ext.storage.sql.schema import MIGRATIONS
    from dendrite_admin_ext.storage.types import RoomListQuery

    storage = unwrapped(rh.storage)
    if not isinstance(storage, SqlStorage):
        return  # only the SQL backends migrate
    creator = UserID.from_stored(local("u1"))
    rooms = [await named_room(rh, "Beta", local("u1"), joined=[local("a"), f"@r:{REMOTE}"]),
             await named_room(rh, None, local("u2"))]
    from dendrite_admin_ext.storage.types import NewRoom
    rooms.append(await storage.create_room(NewRoom(
        creator, "10", {"m.federate": False, "type": "m.space"},
        (("m.room.member", str(creator), {"membership": "join"}),))))
    await storage.send_state_event(rooms[0], creator, "m.room.encryption", "",
                                   {"algorithm": "m.megolm.v1.aes-sha2"})
    await storage.send_state_event(rooms[0], creator, "m.room.canonical_alias", "",
                                   {"alias": "#b:" + SERVER})
    query = RoomListQuery(limit=10)
    live = await storage.list_rooms(query, SERVER)
    assert [(r.federatable, r.room_type) for r in live.rooms if r.room_id == rooms[2]] == [
        (False, "m.space")]
    await storage._run(exec_("DELETE FROM dendrite_admin_room_summary"), write=True)
    await storage._run(exec_("DELETE FROM dendrite_admin_room_server_members"), write=True)
    assert (await storage.list_rooms(query, SERVER)).total == 0
    [v5] = [m for m in MIGRATIONS if m.version == 5]
    for statement in v5.for_dialect(storage.dialect)[-2:]:
        await storage._run(exec_(statement), write=True)
    assert await storage.list_rooms(query, SERVER) == live


async def test_pages_from_both_ends_agree(rh: Harness) -> None:
    """Every page of every order, forward and reversed, is the slice of the whole list
    (the SQL backends read pages in the second half from the other end)."""
    from dendrite_admin_ext.storage.types import ROOM_ORDERS, RoomListQuery
    names = ["b", None, "a", "c", None, "a", "d"]
    for i, name in enumerate(names):
        await named_room(rh, name, local(f"c{i}"), joined=[local(f"j{k}") for k in range(i % 3)])
    for order in ROOM_ORDERS:
        for reverse in (False, True):
            whole = await rh.storage.list_rooms(
                RoomListQuery(order_by=order, reverse=reverse, limit=100), SERVER)
            ids = [r.room_id for r in whole.rooms]
            assert len(ids) == len(names) == whole.total
            for offset in range(len(names) + 1):
                for limit in (1, 2, 3):
                    page = await rh.storage.list_rooms(RoomListQuery(
                        order_by=order, reverse=reverse, offset=offset, limit=limit), SERVER)
                    assert [r.room_id for r in page.rooms] == ids[offset:offset + limit], (
                        order, reverse, offset, limit)
