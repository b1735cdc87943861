"""send_server_notice through HTTP (SPEC 4.5): the notices room, its life cycle, the
validation errors and idempotent PUTs — on the shipped storage and on a host's."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.errors import StorageUnavailableError
from dendrite_admin_ext.events import canonical_json
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services import notices
from dendrite_admin_ext.services.evacuation import wait_for_running
from dendrite_admin_ext.services.notices import TXN_LIFETIME_MS, purge_old_txns
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import MembershipChange, NewDevice, Profile
from dendrite_admin_ext.validation import Schemas

from .conftest import (
    REMOTE,
    SERVER,
    Harness,
    HarnessFactory,
    User,
    make_config,
    make_host_app,
    room_events,
    room_state,
    room_tags,
)

_uid = UserID.from_stored  # user IDs written as strings in these tests

EVENT_ID = re.compile(r"\$[A-Za-z0-9_-]{43}")
POST_PATH = "/_synapse/admin/v1/send_server_notice"
SYSTEM = UserID("_server", SERVER)
TEXT = {"msgtype": "m.text", "body": "Maintenance at 22:00 UTC"}


def put_path(txn_id: str) -> str:
    return POST_PATH + "/" + quote(txn_id, safe="")


async def send(h: Harness, admin: User, body: Any, txn_id: str | None = None
               ) -> tuple[int, dict[str, Any]]:
    if txn_id is None:
        resp = await h.client.post(POST_PATH, headers=admin.auth, json=body)
    else:
        resp = await h.client.put(put_path(txn_id), headers=admin.auth, json=body)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def send_ok(h: Harness, admin: User, user: User | str,
                  content: dict[str, Any] | None = None, txn_id: str | None = None) -> str:
    status, body = await send(h, admin, {"user_id": str(getattr(user, "user_id", user)),
                                         "content": content or TEXT}, txn_id)
    assert status == 200, body
    assert set(body) == {"event_id"}
    assert EVENT_ID.fullmatch(body["event_id"]), body
    event_id: str = body["event_id"]
    return event_id


async def notice_room(h: Harness, user: User) -> str:
    room_id = await h.storage.get_server_notice_room(user.user_id)
    assert room_id is not None
    return room_id


def messages(h: Harness, room_id: str) -> list[dict[str, Any]]:
    return [e for e in room_events(h.storage, room_id) if "state_key" not in e]


async def leave(h: Harness, room_id: str, user_id: str) -> None:
    await h.storage.apply_memberships(room_id, [MembershipChange(_uid(user_id), _uid(user_id),
                                                                 {"membership": "leave"})])


# -- the notices room -------------------------------------------------------------------

async def test_first_notice_creates_private_room_and_invites(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")

    event_id = await send_ok(rh, admin, alice)

    room_id = await notice_room(rh, alice)
    system = await rh.storage.get_account(SYSTEM)
    assert system is not None
    assert int(system.account_type) == 1  # a normal account, not an admin
    profile = await rh.storage.get_profile(SYSTEM)
    assert profile is not None
    assert profile.display_name == "Server Alerts"

    state = room_state(rh.storage, room_id)
    create = state[("m.room.create", "")]
    assert create["sender"] == str(SYSTEM)
    assert create["content"]["m.federate"] is False
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert state[("m.room.name", "")]["content"] == {"name": "Server Alerts"}
    assert state[("m.room.history_visibility", "")]["content"]["history_visibility"] in (
        "shared", "invited", "joined")
    pl = state[("m.room.power_levels", "")]["content"]
    assert pl["users"] == {str(SYSTEM): 100}
    target_power = pl["users"].get(str(alice.user_id), pl["users_default"])
    assert target_power < pl["events_default"]  # the user cannot reply
    assert target_power < pl["invite"]
    system_member = state[("m.room.member", str(SYSTEM))]
    assert system_member["content"]["membership"] == "join"
    assert system_member["content"]["displayname"] == "Server Alerts"
    invite = state[("m.room.member", str(alice.user_id))]
    assert (invite["sender"], invite["content"]["membership"]) == (str(SYSTEM), "invite")
    assert room_tags(rh.storage, alice.user_id, room_id) == {"m.server_notice": {}}

    [message] = messages(rh, room_id)
    assert message["event_id"] == event_id
    assert message["sender"] == str(SYSTEM)
    assert message["type"] == "m.room.message"
    assert message["content"] == TEXT
    for event in room_events(rh.storage, room_id):
        assert EVENT_ID.fullmatch(event["event_id"])
    assert [r.room_id for r in await rh.storage.get_user_rooms(alice.user_id)
            if r.is_server_notice_room] == [room_id]


async def test_later_notices_reuse_the_room(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    first = await send_ok(rh, admin, alice)
    room_id = await notice_room(rh, alice)
    invites_before = len([e for e in room_events(rh.storage, room_id)
                          if e.get("state_key") == str(alice.user_id)])

    second = await send_ok(rh, admin, alice, {"msgtype": "m.notice", "body": "again"})

    assert second != first
    assert await notice_room(rh, alice) == room_id
    assert [m["event_id"] for m in messages(rh, room_id)] == [first, second]
    assert len([e for e in room_events(rh.storage, room_id)
                if e.get("state_key") == str(alice.user_id)]) == invites_before


async def test_each_user_gets_their_own_room(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice, bob = await rh.user("alice"), await rh.user("bob")
    await send_ok(rh, admin, alice)
    await send_ok(rh, admin, bob)
    assert await notice_room(rh, alice) != await notice_room(rh, bob)


async def test_user_who_left_is_invited_again(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice)
    room_id = await notice_room(rh, alice)
    uid = str(alice.user_id)
    # Alice accepts, then leaves.
    await rh.storage.apply_memberships(room_id, [MembershipChange(_uid(uid), _uid(uid),
                                                                  {"membership": "join"})])
    await leave(rh, room_id, uid)

    await send_ok(rh, admin, alice)

    assert await notice_room(rh, alice) == room_id
    assert await rh.storage.get_membership(room_id, UserID.from_stored(uid)) == "invite"
    assert len(messages(rh, room_id)) == 2


async def test_rejected_invite_is_sent_again(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice)
    room_id = await notice_room(rh, alice)
    await leave(rh, room_id, str(alice.user_id))
    await send_ok(rh, admin, alice)
    assert await rh.storage.get_membership(room_id, alice.user_id) == "invite"


async def test_auto_join_joins_and_rejoins(room_harness_factory: HarnessFactory) -> None:
    h = await room_harness_factory(server_notices={"auto_join": True})
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    uid = str(alice.user_id)

    await send_ok(h, admin, alice)
    room_id = await notice_room(h, alice)
    assert await h.storage.get_membership(room_id, UserID.from_stored(uid)) == "join"
    join = room_state(h.storage, room_id)[("m.room.member", uid)]
    assert join["sender"] == uid

    await leave(h, room_id, uid)
    await send_ok(h, admin, alice)
    assert await notice_room(h, alice) == room_id
    assert await h.storage.get_membership(room_id, UserID.from_stored(uid)) == "join"


async def test_system_user_profile_follows_config(
        room_harness_factory: HarnessFactory) -> None:
    h = await room_harness_factory()
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    await send_ok(h, admin, alice)
    room_id = await notice_room(h, alice)

    # The operator renames the notices user; the same database, a new process.
    h2 = await room_harness_factory(server_notices={
        "display_name": "Ops Team", "avatar_url": "mxc://example/ops"})
    await send_ok(h2, admin, alice)

    profile = await h2.storage.get_profile(SYSTEM)
    assert profile is not None
    assert (profile.display_name, profile.avatar_url) == ("Ops Team", "mxc://example/ops")
    assert await notice_room(h2, alice) == room_id
    member = room_state(h2.storage, room_id)[("m.room.member", str(SYSTEM))]
    assert member["content"] == {"membership": "join", "displayname": "Ops Team",
                                 "avatar_url": "mxc://example/ops"}


async def test_room_renamed_when_the_config_changes(
        room_harness_factory: HarnessFactory) -> None:
    """SPEC 4.5: the notices room is named ``room_name``.  A room made before the name
    changed is renamed as it is reused (as Synapse does), once."""
    h = await room_harness_factory()
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    await send_ok(h, admin, alice)
    room_id = await notice_room(h, alice)

    def names() -> list[dict[str, Any]]:
        return [e for e in room_events(h.storage, room_id) if e["type"] == "m.room.name"]

    assert [e["content"] for e in names()] == [{"name": "Server Alerts"}]

    h2 = await room_harness_factory(server_notices={"room_name": "Ops notices"})
    await send_ok(h2, admin, alice)
    assert await notice_room(h2, alice) == room_id
    assert [(e["content"], e["sender"]) for e in names()] == [
        ({"name": "Server Alerts"}, str(SYSTEM)), ({"name": "Ops notices"}, str(SYSTEM))]
    now = h2.ctx.clock()
    h2.ctx.clock = lambda: now + 120_000  # checked again, and found right: no new event
    await send_ok(h2, admin, alice)
    assert len(names()) == 2

    h3 = await room_harness_factory(server_notices={"room_name": ""})
    await send_ok(h3, admin, alice)  # no name configured: the room keeps its own
    assert len(names()) == 2
    assert room_state(h.storage, room_id)[("m.room.name", "")]["content"] == {
        "name": "Ops notices"}
    assert len(messages(h, room_id)) == 4


async def test_a_failed_re_tag_is_retried_by_the_next_notice(
        aiohttp_client: Any, schemas: Schemas, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user invited back gets the tag back; if that write fails, the next notice
    writes it (the invite is only sent after the tag, so the user is still out)."""
    storage = MemoryStorage()
    app, ctx = make_host_app(make_config(schemas), storage, schemas)
    h = Harness(await aiohttp_client(app), ctx, storage)
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    await send_ok(h, admin, alice)
    room_id = await notice_room(h, alice)
    await leave(h, room_id, str(alice.user_id))
    del storage.account_data[(str(alice.user_id), room_id, "m.tag")]  # the user untagged it

    async def tag_fails(*args: Any) -> None:
        raise StorageUnavailableError("database gone")

    monkeypatch.setattr(storage, "set_room_tag", tag_fails)
    status, body = await send(h, admin, {"user_id": str(alice.user_id), "content": TEXT})
    assert (status, body["errcode"]) == (503, "M_UNKNOWN")
    assert await storage.get_membership(room_id, alice.user_id) == "leave"

    monkeypatch.undo()
    await send_ok(h, admin, alice)
    assert await storage.get_membership(room_id, alice.user_id) == "invite"
    assert room_tags(storage, alice.user_id, room_id) == {"m.server_notice": {}}


async def test_system_user_rechecked_once_a_minute(rh: Harness) -> None:
    """The set-up reads a notice repeats (the system user's account and profile, its
    member event in the room) are trusted for a minute, then checked again: a profile
    changed behind the API's back is put right on the first notice after that."""
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    now = rh.ctx.clock()
    rh.ctx.clock = lambda: now
    await send_ok(rh, admin, alice)
    room_id = await notice_room(rh, alice)
    configured = await rh.storage.get_profile(SYSTEM)
    assert configured is not None and configured.display_name == "Server Alerts"

    def system_member() -> dict[str, Any]:
        content: dict[str, Any] = room_state(rh.storage, room_id)[
            ("m.room.member", str(SYSTEM))]["content"]
        return content

    await rh.storage.set_profile(SYSTEM, Profile("Renamed by the host", None))
    await rh.storage.apply_memberships(room_id, [MembershipChange(
        SYSTEM, SYSTEM, {"membership": "join", "displayname": "Renamed"})])
    rh.ctx.clock = lambda: now + 59_000
    await send_ok(rh, admin, alice)
    assert await rh.storage.get_profile(SYSTEM) == Profile("Renamed by the host", None)
    assert system_member()["displayname"] == "Renamed"

    rh.ctx.clock = lambda: now + 61_000
    await send_ok(rh, admin, alice)
    assert await rh.storage.get_profile(SYSTEM) == configured
    assert system_member()["displayname"] == "Server Alerts"
    assert await notice_room(rh, alice) == room_id
    assert len(messages(rh, room_id)) == 3


async def test_custom_local_part_and_room_name(room_harness_factory: HarnessFactory) -> None:
    h = await room_harness_factory(server_notices={"local_part": "notices",
                                                   "room_name": "System messages"})
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    await send_ok(h, admin, alice)
    room_id = await notice_room(h, alice)
    state = room_state(h.storage, room_id)
    assert state[("m.room.create", "")]["sender"] == f"@notices:{SERVER}"
    assert state[("m.room.name", "")]["content"] == {"name": "System messages"}
    assert await h.storage.get_account(UserID("notices", SERVER)) is not None


async def test_new_room_after_the_system_user_was_evacuated(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice)
    old_room = await notice_room(rh, alice)

    resp = await rh.client.post("/_dendrite/admin/evacuateRoom/" + quote(old_room, safe=""),
                                headers=admin.auth)
    assert resp.status == 200
    assert await resp.json() == {"affected": [str(SYSTEM)]}

    event_id = await send_ok(rh, admin, alice)

    new_room = await notice_room(rh, alice)
    assert new_room != old_room
    assert await rh.storage.get_membership(new_room, alice.user_id) == "invite"
    assert await rh.storage.get_membership(new_room, SYSTEM) == "join"
    assert [m["event_id"] for m in messages(rh, new_room)] == [event_id]
    assert room_tags(rh.storage, alice.user_id, new_room) == {"m.server_notice": {}}


async def test_extra_content_keys_are_kept(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    content = {"msgtype": "m.text", "body": "**down** at 22:00",
               "format": "org.matrix.custom.html",
               "formatted_body": "<b>down</b> at 22:00", "m.mentions": {}}
    await send_ok(rh, admin, alice, content)
    [message] = messages(rh, await notice_room(rh, alice))
    assert message["content"] == content


async def test_custom_event_type(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    status, body = await send(rh, admin, {"user_id": str(alice.user_id),
                                          "type": "org.example.alert",
                                          "content": {"level": 3}})
    assert status == 200
    [message] = messages(rh, await notice_room(rh, alice))
    assert (message["type"], message["content"]) == ("org.example.alert", {"level": 3})
    assert message["event_id"] == body["event_id"]


async def test_concurrent_first_notices_make_one_room(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    event_ids = await asyncio.gather(*(send_ok(rh, admin, alice,
                                               {"msgtype": "m.text", "body": str(i)})
                                       for i in range(8)))
    assert len(set(event_ids)) == 8
    room_id = await notice_room(rh, alice)
    assert sorted(m["event_id"] for m in messages(rh, room_id)) == sorted(event_ids)
    rooms = [r for r in await rh.storage.get_user_rooms(alice.user_id)]
    assert [r.room_id for r in rooms] == [room_id]


async def test_another_worker_setting_up_the_room_first_is_used(
        rh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker records a notices room for the user between this worker's look
    and its own set-up: this worker's set-up changes nothing, and the notice goes to
    the other worker's room."""
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    own = rh.storage.create_server_notice_room
    theirs: list[str | None] = []

    async def racing(user: UserID, room: Any, **kw: Any) -> str | None:
        if not theirs:  # the other worker commits first
            theirs.append(await own(user, room, **kw))
        return await own(user, room, **kw)

    monkeypatch.setattr(rh.storage, "create_server_notice_room", racing)
    event_id = await send_ok(rh, admin, alice)
    assert theirs[0] is not None
    assert await notice_room(rh, alice) == theirs[0]
    assert [m["event_id"] for m in messages(rh, theirs[0])] == [event_id]
    assert [r.room_id for r in await rh.storage.get_user_rooms(alice.user_id)] == theirs


async def test_a_room_that_keeps_changing_is_a_503(
        rh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    calls = 0

    async def always_beaten(user: UserID, room: Any, **kw: Any) -> str | None:
        nonlocal calls
        calls += 1
        return None

    monkeypatch.setattr(rh.storage, "create_server_notice_room", always_beaten)
    resp = await rh.client.post(POST_PATH, headers=admin.auth,
                                json={"user_id": str(alice.user_id), "content": TEXT})
    assert resp.status == 503
    assert (await resp.json())["errcode"] == "M_UNKNOWN"
    assert "Retry-After" in resp.headers
    assert calls == notices._CLAIM_ATTEMPTS
    assert await rh.storage.get_user_rooms(alice.user_id) == []


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "errcode"), [
    ({"content": TEXT}, "M_MISSING_PARAM"),
    ({"user_id": "@alice:test.example"}, "M_MISSING_PARAM"),
    ({}, "M_MISSING_PARAM"),
    ({"user_id": 42, "content": TEXT}, "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "content": "hello"}, "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "content": {"msgtype": "m.text"}}, "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "content": {"body": "x"}}, "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "content": {"msgtype": 1, "body": "x"}},
     "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "type": 5, "content": TEXT}, "M_BAD_JSON"),
    ({"user_id": "@alice:test.example", "type": "", "content": TEXT}, "M_BAD_JSON"),
    ([1, 2], "M_BAD_JSON"),
    ({"user_id": "alice", "content": TEXT}, "M_INVALID_PARAM"),
    ({"user_id": "@al ice:test.example", "content": TEXT}, "M_INVALID_PARAM"),
    ({"user_id": f"@alice:{REMOTE}", "content": TEXT}, "M_INVALID_PARAM"),
])
@pytest.mark.parametrize("txn_id", [None, "t1"])
async def test_bad_requests_are_400(rh: Harness, body: Any, errcode: str,
                                    txn_id: str | None) -> None:
    admin = await rh.user("admin", admin=True)
    await rh.user("alice")
    status, answer = await send(rh, admin, body, txn_id)
    assert status == 400
    assert answer["errcode"] == errcode, answer
    assert set(answer) == {"errcode", "error"}


async def test_remote_user_message(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    status, body = await send(rh, admin, {"user_id": f"@alice:{REMOTE}", "content": TEXT})
    assert (status, body) == (400, {"errcode": "M_INVALID_PARAM",
                                    "error": "Server notices can only be sent to local users"})


async def test_not_json_is_400(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    for data in (b"{nope", b'{"user_id": NaN}', b"\xff\xfe"):
        resp = await rh.client.post(POST_PATH, headers=admin.auth, data=data)
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_NOT_JSON"


@pytest.mark.parametrize("txn_id", [None, "t1"])
async def test_unknown_user_or_the_notices_user_is_404(rh: Harness,
                                                       txn_id: str | None) -> None:
    admin = await rh.user("admin", admin=True)
    for user_id in (f"@ghost:{SERVER}", str(SYSTEM)):
        status, body = await send(rh, admin, {"user_id": user_id, "content": TEXT}, txn_id)
        assert status == 404
        assert body["errcode"] == "M_NOT_FOUND"
    # Even once the notices user exists.
    await send_ok(rh, admin, admin)
    status, body = await send(rh, admin, {"user_id": str(SYSTEM), "content": TEXT}, txn_id)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_admin_only_and_before_validation(rh: Harness) -> None:
    user = await rh.user("mallory")
    for txn_id in (None, "t1"):
        status, body = await send(rh, user, {"nonsense": True}, txn_id)
        assert status == 403
        assert body["errcode"] == "M_FORBIDDEN"
    resp = await rh.client.post(POST_PATH, data=b"{nope")
    assert resp.status == 401
    assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_disabled_is_not_mounted(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(server_notices={"enabled": False})
    admin = await h.user("admin", admin=True)
    for txn_id in (None, "t1"):
        status, body = await send(h, admin, {"user_id": str(admin.user_id),
                                             "content": TEXT}, txn_id)
        assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


# -- PUT with a transaction id ------------------------------------------------------------

async def test_put_is_idempotent(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    first = await send_ok(rh, admin, alice, txn_id="maint-1")
    again = await send_ok(rh, admin, alice, txn_id="maint-1")
    assert again == first
    assert [m["event_id"] for m in messages(rh, await notice_room(rh, alice))] == [first]

    other = await send_ok(rh, admin, alice, txn_id="maint-2")
    assert other != first
    assert len(messages(rh, await notice_room(rh, alice))) == 2


async def test_put_whose_answer_was_lost_is_not_sent_twice(
        rh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database commits the notice but the answer never arrives (connection lost
    after COMMIT): the client sees a 503 and retries.  The retry must find the record
    written with the event, not send the notice again."""
    from dendrite_admin_ext.errors import StorageUnavailableError

    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    own = rh.storage.send_event
    lost: list[str] = []

    async def answer_lost(*args: Any, **kwargs: Any) -> str:
        event_id = await own(*args, **kwargs)
        if not lost:
            lost.append(event_id)
            raise StorageUnavailableError("server closed the connection unexpectedly")
        return event_id

    monkeypatch.setattr(rh.storage, "send_event", answer_lost)
    status, body = await send(rh, admin, {"user_id": str(alice.user_id), "content": TEXT},
                              "maint-lost")
    assert (status, body["errcode"]) == (503, "M_UNKNOWN")
    again = await send_ok(rh, admin, alice, txn_id="maint-lost")
    assert again == lost[0]
    assert [m["event_id"] for m in messages(rh, await notice_room(rh, alice))] == lost


async def test_a_host_naming_the_send_arguments_otherwise_works(
        rh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol documents send_event's first four arguments by position; a host
    may name them as it likes."""
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    own = rh.storage.send_event

    async def renamed(room: str, who: UserID, kind: str, body: Any, *,
                      txn: Any = None, txn_ts: int = 0) -> str:
        return await own(room, who, kind, body, txn=txn, txn_ts=txn_ts)

    monkeypatch.setattr(rh.storage, "send_event", renamed)
    first = await send_ok(rh, admin, alice, txn_id="named")
    assert await send_ok(rh, admin, alice, txn_id="named") == first
    await send_ok(rh, admin, alice)
    assert len(messages(rh, await notice_room(rh, alice))) == 2


async def test_put_from_another_device_or_admin_is_a_new_event(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    other_admin = await rh.user("admin2", admin=True)
    alice = await rh.user("alice")
    second_device = User(admin.user_id, "second-token", "SECONDDEV")
    await _add_device(rh, second_device)

    first = await send_ok(rh, admin, alice, txn_id="t")
    from_second_device = await send_ok(rh, second_device, alice, txn_id="t")
    from_other_admin = await send_ok(rh, other_admin, alice, txn_id="t")

    assert len({first, from_second_device, from_other_admin}) == 3
    assert await send_ok(rh, second_device, alice, txn_id="t") == from_second_device
    assert len(messages(rh, await notice_room(rh, alice))) == 3


async def _add_device(h: Harness, user: User) -> None:
    """A second login of the same account (the protocol has no call for it)."""
    adder = getattr(h.storage, "add_device", None)
    if adder is None:
        pytest.skip(f"{type(h.storage).__name__} cannot add a device in tests")
    adder(user.user_id, NewDevice(user.device_id, user.token, "second"))


async def test_failed_put_is_not_remembered(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    status, _ = await send(rh, admin, {"user_id": f"@late:{SERVER}", "content": TEXT}, "t")
    assert status == 404
    status, _ = await send(rh, admin, {"user_id": f"@late:{SERVER}"}, "t")
    assert status == 400
    late = await rh.user("late")

    event_id = await send_ok(rh, admin, late, txn_id="t")

    assert [m["event_id"] for m in messages(rh, await notice_room(rh, late))] == [event_id]


async def test_concurrent_identical_puts_send_once(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    event_ids = await asyncio.gather(*(send_ok(rh, admin, alice, txn_id="same")
                                       for _ in range(6)))
    assert len(set(event_ids)) == 1
    assert len(messages(rh, await notice_room(rh, alice))) == 1


async def test_put_txn_survives_a_restart(room_harness_factory: HarnessFactory) -> None:
    h = await room_harness_factory()
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    first = await send_ok(h, admin, alice, txn_id="t")
    h2 = await room_harness_factory()  # another process on the same database
    assert await send_ok(h2, admin, alice, txn_id="t") == first


async def test_old_transactions_are_purged(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    first = await send_ok(rh, admin, alice, txn_id="t")
    now = rh.ctx.clock()

    rh.ctx.clock = lambda: now + TXN_LIFETIME_MS - 60_000
    assert await purge_old_txns(rh.ctx) == 0
    assert await send_ok(rh, admin, alice, txn_id="t") == first

    rh.ctx.clock = lambda: now + TXN_LIFETIME_MS + 60_000
    assert await purge_old_txns(rh.ctx) == 1
    assert await send_ok(rh, admin, alice, txn_id="t") != first


async def test_a_put_does_not_wait_for_the_purge_it_starts(
        rh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Now and then a PUT starts the purge of old records; it runs beside the request
    (held here until released), and still purges."""
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    first = await send_ok(rh, admin, alice, txn_id="old")
    now = rh.ctx.clock()
    rh.ctx.clock = lambda: now + TXN_LIFETIME_MS + 60_000
    started, release = asyncio.Event(), asyncio.Event()
    purged: list[int] = []
    purge = rh.storage.purge_notice_txns

    async def held_purge(older_than_ts: int) -> int:
        started.set()
        await release.wait()
        purged.append(await purge(older_than_ts))
        return purged[-1]

    monkeypatch.setattr(rh.storage, "purge_notice_txns", held_purge)
    monkeypatch.setattr(notices, "PURGE_ONE_IN", 1)  # this PUT starts one
    try:
        await asyncio.wait_for(send_ok(rh, admin, alice, txn_id="new"), 5)
        await asyncio.wait_for(started.wait(), 5)
        assert purged == []  # answered while its purge is still held
    finally:
        release.set()
    await wait_for_running(rh.ctx, 5)
    assert purged == [1]
    assert await send_ok(rh, admin, alice, txn_id="old") != first  # its record is gone


async def test_long_txn_id_is_rejected(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    status, body = await send(rh, admin, {"user_id": str(alice.user_id), "content": TEXT},
                              "x" * 300)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# -- state notices and structural types (SPEC 4.5) -------------------------------------

BANNER = {"text": "maintenance at 22:00"}


@pytest.mark.parametrize("txn_id", [None, "state-1"])
async def test_a_notice_with_state_key_is_a_state_event(rh: Harness,
                                                        txn_id: str | None) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    body = {"user_id": str(alice.user_id), "type": "org.example.banner", "state_key": "",
            "content": BANNER}
    status, answer = await send(rh, admin, body, txn_id)
    assert status == 200, answer
    room_id = await notice_room(rh, alice)
    state = room_state(rh.storage, room_id)
    event = state[("org.example.banner", "")]
    assert (event["event_id"], event["sender"], event["content"]) == (
        answer["event_id"], str(SYSTEM), BANNER)
    assert messages(rh, room_id) == []  # not a timeline message
    assert await rh.storage.get_state_content(room_id, "org.example.banner", "") == BANNER
    if txn_id is not None:  # a retried PUT sends nothing new
        assert (await send(rh, admin, body, txn_id))[1] == answer
    # A later state notice replaces it; another state key sits beside it.
    newer = {**body, "content": {"text": "done"}}
    await send(rh, admin, newer)
    await send(rh, admin, {**newer, "state_key": "second", "content": {"n": 2}})
    assert await rh.storage.get_state_content(room_id, "org.example.banner", "") == {
        "text": "done"}
    assert await rh.storage.get_state_content(room_id, "org.example.banner", "second") == {
        "n": 2}
    # The room is still what it was: the system user in charge, alice invited.
    assert await rh.storage.get_membership(room_id, SYSTEM) == "join"
    assert await rh.storage.get_membership(room_id, alice.user_id) == "invite"


async def test_room_name_as_a_state_notice(rh: Harness) -> None:
    """Types that are not structural may be set as state (a topic, a name)."""
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    for event_type, content in (("m.room.topic", {"topic": "Read me"}),
                                ("m.room.name", {"name": "Important"})):
        status, answer = await send(rh, admin, {"user_id": str(alice.user_id),
                                                "type": event_type, "state_key": "",
                                                "content": content})
        assert status == 200, answer
        room_id = await notice_room(rh, alice)
        assert await rh.storage.get_state_content(room_id, event_type, "") == content


@pytest.mark.parametrize("event_type", sorted(notices.STRUCTURAL_TYPES))
@pytest.mark.parametrize("state_key", [None, "", "@alice:test.example"])
async def test_structural_types_are_refused(rh: Harness, event_type: str,
                                            state_key: str | None) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    body: dict[str, Any] = {"user_id": str(alice.user_id), "type": event_type,
                            "content": {"membership": "join", "join_rule": "public"}}
    if state_key is not None:
        body["state_key"] = state_key
    for txn_id in (None, "t-structural"):
        status, answer = await send(rh, admin, body, txn_id)
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM"), answer
    assert await rh.storage.get_server_notice_room(alice.user_id) is None


async def test_structural_type_refused_in_an_existing_room(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice)
    room_id = await notice_room(rh, alice)
    before = room_events(rh.storage, room_id)
    status, _ = await send(rh, admin, {"user_id": str(alice.user_id),
                                       "type": "m.room.power_levels", "state_key": "",
                                       "content": {"users": {str(alice.user_id): 100}}})
    assert status == 400
    assert room_events(rh.storage, room_id) == before


# -- event limits (SPEC 2): checked before anything is stored ---------------------------

def big_text(length: int) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": "x" * length}


@pytest.mark.parametrize("length", [65_526, 65_300, 66_000])
@pytest.mark.parametrize("txn_id", [None, "big"])
async def test_a_notice_over_the_event_limit_is_413_and_stores_nothing(
        rh: Harness, length: int, txn_id: str | None) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    status, answer = await send(rh, admin, {"user_id": str(alice.user_id),
                                            "content": big_text(length)}, txn_id)
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE"), answer
    # No room, no system user: the check came before anything.
    assert await rh.storage.get_server_notice_room(alice.user_id) is None
    assert await rh.storage.get_account(SYSTEM) is None
    if txn_id is not None:  # not remembered: a smaller retry with the same id is sent
        assert (await send(rh, admin, {"user_id": str(alice.user_id),
                                       "content": TEXT}, txn_id))[0] == 200


async def test_a_large_notice_that_fits_is_sent_within_the_limit(rh: Harness) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice, big_text(63_000))
    [message] = messages(rh, await notice_room(rh, alice))
    assert len(canonical_json(message)) <= 65_536


@pytest.mark.parametrize("max_body", [1_048_576, 200_000])
async def test_the_event_limit_holds_whatever_the_body_limit(
        room_harness_factory: HarnessFactory, max_body: int) -> None:
    rh = await room_harness_factory(http={"max_body_size": max_body})
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    await send_ok(rh, admin, alice)  # the room exists: nothing new may appear in it
    room_id = await notice_room(rh, alice)
    before = room_events(rh.storage, room_id)
    for content in (big_text(150_000), {"msgtype": "m.text", "body": "é" * 40_000},
                    {"msgtype": "m.text", "body": "x", "pad": ["y" * 1000] * 70}):
        status, answer = await send(rh, admin, {"user_id": str(alice.user_id),
                                                "content": content})
        assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")
    status, answer = await send(rh, admin, {"user_id": str(alice.user_id),
                                            "type": "org.example.banner", "state_key": "",
                                            "content": {"text": "z" * 70_000}})
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")
    assert room_events(rh.storage, room_id) == before


@pytest.mark.parametrize(("field", "value"), [
    ("type", "é" * 128),  # 128 characters, 256 bytes
    ("state_key", "k" * 256),
    ("state_key", "ü" * 200),
])
async def test_event_fields_over_255_bytes_are_400(rh: Harness, field: str,
                                                   value: str) -> None:
    admin = await rh.user("admin", admin=True)
    alice = await rh.user("alice")
    body = {"user_id": str(alice.user_id), "type": "org.example.x", "state_key": "",
            "content": {"x": 1}, field: value}
    status, answer = await send(rh, admin, body)
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON"), answer
    assert field in answer["error"]
    assert await rh.storage.get_server_notice_room(alice.user_id) is None
