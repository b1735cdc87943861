"""The room services called directly, without HTTP: batching, resumption after a
failure, running to completion when the caller goes away, and serialisation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from dendrite_admin_ext.errors import InvalidParam, NotFound, StorageUnavailableError
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services.evacuation import (
    evacuate_room,
    evacuate_user,
    member_content,
    room_lock_key,
)
from dendrite_admin_ext.services.notices import (
    Notice,
    notice_power_levels,
    parse_notice,
    send_server_notice,
    send_server_notice_once,
)
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import Member, MembershipChange, NoticeTxnKey

from .conftest import REMOTE, SERVER, Harness, make_room, room_events

OWNER = f"@owner:{REMOTE}"


def local(name: str) -> str:
    return f"@{name}:{SERVER}"


class Spy:
    """Wraps a storage: records the paging and batches, and can fail on demand."""

    def __init__(self, inner: AdminStorage, fail_on_batch: int | None = None) -> None:
        self.inner = inner
        self.fail_on_batch = fail_on_batch
        self.batches: list[int] = []
        self.cursors: list[str | None] = []
        self.applied = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_local_joined_members(self, room_id: str, server_name: str, *,
                                       after: UserID | None, limit: int) -> list[Member]:
        self.cursors.append(None if after is None else str(after))
        return await self.inner.get_local_joined_members(room_id, server_name,
                                                         after=after, limit=limit)

    async def apply_memberships(self, room_id: str,
                                changes: Sequence[MembershipChange]) -> list[str]:
        if self.fail_on_batch is not None and len(self.batches) + 1 == self.fail_on_batch:
            self.fail_on_batch = None
            raise StorageUnavailableError("database went away")
        self.batches.append(len(changes))
        ids = await self.inner.apply_memberships(room_id, changes)
        self.applied.set()
        return ids


def spy_on(h: Harness, fail_on_batch: int | None = None) -> Spy:
    spy = Spy(h.storage, fail_on_batch)
    h.ctx.storage = cast(AdminStorage, spy)
    return spy


def leaves(h: Harness, room_id: str) -> list[str]:
    return [e["state_key"] for e in room_events(h.storage, room_id)
            if e["type"] == "m.room.member" and e["content"].get("membership") == "leave"]


async def joined(h: Harness, room_id: str) -> list[str]:
    return [str(m.user) for m in await h.storage.get_local_joined_members(
        room_id, SERVER, after=None, limit=100_000)]


def test_member_content_keeps_only_what_is_set() -> None:
    assert member_content("leave") == {"membership": "leave"}
    assert member_content("leave", "A", "mxc://a/b") == {
        "membership": "leave", "displayname": "A", "avatar_url": "mxc://a/b"}
    assert member_content("invite", "", None) == {"membership": "invite", "displayname": ""}


async def test_evacuation_pages_with_the_cursor_in_bounded_batches(rh: Harness) -> None:
    members = [local(f"m{i:04d}") for i in range(250)]
    room_id = await make_room(rh.storage, OWNER, joined=members)
    spy = spy_on(rh)

    affected = await evacuate_room(rh.ctx, room_id, batch_size=40)

    assert affected == members
    assert spy.batches == [40] * 6 + [10]
    assert spy.cursors == [None, *(members[i * 40 - 1] for i in range(1, 7))]
    assert await joined(rh, room_id) == []


async def test_interrupted_evacuation_finishes_on_rerun(rh: Harness) -> None:
    members = [local(f"m{i:04d}") for i in range(100)]
    room_id = await make_room(rh.storage, OWNER, joined=members)
    spy_on(rh, fail_on_batch=3)

    with pytest.raises(StorageUnavailableError):
        await evacuate_room(rh.ctx, room_id, batch_size=20)
    # Two whole batches went through; the failed one left nothing half-done.
    assert len(await joined(rh, room_id)) == 60

    affected = await evacuate_room(rh.ctx, room_id, batch_size=20)

    assert affected == members[40:]
    assert sorted(leaves(rh, room_id)) == members  # exactly one leave each


async def test_evacuation_survives_the_caller_being_cancelled(rh: Harness) -> None:
    members = [local(f"m{i:04d}") for i in range(300)]
    room_id = await make_room(rh.storage, OWNER, joined=members)
    spy = spy_on(rh)

    caller = asyncio.ensure_future(evacuate_room(rh.ctx, room_id, batch_size=10))
    await spy.applied.wait()
    assert len(spy.batches) < 30  # cancelled mid-way
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    # The evacuation holds the room's lock until it is done.
    async with rh.ctx.locks(room_lock_key(room_id)):
        pass
    assert await joined(rh, room_id) == []
    assert sorted(leaves(rh, room_id)) == members


async def test_concurrent_evacuations_of_one_room_part_each_member_once(rh: Harness) -> None:
    members = [local(f"m{i:04d}") for i in range(120)]
    room_id = await make_room(rh.storage, OWNER, joined=members)
    alice = await rh.user("m0007")  # also evacuated as a user at the same time

    first, second, of_user = await asyncio.gather(
        evacuate_room(rh.ctx, room_id, batch_size=25),
        evacuate_room(rh.ctx, room_id, batch_size=25),
        evacuate_user(rh.ctx, alice.user_id))

    assert sorted(first + second + [local("m0007")] * len(of_user)) == members
    assert [] in (first, second)
    assert sorted(leaves(rh, room_id)) == members


async def test_unknown_room_and_user(rh: Harness) -> None:
    with pytest.raises(NotFound):
        await evacuate_room(rh.ctx, f"!missing:{SERVER}")
    with pytest.raises(NotFound):
        await evacuate_user(rh.ctx, UserID("ghost", SERVER))


async def test_evacuate_user_skips_only_a_pending_notice_invite(rh: Harness) -> None:
    alice = await rh.user("alice")
    uid = str(alice.user_id)
    await send_server_notice(rh.ctx, Notice(alice.user_id, "m.room.message",
                                            {"msgtype": "m.text", "body": "hi"}))
    notice_room = await rh.storage.get_server_notice_room(alice.user_id)
    assert notice_room is not None
    invited = await make_room(rh.storage, OWNER, invited=[uid])

    assert await evacuate_user(rh.ctx, alice.user_id) == [invited]
    assert await rh.storage.get_membership(notice_room, UserID.from_stored(uid)) == "invite"


def test_parse_notice() -> None:
    content: Mapping[str, Any] = {"msgtype": "m.text", "body": "x", "format": "f"}
    notice = parse_notice({"user_id": local("alice"), "content": content}, SERVER)
    assert notice == Notice(UserID("alice", SERVER), "m.room.message", content)
    assert parse_notice({"user_id": local("a"), "type": "x.y", "content": {}},
                        SERVER).event_type == "x.y"
    with pytest.raises(InvalidParam, match="only be sent to local users"):
        parse_notice({"user_id": f"@alice:{REMOTE}", "content": content}, SERVER)
    with pytest.raises(InvalidParam):
        parse_notice({"user_id": "alice", "content": content}, SERVER)


def test_notice_power_levels_silence_everyone_but_the_system_user() -> None:
    pl = notice_power_levels(local("_server"))
    assert pl["users"] == {local("_server"): 100}
    assert pl["users_default"] < pl["events_default"]
    assert pl["users_default"] < min(pl["invite"], pl["state_default"], pl["redact"])


class Gate(Spy):
    """Holds every message send until ``opened`` is set."""

    def __init__(self, inner: AdminStorage) -> None:
        super().__init__(inner)
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def send_event(self, room_id: str, sender: UserID, event_type: str,
                         content: Mapping[str, Any], **txn: Any) -> str:
        self.entered.set()
        await self.opened.wait()
        return await self.inner.send_event(room_id, sender, event_type, content, **txn)


async def test_put_retry_after_the_client_went_away_sends_once(rh: Harness) -> None:
    alice = await rh.user("alice")
    gate = Gate(rh.storage)
    rh.ctx.storage = cast(AdminStorage, gate)
    notice = Notice(alice.user_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    key = NoticeTxnKey(UserID.from_stored(local("admin")), "DEVICE", "txn-1")

    first = asyncio.ensure_future(send_server_notice_once(rh.ctx, notice, key))
    await gate.entered.wait()
    first.cancel()  # the client gave up while the notice was being sent
    with pytest.raises(asyncio.CancelledError):
        await first
    retry = asyncio.ensure_future(send_server_notice_once(rh.ctx, notice, key))
    await asyncio.sleep(0)
    gate.opened.set()
    event_id = await retry

    room_id = await rh.storage.get_server_notice_room(alice.user_id)
    assert room_id is not None
    sent = [e for e in room_events(rh.storage, room_id) if "state_key" not in e]
    assert [e["event_id"] for e in sent] == [event_id]
    assert await rh.storage.get_notice_txn(key) == event_id
