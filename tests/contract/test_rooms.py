"""The storage contract of RoomStore (and room creation): every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dendrite_admin_ext.events import reference_event_id
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import Member, MembershipChange, NewRoom, NoticeTxnKey

from ..conftest import room_events, room_tags
from ..sql_backends import BACKENDS, make_storage
from .common import ALICE, BOB, SERVER_USER, SN, U, joins, make_room, message_bodies, send_once


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
