"""Several admin workers on one database (SPEC 4.4, 4.5; issue: shared state).

Two host applications, each with its own admin API and its own storage object (its own
pool or connection), on one database — as two workers behind one reverse proxy are.
Nonces, notice transaction ids and the notices room live in the database, so whatever
one worker records the other honours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType

from .conftest import SECRET, SERVER, make_config, make_host_app, make_user, room_events
from .sql_backends import make_storage

REGISTER = "/_synapse/admin/v1/register"
NOTICE = "/_synapse/admin/v1/send_server_notice"

Client = TestClient[web.Request, web.Application]

SHARED_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SHARED_BACKENDS)
async def workers(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any,
                  schemas: Any) -> AsyncIterator[tuple[list[Client], list[AdminStorage]]]:
    storages = [await make_storage(request, request.param, tmp_path) for _ in range(2)]
    clients = []
    for st in storages:
        app, _ctx = make_host_app(make_config(schemas), st, schemas)
        clients.append(await aiohttp_client(app))
    yield clients, storages
    for st in storages:
        await st.close()


async def test_nonce_from_one_worker_is_single_use_on_all(
        workers: tuple[list[Client], list[AdminStorage]]) -> None:
    (a, b), _ = workers
    nonce = (await (await a.get(REGISTER)).json())["nonce"]
    body = {"nonce": nonce, "username": "carol", "password": "carolpassword",
            "mac": compute_mac(SECRET, nonce, "carol", "carolpassword", False)}
    first = await b.post(REGISTER, json=body)
    assert first.status == 200, await first.text()
    assert (await first.json())["user_id"] == f"@carol:{SERVER}"
    again = await a.post(REGISTER, json={**body, "username": "carol2"})
    assert again.status == 400
    assert (await again.json())["error"] == "unrecognised nonce"
    again_b = await b.post(REGISTER, json=body)
    assert (await again_b.json())["error"] == "unrecognised nonce"


async def test_concurrent_registration_on_two_workers(
        workers: tuple[list[Client], list[AdminStorage]]) -> None:
    (a, b), _ = workers

    async def register(client: Client) -> tuple[int, str]:
        nonce = (await (await client.get(REGISTER)).json())["nonce"]
        resp = await client.post(REGISTER, json={
            "nonce": nonce, "username": "dave", "password": "davepassword",
            "mac": compute_mac(SECRET, nonce, "dave", "davepassword", False)})
        body = await resp.json()
        return resp.status, body.get("errcode", "")

    results = sorted(await asyncio.gather(register(a), register(b), register(a),
                                          register(b)))
    assert results[0] == (200, "")
    assert results[1:] == [(400, "M_USER_IN_USE")] * 3


async def test_notice_txn_is_idempotent_across_workers(
        workers: tuple[list[Client], list[AdminStorage]]) -> None:
    (a, b), (st, _) = workers
    admin = await make_user(st, "admin", AccountType.ADMIN)
    await make_user(st, "target")
    body = {"user_id": f"@target:{SERVER}", "content": {"msgtype": "m.text", "body": "hi"}}
    first = await a.put(f"{NOTICE}/txn-1", headers=admin.auth, json=body)
    assert first.status == 200, await first.text()
    event_id = (await first.json())["event_id"]
    second = await b.put(f"{NOTICE}/txn-1", headers=admin.auth, json=body)
    assert second.status == 200
    assert (await second.json())["event_id"] == event_id
    # a different transaction on the other worker goes to the same notices room
    third = await b.put(f"{NOTICE}/txn-2", headers=admin.auth, json=body)
    other_id = (await third.json())["event_id"]
    assert other_id != event_id
    room_id = await st.get_server_notice_room(UserID("target", SERVER))
    assert room_id is not None
    messages = [e for e in room_events(st, room_id) if e["type"] == "m.room.message"]
    assert [e["event_id"] for e in messages] == [event_id, other_id]
