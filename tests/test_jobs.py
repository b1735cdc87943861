"""Durable jobs (SPEC 11) through HTTP: room deletion with its delete_status, the
broadcast of a server notice, cancel and the jobs list; and the lease rules of every
backend's JobStore."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import Job, JobStep

from .conftest import (
    REMOTE,
    SERVER,
    Harness,
    HarnessFactory,
    User,
    make_room,
    room_events,
    room_tags,
)

JOBS = "/_dendrite/admin/jobs/"


def local(name: str) -> str:
    return f"@{name}:{SERVER}"


def q(value: str) -> str:
    return quote(value, safe="")


async def wait_job(h: Harness, admin: User, job_id: str,
                   wait_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        resp = await h.client.get(JOBS + job_id, headers=admin.auth)
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        if body["status"] in ("complete", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


async def delete(h: Harness, admin: User, room_id: str, body: Any = None,
                 **params: str) -> tuple[int, Any]:
    resp = await h.client.delete(f"/_synapse/admin/v2/rooms/{q(room_id)}",
                                 headers=admin.auth, params=params,
                                 json={} if body is None else body)
    return resp.status, await resp.json()


# -- room deletion ---------------------------------------------------------------------
async def test_delete_parts_blocks_purges(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    members = [local(f"m{i:02d}") for i in range(7)]
    room = await make_room(rh.storage, local("owner"), joined=[*members, f"@r:{REMOTE}"])
    status, body = await delete(rh, admin, room, {"block": True, "purge": False})
    assert status == 200 and set(body) == {"delete_id"}
    job = await wait_job(rh, admin, body["delete_id"])
    assert job["status"] == "complete", job
    assert job["kind"] == "room_delete" and job["done"] == 8 and job["total"] == 8
    assert job["created_ts"] <= job["started_ts"] <= job["finished_ts"]
    for user in [*members, local("owner")]:
        assert await rh.storage.get_membership(room, UserID.from_stored(user)) == "leave"
    assert await rh.storage.get_membership(room, UserID.from_stored(f"@r:{REMOTE}")) == "join"
    leaves = [e for e in room_events(rh.storage, room)
              if e["type"] == "m.room.member" and e["content"]["membership"] == "leave"]
    assert len(leaves) == 8  # each member parted once
    resp = await rh.client.get(f"/_synapse/admin/v2/rooms/delete_status/{body['delete_id']}",
                               headers=admin.auth)
    task = await resp.json()
    assert resp.status == 200
    assert task["status"] == "complete" and task["room_id"] == room
    assert sorted(task["shutdown_room"]["kicked_users"]) == sorted([*members, local("owner")])
    assert task["shutdown_room"]["failed_to_kick_users"] == []
    assert task["shutdown_room"]["new_room_id"] is None
    assert "error" not in task
    resp = await rh.client.get(f"/_synapse/admin/v1/rooms/{q(room)}/block", headers=admin.auth)
    assert (await resp.json())["block"] is True
    assert await rh.storage.room_exists(room)  # purge: false
    resp = await rh.client.get(f"/_synapse/admin/v2/rooms/{q(room)}/delete_status",
                               headers=admin.auth)
    assert resp.status == 200
    assert [t["delete_id"] for t in (await resp.json())["results"]] == [body["delete_id"]]


async def test_delete_moves_members_to_new_room_and_purges(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    await rh.user("mod")
    members = [local(f"m{i}") for i in range(3)]
    room = await make_room(rh.storage, local("owner"), joined=members)
    status, body = await delete(rh, admin, room, {"new_room_user_id": local("mod"),
                                                  "message": "Moved.", "room_name": "Here"})
    assert status == 200
    job = await wait_job(rh, admin, body["delete_id"])
    assert job["status"] == "complete", job
    assert not await rh.storage.room_exists(room)
    resp = await rh.client.get(f"/_synapse/admin/v2/rooms/delete_status/{body['delete_id']}",
                               headers=admin.auth)
    new_room = (await resp.json())["shutdown_room"]["new_room_id"]
    assert new_room and await rh.storage.room_exists(new_room)
    for user in [*members, local("owner")]:
        assert await rh.storage.get_membership(new_room, UserID.from_stored(user)) == "join"
    events = room_events(rh.storage, new_room)
    assert any(e["type"] == "m.room.message" and e["content"]["body"] == "Moved."
               and e["sender"] == local("mod") for e in events)
    name = await rh.storage.get_state_content(new_room, "m.room.name", "")
    assert name == {"name": "Here"}


async def test_delete_refusals_and_dry_run(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    room = await make_room(rh.storage, local("owner"), joined=[local("a"), f"@r:{REMOTE}"])
    for bad in ({"block": "yes"}, {"purge": 1}, {"force_purge": None}):
        status, body = await delete(rh, admin, room, bad)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), bad
    resp = await rh.client.delete(f"/_synapse/admin/v2/rooms/{q(room)}", headers=admin.auth)
    assert resp.status == 400  # a JSON body is required, at least {}
    status, body = await delete(rh, admin, "no-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await delete(rh, admin, room, {"new_room_user_id": f"@x:{REMOTE}"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await delete(rh, admin, room, {"new_room_user_id": local("ghost")})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await delete(rh, admin, room, dry_run="true")
    assert status == 200
    assert body == {"dry_run": True, "count": 2, "affected": [local("a"), local("owner")]}
    status, body = await delete(rh, admin, f"!gone:{SERVER}", dry_run="true")
    assert status == 404
    status, body = await delete(rh, admin, room, dry_run="maybe")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert await rh.storage.get_membership(room, UserID.from_stored(local("a"))) == "join"
    resp = await rh.client.get("/_dendrite/admin/jobs", headers=admin.auth)
    assert (await resp.json())["jobs"] == []  # nothing was scheduled
    resp = await rh.client.get("/_synapse/admin/v2/rooms/delete_status/nope",
                               headers=admin.auth)
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await rh.client.get(f"/_synapse/admin/v2/rooms/{q(room)}/delete_status",
                               headers=admin.auth)
    assert resp.status == 404


async def test_evacuations_dry_run(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    a = await rh.user("a")
    room = await make_room(rh.storage, local("owner"), joined=[local("a"), local("b")])
    resp = await rh.client.post(f"/_dendrite/admin/evacuateRoom/{q(room)}?dry_run=true",
                                headers=admin.auth)
    assert await resp.json() == {"dry_run": True, "count": 3,
                                 "affected": [local("a"), local("b"), local("owner")]}
    resp = await rh.client.post(f"/_dendrite/admin/evacuateUser/{q(str(a.user_id))}"
                                "?dry_run=true", headers=admin.auth)
    assert await resp.json() == {"dry_run": True, "count": 1, "affected": [room]}
    assert await rh.storage.get_membership(room, a.user_id) == "join"
    resp = await rh.client.post(f"/_dendrite/admin/evacuateUser/{q(local('nobody'))}"
                                "?dry_run=true", headers=admin.auth)
    assert resp.status == 404


async def test_dry_run_lists_at_most_1000(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    room = await make_room(h.storage, local("owner"),
                           joined=[local(f"u{i:04d}") for i in range(1200)])
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/{q(room)}?dry_run=true",
                               headers=admin.auth)
    body = await resp.json()
    assert body["count"] == 1201 and len(body["affected"]) == 1000
    assert body["affected"][0] == local("owner") or body["affected"][0] == local("u0000")


# -- broadcast --------------------------------------------------------------------------
async def test_broadcast_reaches_every_local_user_once(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    users = [await rh.user(f"user{i}") for i in range(5)]
    gone = await rh.user("gone")
    rh.storage.set_account_flags(gone.user_id, is_deactivated=True)  # type: ignore[attr-defined]
    content = {"msgtype": "m.text", "body": "Maintenance at 10:00"}
    resp = await rh.client.post("/_dendrite/admin/broadcastServerNotice",
                                headers=admin.auth, json={"content": content})
    assert resp.status == 200
    job_id = (await resp.json())["job_id"]
    job = await wait_job(rh, admin, job_id)
    assert job["status"] == "complete", job
    assert (job["done"], job["failed"]) == (6, 0)  # 5 users and the admin
    system = UserID("_server", SERVER)
    for who in [admin, *users]:
        room = await rh.storage.get_server_notice_room(who.user_id)
        assert room is not None
        notices = [e for e in room_events(rh.storage, room) if e["type"] == "m.room.message"]
        assert [e["content"] for e in notices] == [content]
        assert notices[0]["sender"] == str(system)
    assert await rh.storage.get_server_notice_room(gone.user_id) is None
    assert await rh.storage.get_server_notice_room(system) is None
    assert job["total"] == 6
    # The rooms are the notices module's own (whether made one by one or in bulk):
    # invited, tagged, named, and reused by the next notice.
    for who in [admin, *users]:
        room = await rh.storage.get_server_notice_room(who.user_id)
        assert room is not None
        assert await rh.storage.get_membership(room, who.user_id) == "invite"
        assert await rh.storage.get_membership(room, system) == "join"
        assert "m.server_notice" in room_tags(rh.storage, who.user_id, room)
        assert await rh.storage.get_state_content(room, "m.room.name", "") == {
            "name": "Server Alerts"}
        member = await rh.storage.get_state_content(room, "m.room.member", str(who.user_id))
        assert member == {"membership": "invite", "displayname": who.user_id.localpart}
    assert room is not None
    summary = await rh.storage.get_room_summary(room, SERVER)
    assert summary is not None and summary.joined_members == 1
    assert summary.federatable is False and summary.join_rules == "invite"
    resp = await rh.client.post("/_synapse/admin/v1/send_server_notice", headers=admin.auth,
                                json={"user_id": str(users[0].user_id), "content": content})
    assert resp.status == 200
    again = await rh.storage.get_server_notice_room(users[0].user_id)
    assert again is not None
    assert len([e for e in room_events(rh.storage, again)
                if e["type"] == "m.room.message"]) == 2


async def test_broadcast_filters_and_refusals(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    team = await rh.user("team-a")
    other = await rh.user("zed")
    url = "/_dendrite/admin/broadcastServerNotice"
    body = {"content": {"msgtype": "m.text", "body": "hi"},
            "filters": {"user_id_prefix": "@team", "admins": False}}
    resp = await rh.client.post(url, headers=admin.auth, json=body)
    job = await wait_job(rh, admin, (await resp.json())["job_id"])
    assert job["done"] == 1
    assert await rh.storage.get_server_notice_room(team.user_id) is not None
    assert await rh.storage.get_server_notice_room(other.user_id) is None
    assert await rh.storage.get_server_notice_room(admin.user_id) is None
    for bad in ({}, {"content": {"body": "no msgtype"}}, {"content": "x"},
                {"content": {"msgtype": "m.text", "body": "x"}, "filters": {"admins": 1}},
                {"content": {"msgtype": "m.text", "body": "x"}, "filters": {"x": 1}}):
        resp = await rh.client.post(url, headers=admin.auth, json=bad)
        assert resp.status == 400, bad


# -- the jobs endpoints ---------------------------------------------------------------
async def test_jobs_list_get_cancel(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    # Stop this worker's runner so that jobs stay scheduled.
    assert h.ctx.jobs is not None
    await h.ctx.jobs.stop()
    rooms = [await make_room(h.storage, local("owner")) for _ in range(3)]
    ids = [(await delete(h, admin, r))[1]["delete_id"] for r in rooms]
    resp = await h.client.get(JOBS + ids[0], headers=admin.auth)
    body = await resp.json()
    assert body["status"] == "scheduled" and body["kind"] == "room_delete"
    assert set(body) == {"job_id", "kind", "status", "done", "failed", "created_ts",
                         "target"}
    status, _ = await delete(h, admin, rooms[0])
    assert status == 400  # one deletion of a room at a time
    resp = await h.client.get("/_dendrite/admin/jobs?limit=2", headers=admin.auth)
    page = await resp.json()
    assert [j["job_id"] for j in page["jobs"]] == [ids[2], ids[1]]
    resp = await h.client.get(f"/_dendrite/admin/jobs?limit=2&from={page['next_from']}",
                              headers=admin.auth)
    assert [j["job_id"] for j in (await resp.json())["jobs"]] == [ids[0]]
    resp = await h.client.post(JOBS + ids[1] + "/cancel", headers=admin.auth)
    assert (await resp.json())["status"] == "cancelled"
    resp = await h.client.get("/_dendrite/admin/jobs?status=cancelled", headers=admin.auth)
    assert [j["job_id"] for j in (await resp.json())["jobs"]] == [ids[1]]
    for path in (JOBS + "nope", JOBS + "nope/cancel"):
        resp = await h.client.request("GET" if path.endswith("nope") else "POST", path,
                                      headers=admin.auth)
        assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await h.client.get("/_dendrite/admin/jobs?status=bogus", headers=admin.auth)
    assert resp.status == 400
    # A cancelled job is never run; the others are.
    assert await h.ctx.jobs.run_once() and await h.ctx.jobs.run_once()
    assert not await h.ctx.jobs.run_once()
    assert (await h.storage.get_job(ids[1])).status == "cancelled"  # type: ignore[union-attr]
    assert await h.storage.room_exists(rooms[1])
    assert not await h.storage.room_exists(rooms[0])


async def test_rooms_switch_off(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(endpoints={"rooms": False})
    admin = await h.user("root", admin=True)
    for path in ("/_synapse/admin/v1/rooms", "/_dendrite/admin/jobs",
                 "/_dendrite/admin/emptyRooms"):
        resp = await h.client.get(path, headers=admin.auth)
        assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")


# -- the lease rules, on every backend and the host -------------------------------------
def _job(job_id: str, kind: str = "k", target: str | None = None) -> Job:
    return Job(job_id=job_id, seq=0, kind=kind, target=target, params={"a": 1},
               status="scheduled", created_ts=1)


async def test_job_store_lease_rules(room_storage: AdminStorage) -> None:
    st = room_storage
    await st.create_job(_job("j1"))
    await st.create_job(_job("j2", kind="other"))
    assert await st.claim_job("w1", 1000, 100, ("none",)) is None
    claimed = await st.claim_job("w1", 1000, 100, ("k",))
    assert claimed is not None and claimed.job_id == "j1"
    assert (claimed.status, claimed.worker_id, claimed.lease_expires_ts,
            claimed.started_ts) == ("active", "w1", 1100, 1000)
    # Held: nobody else gets it while the lease runs.
    assert await st.claim_job("w2", 1050, 100, ("k",)) is None
    assert await st.renew_lease("j1", "w1", 1090, 100)
    assert await st.claim_job("w2", 1150, 100, ("k",)) is None
    assert await st.record_job_step("j1", "w1", JobStep("c1", done=2, failed=1, total=9,
                                                        result={"x": 1}, items=("a", "b")))
    assert not await st.record_job_step("j1", "w2", JobStep("bad", done=5))
    # The lease runs out: w2 takes over and resumes from the cursor.
    taken = await st.claim_job("w2", 1200, 100, ("k",))
    assert taken is not None and taken.worker_id == "w2"
    assert (taken.cursor, taken.done, taken.failed, taken.total) == ("c1", 2, 1, 9)
    assert taken.started_ts == 1000 and dict(taken.result) == {"x": 1}
    assert not await st.renew_lease("j1", "w1", 1210, 100)
    assert not await st.record_job_step("j1", "w1", JobStep("c2", done=1))
    assert not await st.finish_job("j1", "w1", 1220, "complete", None, {})
    assert await st.record_job_step("j1", "w2", JobStep("c2", done=1, items=("c",)))
    assert await st.get_job_items("j1", limit=10) == ["a", "b", "c"]
    assert await st.get_job_items("j1", limit=2) == ["a", "b"]
    assert await st.finish_job("j1", "w2", 1300, "complete", None, {"y": 2})
    done = await st.get_job("j1")
    assert done is not None and done.status == "complete" and done.finished_ts == 1300
    assert dict(done.result) == {"x": 1, "y": 2} and done.done == 3
    # Cancel: a scheduled job; an ended job is unchanged.
    cancelled = await st.cancel_job("j2", 1400)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await st.claim_job("w1", 1500, 100, ("other",)) is None
    ended = await st.cancel_job("j1", 1500)
    assert ended is not None and ended.status == "complete"
    assert await st.cancel_job("nope", 1) is None
    listed = await st.list_jobs(kind=None, status=None, target=None, before_seq=None,
                                limit=10)
    assert [j.job_id for j in listed] == ["j2", "j1"]
    assert [j.job_id for j in await st.list_jobs(
        kind="k", status=None, target=None, before_seq=None, limit=10)] == ["j1"]
    assert [j.job_id for j in await st.list_jobs(
        kind=None, status=None, target=None, before_seq=listed[0].seq, limit=10)] == ["j1"]


async def test_notice_recipients(room_storage: AdminStorage) -> None:
    from dendrite_admin_ext.storage.types import AccountType

    from .conftest import make_user
    for name in ("b", "a", "c.d", "adm"):
        await make_user(room_storage, name,
                        AccountType.ADMIN if name == "adm" else AccountType.USER)
    await make_user(room_storage, "far", server_name=REMOTE)
    got = await room_storage.get_notice_recipients(
        SERVER, after=None, limit=10, user_id_prefix=None, admins=None, not_user_types=())
    assert [u.localpart for u in got] == ["a", "adm", "b", "c.d"]
    got = await room_storage.get_notice_recipients(
        SERVER, after=UserID("adm", SERVER), limit=1, user_id_prefix=None, admins=None,
        not_user_types=())
    assert [u.localpart for u in got] == ["b"]
    got = await room_storage.get_notice_recipients(
        SERVER, after=None, limit=10, user_id_prefix="@a", admins=False, not_user_types=())
    assert [u.localpart for u in got] == ["a"]
    got = await room_storage.get_notice_recipients(
        SERVER, after=None, limit=10, user_id_prefix=None, admins=None,
        not_user_types=("",))
    assert got == []


async def test_runner_resumes_after_its_lease_ran_out(h: Harness) -> None:
    """A job whose worker died (lease ran out) is finished by another worker from its
    cursor, and nobody is parted twice."""
    admin = await h.user("root", admin=True)
    assert h.ctx.jobs is not None
    await h.ctx.jobs.stop()
    members = [local(f"m{i:02d}") for i in range(10)]
    room = await make_room(h.storage, local("owner"), joined=members)
    _, body = await delete(h, admin, room, {"purge": False})
    job_id = body["delete_id"]
    # A dead worker: it claimed the job, did the first page and vanished.
    now = h.ctx.clock()
    dead = await h.storage.claim_job("dead", now - 10_000, 1000, ("room_delete",))
    assert dead is not None and dead.job_id == job_id
    from dendrite_admin_ext.services.jobs import JobRun
    run = JobRun(h.ctx, dead, "dead", None, 0, 0)
    await run.step(JobStep('{"phase": "part", "after": null}', total=11))
    first = await h.storage.get_local_joined_members(room, SERVER, after=None, limit=4)
    from dendrite_admin_ext.storage.types import MembershipChange
    await h.storage.apply_memberships(room, [MembershipChange(m.user, m.user,
                                                              {"membership": "leave"})
                                             for m in first])
    await run.step(JobStep(json.dumps({"phase": "part", "after": str(first[-1].user)}),
                           done=4, items=tuple(str(m.user) for m in first)))
    # The second page was recorded as pending, and only half of it parted, when the
    # worker died.
    second = await h.storage.get_local_joined_members(room, SERVER, after=first[-1].user,
                                                      limit=4)
    await run.step(JobStep(json.dumps({"phase": "part", "after": str(first[-1].user),
                                       "pending": str(second[-1].user),
                                       "pending_count": 4}),
                           items=tuple(str(m.user) for m in second)))
    await h.storage.apply_memberships(room, [MembershipChange(m.user, m.user,
                                                              {"membership": "leave"})
                                             for m in second[:2]])
    assert await h.ctx.jobs.run_once()
    job = await h.storage.get_job(job_id)
    assert job is not None and job.status == "complete" and job.done == 11
    assert job.worker_id != "dead"
    leaves = [e for e in room_events(h.storage, room) if e["type"] == "m.room.member"
              and e["content"]["membership"] == "leave"]
    # Everyone parted exactly once, and reported once as kicked.
    assert sorted(e["state_key"] for e in leaves) == sorted([*members, local("owner")])
    kicked = await h.storage.get_job_items(job_id, limit=100)
    assert sorted(kicked) == sorted([*members, local("owner")])


async def test_storage_outage_hands_the_job_back(h: Harness) -> None:
    """A job interrupted by the database going away is not failed: it is handed back
    and resumes from its last step at the next claim."""
    from dendrite_admin_ext.errors import StorageUnavailableError
    from dendrite_admin_ext.services.jobs import JobRun, JobRunner, submit_job

    calls: list[str | None] = []

    async def flaky(run: JobRun) -> dict[str, Any]:
        calls.append(run.cursor)
        if len(calls) == 1:
            await run.step(JobStep("half", done=1))
            raise StorageUnavailableError("database gone")
        await run.step(JobStep("all", done=1))
        return {"ok": True}

    runner = JobRunner(h.ctx, {"flaky": flaky}, lease_ms=60_000, poll_interval_s=1)
    job = await submit_job(h.ctx, "flaky", None, {})
    assert await runner.run_once()
    interrupted = await h.storage.get_job(job.job_id)
    assert interrupted is not None and interrupted.status == "active"
    assert await runner.run_once()  # claimable at once, not after the 60 s lease
    done = await h.storage.get_job(job.job_id)
    assert done is not None and done.status == "complete" and done.done == 2
    assert calls == [None, "half"]


async def test_exclusive_jobs_one_unfinished_per_target(room_storage: AdminStorage) -> None:
    """SPEC 11: one deletion of a room at a time.  Many requests at once (a first-hour
    review sent four in parallel and three ran): exactly one is recorded, and another
    is accepted only once it has finished."""
    st = room_storage
    made = await asyncio.gather(*(st.create_job(_job(f"d{i}", target="!r:x"), exclusive=True)
                                  for i in range(6)))
    assert sorted(made) == [False] * 5 + [True]
    winner = next(f"d{i}" for i, ok in enumerate(made) if ok)
    assert await st.create_job(_job("other-target", target="!elsewhere:x"),
                               exclusive=True)
    assert await st.create_job(_job("not-exclusive"))  # plain jobs are never refused
    claimed = await st.claim_job("w1", 1000, 100, ("k",))
    assert claimed is not None and claimed.job_id == winner
    assert not await st.create_job(_job("while-active", target="!r:x"), exclusive=True)
    assert await st.finish_job(winner, "w1", 1010, "complete", None, {})
    assert await st.create_job(_job("after", target="!r:x"), exclusive=True)
    assert (await st.cancel_job("after", 1020)) is not None
    assert await st.create_job(_job("after-cancel", target="!r:x"), exclusive=True)


async def test_parallel_deletions_of_one_room_run_once(rh: Harness) -> None:
    admin = await rh.user("root", admin=True)
    room = await make_room(rh.storage, local("owner"), joined=[local("m1")])
    answers = await asyncio.gather(*(delete(rh, admin, room) for _ in range(4)))
    accepted = [body["delete_id"] for status, body in answers if status == 200]
    assert len(accepted) == 1, answers
    assert sorted(status for status, _ in answers) == [200, 400, 400, 400]
    assert {body["errcode"] for status, body in answers if status == 400} == {
        "M_INVALID_PARAM"}


async def test_jobs_list_refuses_an_unknown_kind(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    resp = await h.client.get("/_dendrite/admin/jobs", params={"kind": "bogus"},
                              headers=admin.auth)
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_INVALID_PARAM"
    resp = await h.client.get("/_dendrite/admin/jobs", params={"kind": "room_delete"},
                              headers=admin.auth)
    assert resp.status == 200 and (await resp.json())["jobs"] == []
