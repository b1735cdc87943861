"""Durable jobs under faults (SPEC 11): the standalone server SIGKILLed in the middle of
a room deletion and of a broadcast finishes the job after a restart, parting every
member once and notifying every user exactly once; and two workers sharing one
PostgreSQL database never run one job at once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.cli import register_user
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services.jobs import JobRun, JobRunner, submit_job
from dendrite_admin_ext.storage.sql.ops import select
from dendrite_admin_ext.storage.types import (
    AccountType,
    JobStep,
    NewAccount,
)

from .conftest import make_config, make_host_app
from .sql_backends import PostgresForTests, SqliteForTests, open_for_tests, seed_joined_room
from .standalone import Server, write_config
from .standalone import call as standalone_call

SERVER = "test.example"
SECRET = "standalone-secret"
# Short leases and small steps, so that a kill lands mid-job and the restart resumes
# it quickly.
JOBS = {"lease_seconds": 1, "poll_interval": 0.1, "batch_size": 50}




def open_storage(database: Mapping[str, Any]) -> SqliteForTests | PostgresForTests:
    return open_for_tests(database)


def query(database: Mapping[str, Any], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    storage = open_storage(database)

    async def run() -> list[tuple[Any, ...]]:
        await storage.open()
        try:
            return list(await storage._run(select(sql, params), write=False))
        finally:
            await storage.close()

    return asyncio.run(run())


def call(method: str, url: str, token: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    status, answer, _ = standalone_call(method, url, body, token)
    return status, answer


def job_status(server: Server, token: str, job_id: str) -> dict[str, Any]:
    status, body = call("GET", f"{server.url}/_dendrite/admin/jobs/{job_id}", token)
    assert status == 200, body
    return body


def kill_when_started(server: Server, token: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body = job_status(server, token, job_id)
        if body["done"] > 0:
            break
        assert body["status"] in ("scheduled", "active"), body
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.01)
    server.stop(signal.SIGKILL)
    return body


def wait_complete(server: Server, token: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body = job_status(server, token, job_id)
        if body["status"] not in ("scheduled", "active"):
            return body
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


MEMBERS = 3_000


async def seed_room(database: Mapping[str, Any]) -> tuple[str, list[str]]:
    return await seed_joined_room(database, f"@owner:{SERVER}", MEMBERS, SERVER)


def test_deletion_killed_midway_completes_after_restart(
        tmp_path: Path, database: dict[str, Any]) -> None:
    room_id, members = asyncio.run(seed_room(database))
    server = Server(write_config(tmp_path, database=database, jobs=JOBS))
    server.start()
    try:
        root = register_user(server.url, SECRET, "root", "rootpassword", True)
        token = root["access_token"]
        status, body = call("DELETE", f"{server.url}/_synapse/admin/v2/rooms/"
                            f"{quote(room_id, safe='')}", token, {"purge": False})
        assert status == 200, body
        job_id = body["delete_id"]
        before = kill_when_started(server, token, job_id)
        server.start()
        partial = job_status(server, token, job_id)
        assert partial["done"] >= before["done"]
        job = wait_complete(server, token, job_id)
        assert job["status"] == "complete", (job, server.log())
        assert job["done"] == len(members)
        assert "resumed" in server.log()
        leaves = query(database, "SELECT state_key, COUNT(*) FROM dendrite_admin_events"
                       " WHERE room_id = %s AND type = 'm.room.member'"
                       " AND content LIKE %s GROUP BY state_key", room_id, '%"leave"%')
        assert sorted(r[0] for r in leaves) == sorted(members)
        assert {int(r[1]) for r in leaves} == {1}  # every member parted exactly once
        status, task = call("GET", f"{server.url}/_synapse/admin/v2/rooms/delete_status/"
                            f"{job_id}", token)
        assert status == 200 and task["status"] == "complete"
        assert sorted(task["shutdown_room"]["kicked_users"]) == sorted(members)
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


USERS = 600


async def seed_users(database: Mapping[str, Any]) -> list[str]:
    storage = open_storage(database)
    await storage.open()
    try:
        users = [UserID(f"user{i:05d}", SERVER) for i in range(USERS)]
        for user in users:
            await storage.create_account(NewAccount(user, None, AccountType.USER, 1), None)
        return [str(u) for u in users]
    finally:
        await storage.close()


def test_broadcast_killed_midway_notifies_everyone_exactly_once(
        tmp_path: Path, database: dict[str, Any]) -> None:
    users = asyncio.run(seed_users(database))
    server = Server(write_config(tmp_path, database=database, jobs=JOBS))
    server.start()
    try:
        root = register_user(server.url, SECRET, "root", "rootpassword", True)
        token = root["access_token"]
        status, body = call("POST", f"{server.url}/_dendrite/admin/broadcastServerNotice",
                            token, {"content": {"msgtype": "m.text", "body": "hello"}})
        assert status == 200, body
        job_id = body["job_id"]
        kill_when_started(server, token, job_id)
        server.start()
        job = wait_complete(server, token, job_id)
        assert job["status"] == "complete", (job, server.log())
        everyone = sorted([*users, f"@root:{SERVER}"])
        assert job["done"] == len(everyone) and job["failed"] == 0
        notices = query(
            database, "SELECT n.user_id, COUNT(e.event_id)"
            " FROM dendrite_admin_server_notice_rooms n LEFT JOIN dendrite_admin_events e"
            " ON e.room_id = n.room_id AND e.type = 'm.room.message' GROUP BY n.user_id")
        assert sorted(r[0] for r in notices) == everyone
        assert {int(r[1]) for r in notices} == {1}  # nobody twice, nobody skipped
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


@pytest.mark.postgres
async def test_two_workers_never_run_one_job_at_once(pg_dsn: str, schemas: Any) -> None:
    """Two apps (workers) on one PostgreSQL database, short leases, many small jobs:
    each job runs on exactly one worker, start to end, and every job completes."""
    storages = [PostgresForTests(pg_dsn, pool_size=4) for _ in range(2)]
    for st in storages:
        await st.open()
    running: dict[str, str] = {}
    ran: dict[str, set[str]] = {}
    overlaps: list[str] = []

    async def work(run: JobRun) -> Mapping[str, Any]:
        job_id = run.job.job_id
        if job_id in running:
            overlaps.append(job_id)
        running[job_id] = run.worker_id
        ran.setdefault(job_id, set()).add(run.worker_id)
        try:
            for i in range(3):
                await asyncio.sleep(0.02)
                await run.step(JobStep(str(i), done=1))
        finally:
            running.pop(job_id, None)
        return {}

    runners = []
    try:
        for st in storages:
            _app, ctx = make_host_app(make_config(schemas), st, schemas)
            runners.append(JobRunner(ctx, {"test_kind": work}, lease_ms=300,
                                     poll_interval_s=0.01, concurrency=4))
        ids = [(await submit_job(runners[0].ctx, "test_kind", None, {})).job_id
               for _ in range(24)]
        for runner in runners:
            runner.start()
        deadline = time.monotonic() + 60
        while True:
            jobs = [await storages[0].get_job(i) for i in ids]
            if all(j is not None and j.status == "complete" for j in jobs):
                break
            assert time.monotonic() < deadline, jobs
            await asyncio.sleep(0.05)
        assert overlaps == []
        assert all(len(ran[i]) == 1 for i in ids), ran
        assert len({w for i in ids for w in ran[i]}) == 2  # both workers took jobs
        assert all(j is not None and j.done == 3 for j in jobs)
    finally:
        for runner in runners:
            await runner.stop()
        for st in storages:
            await st.close()


