"""The storage contract of ServerNoticeStore: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio

import pytest

from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import MembershipChange, NoticeTxnKey

from ..conftest import room_events
from .common import ALICE, SERVER_USER, SN, U, make_room, message_bodies, send_once


# -- notice transactions --------------------------------------------------------------------
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
