"""Registration tokens over HTTP (SPEC 12) on every backend: Synapse's and Dendrite's
admin paths on one store with Synapse's rules and errors, the spec's validity check,
the audit trail, and the requests synapse-admin's and Ketesa's token pages make."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from aiohttp import web

from dendrite_admin_ext import parse_config, setup_admin
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import RegistrationToken

from .conftest import SERVER, Harness, HarnessFactory, User

SYN = "/_synapse/admin/v1/registration_tokens"
DEN = "/_dendrite/admin/registrationTokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
BASES = [SYN, DEN]
HOUR_MS = 3_600_000


def future() -> int:
    return int(time.time() * 1000) + HOUR_MS


async def admin(h: Harness) -> User:
    return await h.user("root", admin=True)


async def call(h: Harness, who: User | None, method: str, path: str,
               body: Any = None, **kw: Any) -> tuple[int, Any]:
    headers = who.auth if who is not None else {}
    resp = await h.client.request(method, path, headers=headers,
                                  **({"json": body} if body is not None else {}), **kw)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def expect_error(h: Harness, who: User | None, method: str, path: str, body: Any,
                       status: int, errcode: str) -> str:
    before = await h.storage.list_registration_tokens(None, 0)
    got, data = await call(h, who, method, path, body)
    assert (got, data.get("errcode")) == (status, errcode), (method, path, body, data)
    assert isinstance(data["error"], str)
    assert await h.storage.list_registration_tokens(None, 0) == before  # nothing changed
    error: str = data["error"]
    return error


@pytest.mark.parametrize("base", BASES)
async def test_create_show_list_update_delete(h: Harness, base: str) -> None:
    root = await admin(h)
    expiry = future()
    status, created = await call(h, root, "POST", f"{base}/new",
                                 {"token": "Invite.2024_~-x", "uses_allowed": 3,
                                  "expiry_time": expiry})
    assert status == 200
    assert created == {"token": "Invite.2024_~-x", "uses_allowed": 3, "pending": 0,
                       "completed": 0, "expiry_time": expiry}
    assert await call(h, root, "GET", f"{base}/Invite.2024_~-x") == (200, created)
    status, listed = await call(h, root, "GET", base)
    assert (status, listed) == (200, {"registration_tokens": [created]})
    # PUT changes only what it names; null = unlimited / never
    status, updated = await call(h, root, "PUT", f"{base}/Invite.2024_~-x",
                                 {"uses_allowed": None})
    assert (status, updated) == (200, {**created, "uses_allowed": None})
    status, updated = await call(h, root, "PUT", f"{base}/Invite.2024_~-x",
                                 {"expiry_time": None, "uses_allowed": 0})
    assert (status, updated) == (200, {**created, "uses_allowed": 0, "expiry_time": None})
    status, same = await call(h, root, "PUT", f"{base}/Invite.2024_~-x", {})
    assert (status, same) == (200, updated)
    assert await call(h, root, "DELETE", f"{base}/Invite.2024_~-x") == (200, {})
    assert await h.storage.get_registration_token("Invite.2024_~-x") is None
    await expect_error(h, root, "GET", f"{base}/Invite.2024_~-x", None, 404, "M_NOT_FOUND")
    # deleting a missing token is 404 (Dendrite itself answers 200)
    await expect_error(h, root, "DELETE", f"{base}/Invite.2024_~-x", None, 404,
                       "M_NOT_FOUND")
    await expect_error(h, root, "PUT", f"{base}/Invite.2024_~-x", {"uses_allowed": 1},
                       404, "M_NOT_FOUND")


async def test_both_paths_share_one_store(h: Harness) -> None:
    root = await admin(h)
    assert (await call(h, root, "POST", f"{SYN}/new", {"token": "shared"}))[0] == 200
    status, shown = await call(h, root, "GET", f"{DEN}/shared")
    assert status == 200 and shown["token"] == "shared"
    # a duplicate through the other path is Synapse's 400, not Dendrite's bare 409
    error = await expect_error(h, root, "POST", f"{DEN}/new", {"token": "shared"}, 400,
                               "M_INVALID_PARAM")
    assert error == "Token already exists"
    assert (await call(h, root, "DELETE", f"{DEN}/shared"))[0] == 200
    await expect_error(h, root, "GET", f"{SYN}/shared", None, 404, "M_NOT_FOUND")


@pytest.mark.parametrize("base", BASES)
async def test_generated_tokens(h: Harness, base: str) -> None:
    root = await admin(h)
    status, default = await call(h, root, "POST", f"{base}/new", {})
    assert status == 200
    assert re.fullmatch(r"[A-Za-z0-9._~-]{16}", default["token"])
    assert default == {"token": default["token"], "uses_allowed": None, "pending": 0,
                       "completed": 0, "expiry_time": None}
    for length in (1, 64):
        status, made = await call(h, root, "POST", f"{base}/new",
                                  {"length": length, "uses_allowed": 1})
        assert status == 200 and len(made["token"]) == length
    names = {t.token for t in await h.storage.list_registration_tokens(None, 0)}
    assert len(names) == 3 and default["token"] in names
    others = {(await call(h, root, "POST", f"{base}/new", {}))[1]["token"] for _ in range(5)}
    assert len(others) == 5  # drawn at random


@pytest.mark.parametrize("body", [
    {"token": ""}, {"token": "x" * 65}, {"token": "has space"}, {"token": "a/b"},
    {"token": "ünïcode"}, {"token": "line\n"}, {"token": 5}, {"token": None},
    {"length": 0}, {"length": 65}, {"length": "16"}, {"length": 1.5}, {"length": True},
    {"uses_allowed": -1}, {"uses_allowed": "5"}, {"uses_allowed": 1.5},
    {"uses_allowed": True}, {"uses_allowed": 2**31},
    {"expiry_time": 1000}, {"expiry_time": "tomorrow"}, {"expiry_time": 1.5e12},
    {"expiry_time": False},
])
async def test_create_refusals_are_invalid_param(h: Harness, body: dict[str, Any]) -> None:
    root = await admin(h)
    await expect_error(h, root, "POST", f"{SYN}/new", body, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("body", [
    {"uses_allowed": -1}, {"uses_allowed": "1"}, {"uses_allowed": 2.0},
    {"expiry_time": 1}, {"expiry_time": "x"}, {"uses_allowed": 1, "expiry_time": 5},
])
async def test_update_refusals_are_invalid_param(h: Harness, body: dict[str, Any]) -> None:
    root = await admin(h)
    await h.storage.create_registration_token(RegistrationToken("t", 2))
    await expect_error(h, root, "PUT", f"{DEN}/t", body, 400, "M_INVALID_PARAM")
    assert await h.storage.get_registration_token("t") == RegistrationToken("t", 2)


async def test_bodies_that_are_not_objects(h: Harness) -> None:
    root = await admin(h)
    resp = await h.client.post(f"{SYN}/new", headers=root.auth, data=b"{nope")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")
    await expect_error(h, root, "POST", f"{SYN}/new", [1], 400, "M_BAD_JSON")


async def test_list_valid_filter(h: Harness) -> None:
    root = await admin(h)
    st = h.storage
    await st.create_registration_token(RegistrationToken("fresh", 2))
    await st.create_registration_token(RegistrationToken("zero", 0))
    await st.create_registration_token(RegistrationToken("full", 2, 1, 1))
    await st.create_registration_token(RegistrationToken("old", None, 0, 0, 1000))
    for base in BASES:
        names = {}
        for query in ("", "?valid=true", "?valid=false"):
            status, body = await call(h, root, "GET", base + query)
            assert status == 200
            names[query] = [t["token"] for t in body["registration_tokens"]]
        assert names == {"": ["fresh", "full", "old", "zero"], "?valid=true": ["fresh"],
                         "?valid=false": ["full", "old", "zero"]}
        await expect_error(h, root, "GET", base + "?valid=yes", None, 400,
                           "M_INVALID_PARAM")


async def test_admins_only(h: Harness) -> None:
    alice = await h.user("alice")
    await h.storage.create_registration_token(RegistrationToken("t"))
    for method, path in [("GET", SYN), ("POST", f"{SYN}/new"), ("GET", f"{DEN}/t"),
                         ("PUT", f"{DEN}/t"), ("DELETE", f"{SYN}/t")]:
        await expect_error(h, alice, method, path, {}, 403, "M_FORBIDDEN")
        await expect_error(h, None, method, path, {}, 401, "M_MISSING_TOKEN")
    assert await h.storage.get_registration_token("t") == RegistrationToken("t")


async def test_changes_are_audited(h: Harness) -> None:
    root = await admin(h)
    await call(h, root, "POST", f"{SYN}/new", {"token": "audited", "uses_allowed": 1})
    _, generated = await call(h, root, "POST", f"{DEN}/new", {"length": 8})
    await call(h, root, "PUT", f"{DEN}/audited", {"uses_allowed": 2})
    await call(h, root, "DELETE", f"{SYN}/audited")
    await call(h, root, "DELETE", f"{SYN}/audited")  # 404: a refusal, recorded too
    await call(h, root, "POST", f"{SYN}/new", {"token": "bad token"})
    await call(h, root, "GET", SYN)  # reads are not audited
    entries = await h.storage.get_audit_entries(before_id=None, limit=100)
    seen = [(e.action, e.target, e.outcome, e.requester) for e in reversed(entries)]
    who = str(root.user_id)
    assert seen == [
        ("createRegistrationToken", "audited", "ok", who),
        ("createRegistrationToken", generated["token"], "ok", who),
        ("updateRegistrationToken", "audited", "ok", who),
        ("deleteRegistrationToken", "audited", "ok", who),
        ("deleteRegistrationToken", "audited", "M_NOT_FOUND", who),
        ("createRegistrationToken", "bad token", "M_INVALID_PARAM", who),
    ]


# -- the spec's validity check --------------------------------------------------------------
async def test_validity(h: Harness) -> None:
    st = h.storage
    await st.create_registration_token(RegistrationToken("good", 1))
    await st.create_registration_token(RegistrationToken("zero", 0))
    await st.create_registration_token(RegistrationToken("taken", 1, 1, 0))
    await st.create_registration_token(RegistrationToken("expired", None, 0, 0, 1000))
    for token, valid in [("good", True), ("zero", False), ("taken", False),
                         ("expired", False), ("unknown", False), ("", False),
                         ("not a token!", False)]:
        status, body = await call(h, None, "GET", VALIDITY, params={"token": token})
        assert (status, body) == (200, {"valid": valid}), token
    status, body = await call(h, None, "GET", VALIDITY)
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_validity_is_rate_limited(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration={"rate_limit": {"per_second": 0.01, "burst": 3}})
    statuses = [(await h.client.get(VALIDITY, params={"token": "x"})).status
                for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    resp = await h.client.get(VALIDITY, params={"token": "x"})
    body = await resp.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and "Retry-After" in resp.headers


async def test_validity_preflight_and_cors(h: Harness) -> None:
    resp = await h.client.options(VALIDITY, headers={
        "Origin": "https://app.element.io", "Access-Control-Request-Method": "GET"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await h.client.get(VALIDITY, params={"token": "x"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def _host_v1(request: web.Request) -> web.Response:
    return web.json_response({"host": request.path})


@pytest.mark.parametrize("enabled", [True, False])
async def test_validity_prefix_leaves_the_hosts_client_api(aiohttp_client: Any,
                                                           enabled: bool) -> None:
    """Only the narrowest prefix is ours, and only while the feature is on."""
    app = web.Application()
    host_paths = ["/_matrix/client/v1/register/available",
                  "/_matrix/client/v1/rooms/x/hierarchy",
                  "/_matrix/client/v1/register/m.login.registration_token/other",
                  "/_matrix/client/v1/register/m.login.registration_token/validity"]
    # A host serving the check itself keeps it (its own exact route wins anyway); one
    # that does not gets ours.
    for path in host_paths if not enabled else host_paths[:3]:
        app.router.add_get(path, _host_v1)
    setup_admin(app, parse_config({"server_name": SERVER,
                                   "endpoints": {"registration_tokens": enabled}}),
                MemoryStorage())
    client = await aiohttp_client(app)
    for path in host_paths[:2]:
        resp = await client.get(path)
        assert (resp.status, await resp.json()) == (200, {"host": path})
    resp = await client.get(host_paths[3], params={"token": "x"})
    assert await resp.json() == ({"valid": False} if enabled else {"host": host_paths[3]})
    # a sibling under our prefix stays the host's
    resp = await client.get(host_paths[2])
    assert await resp.json() == {"host": host_paths[2]}


async def test_feature_switch(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(endpoints={"registration_tokens": False})
    root = await admin(h)
    for method, path in [("GET", SYN), ("POST", f"{DEN}/new"), ("GET", f"{SYN}/x")]:
        status, body = await call(h, root, method, path)
        assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    assert (await h.client.get(VALIDITY, params={"token": "x"})).status == 404


# -- synapse-admin and Ketesa ---------------------------------------------------------------
UI_ORIGIN = "https://admin.example.net"


async def ui(h: Harness, who: User, method: str, path: str,
             body: Any = None) -> tuple[int, Any]:
    """A browser's request from the UI's origin: the CORS preflight, then the call."""
    pre = await h.client.options(path, headers={
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert method in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    resp = await h.client.request(method, path, headers={**who.auth, "Origin": UI_ORIGIN},
                                  **({"data": body} if body is not None else {}))
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return resp.status, await resp.json()


async def test_synapse_admin_and_ketesa_token_pages(h: Harness) -> None:
    """The requests of the token pages (research/admin-apis.md §C): the list filtered
    with valid=true (react-admin adds paging and sort, which Synapse ignores), create
    with null fields stripped, show, edit saving the whole record back, delete."""
    import json

    root = await admin(h)
    listing = f"{SYN}?from=0&limit=50&order_by=token&dir=f&valid=true"
    assert await ui(h, root, "GET", listing) == (200, {"registration_tokens": []})
    expiry = future()
    status, created = await ui(h, root, "POST", f"{SYN}/new",
                               json.dumps({"token": "welcome", "uses_allowed": 10,
                                           "expiry_time": expiry}))
    assert status == 200 and created["token"] == "welcome"
    status, generated = await ui(h, root, "POST", f"{SYN}/new",
                                 json.dumps({"length": 24}))
    assert status == 200 and len(generated["token"]) == 24
    status, page = await ui(h, root, "GET", listing)
    assert status == 200
    assert sorted(t["token"] for t in page["registration_tokens"]) == sorted(
        ["welcome", generated["token"]])
    status, shown = await ui(h, root, "GET", f"{SYN}/welcome")
    assert (status, shown) == (200, created)
    # react-admin's edit saves the whole record (id included, nulls stripped)
    record = {**shown, "id": shown["token"], "uses_allowed": 5}
    status, edited = await ui(h, root, "PUT", f"{SYN}/welcome", json.dumps(record))
    assert (status, edited) == (200, {**created, "uses_allowed": 5})
    assert await ui(h, root, "DELETE", f"{SYN}/welcome") == (200, {})
    status, page = await ui(h, root, "GET", listing)
    assert [t["token"] for t in page["registration_tokens"]] == [generated["token"]]


async def test_generation_gives_up_when_names_run_out(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from dendrite_admin_ext.services import registration_tokens as service

    root = await admin(h)
    drawn: list[int] = []

    def always_a(length: int) -> str:
        drawn.append(length)
        return "a"

    monkeypatch.setattr(service, "generate_token", always_a)
    assert (await call(h, root, "POST", f"{SYN}/new", {"length": 1}))[1]["token"] == "a"
    drawn.clear()
    await expect_error(h, root, "POST", f"{SYN}/new", {"length": 1}, 400, "M_INVALID_PARAM")
    assert drawn == [1] * 20  # a bounded number of draws, then a clear error
