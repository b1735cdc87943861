"""SPEC 4.4: shared-secret registration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext import UserID
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import AccountType

from .conftest import SECRET, SERVER, Harness, HarnessFactory

URL = "/_synapse/admin/v1/register"
# For tests that fire more requests than the default burst on purpose.
NO_RATE_LIMIT: dict[str, Any] = {"rate_limit": {"per_second": 0}}
VECTOR_NONCE = ("759f047f312b99ff428b21d581256f8592b8976e58bc1b543972dc6147e529a79657605b52d7"
                "becd160ff5137f3de11975684319187e06901955f79e5a6c5a79")


def test_mac_vectors() -> None:
    assert compute_mac("dendritetest", VECTOR_NONCE, "alice", "wonderland", False) == (
        "f1ba8d37123866fd659b40de4bad9b0f8965c565")
    assert compute_mac("dendritetest", VECTOR_NONCE, "alice", "wonderland", True) == (
        "24dca3bba410e43fe64b9b5c28306693bf3baa9f")
    # user_type is appended only when sent
    assert compute_mac("dendritetest", VECTOR_NONCE, "alice", "wonderland", False,
                       "bot") != compute_mac("dendritetest", VECTOR_NONCE, "alice",
                                             "wonderland", False)


async def nonce(h: Harness) -> str:
    resp = await h.client.get(URL)
    assert resp.status == 200
    value = (await resp.json())["nonce"]
    assert isinstance(value, str)
    return value


async def signed(h: Harness, username: str = "alice", password: str = "wonderland",  # noqa: S107
                 admin: bool = False, user_type: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    n = await nonce(h)
    body: dict[str, Any] = {"nonce": n, "username": username, "password": password,
                            "admin": admin,
                            "mac": compute_mac(SECRET, n, username, password, admin, user_type)}
    if user_type is not None:
        body["user_type"] = user_type
    body.update(extra)
    return body


async def test_nonce_is_long_hex_and_unique(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration=NO_RATE_LIMIT)
    values = {await nonce(h) for _ in range(20)}
    assert len(values) == 20
    for v in values:
        assert len(v) >= 32 and int(v, 16) >= 0


async def test_register_user_and_login(h: Harness) -> None:
    resp = await h.client.post(URL, json=await signed(h))
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"user_id", "home_server", "access_token", "device_id"}
    assert body["user_id"] == "@alice:test.example"
    assert body["home_server"] == "test.example"
    session = await h.storage.get_token_owner(body["access_token"])
    assert session is not None and session.device_id == body["device_id"]
    assert session.account_type == AccountType.USER
    # the token works on the API (self whois)
    who = await h.client.get("/_synapse/admin/v1/whois/@alice:test.example",
                             headers={"Authorization": f"Bearer {body['access_token']}"})
    assert who.status == 200
    profile = await h.storage.get_profile(session.user)
    assert profile is not None and profile.display_name == "alice"


async def test_register_admin(h: Harness) -> None:
    resp = await h.client.post(URL, json=await signed(h, "root", "rootroot", admin=True))
    assert resp.status == 200
    token = (await resp.json())["access_token"]
    session = await h.storage.get_token_owner(token)
    assert session is not None and session.account_type == AccountType.ADMIN


async def test_username_lowercased_mac_over_sent_name(h: Harness) -> None:
    resp = await h.client.post(URL, json=await signed(h, "Alice"))
    assert resp.status == 200
    assert (await resp.json())["user_id"] == "@alice:test.example"


async def test_nonce_single_use(h: Harness) -> None:
    body = await signed(h)
    assert (await h.client.post(URL, json=body)).status == 200
    again = await h.client.post(URL, json={**body, "username": "bob",
                                            "mac": compute_mac(SECRET, body["nonce"], "bob",
                                                               "wonderland", False)})
    assert again.status == 400
    assert await again.json() == {"errcode": "M_UNKNOWN", "error": "unrecognised nonce"}


async def test_nonce_consumed_even_when_request_fails(h: Harness) -> None:
    body = await signed(h)
    bad = await h.client.post(URL, json={**body, "mac": "00" * 20})
    assert bad.status == 403
    good = await h.client.post(URL, json=body)
    assert good.status == 400
    assert (await good.json())["error"] == "unrecognised nonce"


async def test_nonce_expires(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration={"nonce_lifetime": 0.05})
    body = await signed(h)
    await asyncio.sleep(0.1)
    resp = await h.client.post(URL, json=body)
    assert (await resp.json())["error"] == "unrecognised nonce"


async def test_nonces_bounded(harness_factory: HarnessFactory) -> None:
    storage = MemoryStorage()
    h = await harness_factory(storage_override=storage,
                              registration={"max_nonces": 5, **NO_RATE_LIMIT})
    first = await signed(h)
    for _ in range(20):
        await nonce(h)
    assert len(storage.nonces) <= 5
    # the oldest nonce was dropped to make room
    assert (await (await h.client.post(URL, json=first)).json())["error"] == (
        "unrecognised nonce")


async def test_wrong_mac(h: Harness) -> None:
    body = await signed(h)
    body["admin"] = True  # MAC was for notadmin
    resp = await h.client.post(URL, json=body)
    assert resp.status == 403
    assert await resp.json() == {"errcode": "M_FORBIDDEN", "error": "HMAC incorrect"}
    assert await h.storage.get_account(
        UserID("alice", "test.example")) is None


async def test_mac_checked_before_bcrypt(h: Harness) -> None:
    calls: list[str] = []
    original = h.ctx.hasher.hash

    async def spy(password: str) -> str:
        calls.append(password)
        return await original(password)

    h.ctx.hasher.hash = spy  # type: ignore[method-assign]
    body = await signed(h)
    await h.client.post(URL, json={**body, "mac": "ab" * 20})
    assert calls == []
    await h.client.post(URL, json=await signed(h))
    assert calls == ["wonderland"]


@pytest.mark.parametrize(("username", "errcode"), [
    ("_hidden", "M_INVALID_USERNAME"),
    ("12345", "M_INVALID_USERNAME"),
    ("bad name", "M_INVALID_USERNAME"),
    ("ünïcode", "M_INVALID_USERNAME"),
    ("a" * 250, "M_INVALID_USERNAME"),
    # The errcode does not change with length (the schema does not bound it).
    ("a" * 255, "M_INVALID_USERNAME"),
    ("a" * 256, "M_INVALID_USERNAME"),
    ("a" * 300, "M_INVALID_USERNAME"),
    ("b" * 20_000, "M_INVALID_USERNAME"),
    ("é" * 200, "M_INVALID_USERNAME"),
    # Historical localparts are reachable by lookups, never created here.
    ("al!ce", "M_INVALID_USERNAME"),
    ("a~b", "M_INVALID_USERNAME"),
    ("a:b", "M_INVALID_USERNAME"),
])
async def test_invalid_usernames(h: Harness, username: str, errcode: str) -> None:
    resp = await h.client.post(URL, json=await signed(h, username))
    assert resp.status == 400
    assert (await resp.json())["errcode"] == errcode
    assert not await h.storage.localpart_exists(UserID(username.lower(), SERVER))


async def test_longest_username_that_fits(h: Harness) -> None:
    """A user ID of exactly 255 bytes is created; one byte more is refused."""
    room = 255 - len(f"@:{SERVER}")
    assert (await h.client.post(URL, json=await signed(h, "a" * room))).status == 200
    resp = await h.client.post(URL, json=await signed(h, "b" * (room + 1)))
    assert (await resp.json())["errcode"] == "M_INVALID_USERNAME"


async def test_user_in_use_case_insensitive(h: Harness) -> None:
    assert (await h.client.post(URL, json=await signed(h, "alice"))).status == 200
    resp = await h.client.post(URL, json=await signed(h, "ALICE"))
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_USER_IN_USE"


@pytest.mark.parametrize(("password", "errcode"), [
    ("short", "M_WEAK_PASSWORD"),
    ("p" * 513, "M_BAD_JSON"),
    ("", "M_MISSING_PARAM"),
])
async def test_password_policy(h: Harness, password: str, errcode: str) -> None:
    resp = await h.client.post(URL, json=await signed(h, password=password))
    assert resp.status == 400
    assert (await resp.json())["errcode"] == errcode


async def test_user_types(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(storage_override=MemoryStorage(),
                              registration={"extra_user_types": ["bridge"]})
    for i, user_type in enumerate(("bot", "support", "bridge")):
        resp = await h.client.post(URL, json=await signed(h, f"u{i}x", user_type=user_type))
        assert resp.status == 200, user_type
        account = await h.storage.get_account(
            UserID(f"u{i}x", "test.example"))
        assert account is not None and account.user_type == user_type
    resp = await h.client.post(URL, json=await signed(h, "u9x", user_type="wizard"))
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize(("field", "value"), [
    ("admin", "false"), ("admin", 1), ("mac", "not-hex"), ("username", 5),
    ("inhibit_login", "yes"), ("displayname", 7),
])
async def test_bad_shapes(h: Harness, field: str, value: object) -> None:
    body = await signed(h)
    body[field] = value
    resp = await h.client.post(URL, json=body)
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_BAD_JSON"


@pytest.mark.parametrize("field", ["nonce", "username", "password", "mac"])
async def test_missing_fields(h: Harness, field: str) -> None:
    body = await signed(h)
    del body[field]
    resp = await h.client.post(URL, json=body)
    assert resp.status == 400
    got = await resp.json()
    assert got["errcode"] == "M_MISSING_PARAM" and field in got["error"]


async def test_not_json(h: Harness) -> None:
    resp = await h.client.post(URL, data=b"nonce=1")
    assert (await resp.json())["errcode"] == "M_NOT_JSON"


async def test_displayname_rules_and_inhibit_login(h: Harness) -> None:
    cases: list[tuple[str, dict[str, Any], str | None]] = [
             ("dn1", {"displayname": "Dee"}, "Dee"), ("dn2", {"displayname": None}, "dn2"),
             ("dn3", {"displayname": ""}, None), ("dn4", {}, "dn4")]
    for name, extra, want in cases:
        resp = await h.client.post(URL, json=await signed(h, name, **extra))
        assert resp.status == 200
        profile = await h.storage.get_profile(UserID(name, "test.example"))
        assert profile is not None and profile.display_name == want, name
    resp = await h.client.post(URL, json=await signed(h, "quiet", inhibit_login=True))
    assert await resp.json() == {"user_id": "@quiet:test.example", "home_server": "test.example"}
    assert await h.storage.get_devices(UserID("quiet", "test.example")) == []


async def test_device_id_and_name(h: Harness) -> None:
    resp = await h.client.post(URL, json=await signed(
        h, "dev", device_id="MYDEVICE", initial_device_display_name="Laptop"))
    body = await resp.json()
    assert body["device_id"] == "MYDEVICE"
    devices = await h.storage.get_devices(UserID("dev", "test.example"))
    assert [(d.device_id, d.display_name) for d in devices] == [("MYDEVICE", "Laptop")]


async def test_concurrent_duplicate_registration_one_wins(
        harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration=NO_RATE_LIMIT)
    bodies = [await signed(h, "racer") for _ in range(8)]
    results = await asyncio.gather(*(h.client.post(URL, json=b) for b in bodies))
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1
    for r in results:
        if r.status != 200:
            assert (await r.json())["errcode"] == "M_USER_IN_USE"


async def test_disabled_without_secret(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration_shared_secret=None)
    for method in ("GET", "POST"):
        resp = await h.client.request(method, URL)
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_secret_from_file(harness_factory: HarnessFactory, tmp_path: object) -> None:
    assert isinstance(tmp_path, Path)
    (tmp_path / "secret").write_text("from-a-file\n")
    h = await harness_factory(registration_shared_secret=None,
                              registration_shared_secret_path=str(tmp_path / "secret"))
    n = await nonce(h)
    body = {"nonce": n, "username": "filer", "password": "wonderland",
            "mac": compute_mac("from-a-file", n, "filer", "wonderland", False)}
    assert (await h.client.post(URL, json=body)).status == 200
