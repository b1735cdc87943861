"""The host's /register with registration tokens (SPEC 12), through the example host
(tests/example_host.py) and the package's hook: the UIA stage's rules and errors, and
exact counting — ``uses_allowed: 5`` and 50 concurrent registrations complete exactly 5,
on one process and across two workers sharing one database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dendrite_admin_ext import UserID
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import AccountType, NewAccount, RegistrationToken

from . import example_host
from .example_host import ADMIN_CONFIG, SERVER_NAME, build_app
from .host_storage import HostStorage
from .sql_backends import BACKENDS, make_storage

REGISTER = "/_matrix/client/v3/register"
TOKENS = "/_synapse/admin/v1/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
STAGE = "m.login.registration_token"

Client = TestClient[Any, Any]


async def admin_token(client: Client) -> dict[str, str]:
    secret = ADMIN_CONFIG["registration_shared_secret"]
    nonce = (await (await client.get("/_synapse/admin/v1/register")).json())["nonce"]
    r = await client.post("/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": "root", "password": "rootpassword", "admin": True,
        "mac": compute_mac(secret, nonce, "root", "rootpassword", True)})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def start(client: Client) -> str:
    r = await client.post(REGISTER, json={"username": "x", "password": "y"})
    assert r.status == 401
    body = await r.json()
    assert body["flows"] == [{"stages": [STAGE]}] and body["completed"] == []
    session: str = body["session"]
    return session


async def submit(client: Client, session: str, token: Any,
                 username: str) -> tuple[int, dict[str, Any]]:
    auth: dict[str, Any] = {"type": STAGE, "session": session}
    if token is not None:
        auth["token"] = token
    r = await client.post(REGISTER, json={"username": username,
                                          "password": "a good password", "auth": auth})
    return r.status, await r.json()


@pytest.fixture
async def host(aiohttp_client: Any) -> tuple[Client, HostStorage]:
    storage = HostStorage()
    return await aiohttp_client(build_app(storage)), storage


async def test_register_with_a_token(host: tuple[Client, HostStorage]) -> None:
    client, storage = host
    auth = await admin_token(client)
    r = await client.post(f"{TOKENS}/new", headers=auth, json={"token": "welcome",
                                                                "uses_allowed": 1})
    assert r.status == 200
    assert await (await client.get(VALIDITY, params={"token": "welcome"})).json() == {
        "valid": True}
    session = await start(client)
    status, body = await submit(client, session, "welcome", "alice")
    assert status == 200, body
    assert body["user_id"] == f"@alice:{SERVER_NAME}"
    assert await storage.get_account(UserID("alice", SERVER_NAME)) is not None
    assert await storage.get_registration_token("welcome") == RegistrationToken(
        "welcome", 1, 0, 1)
    # used up: the spec's check says so, and the next registration is refused
    assert await (await client.get(VALIDITY, params={"token": "welcome"})).json() == {
        "valid": False}
    status, body = await submit(client, await start(client), "welcome", "bob")
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    assert body["error"] == "Invalid registration token"
    assert await storage.get_account(UserID("bob", SERVER_NAME)) is None


async def test_stage_errors_as_synapse(host: tuple[Client, HostStorage]) -> None:
    client, storage = host
    await storage.create_registration_token(RegistrationToken("one", 5))
    await storage.create_registration_token(RegistrationToken("two", 5))
    session = await start(client)
    for token, status, errcode in [(None, 400, "M_MISSING_PARAM"),
                                   (42, 400, "M_INVALID_PARAM"),
                                   ("nope", 401, "M_UNAUTHORIZED")]:
        got, body = await submit(client, session, token, "carol")
        assert (got, body["errcode"]) == (status, errcode), token
    assert await storage.get_registration_token("one") == RegistrationToken("one", 5)
    # a taken name: the session keeps its reservation and may try another name
    await storage.create_account(
        NewAccount(UserID("taken", SERVER_NAME), None, AccountType.USER, 0), None)
    got, body = await submit(client, session, "one", "taken")
    assert (got, body["errcode"]) == (400, "M_USER_IN_USE")
    assert await storage.get_registration_token("one") == RegistrationToken("one", 5, 1, 0)
    # another token in the same session is refused; the same one counts once
    got, body = await submit(client, session, "two", "carol")
    assert (got, body) == (400, {"errcode": "M_INVALID_PARAM",
                                 "error": "Registration token has changed"})
    got, body = await submit(client, session, "one", "carol")
    assert got == 200, body
    assert await storage.get_registration_token("one") == RegistrationToken("one", 5, 0, 1)
    assert await storage.get_registration_token("two") == RegistrationToken("two", 5)


async def test_expired_sessions_give_their_use_back(
        host: tuple[Client, HostStorage], monkeypatch: pytest.MonkeyPatch) -> None:
    client, storage = host
    await storage.create_registration_token(RegistrationToken("one", 1))
    session = await start(client)
    # The stage alone (no username yet: the client asks for it after the token).
    r = await client.post(REGISTER, json={"auth": {"type": STAGE, "session": session,
                                                   "token": "one"}})
    assert r.status == 400  # the stage passed, the username is missing
    assert await storage.get_registration_token("one") == RegistrationToken("one", 1, 1)
    assert (await submit(client, await start(client), "one", "dave"))[0] == 401
    monkeypatch.setattr(example_host, "SESSION_LIFETIME_MS", -1)
    assert await example_host.expire_sessions(client.app) == 0  # released one by one
    assert await storage.get_registration_token("one") == RegistrationToken("one", 1)
    status, body = await submit(client, await start(client), "one", "dave")
    assert status == 200, body


# -- exactly k of many, on one or two workers ---------------------------------------------
@pytest.fixture(params=BACKENDS)
async def workers(request: pytest.FixtureRequest, tmp_path: Path,
                  aiohttp_client: Any) -> AsyncIterator[tuple[list[Client], Any]]:
    """Two host processes' apps on one database: each its own storage object (own
    connection pool / sqlite3 connection).  Memory: both apps on one store."""
    if request.param == "memory":
        shared = MemoryStorage()
        storages: list[Any] = [shared, shared]
    else:
        storages = [await make_storage(request, request.param, tmp_path) for _ in range(2)]
    clients = [await aiohttp_client(build_app(st)) for st in storages]
    yield clients, storages[0]
    for st in storages:
        await st.close()


async def test_uses_allowed_5_and_50_concurrent_registrations(
        workers: tuple[list[Client], Any]) -> None:
    clients, storage = workers
    auth = await admin_token(clients[0])
    r = await clients[1].post(f"{TOKENS}/new", headers=auth,
                              json={"token": "five", "uses_allowed": 5})
    assert r.status == 200

    async def one(i: int) -> tuple[int, str]:
        client = clients[i % 2]
        session = await start(client)
        status, body = await submit(client, session, "five", f"user{i}")
        return status, body.get("errcode", "")

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert sorted(results).count((200, "")) == 5
    assert sorted(results)[5:] == [(401, "M_UNAUTHORIZED")] * 45
    assert await storage.get_registration_token("five") == RegistrationToken("five", 5, 0, 5)
    created = [i for i in range(50)
               if await storage.get_account(UserID(f"user{i}", SERVER_NAME)) is not None]
    assert len(created) == 5
    assert {i for i, (status, _) in enumerate(results) if status == 200} == set(created)
    for client in clients:
        r = await client.get(VALIDITY, params={"token": "five"})
        assert await r.json() == {"valid": False}
