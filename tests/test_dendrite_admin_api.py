"""Room changes beside Dendrite go through Dendrite's own admin API (SPEC 8), here a
stand-in that behaves as research/admin-apis.md §A documents (tests/dendrite_standin.py),
and its answers become this API's Matrix errors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestServer

from dendrite_admin_ext import messages
from dendrite_admin_ext.dendrite_client import DendriteClient, RemoteMatrixError, remote_error
from dendrite_admin_ext.errors import InternalError, InvalidParam, NotFound, ServiceUnavailable
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services import broadcast, homeserver
from dendrite_admin_ext.services.jobs import JobRun, JobRunner
from dendrite_admin_ext.services.room_admin import ROOM_DELETE, run_room_delete
from dendrite_admin_ext.storage.types import JobStep
from dendrite_admin_ext.validation import Schemas

from .conftest import Harness, make_config, make_host_app
from .dendrite_schema import SERVER, DendriteDb
from .dendrite_standin import ADMIN_TOKEN, USER_TOKEN, DendriteStandIn
from .test_dendrite_shared import ENGINES, _new_db, _storage

ADMIN = f"@admin:{SERVER}"
ALICE = f"@alice:{SERVER}"
ROOM = f"!room:{SERVER}"


@pytest.fixture
def standin() -> DendriteStandIn:
    return DendriteStandIn(SERVER, rooms={ROOM: [ALICE, f"@bob:{SERVER}"]},
                           user_rooms={ALICE: [ROOM, f"!other:{SERVER}"]})


@pytest.fixture
async def dendrite_url(aiohttp_server: Any, standin: DendriteStandIn) -> str:
    server: TestServer = await aiohttp_server(standin.app(), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


async def _harness(aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
                   url: str | None, token: str = ADMIN_TOKEN,
                   **extra: Any) -> Harness:
    db.create_account("admin", account_type=3)
    db.create_device("admin", "ADMINDEV", "tok-admin", ip="203.0.113.5", user_agent="Element")
    db.create_account("alice")
    database: dict[str, Any] = {"backend": db.engine, "shared_with": "dendrite"}
    if db.engine == "sqlite":
        database["path"] = str(db.path)
    else:
        database["dsn"] = db.dsn
    overrides: dict[str, Any] = {"database": database, **extra}
    if url is not None:
        (tmp_path / "token").write_text(token + "\n")
        overrides["homeserver"] = {"url": url, "access_token_path": str(tmp_path / "token"),
                                   "timeout": 5}
    storage = _storage(db)
    app, ctx = make_host_app(make_config(schemas, **overrides), storage, schemas)
    return Harness(await aiohttp_client(app), ctx, storage)


AUTH = {"Authorization": "Bearer tok-admin"}


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> DendriteDb:
    return _new_db(request, tmp_path, request.param, "fresh")


async def test_without_homeserver_url_room_routes_are_not_mounted(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, None)
    for method, path in (("POST", f"/_dendrite/admin/evacuateRoom/{ROOM}"),
                         ("GET", f"/_dendrite/admin/evacuateUser/{ALICE}"),
                         ("POST", "/_synapse/admin/v1/send_server_notice"),
                         ("POST", "/_dendrite/admin/broadcastServerNotice"),
                         ("DELETE", f"/_synapse/admin/v2/rooms/{ROOM}"),
                         ("POST", f"/_dendrite/admin/purgeRoom/{ROOM}")):
        resp = await h.client.request(method, path, headers=AUTH, json={})
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
    # the rest is served
    assert (await h.client.get(f"/_synapse/admin/v1/whois/{ADMIN}", headers=AUTH)).status == 200
    assert h.ctx.homeserver is None


async def test_evacuations_are_dendrites(aiohttp_client: Any, schemas: Schemas,
                                         db: DendriteDb, tmp_path: Path, dendrite_url: str,
                                         standin: DendriteStandIn) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/{ROOM}", headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"affected": [ALICE, f"@bob:{SERVER}"]}
    assert standin.rooms[ROOM] == []
    # again (GET, as the seed documents): Dendrite's {"affected": null} is []
    resp = await h.client.get(f"/_dendrite/admin/evacuateRoom/{ROOM}", headers=AUTH)
    assert await resp.json() == {"affected": []}
    assert standin.calls[-1] == ("POST", f"/_dendrite/admin/evacuateRoom/{ROOM}")
    # unknown room: Dendrite's 404 M_NOT_FOUND passed on
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/!nope:{SERVER}", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"
    # the audit trail records Dendrite's outcomes as this API's
    log = await (await h.client.get("/_dendrite/admin/auditLog", headers=AUTH)).json()
    outcomes = [(e["action"], e["outcome"]) for e in log["entries"]]
    assert outcomes[:3] == [("evacuateRoom", "M_NOT_FOUND"), ("evacuateRoom", "ok"),
                            ("evacuateRoom", "ok")]
    # Dendrite fails (500 {"message"}): 503 with Retry-After, a Matrix error
    standin.broken.add(ROOM)
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/{ROOM}", headers=AUTH)
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert (await resp.json())["errcode"] == "M_UNKNOWN"

    resp = await h.client.post(f"/_dendrite/admin/evacuateUser/{ALICE}", headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"affected": [ROOM, f"!other:{SERVER}"]}
    # checked here, before Dendrite is asked: remote user, unknown account
    before = len(standin.calls)
    resp = await h.client.post("/_dendrite/admin/evacuateUser/@x:elsewhere.example",
                               headers=AUTH)
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_INVALID_PARAM"
    resp = await h.client.post(f"/_dendrite/admin/evacuateUser/@ghost:{SERVER}", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"
    assert len(standin.calls) == before
    # a non-admin never reaches Dendrite
    db.create_account("eve")
    db.create_device("eve", "EVEDEV", "tok-eve", ip="198.51.100.1", user_agent="x")
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/{ROOM}",
                               headers={"Authorization": "Bearer tok-eve"})
    assert resp.status == 403 and len(standin.calls) == before


async def test_server_notices_are_dendrites(aiohttp_client: Any, schemas: Schemas,
                                            db: DendriteDb, tmp_path: Path, dendrite_url: str,
                                            standin: DendriteStandIn) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    body = {"user_id": ALICE, "content": {"msgtype": "m.text", "body": "maintenance at 6",
                                          "format": "org.matrix.custom.html"}}
    resp = await h.client.post("/_synapse/admin/v1/send_server_notice", headers=AUTH,
                               json=body)
    assert resp.status == 200
    first = (await resp.json())["event_id"]
    assert standin.notices == [body]
    # nothing in the package's own room tables: the room is Dendrite's
    assert db.query("SELECT COUNT(*) FROM dendrite_admin_events") == [(0,)]

    url = "/_synapse/admin/v1/send_server_notice/txn1"
    one = await (await h.client.put(url, headers=AUTH, json=body)).json()
    again = await (await h.client.put(url, headers=AUTH, json=body)).json()
    assert one == again and one["event_id"] != first
    assert len(standin.notices) == 2
    # the same txnId from another admin is another transaction
    db.create_account("admin2", account_type=3)
    db.create_device("admin2", "DEV2", "tok-admin2", ip="203.0.113.9", user_agent="x")
    other = await (await h.client.put(url, headers={"Authorization": "Bearer tok-admin2"},
                                      json=body)).json()
    assert other["event_id"] != one["event_id"] and len(standin.notices) == 3

    # checked here first: unknown user, remote user, the notices user itself
    for target, status in ((f"@ghost:{SERVER}", 404), ("@x:elsewhere.example", 400),
                           (f"@_server:{SERVER}", 404)):
        resp = await h.client.post("/_synapse/admin/v1/send_server_notice", headers=AUTH,
                                   json={**body, "user_id": target})
        assert resp.status == status, target
    assert len(standin.notices) == 3


# -- the client's error mapping, one place --------------------------------------------------
async def test_client_maps_dendrites_answers(dendrite_url: str,
                                             standin: DendriteStandIn) -> None:
    client = DendriteClient(dendrite_url, ADMIN_TOKEN, timeout=5)
    await client.start()
    try:
        await client.purge_room(ROOM)
        assert ROOM not in standin.rooms
        # purgeRoom's 500 {"message": "room … does not exist"} is a 404
        with pytest.raises(NotFound, match="does not exist"):
            await client.purge_room(ROOM)
        with pytest.raises(ServiceUnavailable):  # 500 for a malformed ID
            await client.purge_room("not-a-room")
        # MessageResponse: 400 {"message"} without errcode
        with pytest.raises(InvalidParam, match="can only evacuate local users") as bad:
            await client.evacuate_user(UserID("x", "elsewhere.example"))
        assert bad.value.http_status == 400
        assert bad.value.body()["errcode"] == "M_INVALID_PARAM"
        assert "token" not in repr(client) and ADMIN_TOKEN not in repr(client)
        # Dendrite's own errcode is this API's, also for the audit trail
        with pytest.raises(RemoteMatrixError) as missing:
            await client.evacuate_room(f"!nope:{SERVER}")
        assert missing.value.errcode == "M_NOT_FOUND" and missing.value.http_status == 404
        assert remote_error(400, "not an errcode", "x").errcode == "M_UNKNOWN"
    finally:
        await client.close()

    # a token that is not an admin's, or not a token at all: a misconfiguration
    for token in (USER_TOKEN, "wrong"):
        client = DendriteClient(dendrite_url, token, timeout=5)
        try:
            with pytest.raises(InternalError):
                await client.evacuate_room(ROOM)
        finally:
            await client.close()

    # too slow, and unreachable: 503 with Retry-After
    standin.delay_s = 1.0
    client = DendriteClient(dendrite_url, ADMIN_TOKEN, timeout=0.2)
    try:
        with pytest.raises(ServiceUnavailable) as slow:
            await client.evacuate_room(ROOM)
        assert slow.value.headers["Retry-After"] == "5"
    finally:
        await client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = DendriteClient(f"http://127.0.0.1:{port}", ADMIN_TOKEN, timeout=2)
    try:
        with pytest.raises(ServiceUnavailable):
            await client.send_server_notice({"user_id": ALICE, "content": {}})
    finally:
        await client.close()



# -- deactivation beside Dendrite (SPEC 8, 9): the rooms part goes through Dendrite -------
async def test_deactivation_parts_rooms_through_dendrite_and_leaves_readable_rows(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
        dendrite_url: str, standin: DendriteStandIn) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    db.create_device("alice", "ALICEDEV", "tok-alice", ip="198.51.100.7", user_agent="x")
    resp = await h.client.post(f"/_synapse/admin/v1/deactivate/{ALICE}", headers=AUTH,
                               json={"erase": True})
    assert resp.status == 200, await resp.json()
    assert ("POST", f"/_dendrite/admin/evacuateUser/{ALICE}") in standin.calls
    assert ALICE not in standin.user_rooms  # Dendrite parted her from its rooms
    # Dendrite's own statements still read every row it scans into plain strings.
    assert db.query("SELECT password_hash FROM userapi_accounts WHERE localpart = $1",
                    "alice") == [("",)]
    assert db.select("profile", "alice", SERVER)[0][2:] == ("", "")
    assert db.select("devices_by_localpart", "alice", SERVER, "") == []
    assert db.query("SELECT is_deactivated FROM userapi_accounts WHERE localpart = $1",
                    "alice")[0][0] in (True, 1)
    # her token is dead, and the details say what happened
    resp = await h.client.get(f"/_synapse/admin/v1/whois/{ALICE}",
                              headers={"Authorization": "Bearer tok-alice"})
    assert resp.status == 401
    details = await (await h.client.get(f"/_synapse/admin/v2/users/{ALICE}",
                                        headers=AUTH)).json()
    assert (details["deactivated"], details["erased"]) == (True, True)


async def test_deactivation_without_homeserver_url_is_refused_and_changes_nothing(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, None)
    for method, path, body in (
            ("POST", f"/_synapse/admin/v1/deactivate/{ALICE}", {"erase": True}),
            ("PUT", f"/_synapse/admin/v2/users/{ALICE}", {"deactivated": True})):
        resp = await h.client.request(method, path, headers=AUTH, json=body)
        assert resp.status == 400, path
        assert (await resp.json())["errcode"] == "M_INVALID_PARAM"
    assert db.query("SELECT is_deactivated FROM userapi_accounts WHERE localpart = $1",
                    "alice")[0][0] in (False, 0)


# -- durable jobs beside Dendrite (SPEC 8, 11) ------------------------------------------
async def _wait_job(h: Harness, job_id: str) -> dict[str, Any]:
    for _ in range(1500):
        body: dict[str, Any] = await (await h.client.get(
            f"/_dendrite/admin/jobs/{job_id}", headers=AUTH)).json()
        if body["status"] in ("complete", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(body)


def _recipients(standin: DendriteStandIn) -> list[str]:
    return sorted(str(n["user_id"]) for n in standin.notices)


async def test_broadcast_goes_through_dendrite_once_per_user(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
        dendrite_url: str, standin: DendriteStandIn) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url,
                       jobs={"batch_size": 3})
    for name in ("bob", "carol", "dave", "_server"):
        db.create_account(name)
    db.query("UPDATE userapi_accounts SET is_deactivated = $1 WHERE localpart = $2",
             True, "dave")
    content = {"msgtype": "m.text", "body": "Maintenance at 10:00"}
    resp = await h.client.post("/_dendrite/admin/broadcastServerNotice", headers=AUTH,
                               json={"content": content})
    assert resp.status == 200
    job = await _wait_job(h, (await resp.json())["job_id"])
    assert job["status"] == "complete", job
    expected = sorted([ADMIN, ALICE, f"@bob:{SERVER}", f"@carol:{SERVER}"])
    # through Dendrite's send_server_notice, neither the deactivated account nor the
    # notices user, each with a txnId of its own
    assert _recipients(standin) == expected
    assert all(n["content"] == content and n["type"] == "m.room.message"
               for n in standin.notices)
    puts = [p for m, p in standin.calls if m == "PUT" and "send_server_notice" in p]
    assert len(set(puts)) == len(puts) == 4
    assert (job["done"], job["failed"], job["total"]) == (4, 0, 4)
    # nothing in the package's own room tables: the rooms are Dendrite's
    assert db.query("SELECT COUNT(*) FROM dendrite_admin_events") == [(0,)]

    # Dendrite refusing one notice fails that user only; down, it is tried again.
    standin.notices.clear()
    standin.hold_after, standin.fail_held = 1, True
    standin.release.set()
    resp = await h.client.post("/_dendrite/admin/broadcastServerNotice", headers=AUTH,
                               json={"content": content,
                                     "filters": {"user_id_prefix": "@a"}})
    job = await _wait_job(h, (await resp.json())["job_id"])
    assert job["status"] == "complete"
    assert (job["done"], job["failed"]) == (1, 1)


async def test_broadcast_resumed_after_a_killed_worker_sends_nobody_twice(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
        dendrite_url: str, standin: DendriteStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broadcast, "DENDRITE_RETRY_S", 0.01)
    monkeypatch.setattr(broadcast, "DENDRITE_ATTEMPTS", 1)
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url,
                       jobs={"batch_size": 5})
    users = [f"u{i:02d}" for i in range(12)]
    for name in [*users, "_server"]:
        db.create_account(name)
    assert h.ctx.jobs is not None
    await h.ctx.jobs.stop()
    resp = await h.client.post("/_dendrite/admin/broadcastServerNotice", headers=AUTH,
                               json={"content": {"msgtype": "m.text", "body": "hi"}})
    job_id = (await resp.json())["job_id"]
    # Worker a: the first page (_server skipped, admin, alice, u00, u01) and two
    # notices of the second go through; the rest of that page hangs in Dendrite.
    standin.hold_after = 6
    dead = JobRunner(h.ctx, {broadcast.BROADCAST: broadcast.run_broadcast},
                     lease_ms=60_000, poll_interval_s=1, worker_id="a")
    task = asyncio.ensure_future(dead.run_once())
    for _ in range(500):
        recorded = db.query("SELECT COUNT(*) FROM dendrite_admin_notice_txns")[0][0]
        if recorded == 6 and standin.held:
            break
        await asyncio.sleep(0.01)
    assert recorded == 6 and standin.held, (recorded, standin.held)
    # Killed: no hand-over, the lease simply runs out.  Dendrite restarts too (its
    # transactions cache is gone, the held notices never sent).
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    standin.fail_held = True
    standin.release.set()
    await asyncio.sleep(0.05)
    standin.restart()
    standin.hold_after = None
    job = await h.storage.get_job(job_id)
    assert job is not None and job.status == "active" and job.done == 4
    await h.storage.renew_lease(job_id, "a", h.ctx.clock() - 120_000, 60_000)

    again = JobRunner(h.ctx, {broadcast.BROADCAST: broadcast.run_broadcast},
                      lease_ms=60_000, poll_interval_s=1, worker_id="b")
    assert await again.run_once()
    done = await _wait_job(h, job_id)
    expected = sorted([ADMIN, ALICE, *(f"@{u}:{SERVER}" for u in users)])
    assert _recipients(standin) == expected  # everyone once, nobody twice
    assert (done["status"], done["done"], done["failed"], done["total"]) == (
        "complete", 14, 0, 14)


def _rooms_path(room_id: str, tail: str = "") -> str:
    return f"/_synapse/admin/v2/rooms/{quote(room_id, safe='')}{tail}"


async def test_room_deletion_is_dendrites_evacuate_then_purge(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
        dendrite_url: str, standin: DendriteStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(homeserver, "RETRY_S", 0.01)
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    kept, broken = f"!kept:{SERVER}", f"!broken:{SERVER}"
    standin.rooms[kept] = [ALICE]
    standin.rooms[broken] = [ALICE]
    resp = await h.client.delete(_rooms_path(ROOM), headers=AUTH, json={})
    assert resp.status == 200
    delete_id = (await resp.json())["delete_id"]
    job = await _wait_job(h, delete_id)
    assert (job["status"], job["done"], job["total"]) == ("complete", 2, 2)
    # Dendrite's purge does not evacuate: evacuateRoom first, then purgeRoom
    assert [c for c in standin.calls if ROOM in c[1]] == [
        ("POST", f"/_dendrite/admin/evacuateRoom/{ROOM}"),
        ("POST", f"/_dendrite/admin/purgeRoom/{ROOM}")]
    assert ROOM not in standin.rooms
    status = await (await h.client.get(
        f"/_synapse/admin/v2/rooms/delete_status/{delete_id}", headers=AUTH)).json()
    assert status == {"delete_id": delete_id, "room_id": ROOM, "status": "complete",
                      "shutdown_room": {"kicked_users": [ALICE, f"@bob:{SERVER}"],
                                        "failed_to_kick_users": [], "local_aliases": [],
                                        "new_room_id": None}}
    by_room = await (await h.client.get(_rooms_path(ROOM, "/delete_status"),
                                        headers=AUTH)).json()
    assert [r["delete_id"] for r in by_room["results"]] == [delete_id]

    # purge false: evacuated only
    resp = await h.client.delete(_rooms_path(kept), headers=AUTH, json={"purge": False})
    job = await _wait_job(h, (await resp.json())["delete_id"])
    assert job["status"] == "complete" and standin.rooms[kept] == []
    assert ("POST", f"/_dendrite/admin/purgeRoom/{kept}") not in standin.calls
    # a room Dendrite does not know: nothing to do, as Synapse's deletion of one
    gone = f"!gone:{SERVER}"
    resp = await h.client.delete(_rooms_path(gone), headers=AUTH, json={})
    job = await _wait_job(h, (await resp.json())["delete_id"])
    assert (job["status"], job["done"]) == ("complete", 0)
    assert ("POST", f"/_dendrite/admin/purgeRoom/{gone}") not in standin.calls
    # Dendrite failing: tried again, then the job fails with this API's message
    standin.broken.add(broken)
    resp = await h.client.delete(_rooms_path(broken), headers=AUTH, json={})
    delete_id = (await resp.json())["delete_id"]
    job = await _wait_job(h, delete_id)
    assert job["status"] == "failed" and job["error"] == messages.HOMESERVER_FAILED
    calls = [c for c in standin.calls if c[1].endswith(broken)]
    assert len(calls) == homeserver.ATTEMPTS
    status = await (await h.client.get(
        f"/_synapse/admin/v2/rooms/delete_status/{delete_id}", headers=AUTH)).json()
    assert (status["status"], status["error"]) == ("failed", messages.HOMESERVER_FAILED)

    # What Dendrite's admin API cannot do is refused, and nothing is scheduled.
    before = (len(standin.calls), await h.storage.list_jobs(
        kind=None, status=None, target=None, before_seq=None, limit=100))
    for body, params, text in (
            ({"block": True}, {}, messages.BLOCK_BESIDE_DENDRITE),
            ({"new_room_user_id": ALICE}, {}, messages.NEW_ROOM_BESIDE_DENDRITE),
            ({}, {"dry_run": "true"}, messages.DRY_RUN_BESIDE_DENDRITE)):
        resp = await h.client.delete(_rooms_path(kept), headers=AUTH, json=body,
                                     params=params)
        assert resp.status == 400
        assert await resp.json() == {"errcode": "M_INVALID_PARAM", "error": text}
    after = (len(standin.calls), await h.storage.list_jobs(
        kind=None, status=None, target=None, before_seq=None, limit=100))
    assert after == before
    # the room list reads Dendrite's roomserver tables, absent from this database: it
    # says so (tests/test_dendrite_rooms.py), never this package's room tables
    resp = await h.client.get("/_synapse/admin/v1/rooms", headers=AUTH)
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_purge_room_is_dendrites_purge(aiohttp_client: Any, schemas: Schemas,
                                             db: DendriteDb, tmp_path: Path,
                                             dendrite_url: str,
                                             standin: DendriteStandIn) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    path = f"/_dendrite/admin/purgeRoom/{ROOM}"
    resp = await h.client.post(path, headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {})
    # as Dendrite's own purgeRoom: no evacuation first
    assert [c for c in standin.calls if ROOM in c[1]] == [("POST", path)]
    assert ROOM not in standin.rooms
    resp = await h.client.post(path, headers=AUTH)  # Dendrite's 500 "does not exist"
    assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"
    before = len(standin.calls)
    resp = await h.client.post("/_dendrite/admin/purgeRoom/not-a-room", headers=AUTH)
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_INVALID_PARAM"
    assert len(standin.calls) == before  # checked here first
    log = await (await h.client.get("/_dendrite/admin/auditLog", headers=AUTH)).json()
    assert [(e["action"], e["outcome"]) for e in log["entries"]][:3] == [
        ("purgeRoom", "M_INVALID_PARAM"), ("purgeRoom", "M_NOT_FOUND"), ("purgeRoom", "ok")]


async def test_room_deletion_resumed_after_a_killed_worker(
        aiohttp_client: Any, schemas: Schemas, db: DendriteDb, tmp_path: Path,
        dendrite_url: str, standin: DendriteStandIn) -> None:
    """A worker that evacuated and recorded it, then died: the next one purges only."""
    h = await _harness(aiohttp_client, schemas, db, tmp_path, dendrite_url)
    assert h.ctx.jobs is not None
    await h.ctx.jobs.stop()
    resp = await h.client.delete(_rooms_path(ROOM), headers=AUTH, json={})
    delete_id = (await resp.json())["delete_id"]
    now = h.ctx.clock()
    claimed = await h.storage.claim_job("dead", now - 10_000, 1000, (ROOM_DELETE,))
    assert claimed is not None and claimed.job_id == delete_id
    parted = await h.ctx.homeserver.evacuate_room(ROOM)  # type: ignore[union-attr]
    run = JobRun(h.ctx, claimed, "dead", None, 0, 0)
    await run.step(JobStep('{"phase": "purge"}', done=len(parted), total=len(parted),
                           items=tuple(parted), result={"exists": True}))
    runner = JobRunner(h.ctx, {ROOM_DELETE: run_room_delete}, lease_ms=60_000,
                       poll_interval_s=1, worker_id="b")
    assert await runner.run_once()
    evacuations = [c for c in standin.calls if c[1].startswith("/_dendrite/admin/evac")]
    assert len(evacuations) == 1 and ROOM not in standin.rooms
    status = await (await h.client.get(
        f"/_synapse/admin/v2/rooms/delete_status/{delete_id}", headers=AUTH)).json()
    assert status["status"] == "complete"
    assert status["shutdown_room"]["kicked_users"] == [ALICE, f"@bob:{SERVER}"]
