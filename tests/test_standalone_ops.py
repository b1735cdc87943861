"""The standalone server as operated: graceful shutdown, and no secret in its output
even at DEBUG with JSON logs through a whole scenario."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dendrite_admin_ext.services.registration import compute_mac

from .standalone import call, running, write_config

SERVER = "test.example"
SECRET = "standalone-secret"


def register(url: str, user: str, password: str, admin: bool = False
             ) -> tuple[int, dict[str, Any], str, str]:
    """Returns (status, body, nonce, mac) so callers can look for them in logs."""
    _, got, _ = call("GET", url + "/_synapse/admin/v1/register")
    nonce = got["nonce"]
    mac = compute_mac(SECRET, nonce, user, password, admin)
    status, body, _ = call("POST", url + "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac})
    return status, body, nonce, mac


def test_sigterm_finishes_in_flight_request(tmp_path: Path) -> None:
    # bcrypt at cost 15 takes a few seconds: a request that is still running at SIGTERM.
    config = write_config(tmp_path, passwords={"bcrypt_cost": 15})
    with running(config) as server:
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(
            register(server.url, "slowpoke", "slowpassword")))
        start = time.monotonic()
        worker.start()
        deadline = time.monotonic() + 10
        # The nonce was served (access log line), so the POST follows at once; the MAC
        # check takes microseconds, then bcrypt runs for seconds.
        while "GET /_synapse/admin/v1/register 200" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        time.sleep(0.4)
        assert not result, "the request finished before SIGTERM: nothing was tested"
        code = server.stop(signal.SIGTERM)
        worker.join(30)
        elapsed = time.monotonic() - start
    assert code == 0
    assert result and result[0][0] == 200, result
    assert result[0][1]["user_id"] == f"@slowpoke:{SERVER}"
    assert elapsed < 30
    assert "Traceback" not in server.log()


def test_no_secret_in_debug_json_output(tmp_path: Path) -> None:
    config = write_config(tmp_path, logging={"level": "DEBUG", "format": "json"},
                          registration={"rate_limit": {"per_second": 0}})
    secrets: list[str] = [SECRET]
    with running(config) as server:
        url = server.url
        status, root, nonce, mac = register(url, "root", "rootpassword1", admin=True)
        assert status == 200
        secrets += ["rootpassword1", root["access_token"], nonce, mac]
        status, bob, nonce, mac = register(url, "bob", "bobpassword1")
        assert status == 200
        secrets += ["bobpassword1", bob["access_token"], nonce, mac]
        # refused ones too: bad MAC, reused nonce
        status, _, nonce, mac = register(url, "eve", "evepassword1")
        _, _, _ = call("POST", url + "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": "eve2", "password": "evepassword2", "admin": False,
            "mac": mac})
        secrets += ["evepassword1", "evepassword2", nonce, mac]
        status, _, _ = call("POST", f"{url}/_dendrite/admin/resetPassword/bob",
                            {"password": "brand-new-pass", "logout_devices": False},
                            root["access_token"])
        assert status == 200
        secrets.append("brand-new-pass")
        # whois with the deprecated query parameter, and a wrong token
        status, _, headers = call(
            "GET", f"{url}/_matrix/client/v3/admin/whois/{quote('@bob:' + SERVER)}"
                   f"?access_token={bob['access_token']}")
        assert status == 200 and headers["X-Request-ID"]
        status, _, _ = call("GET", f"{url}/_synapse/admin/v1/whois/@bob:{SERVER}"
                                   "?access_token=wrong-token-value-123")
        assert status == 401
        secrets.append("wrong-token-value-123")
        status, _, _ = call("POST", f"{url}/_synapse/admin/v1/send_server_notice",
                            {"user_id": f"@bob:{SERVER}",
                             "content": {"msgtype": "m.text", "body": "hello"}},
                            root["access_token"])
        assert status == 200
        status, audit, _ = call("GET", f"{url}/_dendrite/admin/auditLog",
                                token=root["access_token"])
        assert status == 200
        actions = [e["action"] for e in audit["entries"]]
        assert actions.count("register") == 4 and "resetPassword" in actions
        assert server.stop(signal.SIGTERM) == 0
    output = server.log()
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "nothing logged"
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(p.get("logger") == "dendrite_admin_ext.access" and p.get("status") == 200
               for p in parsed)
    assert any(p.get("audit", {}).get("action") == "resetPassword" for p in parsed)
    assert all("request_id" in p for p in parsed)
    for secret in secrets:
        assert secret not in output, f"a secret ({secret[:3]}…) was logged"
        assert secret not in json.dumps(audit)
