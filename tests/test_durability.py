"""Durability of the standalone server (``python -m dendrite_admin_ext serve``) on
SQLite and on PostgreSQL: what it reported survives SIGTERM and SIGKILL, and an
evacuation killed half-way is completed by a re-run."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest

from dendrite_admin_ext.cli import register_user
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.sql import SqlStorage

from .sql_backends import (
    PostgresForTests,
    SqliteForTests,
    open_for_tests,
    seed_joined_room,
    unwrapped,
)
from .standalone import Server, write_config
from .standalone import call as standalone_call

_uid = UserID.from_stored  # user IDs written as strings in these tests

SERVER = "test.example"
SECRET = "standalone-secret"





def call(method: str, url: str, token: str | None = None,
         body: Any = None) -> tuple[int, dict[str, Any]]:
    status, answer, _headers = standalone_call(method, url, body, token)
    return status, answer


def whois(server: Server, token: str, user: str) -> int:
    return call("GET", f"{server.url}/_synapse/admin/v1/whois/{user}", token)[0]


def notice(server: Server, token: str, txn: str, text: str) -> str:
    status, body = call("PUT", f"{server.url}/_synapse/admin/v1/send_server_notice/{txn}",
                        token, {"user_id": f"@alice:{SERVER}",
                                "content": {"msgtype": "m.text", "body": text}})
    assert status == 200, body
    event_id: str = body["event_id"]
    return event_id


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_state_survives_restart(tmp_path: Path, database: dict[str, Any], sig: int) -> None:
    config = write_config(tmp_path, database=database)
    server = Server(config)
    server.start()
    try:
        root = register_user(server.url, SECRET, "root", "rootpassword", True)
        alice = register_user(server.url, SECRET, "alice", "alicepassword", False)
        bob = register_user(server.url, SECRET, "bob", "bobpassword", False)
        status, _ = call("POST", f"{server.url}/_dendrite/admin/resetPassword/@alice:{SERVER}",
                         root["access_token"], {"password": "newalicepass",
                                                "logout_devices": False})
        assert status == 200
        status, _ = call("POST", f"{server.url}/_dendrite/admin/resetPassword/bob",
                         root["access_token"], {"password": "newbobpassword"})
        assert status == 200
        first = notice(server, root["access_token"], "t1", "before restart")
        code = server.stop(sig)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), server.log()

        server.start()
        assert whois(server, root["access_token"], f"@alice:{SERVER}") == 200
        assert whois(server, alice["access_token"], f"@alice:{SERVER}") == 200
        # bob was logged out by his password reset, and stays logged out
        status, body = call("GET", f"{server.url}/_synapse/admin/v1/whois/@bob:{SERVER}",
                            bob["access_token"])
        assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        # the notice transaction is remembered across the restart
        assert notice(server, root["access_token"], "t1", "before restart") == first
        second = notice(server, root["access_token"], "t2", "after restart")
        assert second != first
        with pytest.raises(Exception, match="already taken") as taken:
            register_user(server.url, SECRET, "alice", "alicepassword", False)
        assert getattr(taken.value, "body", {}).get("errcode") == "M_USER_IN_USE"
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def open_storage(database: dict[str, Any]) -> SqlStorage:
    return open_for_tests(database)


def count_leaves(database: dict[str, Any], room_id: str) -> int:
    sql = ("SELECT COUNT(*) FROM dendrite_admin_memberships"
           " WHERE room_id = %s AND membership = 'leave'")
    if database["backend"] == "sqlite":
        conn = sqlite3.connect(database["path"], timeout=10)
        try:
            return int(conn.execute(sql.replace("%s", "?"), (room_id,)).fetchone()[0])
        finally:
            conn.close()
    pg = psycopg2.connect(database["dsn"])
    try:
        with pg.cursor() as cur:
            cur.execute(sql, (room_id,))
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        pg.close()


MEMBERS = 12_000


async def big_room(database: dict[str, Any]) -> tuple[str, list[str]]:
    return await seed_joined_room(database, f"@_server:{SERVER}", MEMBERS, SERVER,
                                  with_names=True)


def test_evacuation_killed_midway_completes_on_rerun(tmp_path: Path,
                                                     database: dict[str, Any]) -> None:
    room_id, members = asyncio.run(big_room(database))
    config = write_config(tmp_path, database=database)
    server = Server(config)
    server.start()
    try:
        root = register_user(server.url, SECRET, "root", "rootpassword", True)
        url = f"{server.url}/_dendrite/admin/evacuateRoom/{quote(room_id, safe='')}"
        answer: list[Any] = []
        worker = threading.Thread(target=lambda: answer.append(
            _swallow(lambda: call("POST", url, root["access_token"]))), daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while count_leaves(database, room_id) == 0:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.005)
        server.stop(signal.SIGKILL)
        worker.join(30)
        parted_before = count_leaves(database, room_id)
        assert parted_before > 0

        # What was committed is consistent: every leave recorded has its event.
        storage = open_storage(database)

        async def check() -> tuple[list[str], int]:
            await storage.open()
            try:
                joined = await storage.get_local_joined_members(
                    room_id, SERVER, after=None, limit=MEMBERS + 10)
                inner = unwrapped(storage)
                assert isinstance(inner, SqliteForTests | PostgresForTests)
                events = inner.room_events(room_id)
                leaves = sum(1 for e in events if e["type"] == "m.room.member"
                             and e["content"].get("membership") == "leave")
                return [str(m.user) for m in joined], leaves
            finally:
                await storage.close()

        still_joined, leave_events = asyncio.run(check())
        assert leave_events == parted_before == len(members) - len(still_joined)

        server.start()
        status, body = call("POST", url, root["access_token"])
        assert status == 200
        assert sorted(body["affected"]) == sorted(still_joined)
        left_now, leave_events = asyncio.run(check())
        assert left_now == [] and leave_events == len(members)
        status, body = call("POST", url, root["access_token"])
        assert (status, body) == (200, {"affected": []})
        assert whois(server, root["access_token"], str(UserID("root", SERVER))) == 200
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def _swallow(fn: Any) -> Any:
    try:
        return fn()
    except OSError as exc:  # the server was killed under the request
        return exc
