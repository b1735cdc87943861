"""SPEC section 3: tokens, admin status read fresh, guests, deactivation, activity."""

from __future__ import annotations

import asyncio

import pytest

from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import AccountType, TokenOwner

from .conftest import Harness, HarnessFactory

RESET = "/_dendrite/admin/resetPassword/alice"
WHOIS = "/_matrix/client/v3/admin/whois/"


async def _err(resp: object) -> tuple[int, str]:
    from aiohttp import ClientResponse
    assert isinstance(resp, ClientResponse)
    body = await resp.json()
    assert set(body) >= {"errcode", "error"}
    return resp.status, body["errcode"]


async def test_no_token(h: Harness) -> None:
    assert await _err(await h.client.post(RESET, json={"password": "x" * 10})) == (
        401, "M_MISSING_TOKEN")


async def test_unknown_token_has_soft_logout_false(h: Harness) -> None:
    resp = await h.client.post(RESET, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert await resp.json() == {"errcode": "M_UNKNOWN_TOKEN",
                                 "error": "Unrecognised access token.", "soft_logout": False}


async def test_non_bearer_scheme_is_missing_token(h: Harness) -> None:
    resp = await h.client.post(RESET, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert await _err(resp) == (401, "M_MISSING_TOKEN")


async def test_bearer_scheme_case_insensitive(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    await h.user("alice")
    resp = await h.client.post(RESET, json={"password": "newpassword"},
                               headers={"Authorization": f"bEaReR {admin.token}"})
    assert resp.status == 200


async def test_query_parameter_token(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    resp = await h.client.get(WHOIS + "@root:test.example",
                              params={"access_token": admin.token})
    assert resp.status == 200


async def test_query_parameter_can_be_disabled(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"access_token_query_param": False})
    admin = await h.user("root", admin=True)
    resp = await h.client.get(WHOIS + "@root:test.example",
                              params={"access_token": admin.token})
    assert await _err(resp) == (401, "M_MISSING_TOKEN")


async def test_mixing_header_and_query(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    other = await h.user("bob")
    resp = await h.client.get(WHOIS + "@root:test.example", headers=admin.auth,
                              params={"access_token": other.token})
    status, code = await _err(resp)
    assert (status, code) == (401, "M_MISSING_TOKEN")
    # the same token twice is fine
    resp = await h.client.get(WHOIS + "@root:test.example", headers=admin.auth,
                              params={"access_token": admin.token})
    assert resp.status == 200


async def _raw(h: Harness, path: str, extra_head: bytes = b"") -> tuple[int, bytes]:
    """A request written byte for byte (a client library would refuse these bytes)."""
    port = h.client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".encode()
                     + extra_head + b"\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


UNUSABLE_TOKENS = [
    ("?access_token=%00", b""),  # NUL: PostgreSQL's driver refuses it
    ("?access_token=a%01b", b""),
    ("", b"Authorization: Bearer \xff\xfe\r\n"),  # not UTF-8
]


@pytest.mark.parametrize(("query", "header"), UNUSABLE_TOKENS)
async def test_tokens_no_driver_can_take_are_unknown(h: Harness, query: str,
                                                      header: bytes) -> None:
    alice = await h.user("alice", admin=True)
    status, body = await _raw(h, WHOIS + str(alice.user_id) + query, header)
    assert status == 401, body
    assert b'"M_UNKNOWN_TOKEN"' in body


async def test_a_good_header_and_an_unusable_query_token_are_mixing(h: Harness) -> None:
    alice = await h.user("alice", admin=True)
    status, body = await _raw(h, WHOIS + str(alice.user_id) + "?access_token=a%01b",
                              f"Authorization: Bearer {alice.token}\r\n".encode())
    assert status == 401
    assert b'"M_MISSING_TOKEN"' in body


async def test_an_unusable_token_never_reaches_the_shared_token_read(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests with unusable tokens amid good ones at the same moment: each good one
    is answered, each bad one is a 401, and no unusable token is ever looked up (in a
    statement shared with the good ones, the driver would refuse it and fail them all;
    a key the driver refuses anyway is covered in test_batching.py)."""
    alice = await h.user("alice", admin=True)
    looked_up: list[str] = []
    get_token_owner = h.storage.get_token_owner

    async def spy(token: str) -> TokenOwner | None:
        looked_up.append(token)
        return await get_token_owner(token)

    monkeypatch.setattr(h.storage, "get_token_owner", spy)
    path = WHOIS + str(alice.user_id)
    good = f"Authorization: Bearer {alice.token}\r\n".encode()
    for query, header in UNUSABLE_TOKENS:
        answers = await asyncio.gather(*(
            _raw(h, path, good) if i % 2 else _raw(h, path + query, header)
            for i in range(40)))
        assert [s for s, _ in answers[1::2]] == [200] * 20, answers[1::2][:2]
        assert [s for s, _ in answers[0::2]] == [401] * 20
    assert looked_up and set(looked_up) == {alice.token}


async def test_non_admin_forbidden_before_lookup_and_body(h: Harness) -> None:
    user = await h.user("bob")
    # Unknown target, garbage body: a non-admin still gets only the 403.
    resp = await h.client.post("/_dendrite/admin/resetPassword/nobody", data=b"{not json",
                               headers=user.auth)
    assert resp.status == 403
    assert await resp.json() == {"errcode": "M_FORBIDDEN",
                                 "error": "This API can only be used by admin users."}


async def test_guest_forbidden(h: Harness) -> None:
    guest = await h.user("12345", account_type=AccountType.GUEST)
    resp = await h.client.post(RESET, json={}, headers=guest.auth)
    assert await _err(resp) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    resp = await h.client.get(WHOIS + "@12345:test.example", headers=guest.auth)
    assert await _err(resp) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_deactivated_admin_is_unknown_token(harness_factory: HarnessFactory) -> None:
    storage = MemoryStorage()
    h = await harness_factory(storage_override=storage)
    admin = await h.user("root", admin=True)
    storage.set_account_flags(admin.user_id, is_deactivated=True)
    resp = await h.client.post(RESET, json={}, headers=admin.auth)
    assert await _err(resp) == (401, "M_UNKNOWN_TOKEN")


async def test_demoted_admin_loses_access_at_once(harness_factory: HarnessFactory) -> None:
    storage = MemoryStorage()
    h = await harness_factory(storage_override=storage)
    admin = await h.user("root", admin=True)
    await h.user("alice")
    ok = await h.client.post(RESET, json={"password": "password1"}, headers=admin.auth)
    assert ok.status == 200
    storage.set_account_flags(admin.user_id, account_type=AccountType.USER)
    resp = await h.client.post(RESET, json={"password": "password2"}, headers=admin.auth)
    assert await _err(resp) == (403, "M_FORBIDDEN")


async def test_public_routes_ignore_bad_tokens(h: Harness) -> None:
    resp = await h.client.get("/_synapse/admin/v1/register",
                              headers={"Authorization": "Bearer garbage"})
    assert resp.status == 200


async def test_activity_is_coalesced_and_visible_before_flush(
        harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"activity_flush_interval": 3600})
    admin = await h.user("root", admin=True)
    for ua in ("ua-1", "ua-2", "ua-1"):
        resp = await h.client.get(WHOIS + "@root:test.example",
                                  headers={**admin.auth, "User-Agent": ua})
        assert resp.status == 200
        await asyncio.sleep(0.005)  # distinct millisecond timestamps
    # Nothing flushed yet (interval is an hour) ...
    devices = await h.storage.get_devices(admin.user_id)
    assert all(not d.connections for d in devices)
    # ... but whois shows every earlier request from this process.
    body = await (await h.client.get(WHOIS + "@root:test.example",
                                     headers={**admin.auth, "User-Agent": "ua-1"})).json()
    conns = body["devices"][admin.device_id]["sessions"][0]["connections"]
    assert sorted(c["user_agent"] for c in conns) == ["ua-1", "ua-2"]
    assert all(c["ip"] == "127.0.0.1" for c in conns)
    assert conns[0]["user_agent"] == "ua-1"  # newest first
    await h.ctx.activity.flush()
    stored = await h.storage.get_devices(admin.user_id)
    assert {c.user_agent for d in stored for c in d.connections} == {"ua-1", "ua-2"}


async def test_activity_flushes_in_background(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    resp = await h.client.get(WHOIS + "@root:test.example",
                              headers={**admin.auth, "User-Agent": "bg"})
    assert resp.status == 200
    for _ in range(100):
        devices = await h.storage.get_devices(admin.user_id)
        if any(c.user_agent == "bg" for d in devices for c in d.connections):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("activity was never flushed to storage")


async def test_ip_recording_can_be_disabled(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"record_client_ip": False})
    admin = await h.user("root", admin=True)
    body = await (await h.client.get(WHOIS + "@root:test.example", headers=admin.auth)).json()
    conns = body["devices"][admin.device_id]["sessions"][0]["connections"]
    assert conns and all(c["ip"] == "" for c in conns)


async def test_activity_visible_while_being_written(harness_factory: HarnessFactory) -> None:
    """A sighting is shown by whois at every moment: pending, being written, stored."""
    storage = MemoryStorage()
    h = await harness_factory(storage_override=storage,
                              http={"activity_flush_interval": 3600})
    admin = await h.user("root", admin=True)
    await h.client.get(WHOIS + "@root:test.example", headers={**admin.auth,
                                                               "User-Agent": "slow"})
    release = asyncio.Event()
    entered = asyncio.Event()
    original = storage.record_activity

    async def slow_record(seen: object) -> None:
        entered.set()
        await release.wait()
        await original(seen)  # type: ignore[arg-type]

    storage.record_activity = slow_record  # type: ignore[method-assign]
    flushing = asyncio.ensure_future(h.ctx.activity.flush())
    try:
        await entered.wait()
        body = await (await h.client.get(WHOIS + "@root:test.example",
                                         headers={**admin.auth, "User-Agent": "other"})).json()
    finally:
        release.set()
        await flushing
    agents = {c["user_agent"] for c in body["devices"][admin.device_id]["sessions"][0]
              ["connections"]}
    assert "slow" in agents
