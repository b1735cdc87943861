"""The embedding guide's example host (tests/example_host.py) does what it says."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dendrite_admin_ext.services.registration import compute_mac

from .example_host import ADMIN_CONFIG, SERVER_NAME, build_app
from .host_storage import HostStorage
from .standalone import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = ADMIN_CONFIG["registration_shared_secret"]


async def register(client: TestClient[Any, Any], user: str, admin: bool) -> dict[str, Any]:
    nonce = (await (await client.get("/_synapse/admin/v1/register")).json())["nonce"]
    r = await client.post("/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": user, "password": "password123", "admin": admin,
        "mac": compute_mac(SECRET, nonce, user, "password123", admin)})
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def test_host_and_admin_side_by_side(aiohttp_client: Any) -> None:
    storage = HostStorage()
    client = await aiohttp_client(build_app(storage))
    # The host's routes and middlewares work; its auth does not touch admin paths.
    r = await client.get("/_matrix/client/versions")
    assert r.status == 200 and r.headers["Server"] == "ExampleHS/1.0"
    assert (await client.get("/_matrix/client/v3/account/whoami")).status == 401
    root = await register(client, "root", admin=True)
    alice = await register(client, "alice", admin=False)
    r = await client.get("/_matrix/client/v3/account/whoami",
                         headers={"Authorization": f"Bearer {alice['access_token']}"})
    assert (await r.json()) == {"user_id": f"@alice:{SERVER_NAME}"}
    # The admin API answers, on the host's storage, under the host's middlewares.
    admin_auth = {"Authorization": f"Bearer {root['access_token']}"}
    r = await client.post(f"/_dendrite/admin/evacuateUser/@alice:{SERVER_NAME}",
                          headers=admin_auth)
    assert r.status == 200 and r.headers["Server"] == "ExampleHS/1.0"
    assert "Access-Control-Allow-Origin" not in r.headers  # the host turned CORS off
    r = await client.post(f"/_dendrite/admin/evacuateUser/@alice:{SERVER_NAME}",
                          headers={"Authorization": f"Bearer {alice['access_token']}"})
    assert (r.status, (await r.json())["errcode"]) == (403, "M_FORBIDDEN")
    entries = await storage.get_audit_entries(before_id=None, limit=10)
    assert [(e.action, e.outcome) for e in entries[:2]] == [
        ("evacuateUser", "M_FORBIDDEN"), ("evacuateUser", "ok")]
    assert (await client.get("/_dendrite/admin/health")).status == 200


def test_runs_as_a_program() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.example_host", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/_matrix/client/versions", timeout=2) as r:
                    assert json.loads(r.read()) == {"versions": ["v1.8"]}
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        token = "not-a-real-token-0123"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/_synapse/admin/v1/whois/@x:{SERVER_NAME}"
                                   f"?access_token={token}", timeout=5)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "GET /_synapse/admin/v1/whois/@x:example.org 401" in out  # host access log
    assert token not in out
    assert "Traceback" not in out


async def test_host_enforces_suspension_and_locking(aiohttp_client: Any) -> None:
    """SPEC 10: the host's own client routes, behind ``moderation_middleware``."""
    client = await aiohttp_client(build_app(HostStorage()))
    root = await register(client, "root", admin=True)
    alice = await register(client, "alice", admin=False)
    admin_auth = {"Authorization": f"Bearer {root['access_token']}"}
    auth = {"Authorization": f"Bearer {alice['access_token']}"}
    c = "/_matrix/client/v3"
    room = f"!room:{SERVER_NAME}"

    async def status(method: str, path: str, headers: dict[str, str] = auth,
                     ) -> tuple[int, dict[str, Any]]:
        r = await client.request(method, c + path, headers=headers, json={})
        body: dict[str, Any] = await r.json()
        return r.status, body

    # The capability is for those who may use it.
    caps = (await status("GET", "/capabilities", admin_auth))[1]["capabilities"]
    assert caps["m.account_moderation"] == {"suspend": True, "lock": True}
    caps = (await status("GET", "/capabilities"))[1]["capabilities"]
    assert "m.account_moderation" not in caps and "m.change_password" in caps

    r = await client.put(f"/_matrix/client/v1/admin/suspend/@alice:{SERVER_NAME}",
                         headers=admin_auth, json={"suspended": True})
    assert (r.status, await r.json()) == (200, {"suspended": True})
    assert (await status("GET", "/sync"))[0] == 200
    assert (await status("PUT", f"/rooms/{room}/send/m.room.redaction/t1"))[0] == 200
    assert (await status("POST", f"/rooms/{room}/leave"))[0] == 200
    for method, path in (("PUT", f"/rooms/{room}/send/m.room.message/t2"),
                         ("POST", f"/join/{room}")):
        got, body = await status(method, path)
        assert (got, body["errcode"]) == (403, "M_USER_SUSPENDED"), path
    # Another spelling of the same path meets the same rule.
    got, body = await status("POST", "/%6Aoin/" + room)
    assert (got, body["errcode"]) == (403, "M_USER_SUSPENDED")
    # The admin's own requests are not affected.
    assert (await status("POST", f"/join/{room}", admin_auth))[0] == 200

    r = await client.put(f"/_matrix/client/v1/admin/lock/@alice:{SERVER_NAME}",
                         headers=admin_auth, json={"locked": True})
    assert r.status == 200
    for method, path in (("GET", "/sync"), ("POST", f"/rooms/{room}/leave"),
                         ("GET", "/account/whoami")):
        got, body = await status(method, path)
        assert (got, body["errcode"], body["soft_logout"]) == (
            401, "M_USER_LOCKED", True), path
    # The admin API says so too, and logging out still works.
    r = await client.get(f"/_matrix/client/v3/admin/whois/@alice:{SERVER_NAME}",
                         headers=auth)
    assert (r.status, (await r.json())["errcode"]) == (401, "M_USER_LOCKED")
    assert (await status("POST", "/logout"))[0] == 200
    # Unlocked and unsuspended, the same token works again.
    for flag in ("lock", "suspend"):
        key = {"lock": "locked", "suspend": "suspended"}[flag]
        r = await client.put(f"/_matrix/client/v1/admin/{flag}/@alice:{SERVER_NAME}",
                             headers=admin_auth, json={key: False})
        assert r.status == 200
    assert (await status("GET", "/sync"))[0] == 200
    assert (await status("POST", f"/join/{room}"))[0] == 200
