"""Faults, each checked for lost or half-written state: a client that goes away in the
middle of a password reset or of an evacuation, and PostgreSQL stopped and restarted
under a stream of requests.  (SIGKILL of the server mid-evacuation, then a re-run, is
tests/test_durability.py; a quiet PostgreSQL outage is tests/test_database_down.py.)

Run with aiohttp's handler cancellation on (in-process, every backend: the handler is
cancelled when the client goes away) and off (aiohttp's default, on the real standalone
server: the handler runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.cli import register_user
from dendrite_admin_ext.passwords import PasswordHasher
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType, NewDevice
from dendrite_admin_ext.validation import Schemas

from .conftest import SERVER, make_config, make_host_app, make_room, make_user
from .postgres import _wait_ready, local_cluster
from .standalone import running, write_config

# aiohttp's TestServer always runs with handler cancellation on; the default of a real
# server (off) is exercised on the standalone server below.
CANCELLATION = pytest.mark.parametrize("handler_cancellation", [True], ids=["cancelled"])


async def _client(aiohttp_client: Any, schemas: Schemas, storage: AdminStorage,
                  handler_cancellation: bool, **config: Any) -> Any:
    app, ctx = make_host_app(make_config(schemas, **config), storage, schemas)
    client = await aiohttp_client(app, server_kwargs={
        "handler_cancellation": handler_cancellation})
    return client, ctx


async def _settle(check: Any, within: float = 10.0) -> Any:
    """Poll ``check`` until two reads agree that are further apart than any slowed-down
    step of these tests (0.3 s): the server side is done."""
    deadline = time.monotonic() + within
    last = await check()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.7)
        now = await check()
        if now == last:
            return now
        last = now
    raise AssertionError("state did not settle")


@CANCELLATION
@pytest.mark.parametrize("gone_during", ["hashing", "storing"])
async def test_reset_password_client_gone(aiohttp_client: Any, schemas: Schemas,
                                          storage: AdminStorage, handler_cancellation: bool,
                                          gone_during: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ctx = await _client(aiohttp_client, schemas, storage, handler_cancellation)
    admin = await make_user(storage, "root", AccountType.ADMIN)
    alice = await make_user(storage, "alice")
    old_hash = storage.password_hash(alice.user_id)  # type: ignore[attr-defined]
    storage.add_device(alice.user_id, NewDevice("SECOND", "second-token"))  # type: ignore[attr-defined]

    # Make the chosen step slow enough for the client to leave in the middle of it.
    if gone_during == "hashing":
        real_hash = PasswordHasher.hash

        async def slow_hash(self: PasswordHasher, password: str) -> str:
            await asyncio.sleep(0.3)
            return await real_hash(self, password)

        monkeypatch.setattr(PasswordHasher, "hash", slow_hash)
    else:
        real_set = storage.set_password

        async def slow_set(*args: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0.3)
            await real_set(*args, **kwargs)

        monkeypatch.setattr(storage, "set_password", slow_set)

    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(0.1):
            await client.post("/_dendrite/admin/resetPassword/alice", headers=admin.auth,
                              json={"password": "a brand new password"})

    async def state() -> tuple[bool, bool, bool]:
        changed = storage.password_hash(alice.user_id) != old_hash  # type: ignore[attr-defined]
        return (changed, await storage.get_token_owner(alice.token) is not None,
                await storage.get_token_owner("second-token") is not None)

    changed, first, second = await _settle(state)
    # All or nothing: a new hash comes with every device logged out, the old one with
    # every device still there.
    assert (changed, first, second) in ((True, False, False), (False, True, True))
    assert await storage.get_token_owner(admin.token) is not None


@CANCELLATION
async def test_evacuation_client_gone_completes(aiohttp_client: Any, schemas: Schemas,
                                                storage: AdminStorage,
                                                handler_cancellation: bool) -> None:
    client, _ctx = await _client(aiohttp_client, schemas, storage, handler_cancellation)
    admin = await make_user(storage, "root", AccountType.ADMIN)
    members = [f"@m{i:04d}:{SERVER}" for i in range(1_500)]
    room_id = await make_room(storage, f"@root:{SERVER}", joined=members)

    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(0.05):
            await client.post(f"/_dendrite/admin/evacuateRoom/{room_id}", headers=admin.auth)

    async def joined() -> int:
        return len(await storage.get_local_joined_members(room_id, SERVER, after=None,
                                                          limit=5_000))

    assert await _settle(joined, within=60) == 0
    # Nothing half-done for a re-run to find.
    resp = await client.post(f"/_dendrite/admin/evacuateRoom/{room_id}", headers=admin.auth)
    assert (resp.status, await resp.json()) == (200, {"affected": []})


@pytest.mark.postgres
async def test_postgres_restart_under_load(aiohttp_client: Any, schemas: Schemas) -> None:
    """Server notices sent with transaction ids while PostgreSQL stops and comes back:
    only 200 or 503, every notice reported sent is stored, and retrying the refused
    ones afterwards sends each exactly once."""
    with local_cluster() as cluster:
        storage = CoalescingStorage(PostgresStorage(
            cluster.dsn, pool_size=4, connect_timeout=1.0, statement_timeout=3.0))
        await storage.open()
        try:
            app, _ctx = make_host_app(make_config(schemas), storage, schemas)
            client = await aiohttp_client(app)
            admin = await make_user(storage, "root", AccountType.ADMIN)
            await make_user(storage, "alice")
            sent: dict[str, str] = {}
            refused: list[str] = []

            async def send(txn: str) -> tuple[int, dict[str, Any]]:
                resp = await client.put(
                    f"/_synapse/admin/v1/send_server_notice/{txn}", headers=admin.auth,
                    json={"user_id": f"@alice:{SERVER}",
                          "content": {"msgtype": "m.text", "body": txn}})
                return resp.status, await resp.json()

            stop = asyncio.Event()

            async def load() -> None:
                for i in range(10_000):  # bounded; ends when the outage is over
                    if stop.is_set():
                        return
                    txn = f"t{i}"
                    status, body = await send(txn)
                    assert status in (200, 503), body
                    if status == 200:
                        sent[txn] = body["event_id"]
                    else:
                        refused.append(txn)
                        await asyncio.sleep(0.05)

            task = asyncio.ensure_future(load())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.stop, "fast")
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.start)
            await asyncio.to_thread(_wait_ready, cluster.dsn)
            await asyncio.sleep(1.0)
            stop.set()
            await task
            assert sent and refused, (len(sent), len(refused))

            for txn in refused:  # the client retries what was refused
                status, body = await send(txn)
                assert status == 200, body
                sent[txn] = body["event_id"]
            for txn, event_id in list(sent.items())[:50]:  # repeats change nothing
                assert await send(txn) == (200, {"event_id": event_id})

            room_id = await storage.get_server_notice_room(make_user_id("alice"))
            assert room_id is not None
            bodies = [e["content"]["body"] for e in storage_events(cluster.dsn, room_id)
                      if e["type"] == "m.room.message"]
            assert sorted(bodies) == sorted(sent), "lost or duplicated notices"
        finally:
            await storage.close()


def make_user_id(localpart: str) -> Any:
    from dendrite_admin_ext.identifiers import UserID

    return UserID(localpart, SERVER)


def storage_events(dsn: str, room_id: str) -> list[dict[str, Any]]:
    from .sql_backends import PostgresForTests

    return PostgresForTests(dsn).room_events(room_id)


def test_reset_password_client_gone_standalone(tmp_path: Path) -> None:
    """The real server (handler cancellation off): the client hangs up while bcrypt
    runs; the reset completes, hash and logout together."""
    db = tmp_path / "admin.db"
    config = write_config(tmp_path, database={"backend": "sqlite", "path": str(db)},
                          passwords={"bcrypt_cost": 13},
                          registration={"rate_limit": {"per_second": 0}})
    with running(config) as server:
        secret = "standalone-secret"
        root = register_user(server.url, secret, "root", "root password", True)
        alice = register_user(server.url, secret, "alice", "alice password", False)
        old_hash = _sqlite_hash(db, "alice")
        body = json.dumps({"password": "a brand new password"}).encode()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /_dendrite/admin/resetPassword/alice HTTP/1.1\r\n"
                + f"Host: {host}\r\nAuthorization: Bearer {root['access_token']}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                  .encode() + body)
            time.sleep(0.1)  # bcrypt at cost 13 takes far longer than this
        deadline = time.monotonic() + 30
        while _sqlite_hash(db, "alice") == old_hash:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        # The hash and the logout were one transaction: no moment shows one alone.
        assert _sqlite_devices(db, "alice") == 0
        assert _whois_status(server.url, alice["access_token"], "@alice:test.example") == 401


def _sqlite_hash(db: Path, localpart: str) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT password_hash FROM userapi_accounts WHERE localpart = ?",
                           (localpart,)).fetchone()
        return str(row[0])


def _sqlite_devices(db: Path, localpart: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT COUNT(*) FROM userapi_devices WHERE localpart = ?",
                           (localpart,)).fetchone()
        return int(row[0])


def _whois_status(url: str, token: str, user_id: str) -> int:
    req = urllib.request.Request(f"{url}/_synapse/admin/v1/whois/{user_id}",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
