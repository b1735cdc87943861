"""The Matrix limits on events (SPEC 2): one check, used by every event built."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.errors import BadJson, TooLarge
from dendrite_admin_ext.events import (
    MAX_EVENT_BYTES,
    build_event,
    canonical_json,
    check_event_limits,
    check_new_event,
)
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services.evacuation import member_content
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import MembershipChange

from .conftest import REMOTE, SERVER, Harness, make_room, room_events

SENDER = f"@_server:{SERVER}"
BOB, ALICE = UserID("bob", SERVER), UserID("alice", SERVER)


def event_of_size(size: int) -> dict[str, Any]:
    """An event whose canonical JSON is exactly ``size`` bytes."""
    event: dict[str, Any] = {"type": "m.room.message", "sender": SENDER, "room_id": "!r:x",
                             "content": {"body": ""}}
    event["content"]["body"] = "x" * (size - len(canonical_json(event)))
    assert len(canonical_json(event)) == size
    return event


def test_the_limit_is_65536_bytes_of_canonical_json() -> None:
    check_event_limits(event_of_size(MAX_EVENT_BYTES))
    with pytest.raises(TooLarge):
        check_event_limits(event_of_size(MAX_EVENT_BYTES + 1))
    # Bytes, not characters: 30,000 two-byte characters are 60,000 bytes.
    check_event_limits({"content": {"body": "é" * 30_000}})
    with pytest.raises(TooLarge):
        check_event_limits({"content": {"body": "é" * 33_000}})


@pytest.mark.parametrize("field", ["type", "state_key", "sender", "room_id"])
def test_fields_are_at_most_255_bytes(field: str) -> None:
    check_event_limits({field: "a" * 255})
    with pytest.raises(BadJson, match=field):
        check_event_limits({field: "a" * 256})
    with pytest.raises(BadJson, match=field):
        check_event_limits({field: "ä" * 128})


def test_build_event_refuses_what_does_not_fit() -> None:
    common: dict[str, Any] = {"room_id": "!r:x", "sender": SENDER, "origin_server_ts": 1,
                              "depth": 1, "prev_events": []}
    built = build_event(event_type="m.room.message", content={"body": "x" * 65_000},
                        **common)
    assert len(canonical_json(built)) <= MAX_EVENT_BYTES
    with pytest.raises(TooLarge):
        build_event(event_type="m.room.message", content={"body": "x" * 65_526}, **common)
    with pytest.raises(BadJson):
        build_event(event_type="t" * 256, content={}, **common)


def test_the_pre_check_is_stricter_than_any_build() -> None:
    """What passes check_new_event passes build_event, with a host's envelope."""
    for length in range(60_000, 66_000, 250):
        content = {"body": "x" * length}
        try:
            check_new_event(sender=SENDER, event_type="m.room.message", content=content)
        except TooLarge:
            continue
        build_event(room_id="!" + "r" * 200 + ":x", sender=SENDER,
                    event_type="m.room.message", content=content,
                    origin_server_ts=2**53 - 1, depth=2**53 - 1,
                    prev_events=["$" + "e" * 43] * 10, auth_events=["$" + "a" * 43] * 10)


async def test_every_backend_refuses_an_oversized_event_and_stores_nothing(
        room_storage: AdminStorage) -> None:
    room_id = await make_room(room_storage, SENDER, joined=[f"@alice:{SERVER}"])
    before = room_events(room_storage, room_id)
    with pytest.raises(TooLarge):
        await room_storage.send_event(room_id, UserID.from_stored(SENDER), "m.room.message",
                                      {"body": "x" * 70_000})
    with pytest.raises(TooLarge):
        await room_storage.send_state_event(room_id, UserID.from_stored(SENDER),
                                            "org.example.big", "", {"body": "x" * 70_000})
    with pytest.raises(TooLarge):  # the whole batch is refused, the good change too
        await room_storage.apply_memberships(room_id, [
            MembershipChange(BOB, BOB, {"membership": "join"}),
            MembershipChange(ALICE, ALICE,
                             {"membership": "leave", "displayname": "n" * 70_000})])
    assert room_events(room_storage, room_id) == before
    assert await room_storage.get_membership(room_id, BOB) is None
    assert await room_storage.get_membership(room_id, ALICE) == "join"


def test_member_content_drops_a_profile_that_cannot_fit() -> None:
    assert member_content("leave", "Alice", "mxc://x/y") == {
        "membership": "leave", "displayname": "Alice", "avatar_url": "mxc://x/y"}
    assert member_content("leave", "a" * 20_000) == {"membership": "leave",
                                                    "displayname": "a" * 20_000}
    assert member_content("leave", "a" * 65_200) == {"membership": "leave"}
    assert member_content("invite", "a" * 40_000, "b" * 40_000) == {"membership": "invite"}


async def test_evacuating_a_member_with_a_huge_profile_still_parts_them(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    huge = f"@huge:{SERVER}"
    # The join fits as the host built it; a leave in the largest envelope would not.
    room_id = await make_room(rh.storage, f"@owner:{REMOTE}", joined=[
        (huge, "n" * 64_700, None), f"@small:{SERVER}"])
    resp = await rh.client.post(f"/_dendrite/admin/evacuateRoom/{quote(room_id)}",
                                headers=admin.auth)
    assert resp.status == 200, await resp.text()
    assert sorted((await resp.json())["affected"]) == [huge, f"@small:{SERVER}"]
    leave = [e for e in room_events(rh.storage, room_id) if e.get("state_key") == huge][-1]
    assert leave["content"] == {"membership": "leave"}
