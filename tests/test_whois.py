"""SPEC 4.6: whois on all three paths, self-or-admin."""

from __future__ import annotations

import asyncio

import pytest

from dendrite_admin_ext.activity import merge_pending
from dendrite_admin_ext.storage.types import Connection, DeviceInfo

from .conftest import Harness

PATHS = ["/_matrix/client/v3/admin/whois/", "/_matrix/client/r0/admin/whois/",
         "/_synapse/admin/v1/whois/"]


@pytest.mark.parametrize("prefix", PATHS)
async def test_admin_whois_other_user(h: Harness, prefix: str) -> None:
    admin = await h.user("root", admin=True)
    alice = await h.user("alice")
    # alice is seen from two user agents
    for ua in ("Element/1", "curl/8"):
        await h.client.get(prefix + "@alice:test.example",
                           headers={**alice.auth, "User-Agent": ua})
        await asyncio.sleep(0.005)  # distinct millisecond timestamps
    resp = await h.client.get(prefix + "%40alice%3Atest.example", headers=admin.auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["user_id"] == "@alice:test.example"
    assert list(body["devices"]) == [alice.device_id]
    sessions = body["devices"][alice.device_id]["sessions"]
    assert len(sessions) == 1
    conns = sessions[0]["connections"]
    assert [c["user_agent"] for c in conns] == ["curl/8", "Element/1"]
    for c in conns:
        assert set(c) == {"ip", "last_seen", "user_agent"}
        assert isinstance(c["last_seen"], int) and c["last_seen"] > 1_600_000_000_000
        assert c["ip"] == "127.0.0.1"


async def test_self_whois_allowed(h: Harness) -> None:
    alice = await h.user("alice")
    resp = await h.client.get(PATHS[0] + "@alice:test.example", headers=alice.auth)
    assert resp.status == 200
    assert (await resp.json())["user_id"] == "@alice:test.example"


async def test_other_user_forbidden_before_lookup(h: Harness) -> None:
    alice = await h.user("alice")
    for target in ("@bob:test.example", "@nobody:test.example", "@x:remote.org", "garbage"):
        resp = await h.client.get(PATHS[0] + target, headers=alice.auth)
        assert resp.status == 403, target
        assert (await resp.json())["errcode"] == "M_FORBIDDEN"


async def test_remote_user(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    resp = await h.client.get(PATHS[2] + "@bob:remote.org", headers=admin.auth)
    assert resp.status == 400
    assert await resp.json() == {"errcode": "M_INVALID_PARAM",
                                 "error": "Can only whois a local user"}


async def test_unknown_and_malformed(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    resp = await h.client.get(PATHS[0] + "@ghost:test.example", headers=admin.auth)
    assert resp.status == 404
    assert (await resp.json())["errcode"] == "M_NOT_FOUND"
    # "@Alice:…" is a well-formed historical ID (SPEC 2): unknown here, so 404.
    resp = await h.client.get(PATHS[0] + "@Alice:test.example", headers=admin.auth)
    assert resp.status == 404
    for bad in ("alice", "@al ice:test.example", "@:test.example", "@a:", "@a:bad_host!"):
        resp = await h.client.get(PATHS[0] + bad, headers=admin.auth)
        assert resp.status == 400, bad
        assert (await resp.json())["errcode"] == "M_INVALID_PARAM"


async def test_localpart_with_slash(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    await h.user("a/b")
    for path in (PATHS[0] + "@a%2Fb:test.example", PATHS[0] + "@a/b:test.example"):
        resp = await h.client.get(path, headers=admin.auth)
        assert resp.status == 200, path
        assert (await resp.json())["user_id"] == "@a/b:test.example"


async def test_device_without_activity_listed(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    bob = await h.user("bob")
    body = await (await h.client.get(PATHS[0] + "@bob:test.example",
                                     headers=admin.auth)).json()
    assert body["devices"] == {bob.device_id: {"sessions": [{"connections": []}]}}


def test_merge_pending_overlays_newer_sightings_only() -> None:
    stored = [
        DeviceInfo("A", "phone", (Connection("10.0.0.1", "app", 500),
                                  Connection("10.0.0.2", "app", 300))),
        DeviceInfo("B", None, (Connection("10.0.0.9", "web", 100),)),
        DeviceInfo("C", None, ()),
    ]
    pending = {
        ("A", "10.0.0.2", "app"): 900,   # newer than stored: moves to the front
        ("A", "10.0.0.1", "app"): 400,   # older than stored: ignored
        ("B", "10.0.0.9", "web"): 50,    # older: B comes back untouched
        ("C", "10.0.0.3", "cli"): 700,   # a first sighting
        ("Z", "10.0.0.4", "cli"): 800,   # a device storage does not have: dropped
    }
    merged = merge_pending(stored, pending)
    assert [d.device_id for d in merged] == ["A", "B", "C"]
    assert merged[0] == DeviceInfo("A", "phone", (Connection("10.0.0.2", "app", 900),
                                                  Connection("10.0.0.1", "app", 500)))
    assert merged[1] is stored[1]
    assert merged[2] == DeviceInfo("C", None, (Connection("10.0.0.3", "cli", 700),))
    assert merge_pending(stored, {}) is stored
