"""Client login on the standalone server (SPEC 13): the admin web UIs' whole login
sequence over HTTP, every error, the rate limits and the audit trail — on memory,
SQLite, PostgreSQL and the test host (``rh``) — the storage contract of
:class:`~dendrite_admin_ext.storage.protocols.ClientLoginStore`, the config rule, and the
real standalone server with an admin made by ``register-user``."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from dendrite_admin_ext import UserID
from dendrite_admin_ext.config import ConfigError, parse_config
from dendrite_admin_ext.errors import ServiceUnavailable
from dendrite_admin_ext.passwords import PasswordHasher
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.sql.ops import exec_
from dendrite_admin_ext.storage.types import AccountState, AccountType, NewDevice, Profile
from dendrite_admin_ext.validation import Schemas

from .conftest import SERVER, Harness, HarnessFactory, User, make_user
from .host_storage import HostStorage
from .sql_backends import PostgresForTests, SqliteForTests, unwrapped
from .standalone import call, running, write_config

PASSWORD = "correct horse battery"
HASH = PasswordHasher(4).hash_sync(PASSWORD)
V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
ORIGIN = {"Origin": "https://admin.example.net"}


def ketesa_login(user: str, password: str = PASSWORD,
                 device_id: str | None = None) -> dict[str, Any]:
    """The body Ketesa sends (research/admin-apis.md §C step 3)."""
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password, "device_id": device_id,
            "initial_device_display_name": "Ketesa"}


async def account(h: Harness, localpart: str, *, admin: bool = False,
                  password_hash: str | None = HASH) -> User:
    kind = AccountType.ADMIN if admin else AccountType.USER
    return await make_user(h.storage, localpart, kind, password_hash=password_hash)


def set_state(storage: AdminStorage, user: UserID, *, deactivated: bool | None = None,
              locked: bool | None = None) -> None:
    """Deactivate or lock an account behind the API's back, as each backend's owner
    would (the lock endpoints are another feature's)."""
    if isinstance(storage, HostStorage):
        storage.set_login_state(user, deactivated=deactivated, locked=locked)
        return
    inner = unwrapped(storage)
    assert isinstance(inner, (MemoryStorage, SqliteForTests, PostgresForTests))
    storage = inner
    if deactivated is not None:
        storage.set_account_flags(user, is_deactivated=deactivated)
    if locked is None:
        return
    if isinstance(storage, MemoryStorage):
        storage.account_state[user] = AccountState(locked=locked)
    else:
        storage._blocking(exec_(
            "INSERT INTO dendrite_admin_account_state (localpart, server_name, locked)"
            " VALUES (%s, %s, %s) ON CONFLICT (localpart, server_name)"
            " DO UPDATE SET locked = excluded.locked",
            (user.localpart, user.server_name, locked)))


async def err(resp: ClientResponse) -> tuple[int, str]:
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body.get("error"), str), body
    return resp.status, body["errcode"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class VerifyCounter:
    """Counts the bcrypt checks of a context's hasher (still running them)."""

    def __init__(self, h: Harness) -> None:
        self.calls = 0
        real = h.ctx.hasher.verify

        async def verify(password: str, hashed: str) -> bool:
            self.calls += 1
            return await real(password, hashed)

        h.ctx.hasher.verify = verify  # type: ignore[method-assign]


# -- the UIs' whole sequence -------------------------------------------------------------

async def test_ketesa_login_sequence(rh: Harness) -> None:
    """Probe, login, profile, first admin calls, logout; then the token is dead."""
    root = await account(rh, "root", admin=True)
    c = rh.client
    # CORS preflights of every call the UI makes from its own origin.
    for path in ("/_matrix/client/versions", f"{V3}/login", f"{V3}/account/whoami",
                 f"{V3}/profile/{root.user_id}", f"{V3}/logout", f"{V3}/logout/all",
                 f"{R0}/login", f"/_synapse/admin/v1/whois/{root.user_id}"):
        resp = await c.options(path, headers={
            **ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert resp.status == 200, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*", path
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"], path
        assert "POST" in resp.headers["Access-Control-Allow-Methods"], path

    # 1. probe (in parallel in the UI): versions, login flows, server_version.
    resp = await c.get("/_matrix/client/versions", headers=ORIGIN)
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    versions = await resp.json()
    assert {"r0.6.1", "v1.1", "v1.18"} <= set(versions["versions"])
    # moderation is on by default: MSC4323's unstable prefix is announced
    assert versions["unstable_features"] == {"uk.timedout.msc4323": True}
    resp = await c.get(f"{V3}/login", headers=ORIGIN)
    assert resp.status == 200
    assert {"type": "m.login.password"} in (await resp.json())["flows"]
    # server_version is display-only for the UI (another feature serves it); whatever
    # the answer, it is Matrix JSON with CORS.
    resp = await c.get("/_synapse/admin/v1/server_version", headers=ORIGIN)
    assert resp.status in (200, 404) and resp.content_type == "application/json"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"

    # 2. login
    resp = await c.post(f"{V3}/login", json=ketesa_login("root"),
                        headers={**ORIGIN, "User-Agent": "Ketesa test browser"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    session = await resp.json()
    assert set(session) == {"user_id", "access_token", "device_id", "home_server"}
    assert session["user_id"] == "@root:test.example"
    assert session["home_server"] == SERVER
    token, device_id = session["access_token"], session["device_id"]
    assert token != root.token and len(token) >= 32
    assert device_id.isalpha() and device_id.isupper() and len(device_id) == 10
    devices = {d.device_id: d for d in await rh.storage.get_devices(root.user_id)}
    assert devices[device_id].display_name == "Ketesa"
    assert root.device_id in devices  # the other session is untouched

    # 3. identity: whoami (access-token login) and the profile
    resp = await c.get(f"{V3}/account/whoami", headers=bearer(token))
    assert await resp.json() == {"user_id": "@root:test.example", "device_id": device_id,
                                 "is_guest": False}
    resp = await c.get(f"{V3}/profile/{root.user_id}", headers=bearer(token))
    assert resp.status == 200
    assert await resp.json() == {"displayname": "root"}

    # 4. the first admin calls decide whether the UI may go on
    resp = await c.get(f"/_synapse/admin/v1/whois/{root.user_id}", headers=bearer(token))
    assert resp.status == 200
    seen = (await resp.json())["devices"][device_id]["sessions"][0]["connections"]
    # the login itself is the device's first sighting
    assert "Ketesa test browser" in {conn["user_agent"] for conn in seen}
    resp = await c.get("/_dendrite/admin/auditLog", headers=bearer(token))
    assert resp.status == 200
    entries = (await resp.json())["entries"]
    login = next(e for e in entries if e["action"] == "login")
    assert (login["target"], login["outcome"], login["requester"]) == (
        "@root:test.example", "ok", "@root:test.example")

    # 5. logout; a 401 anywhere then logs the UI out
    resp = await c.post(f"{V3}/logout", headers={**bearer(token), **ORIGIN})
    assert resp.status == 200 and await resp.json() == {}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    for method, path in (("GET", f"{V3}/account/whoami"),
                         ("GET", f"/_synapse/admin/v1/whois/{root.user_id}"),
                         ("POST", f"{V3}/logout")):
        resp = await c.request(method, path, headers=bearer(token))
        assert await err(resp) == (401, "M_UNKNOWN_TOKEN"), path
    assert device_id not in {d.device_id for d in await rh.storage.get_devices(root.user_id)}
    assert await rh.storage.get_token_owner(root.token) is not None
    resp = await c.get("/_dendrite/admin/auditLog", headers=root.auth)
    logouts = [(e["target"], e["outcome"]) for e in (await resp.json())["entries"]
               if e["action"] == "logout"]
    assert logouts == [(None, "M_UNKNOWN_TOKEN"), ("@root:test.example", "ok")]


async def test_old_synapse_admin_uses_r0_and_home_server(rh: Harness) -> None:
    """Awesome-Technologies synapse-admin: r0 paths, and user URLs built from
    ``home_server``."""
    await account(rh, "root", admin=True)
    resp = await rh.client.get(f"{R0}/login")
    assert {"type": "m.login.password"} in (await resp.json())["flows"]
    for user in ("root", "@root:test.example"):
        resp = await rh.client.post(f"{R0}/login", json={
            "type": "m.login.password", "user": user, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        session = await resp.json()
        assert session["home_server"] == SERVER
        token = session["access_token"]
        resp = await rh.client.get(
            f"/_synapse/admin/v1/whois/@root:{session['home_server']}", headers=bearer(token))
        assert resp.status == 200
        resp = await rh.client.get(f"{R0}/account/whoami", headers=bearer(token))
        assert (await resp.json())["user_id"] == "@root:test.example"
        resp = await rh.client.post(f"{R0}/logout", headers=bearer(token))
        assert resp.status == 200
        resp = await rh.client.get(f"{R0}/account/whoami", headers=bearer(token))
        assert await err(resp) == (401, "M_UNKNOWN_TOKEN")


# -- login rules ---------------------------------------------------------------------------

async def test_wrong_password_and_unknown_users_look_the_same(
        room_harness_factory: HarnessFactory) -> None:
    rh = await room_harness_factory(client_login={"failed_per_address": {"per_second": 0},
                                                  "failed_per_account": {"per_second": 0}})
    alice = await account(rh, "alice")
    await account(rh, "nopass", password_hash=None)
    counter = VerifyCounter(rh)
    before = await rh.storage.get_devices(alice.user_id)
    answers = []
    for user, password in (("alice", "wrong password"), ("nobody", PASSWORD),
                           ("@alice:remote.example", PASSWORD), ("nopass", PASSWORD),
                           ("@@not a user id", PASSWORD), ("alice", PASSWORD + "x" * 600)):
        calls = counter.calls
        resp = await rh.client.post(f"{V3}/login", json=ketesa_login(user, password))
        assert resp.status == 403, user
        answers.append(await resp.json())
        # bcrypt ran for every attempt, known account or not: no timing difference.
        assert counter.calls == calls + 1, user
    assert all(a == {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}
               for a in answers), answers
    assert await rh.storage.get_devices(alice.user_id) == before


async def test_localpart_case_and_full_user_id(rh: Harness) -> None:
    await account(rh, "alice")
    for user in ("alice", "ALICE", "@alice:test.example", "@Alice:test.example"):
        resp = await rh.client.post(f"{V3}/login", json=ketesa_login(user))
        assert resp.status == 200, user
        assert (await resp.json())["user_id"] == "@alice:test.example"


async def test_deactivated_and_locked_only_after_the_right_password(rh: Harness) -> None:
    gone = await account(rh, "gone")
    locked = await account(rh, "locked")
    set_state(rh.storage, gone.user_id, deactivated=True)
    set_state(rh.storage, locked.user_id, locked=True)
    for user in ("gone", "locked"):
        resp = await rh.client.post(f"{V3}/login", json=ketesa_login(user, "wrong one"))
        assert await err(resp) == (403, "M_FORBIDDEN"), user
    resp = await rh.client.post(f"{V3}/login", json=ketesa_login("gone"))
    assert await err(resp) == (403, "M_USER_DEACTIVATED")
    resp = await rh.client.post(f"{V3}/login", json=ketesa_login("locked"))
    body = await resp.json()
    assert (resp.status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    # no new device for either
    assert len(await rh.storage.get_devices(locked.user_id)) == 1
    set_state(rh.storage, locked.user_id, locked=False)
    resp = await rh.client.post(f"{V3}/login", json=ketesa_login("locked"))
    assert resp.status == 200


async def test_device_id_is_kept_and_its_old_token_revoked(rh: Harness) -> None:
    alice = await account(rh, "alice")
    first = await (await rh.client.post(
        f"{V3}/login", json=ketesa_login("alice", device_id="BROWSER"))).json()
    assert first["device_id"] == "BROWSER"
    body = ketesa_login("alice", device_id="BROWSER")
    body["initial_device_display_name"] = "Ketesa again"
    second = await (await rh.client.post(f"{V3}/login", json=body)).json()
    assert second["device_id"] == "BROWSER" and second["access_token"] != first["access_token"]
    resp = await rh.client.get(f"{V3}/account/whoami", headers=bearer(first["access_token"]))
    assert await err(resp) == (401, "M_UNKNOWN_TOKEN")
    resp = await rh.client.get(f"{V3}/account/whoami", headers=bearer(second["access_token"]))
    assert (await resp.json())["device_id"] == "BROWSER"
    devices = [d for d in await rh.storage.get_devices(alice.user_id)
               if d.device_id == "BROWSER"]
    assert [d.display_name for d in devices] == ["Ketesa again"]


@pytest.mark.parametrize(("body", "status", "errcode"), [
    (b"not json", 400, "M_NOT_JSON"),
    (b"[]", 400, "M_BAD_JSON"),
    (b'{"password": "x"}', 400, "M_MISSING_PARAM"),
    (b'{"type": "m.login.token", "token": "abc"}', 400, "M_UNKNOWN"),
    (b'{"type": "m.login.password", "identifier": {"type": "m.id.thirdparty",'
     b' "medium": "email", "address": "a@b.c"}, "password": "x"}', 400, "M_UNKNOWN"),
    (b'{"type": "m.login.password", "password": "x"}', 400, "M_MISSING_PARAM"),
    (b'{"type": "m.login.password", "identifier": {"type": "m.id.user"},'
     b' "password": "x"}', 400, "M_MISSING_PARAM"),
    (b'{"type": "m.login.password", "user": "alice"}', 400, "M_MISSING_PARAM"),
    (b'{"type": "m.login.password", "user": "alice", "password": 12345678}', 400,
     "M_BAD_JSON"),
    (b'{"type": "m.login.password", "user": "alice", "password": "x",'
     b' "device_id": "A\\u0000B"}', 400, "M_INVALID_PARAM"),
    (b'{"type": "m.login.password", "user": "alice", "password": "x",'
     b' "device_id": "' + b"D" * 256 + b'"}', 400, "M_BAD_JSON"),
])
async def test_malformed_logins(rh: Harness, body: bytes, status: int, errcode: str) -> None:
    alice = await account(rh, "alice")
    resp = await rh.client.post(f"{V3}/login", data=body,
                                headers={"Content-Type": "application/json"})
    assert await err(resp) == (status, errcode)
    assert len(await rh.storage.get_devices(alice.user_id)) == 1


# -- whoami, profile, logout ---------------------------------------------------------------

async def test_profile(rh: Harness) -> None:
    alice = await account(rh, "alice")
    bob = await account(rh, "bob")
    c = rh.client
    resp = await c.get(f"{V3}/profile/{bob.user_id}", headers=alice.auth)
    assert await resp.json() == {"displayname": "bob"}
    await rh.storage.set_profile(bob.user_id, Profile("Bob B.", "mxc://test.example/abc"))
    resp = await c.get(f"{R0}/profile/%40bob%3Atest.example", headers=alice.auth)
    assert await resp.json() == {"displayname": "Bob B.", "avatar_url": "mxc://test.example/abc"}
    await rh.storage.set_profile(bob.user_id, Profile(None, ""))
    resp = await c.get(f"{V3}/profile/{bob.user_id}", headers=alice.auth)
    assert resp.status == 200 and await resp.json() == {}
    for user_id, expected in (("@carol:test.example", (404, "M_NOT_FOUND")),
                              ("@bob:remote.example", (404, "M_NOT_FOUND")),
                              ("bob", (400, "M_INVALID_PARAM"))):
        resp = await c.get(f"{V3}/profile/{user_id}", headers=alice.auth)
        assert await err(resp) == expected, user_id
    # Authentication first: strangers cannot tell accounts from non-accounts.
    for someone in (str(bob.user_id), "@carol:test.example"):
        resp = await c.get(f"{V3}/profile/{someone}")
        assert await err(resp) == (401, "M_MISSING_TOKEN")
    # /profile/{userId}/displayname and the like are not this feature's.
    resp = await c.get(f"{V3}/profile/{bob.user_id}/displayname", headers=alice.auth)
    assert resp.status == 404


@pytest.mark.parametrize("path", [f"{V3}/account/whoami", f"{V3}/profile/@bob:test.example",
                                  f"{V3}/logout", f"{V3}/logout/all", f"{R0}/logout/all"])
async def test_token_routes_refuse_bad_tokens(rh: Harness, path: str) -> None:
    admin = await account(rh, "former", admin=True)
    set_state(rh.storage, admin.user_id, deactivated=True)
    method = "POST" if "logout" in path else "GET"
    for headers, expected in (({}, (401, "M_MISSING_TOKEN")),
                              (bearer("nope"), (401, "M_UNKNOWN_TOKEN")),
                              (admin.auth, (401, "M_UNKNOWN_TOKEN"))):
        resp = await rh.client.request(method, path, headers=headers)
        assert await err(resp) == expected


async def test_logout_all_ends_every_session_of_that_user_only(rh: Harness) -> None:
    alice = await account(rh, "alice")
    bob = await account(rh, "bob")
    tokens = [(await (await rh.client.post(f"{V3}/login", json=ketesa_login("alice")))
               .json())["access_token"] for _ in range(2)]
    resp = await rh.client.post(f"{V3}/logout/all", headers=bearer(tokens[0]))
    assert resp.status == 200 and await resp.json() == {}
    for token in (*tokens, alice.token):
        resp = await rh.client.get(f"{V3}/account/whoami", headers=bearer(token))
        assert await err(resp) == (401, "M_UNKNOWN_TOKEN")
    assert await rh.storage.get_devices(alice.user_id) == []
    resp = await rh.client.get(f"{V3}/account/whoami", headers=bob.auth)
    assert resp.status == 200


async def test_methods_head_and_the_hosts_own_paths(rh: Harness) -> None:
    resp = await rh.client.delete(f"{V3}/login")
    assert await err(resp) == (405, "M_UNRECOGNIZED")
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == {
        "GET", "HEAD", "POST", "OPTIONS"}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await rh.client.head("/_matrix/client/versions")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == b""
    # The host keeps its own client API: nothing else under /_matrix/client is taken.
    resp = await rh.client.get(f"{V3}/ping")
    assert resp.status == 200 and await resp.json() == {"host": True}
    resp = await rh.client.get(f"{V3}/sync")
    assert resp.status == 404 and resp.content_type != "application/json"


async def test_switched_off_nothing_is_mounted(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(client_login={"enabled": False})
    root = await account(h, "root", admin=True)
    for method, path in (("GET", "/_matrix/client/versions"), ("POST", f"{V3}/login"),
                         ("GET", f"{V3}/account/whoami"), ("POST", f"{V3}/logout")):
        resp = await h.client.request(method, path, headers=root.auth)
        assert resp.status in (404, 405), path  # the host's own answer
        assert "Access-Control-Allow-Origin" not in resp.headers, path


# -- rate limits, audit, logs --------------------------------------------------------------

async def test_failed_attempts_are_limited_per_account_and_address(
        room_harness_factory: HarnessFactory) -> None:
    slow = {"per_second": 0.001}
    h = await room_harness_factory(client_login={
        "failed_per_address": {**slow, "burst": 3}, "failed_per_account": {**slow, "burst": 2}})
    await account(h, "alice")
    await account(h, "bob")
    counter = VerifyCounter(h)
    # Successes do not count.
    for _ in range(4):
        assert (await h.client.post(f"{V3}/login", json=ketesa_login("alice"))).status == 200

    async def attempt(user: str, password: str = "wrong password") -> ClientResponse:  # noqa: S107
        return await h.client.post(f"{V3}/login", json=ketesa_login(user, password))

    assert (await attempt("alice")).status == 403
    assert (await attempt("alice")).status == 403
    calls = counter.calls
    for password in ("wrong password", PASSWORD):  # even the right one, now
        resp = await attempt("alice", password)
        body = await resp.json()
        assert (resp.status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        assert body["retry_after_ms"] > 0 and int(resp.headers["Retry-After"]) >= 1
    assert counter.calls == calls  # refused before any bcrypt work
    # The address has one failure left (the account refusals did not take any).
    assert (await attempt("bob")).status == 403
    resp = await attempt("bob", PASSWORD)
    assert await err(resp) == (429, "M_LIMIT_EXCEEDED")


async def test_logins_are_audited_without_secrets(rh: Harness,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    root = await account(rh, "root", admin=True)
    wrong = "a wrong but memorable password"
    assert (await rh.client.post(f"{V3}/login", json=ketesa_login("root", wrong))).status == 403
    assert (await rh.client.post(f"{V3}/login", json=ketesa_login("ghost"))).status == 403
    resp = await rh.client.post(f"{V3}/login", json=ketesa_login("root"))
    token = (await resp.json())["access_token"]
    resp = await rh.client.get("/_dendrite/admin/auditLog", headers=root.auth)
    entries = [e for e in (await resp.json())["entries"] if e["action"] == "login"]
    assert [(e["target"], e["outcome"], e["requester"]) for e in entries] == [
        ("@root:test.example", "ok", "@root:test.example"),
        ("@ghost:test.example", "M_FORBIDDEN", None),
        ("@root:test.example", "M_FORBIDDEN", None),
    ]
    trail = json.dumps(entries) + caplog.text
    for secret in (PASSWORD, wrong, token, HASH):
        assert secret not in trail


# -- storage contract ------------------------------------------------------------------------

async def test_storage_contract(room_storage: AdminStorage) -> None:
    st = room_storage
    alice = await make_user(st, "alice", password_hash=HASH)
    await make_user(st, "bob", password_hash=None)
    found = await st.get_login_account(alice.user_id)
    assert found is not None
    assert (found.user, found.password_hash, found.account_type, found.is_deactivated,
            found.locked) == (alice.user_id, HASH, AccountType.USER, False, False)
    bob = await st.get_login_account(UserID("bob", SERVER))
    assert bob is not None and bob.password_hash is None
    assert await st.get_login_account(UserID("ALICE", SERVER)) is None
    assert await st.get_login_account(UserID("alice", "remote.example")) is None
    set_state(st, alice.user_id, locked=True)
    locked = await st.get_login_account(alice.user_id)
    assert locked is not None and locked.locked

    # a new device; then the same ID again replaces it and revokes its token
    assert await st.create_login_device(alice.user_id, NewDevice("WEB", "tok-1", "One"), 5)
    owner = await st.get_token_owner("tok-1")
    assert owner is not None and (owner.user, owner.device_id) == (alice.user_id, "WEB")
    assert await st.create_login_device(alice.user_id, NewDevice("WEB", "tok-2", None), 6)
    assert await st.get_token_owner("tok-1") is None
    assert await st.get_token_owner("tok-2") is not None
    web = [d for d in await st.get_devices(alice.user_id) if d.device_id == "WEB"]
    assert [d.display_name for d in web] == [None]
    assert not await st.create_login_device(UserID("nobody", SERVER),
                                            NewDevice("X", "tok-3", None), 7)
    assert await st.get_token_owner("tok-3") is None

    assert await st.delete_login_device(alice.user_id, "WEB")
    assert not await st.delete_login_device(alice.user_id, "WEB")
    assert await st.get_token_owner("tok-2") is None
    assert await st.create_login_device(alice.user_id, NewDevice("B", "tok-4", None), 8)
    assert await st.delete_login_devices(alice.user_id) == 2  # B and the first device
    assert await st.get_devices(alice.user_id) == []
    assert await st.get_token_owner(alice.token) is None
    assert await st.delete_login_devices(alice.user_id) == 0

    set_state(st, alice.user_id, deactivated=True)
    assert not await st.create_login_device(alice.user_id, NewDevice("C", "tok-5", None), 9)
    assert await st.get_token_owner("tok-5") is None
    gone = await st.get_login_account(alice.user_id)
    assert gone is not None and gone.is_deactivated


# -- the hasher, the config -----------------------------------------------------------------

async def test_verify_runs_off_the_loop_on_the_bounded_pool() -> None:
    hasher = PasswordHasher(4, max_concurrent=1, max_queued=0)
    threads: list[str] = []
    real = hasher.verify_sync

    def spy(password: str, hashed: str) -> bool:
        threads.append(threading.current_thread().name)
        return real(password, hashed)

    hasher.verify_sync = spy  # type: ignore[method-assign]
    try:
        assert await hasher.verify(PASSWORD, HASH)
        assert not await hasher.verify("other", HASH)
        assert not await hasher.verify(PASSWORD, "not a bcrypt hash")
        assert all(t.startswith("dendrite-admin-bcrypt") for t in threads), threads
        # The same bound as hashing: one running, none queued, so a second is refused.
        running_one = asyncio.ensure_future(hasher.verify(PASSWORD, HASH))
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable):
            await hasher.hash("whatever password")
        assert await running_one
    finally:
        hasher.close()


def test_config_switch(schemas: Schemas) -> None:
    assert not parse_config({"server_name": "x.org"}, schemas=schemas).client_login.enabled
    on = parse_config({"server_name": "x.org", "client_login": {
        "enabled": True, "failed_per_account": {"per_second": 1, "burst": 7}}},
        schemas=schemas).client_login
    assert on.enabled and on.failed_per_account.burst == 7
    assert on.failed_per_address.burst == 3  # Synapse's rc_login.failed_attempts
    with pytest.raises(ConfigError, match=r"'client_login.failed_per_address.burst'"):
        parse_config({"server_name": "x.org", "client_login": {
            "failed_per_address": {"burst": 0}}}, schemas=schemas)


def test_refused_together_with_a_shared_database(schemas: Schemas) -> None:
    from dendrite_admin_ext.config import _client_login

    raw = {"server_name": "x.org", "client_login": {"enabled": True},
           "database": {"backend": "sqlite", "shared_with": "dendrite"}}
    with pytest.raises(ConfigError) as caught:
        _client_login(raw)
    assert "'client_login.enabled'" in str(caught.value)
    assert "database.shared_with" in str(caught.value)
    # Through the whole parser too (whether the schema already knows shared_with or
    # not, the message names it).
    with pytest.raises(ConfigError, match="shared_with"):
        parse_config(raw, schemas=schemas)
    _client_login({**raw, "client_login": {"enabled": False}})


def test_example_config_switches_it_on(schemas: Schemas) -> None:
    from dendrite_admin_ext.config import load_config

    example = Path(__file__).resolve().parent.parent / "example_config.yaml"
    assert load_config(example, schemas).client_login.enabled


# -- the real standalone server ------------------------------------------------------------

def test_standalone_login_with_the_register_user_admin(tmp_path: Path) -> None:
    config = write_config(tmp_path, database={"backend": "sqlite", "path": "admin.db"},
                          client_login={"enabled": True})
    with running(config) as server:
        out = subprocess.run([sys.executable, "-m", "dendrite_admin_ext", "register-user",
                              "-c", str(config), "-u", "root", "-p", PASSWORD, "-a"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        url = server.url
        status, versions, _ = call("GET", url + "/_matrix/client/versions")
        assert status == 200 and "v1.18" in versions["versions"]
        status, _, _ = call("POST", url + f"{V3}/login", ketesa_login("root", "nope"))
        assert status == 403
        status, session, headers = call("POST", url + f"{V3}/login", ketesa_login("root"))
        assert status == 200, session
        assert headers["Access-Control-Allow-Origin"] == "*"
        token = session["access_token"]
        assert session["user_id"] == "@root:test.example"
        status, who, _ = call("GET", url + f"{V3}/account/whoami", token=token)
        assert who["device_id"] == session["device_id"]
        status, profile, _ = call("GET", url + f"{V3}/profile/@root:test.example", token=token)
        assert (status, profile) == (200, {"displayname": "root"})
        status, whois, _ = call("GET", url + "/_synapse/admin/v1/whois/@root:test.example",
                                token=token)
        assert status == 200 and session["device_id"] in whois["devices"]
        status, _, _ = call("POST", url + f"{V3}/logout", {}, token=token)
        assert status == 200
        status, gone, _ = call("GET", url + f"{V3}/account/whoami", token=token)
        assert (status, gone["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        # Paths of the client API it does not serve: its JSON 404.
        status, other, _ = call("GET", url + f"{V3}/sync", token=token)
        assert (status, other["errcode"]) == (404, "M_UNRECOGNIZED")
    log = server.log()
    assert "Traceback" not in log
    for secret in (PASSWORD, token, "standalone-secret"):
        assert secret not in log


async def test_a_busy_hasher_is_503_and_costs_no_attempt(
        harness_factory: HarnessFactory) -> None:
    h = await harness_factory(client_login={"failed_per_account": {"per_second": 0.001,
                                                                   "burst": 1}})
    await account(h, "alice")
    hasher = h.ctx.hasher
    hasher._in_flight = hasher.max_concurrent + hasher.max_queued  # every slot taken
    for _ in range(3):
        resp = await h.client.post(f"{V3}/login", json=ketesa_login("alice", "wrong one"))
        assert await err(resp) == (503, "M_UNKNOWN")
        assert int(resp.headers["Retry-After"]) > 0
    hasher._in_flight = 0
    # The refused attempts were given back: the one failure allowed is still there.
    resp = await h.client.post(f"{V3}/login", json=ketesa_login("alice", "wrong one"))
    assert await err(resp) == (403, "M_FORBIDDEN")
    resp = await h.client.post(f"{V3}/login", json=ketesa_login("alice"))
    assert await err(resp) == (429, "M_LIMIT_EXCEEDED")
