"""Account locking and suspension (SPEC 10): the storage contract, the endpoints through
HTTP, the admin API's own refusal of locked accounts, and the host middleware.

Storage and HTTP tests run on memory, SQLite, PostgreSQL and the independent test host
(tests/host_storage.py)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from dendrite_admin_ext import setup_admin
from dendrite_admin_ext.errors import UserLocked, UserSuspended
from dendrite_admin_ext.features import FEATURES
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.moderation import (
    LOCKED_ALLOWED,
    SUSPENDED_RULES,
    account_moderation_capabilities,
    check_login_allowed,
    check_moderation,
    check_redaction_allowed,
    moderation_unstable_features,
)
from dendrite_admin_ext.routes import ROUTES
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountState, AccountType, NewAccount, NewDevice
from dendrite_admin_ext.validation import Schemas

from .conftest import SERVER, Harness, HarnessFactory, User, make_config
from .host_storage import HostStorage
from .sql_backends import BACKENDS, make_storage

V1 = "/_matrix/client/v1/admin"
UNSTABLE = "/_matrix/client/unstable/uk.timedout.msc4323/admin"
PREFIXES = [V1, UNSTABLE]
KEYS = {"lock": "locked", "suspend": "suspended"}


# -- the storage contract ------------------------------------------------------------------
@pytest.fixture(params=[*BACKENDS, "host"])
async def st(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AdminStorage]:
    storage: AdminStorage = (HostStorage() if request.param == "host"
                             else await make_storage(request, request.param, tmp_path))
    yield storage
    await storage.close()


async def _account(st: AdminStorage, localpart: str, token: str) -> UserID:
    user = UserID(localpart, "contract.example")
    await st.create_account(NewAccount(user, "hash", AccountType.USER, 1_000),
                            NewDevice("DEV", token))
    return user


async def test_state_starts_clear_and_flags_are_independent(st: AdminStorage) -> None:
    alice = await _account(st, "alice", "tok-alice")
    bob = await _account(st, "bob", "tok-bob")
    assert await st.get_account_state(alice) == AccountState()
    await st.set_locked(alice, True)
    assert await st.get_account_state(alice) == AccountState(locked=True)
    await st.set_suspended(alice, True)
    assert await st.get_account_state(alice) == AccountState(locked=True, suspended=True)
    # Setting one flag keeps the other; setting it again changes nothing.
    await st.set_locked(alice, False)
    await st.set_locked(alice, False)
    assert await st.get_account_state(alice) == AccountState(suspended=True)
    await st.set_suspended(alice, True)
    assert await st.get_account_state(alice) == AccountState(suspended=True)
    assert await st.get_account_state(bob) == AccountState()


async def test_token_owner_carries_the_state(st: AdminStorage) -> None:
    alice = await _account(st, "alice", "tok-alice")
    await _account(st, "bob", "tok-bob")
    owner = await st.get_token_owner("tok-alice")
    assert owner is not None and (owner.locked, owner.suspended) == (False, False)
    await st.set_locked(alice, True)
    await st.set_suspended(alice, True)
    owner = await st.get_token_owner("tok-alice")
    assert owner is not None and (owner.locked, owner.suspended) == (True, True)
    # Locking keeps the token (unlocking restores access); others are untouched.
    await st.set_locked(alice, False)
    owner = await st.get_token_owner("tok-alice")
    assert owner is not None and (owner.locked, owner.suspended) == (False, True)
    bob = await st.get_token_owner("tok-bob")
    assert bob is not None and (bob.locked, bob.suspended) == (False, False)


# -- the endpoints, on every storage and the test host -----------------------------------
@dataclasses.dataclass
class Cast:
    h: Harness
    admin: User
    alice: User
    bob: User


@pytest.fixture(name="people")
async def cast_(room_harness_factory: HarnessFactory) -> Cast:
    h = await room_harness_factory()
    return Cast(h, await h.user("root", admin=True), await h.user("alice"),
                await h.user("bob"))


async def call(h: Harness, method: str, path: str, who: User | None,
               body: Any = None) -> tuple[int, dict[str, Any]]:
    kwargs: dict[str, Any] = {"headers": who.auth if who else {}}
    if body is not None:
        kwargs["json"] = body
    r = await h.client.request(method, path, **kwargs)
    assert r.content_type == "application/json"
    got: dict[str, Any] = await r.json()
    return r.status, got


def _err(result: tuple[int, dict[str, Any]]) -> tuple[int, str | None]:
    return result[0], result[1].get("errcode")


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_lock_round_trip_and_the_admin_api_refuses_a_locked_account(
        people: Cast, prefix: str) -> None:
    h, alice = people.h, people.alice
    url = f"{prefix}/lock/{alice.user_id}"
    assert await call(h, "GET", url, people.admin) == (200, {"locked": False})
    assert await call(h, "PUT", url, people.admin, {"locked": True}) == (200, {"locked": True})
    assert await call(h, "GET", url, people.admin) == (200, {"locked": True})
    # A repeated PUT is 200 as if it changed something (MSC4323).
    assert await call(h, "PUT", url, people.admin, {"locked": True}) == (200, {"locked": True})
    whois = f"/_matrix/client/v3/admin/whois/{alice.user_id}"
    status, body = await call(h, "GET", whois, alice)
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    # The token is kept: unlocking lets the same token back in.
    assert await h.storage.get_token_owner(alice.token) is not None
    assert await call(h, "PUT", url, people.admin, {"locked": False}) == (200, {"locked": False})
    assert (await call(h, "GET", whois, alice))[0] == 200
    assert await h.storage.get_account_state(alice.user_id) == AccountState()


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_suspend_round_trip(people: Cast, prefix: str) -> None:
    h, alice = people.h, people.alice
    url = f"{prefix}/suspend/{alice.user_id}"
    assert await call(h, "GET", url, people.admin) == (200, {"suspended": False})
    assert await call(h, "PUT", url, people.admin, {"suspended": True}) == (
        200, {"suspended": True})
    assert await call(h, "GET", url, people.admin) == (200, {"suspended": True})
    assert await h.storage.get_account_state(alice.user_id) == AccountState(suspended=True)
    # Suspension restricts the client API, not reading one's own whois.
    assert (await call(h, "GET", f"/_matrix/client/v3/admin/whois/{alice.user_id}",
                       alice))[0] == 200
    assert await call(h, "PUT", url, people.admin, {"suspended": False}) == (
        200, {"suspended": False})
    assert await h.storage.get_account_state(alice.user_id) == AccountState()


async def test_synapse_suspend_is_the_same_state(people: Cast) -> None:
    h, alice = people.h, people.alice
    url = f"/_synapse/admin/v1/suspend/{alice.user_id}"
    assert await call(h, "PUT", url, people.admin, {"suspend": True}) == (
        200, {f"user_{alice.user_id}_suspended": True})
    assert await call(h, "GET", f"{V1}/suspend/{alice.user_id}", people.admin) == (
        200, {"suspended": True})
    assert await call(h, "PUT", url, people.admin, {"suspend": False}) == (
        200, {f"user_{alice.user_id}_suspended": False})
    assert await h.storage.get_account_state(alice.user_id) == AccountState()
    assert _err(await call(h, "PUT", url, people.admin, {"suspend": "yes"})) == (
        400, "M_BAD_JSON")
    assert _err(await call(h, "PUT", "/_synapse/admin/v1/suspend/@x:remote.example",
                           people.admin, {"suspend": True})) == (400, "M_INVALID_PARAM")
    assert _err(await call(h, "PUT", f"/_synapse/admin/v1/suspend/@nobody:{SERVER}",
                           people.admin, {"suspend": True})) == (404, "M_NOT_FOUND")
    assert _err(await call(h, "PUT", url, people.bob, {"suspend": True})) == (
        403, "M_FORBIDDEN")
    assert await h.storage.get_account_state(alice.user_id) == AccountState()


@pytest.mark.parametrize("action", ["lock", "suspend"])
async def test_checks_in_the_spec_order(people: Cast, action: str) -> None:
    h, admin, key = people.h, people.admin, KEYS[action]
    other_admin = await h.user("root2", admin=True)
    former = await h.user("former")
    flags: Callable[..., None] = h.storage.set_account_flags  # type: ignore[attr-defined]
    flags(former.user_id, is_deactivated=True)

    def url(user: str) -> str:
        return f"{V1}/{action}/{user}"

    on: dict[str, Any] = {key: True}
    # 1. Authorisation before anything: a non-admin learns nothing, whatever the target.
    for target in ("@nobody:remote.example", f"@nobody:{SERVER}", "not-a-user-id",
                   str(people.alice.user_id), str(people.bob.user_id)):
        for method, body in (("GET", None), ("PUT", on), ("PUT", None)):
            status, got = await call(h, method, url(target), people.bob, body)
            assert (status, got["errcode"]) == (403, "M_FORBIDDEN"), (method, target)
            assert got["error"] == "This API can only be used by admin users."
    # 2. A change of one's own account (before the body is even read).
    assert _err(await call(h, "PUT", url(str(admin.user_id)), admin, on)) == (
        403, "M_FORBIDDEN")
    assert _err(await call(h, "PUT", url(str(admin.user_id)), admin)) == (
        403, "M_FORBIDDEN")
    assert await call(h, "GET", url(str(admin.user_id)), admin) == (200, {key: False})
    # 3. Not a local user (or not a user ID at all): 400, before the body and any lookup.
    for target in ("@nobody:remote.example", "not-a-user-id"):
        wrong: dict[str, Any] = {"wrong": 1}
        for method, body in (("GET", None), ("PUT", on), ("PUT", wrong)):
            assert _err(await call(h, method, url(target), admin, body)) == (
                400, "M_INVALID_PARAM"), (method, target)
    # The body is checked before the lookup: a bad one changes nothing and reads nothing.
    assert _err(await call(h, "PUT", url(str(people.alice.user_id)), admin,
                           {key: "true"})) == (400, "M_BAD_JSON")
    # 4. Unknown or deactivated: 404.
    for target in (f"@nobody:{SERVER}", str(former.user_id)):
        for method, body in (("GET", None), ("PUT", on)):
            assert _err(await call(h, method, url(target), admin, body)) == (
                404, "M_NOT_FOUND"), (method, target)
    # 5. Another server admin: 403 on GET and PUT.
    for method, body in (("GET", None), ("PUT", on)):
        assert _err(await call(h, method, url(str(other_admin.user_id)), admin, body)) == (
            403, "M_FORBIDDEN"), method
    # Nothing above changed anybody's state.
    for user in (admin, other_admin, former, people.alice, people.bob):
        assert await h.storage.get_account_state(user.user_id) == AccountState()


async def test_every_change_is_audited(people: Cast) -> None:
    h, alice = people.h, people.alice
    for path, body in ((f"{V1}/lock/{alice.user_id}", {"locked": True}),
                       (f"{V1}/lock/{alice.user_id}", {"locked": False}),
                       (f"{UNSTABLE}/suspend/{alice.user_id}", {"suspended": True}),
                       (f"{V1}/suspend/{alice.user_id}", {"suspended": False}),
                       (f"/_synapse/admin/v1/suspend/{alice.user_id}", {"suspend": True}),
                       (f"/_synapse/admin/v1/suspend/{alice.user_id}", {"suspend": False})):
        assert (await call(h, "PUT", path, people.admin, body))[0] == 200
    assert (await call(h, "PUT", f"{V1}/lock/{alice.user_id}", people.bob,
                       {"locked": True}))[0] == 403
    # Reads are not audited.
    assert (await call(h, "GET", f"{V1}/lock/{alice.user_id}", people.admin))[0] == 200
    entries = list(reversed(await h.storage.get_audit_entries(before_id=None, limit=20)))
    assert [(e.action, e.target, e.outcome, e.requester) for e in entries] == [
        ("lock", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("unlock", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("suspend", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("unsuspend", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("suspend", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("unsuspend", str(alice.user_id), "ok", str(people.admin.user_id)),
        ("lock", str(alice.user_id), "M_FORBIDDEN", str(people.bob.user_id)),
    ]


async def test_a_locked_admin_is_refused_everywhere_until_unlocked(people: Cast) -> None:
    h, admin = people.h, people.admin
    await h.storage.set_locked(admin.user_id, True)
    for method, path, body in (
            ("GET", f"{V1}/lock/{people.alice.user_id}", None),
            ("PUT", f"{V1}/lock/{people.alice.user_id}", {"locked": True}),
            ("GET", "/_dendrite/admin/auditLog", None),
            ("GET", f"/_synapse/admin/v1/whois/{admin.user_id}", None)):
        status, got = await call(h, method, path, admin, body)
        assert (status, got["errcode"], got["soft_logout"]) == (
            401, "M_USER_LOCKED", True), path
    assert await h.storage.get_account_state(people.alice.user_id) == AccountState()
    await h.storage.set_locked(admin.user_id, False)
    assert (await call(h, "GET", f"{V1}/lock/{people.alice.user_id}", admin))[0] == 200


# -- mounting -------------------------------------------------------------------------------
async def test_switched_off_not_mounted_and_other_client_routes_untouched(
        aiohttp_client: Any, schemas: Schemas) -> None:
    storage = MemoryStorage()
    app = web.Application()

    async def media_config(request: web.Request) -> web.Response:
        return web.json_response({"m.upload.size": 1})

    # The host's own routes beside the new admin prefixes stay the host's.
    app.router.add_get("/_matrix/client/v1/media/config", media_config)
    app.router.add_get("/_matrix/client/unstable/uk.timedout.msc4323/other", media_config)
    setup_admin(app, make_config(schemas, endpoints={"moderation": False}), storage)
    client = await aiohttp_client(app)
    admin = UserID("root", SERVER)
    await storage.create_account(NewAccount(admin, None, AccountType.ADMIN, 1),
                                 NewDevice("D", "tok"))
    auth = {"Authorization": "Bearer tok"}
    for path in (f"{V1}/lock/@a:{SERVER}", f"{UNSTABLE}/suspend/@a:{SERVER}"):
        r = await client.get(path, headers=auth)
        assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    r = await client.put(f"/_synapse/admin/v1/suspend/@a:{SERVER}", headers=auth,
                         json={"suspend": True})
    assert r.status == 404
    for path in ("/_matrix/client/v1/media/config",
                 "/_matrix/client/unstable/uk.timedout.msc4323/other"):
        r = await client.get(path)
        assert (r.status, await r.json()) == (200, {"m.upload.size": 1})
    # An unknown path under a new admin prefix is a Matrix 404, not plain text.
    r = await client.get(f"{V1}/nothing-here")
    assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")


def test_not_enabled_with_a_shared_dendrite_database(schemas: Schemas) -> None:
    config = make_config(schemas)
    feature = FEATURES["moderation"]
    assert feature.enabled(config)
    # database.shared_with comes with the shared-database mode (SPEC 8); the switch
    # reads it by name, so a config that has it set turns moderation off.
    shared = dataclasses.replace(config, database=cast(Any, types.SimpleNamespace(
        shared_with="dendrite")))
    assert not feature.enabled(shared)
    assert account_moderation_capabilities(shared, is_admin=True) == {}
    assert {r.feature for r in ROUTES if "/lock/" in r.path or "/suspend/" in r.path} == {
        "moderation"}


def test_capabilities_only_for_admins(schemas: Schemas) -> None:
    config = make_config(schemas)
    expected = {"suspend": True, "lock": True}
    assert account_moderation_capabilities(config, is_admin=True) == {
        "m.account_moderation": expected, "uk.timedout.msc4323": expected}
    assert account_moderation_capabilities(config, is_admin=False) == {}
    off = make_config(schemas, endpoints={"moderation": False})
    assert account_moderation_capabilities(off, is_admin=True) == {}
    assert moderation_unstable_features(config) == {"uk.timedout.msc4323": True}
    assert moderation_unstable_features(off) == {}


# -- the host's rule table --------------------------------------------------------------------
C = "/_matrix/client/v3"
SUSPENDED_CASES = [
    ("GET", f"{C}/sync", True),
    ("GET", "/_matrix/client/r0/sync", True),
    ("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", True),
    ("GET", f"{C}/rooms/!r:x/messages", True),
    ("POST", f"{C}/rooms/!r:x/leave", True),
    ("POST", f"{C}/rooms/!r:x/forget", True),
    ("PUT", f"{C}/rooms/!r:x/send/m.room.redaction/t1", True),
    ("PUT", f"{C}/rooms/!r:x/redact/$e/t1", True),
    ("POST", f"{C}/logout", True),
    ("POST", f"{C}/logout/all", True),
    ("POST", f"{C}/delete_devices", True),
    ("DELETE", f"{C}/devices/D1", True),
    ("POST", f"{C}/keys/upload", True),
    ("POST", f"{C}/keys/device_signing/upload", True),
    ("PUT", f"{C}/room_keys/keys", True),
    ("POST", f"{C}/account/deactivate", True),
    ("GET", f"{C}/profile/@a:x/displayname", True),
    ("PUT", f"{C}/user/@a:x/account_data/m.direct", True),
    ("PUT", f"{C}/rooms/!r:x/send/m.room.message/t1", False),
    ("PUT", f"{C}/rooms/!r:x/send/m.reaction/t1", False),
    ("PUT", f"{C}/rooms/!r:x/state/m.room.topic/", False),
    ("PUT", f"{C}/rooms/!r:x/state/m.room.name", False),
    ("POST", f"{C}/join/!r:x", False),
    ("POST", f"{C}/join/#alias:x", False),
    ("POST", f"{C}/rooms/!r:x/join", False),
    ("POST", f"{C}/knock/!r:x", False),
    ("POST", f"{C}/rooms/!r:x/invite", False),
    ("POST", f"{C}/rooms/!r:x/kick", False),
    ("POST", f"{C}/rooms/!r:x/ban", False),
    ("POST", f"{C}/createRoom", False),
    ("POST", f"{C}/rooms/!r:x/upgrade", False),
    ("PUT", f"{C}/profile/@a:x/displayname", False),
    ("PUT", f"{C}/profile/@a:x/avatar_url", False),
    ("DELETE", f"{C}/profile/@a:x/m.tz", False),
]


@pytest.mark.parametrize(("method", "path", "allowed"), SUSPENDED_CASES)
def test_suspended_rules(method: str, path: str, allowed: bool) -> None:
    state = AccountState(suspended=True)
    if allowed:
        check_moderation(method, path, state)
    else:
        with pytest.raises(UserSuspended) as refused:
            check_moderation(method, path, state)
        err = refused.value
        assert (err.http_status, err.body()) == (403, {
            "errcode": "M_USER_SUSPENDED",
            "error": "You cannot perform this action while suspended."})
    # Without the flag nothing is refused.
    check_moderation(method, path, AccountState())


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in SUSPENDED_CASES])
def test_locked_refuses_all_but_logout(method: str, path: str) -> None:
    state = AccountState(locked=True)
    if path.endswith(("/logout", "/logout/all")):
        check_moderation(method, path, state)
        return
    with pytest.raises(UserLocked) as refused:
        check_moderation(method, path, state)
    err = refused.value
    assert (err.http_status, err.errcode, err.body()["soft_logout"]) == (
        401, "M_USER_LOCKED", True)


def test_rule_tables_and_helpers() -> None:
    check_moderation("GET", "/_matrix/client/versions", AccountState(locked=True))
    # Not the client or media API: never refused.
    check_moderation("GET", "/_matrix/federation/v1/version", AccountState(locked=True))
    with pytest.raises(UserLocked):
        check_moderation("GET", "/_matrix/media/v3/config", AccountState(locked=True))
    with pytest.raises(UserLocked):
        check_login_allowed(AccountState(locked=True))
    check_login_allowed(AccountState(suspended=True))
    check_redaction_allowed(AccountState(suspended=True), own_event=True)
    with pytest.raises(UserSuspended):
        check_redaction_allowed(AccountState(suspended=True), own_event=False)
    assert all(rule.why for rule in (*LOCKED_ALLOWED, *SUSPENDED_RULES))
