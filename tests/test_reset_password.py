"""SPEC 4.3: resetPassword by localpart or user ID."""

from __future__ import annotations

import bcrypt
import pytest

from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import NewDevice

from .conftest import Harness, HarnessFactory

BASE = "/_dendrite/admin/resetPassword/"


@pytest.fixture
async def mh(harness_factory: HarnessFactory) -> Harness:
    return await harness_factory(storage_override=MemoryStorage())


async def test_reset_by_localpart_logs_out(mh: Harness) -> None:
    admin = await mh.user("root", admin=True)
    alice = await mh.user("alice")
    resp = await mh.client.post(BASE + "alice", json={"password": "correct horse"},
                                headers=admin.auth)
    assert resp.status == 200
    assert await resp.json() == {"password_updated": True}
    assert isinstance(mh.storage, MemoryStorage)
    hashed = mh.storage.password_hash(alice.user_id)
    assert hashed is not None and hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(b"correct horse", hashed.encode())
    # logout_devices defaults to true: alice's token is gone
    assert await mh.storage.get_token_owner(alice.token) is None
    resp = await mh.client.get("/_matrix/client/v3/admin/whois/@alice:test.example",
                               headers=alice.auth)
    assert resp.status == 401


async def test_reset_by_user_id_keep_devices(mh: Harness) -> None:
    admin = await mh.user("root", admin=True)
    alice = await mh.user("alice")
    resp = await mh.client.post(BASE + "%40alice%3Atest.example",
                                json={"password": "correct horse", "logout_devices": False},
                                headers=admin.auth)
    assert resp.status == 200
    assert await mh.storage.get_token_owner(alice.token) is not None


async def test_admin_resetting_own_password_keeps_own_device(mh: Harness) -> None:
    admin = await mh.user("root", admin=True)
    assert isinstance(mh.storage, MemoryStorage)
    mh.storage.add_device(admin.user_id, NewDevice("OTHER", "other-token"))
    resp = await mh.client.post(BASE + "root", json={"password": "new password"},
                                headers=admin.auth)
    assert resp.status == 200
    assert await mh.storage.get_token_owner(admin.token) is not None
    assert await mh.storage.get_token_owner("other-token") is None


@pytest.mark.parametrize(("target", "body", "status", "errcode"), [
    # "Alice" is a well-formed historical localpart: no such account, so 404.
    ("Alice", {"password": "longenough"}, 404, "M_NOT_FOUND"),
    ("al ice", {"password": "longenough"}, 400, "M_INVALID_PARAM"),
    ("a:b", {"password": "longenough"}, 400, "M_INVALID_PARAM"),
    ("@alice:remote.org", {"password": "longenough"}, 400, "M_INVALID_PARAM"),
    ("@bad", {"password": "longenough"}, 400, "M_INVALID_PARAM"),
    ("ghost", {"password": "longenough"}, 404, "M_NOT_FOUND"),
    ("alice", {"password": ""}, 400, "M_MISSING_PARAM"),
    ("alice", {"logout_devices": True}, 400, "M_MISSING_PARAM"),
    ("alice", {"password": "short"}, 400, "M_WEAK_PASSWORD"),
    ("alice", {"password": "x" * 513}, 400, "M_BAD_JSON"),
    ("alice", {"password": ["x"]}, 400, "M_BAD_JSON"),
])
async def test_reset_errors_change_nothing(mh: Harness, target: str, body: object,
                                           status: int, errcode: str) -> None:
    admin = await mh.user("root", admin=True)
    alice = await mh.user("alice")
    resp = await mh.client.post(BASE + target, json=body, headers=admin.auth)
    assert resp.status == status
    assert (await resp.json())["errcode"] == errcode
    assert isinstance(mh.storage, MemoryStorage)
    assert mh.storage.password_hash(alice.user_id) is None
    assert await mh.storage.get_token_owner(alice.token) is not None


async def test_unknown_user_checked_before_body(mh: Harness) -> None:
    admin = await mh.user("root", admin=True)
    resp = await mh.client.post(BASE + "ghost", data=b"not json", headers=admin.auth)
    assert resp.status == 404
    assert (await resp.json())["errcode"] == "M_NOT_FOUND"


async def test_policy_configurable(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(passwords={"min_length": 3, "max_length": 20})
    admin = await h.user("root", admin=True)
    await h.user("alice")
    ok = await h.client.post(BASE + "alice", json={"password": "abc"}, headers=admin.auth)
    assert ok.status == 200
    long = await h.client.post(BASE + "alice", json={"password": "a" * 21},
                               headers=admin.auth)
    assert (await long.json())["errcode"] == "M_BAD_JSON"


async def test_long_password_beyond_bcrypt_limit(mh: Harness) -> None:
    admin = await mh.user("root", admin=True)
    alice = await mh.user("alice")
    pw = "€" * 200  # 600 bytes, 200 characters
    resp = await mh.client.post(BASE + "alice", json={"password": pw}, headers=admin.auth)
    assert resp.status == 200
    assert isinstance(mh.storage, MemoryStorage)
    hashed = mh.storage.password_hash(alice.user_id)
    assert hashed is not None
    assert mh.ctx.hasher.verify_sync(pw, hashed)
    assert not mh.ctx.hasher.verify_sync("wrong", hashed)


async def test_bcrypt_cost_configurable_and_off_loop(harness_factory: HarnessFactory) -> None:
    import threading
    h = await harness_factory(storage_override=MemoryStorage(), passwords={"bcrypt_cost": 5})
    admin = await h.user("root", admin=True)
    alice = await h.user("alice")
    threads: list[str] = []
    original = h.ctx.hasher.hash_sync

    def spy(password: str) -> str:
        threads.append(threading.current_thread().name)
        return original(password)

    h.ctx.hasher.hash_sync = spy  # type: ignore[method-assign]
    resp = await h.client.post(BASE + "alice", json={"password": "longenough"},
                               headers=admin.auth)
    assert resp.status == 200
    assert threads and threads[0].startswith("dendrite-admin-bcrypt")
    assert threads[0] != threading.main_thread().name
    assert isinstance(h.storage, MemoryStorage)
    assert (h.storage.password_hash(alice.user_id) or "").startswith("$2b$05$")
