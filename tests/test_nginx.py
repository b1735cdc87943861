"""A real nginx, with the shipped configuration (tests/nginx/), in front of the real
standalone server and a stand-in homeserver, driven the way an operator and clients
would: routing, percent-encoded IDs, bodies, error codes, 413s, client addresses,
spoofed X-Forwarded-For, the registration rate limit per real client, the audit trail.

Distinct client addresses come from binding the client sockets to other loopback
addresses (127.0.0.0/8 is all loopback on Linux): nginx itself reaches the admin server
from 127.0.0.1, the only trusted proxy.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.services.registration import compute_mac

from .standalone import Server, free_port, running, write_config

pytestmark = pytest.mark.nginx

CONF_DIR = Path(__file__).resolve().parent / "nginx"
SERVER = "test.example"
SECRET = "standalone-secret"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (.ci/run installs nginx-light)")
        pytest.skip("nginx is not installed")
    return found


# -- a stand-in homeserver: answers everything with what it received ----------------------
class _Homeserver(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"homeserver": True, "method": self.command,
                           "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_homeserver() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Homeserver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} should appear once in matrix.conf"
    return text.replace(old, new)


@contextmanager
def nginx(folder: Path, admin_port: int, homeserver_port: int,
          site_file: str = "matrix.conf") -> Iterator[int]:
    binary = nginx_binary()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = (CONF_DIR / site_file).read_text()
    site = _substitute(site, "server 127.0.0.1:8009;", f"server 127.0.0.1:{admin_port};")
    site = _substitute(site, "server 127.0.0.1:8008;", f"server 127.0.0.1:{homeserver_port};")
    site = _substitute(site, "listen 80;", f"listen 127.0.0.1:{port};")
    (folder / "matrix.conf").write_text(site)
    shutil.copy(CONF_DIR / "dendrite_admin_proxy.conf", folder / "dendrite_admin_proxy.conf")
    # As root, workers would otherwise switch to "nobody" and could not use the temp
    # folders inside pytest's private tmp directory.
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (folder / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temp}
    include {folder / "matrix.conf"};
}}
""")
    proc = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"),
         "-e", str(folder / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                log = (folder / "error.log").read_text() if (folder / "error.log").exists() \
                    else ""
                raise RuntimeError(f"nginx exited: {out}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


# -- a client that can choose its source address and sends the path byte for byte -------
@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def request(port: int, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
            token: str | None = None, source: str = "127.0.0.2",
            headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0))
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def register(port: int, user: str, password: str, *, admin: bool = False,
             source: str = "127.0.0.2") -> dict[str, Any]:
    nonce = request(port, "GET", "/_synapse/admin/v1/register", source=source).json["nonce"]
    reply = request(port, "POST", "/_synapse/admin/v1/register", source=source, body={
        "nonce": nonce, "username": user, "password": password, "admin": admin,
        "mac": compute_mac(SECRET, nonce, user, password, admin)})
    assert reply.status == 200, reply.raw
    result: dict[str, Any] = reply.json
    return result


def connections(port: int, token: str, user_id: str, source: str = "127.0.0.2"
                ) -> dict[str, str]:
    """user agent → ip, over every device of the user."""
    who = request(port, "GET", f"/_synapse/admin/v1/whois/{user_id}", token=token,
                  source=source).json
    return {c["user_agent"]: c["ip"] for d in who["devices"].values()
            for s in d["sessions"] for c in s["connections"]}


@dataclass
class Stack:
    port: int  # nginx
    admin: Server
    root: dict[str, Any]
    alice: dict[str, Any]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx_binary()
    folder = tmp_path_factory.mktemp("nginx-trusted")
    config = write_config(folder, http={"trusted_proxies": ["127.0.0.1/32"]},
                          registration={"rate_limit": {"per_second": 0.1, "burst": 6}})
    with fake_homeserver() as hs_port, running(config) as admin, \
            nginx(folder / "nginx", int(admin.url.rsplit(":", 1)[1]), hs_port) as port:
        root = register(port, "root", "rootpassword", admin=True, source="127.0.0.2")
        alice = register(port, "alice", "alicepassword", source="127.0.0.3")
        yield Stack(port, admin, root, alice)
    assert "Traceback" not in admin.log()


def test_routing_and_raw_paths(stack: Stack) -> None:
    # Not the admin API: the homeserver, with the path exactly as sent.
    for path in ("/_matrix/client/v3/login", "/_matrix/client/v3/rooms/%21a%3Ab/state/x%2Fy",
                 "/_matrix/client/v3/admin/somethingelse", "/.well-known/matrix/client"):
        reply = request(stack.port, "GET", path)
        assert reply.status == 200 and reply.json == {
            "homeserver": True, "method": "GET", "path": path}
    # The admin API, under each prefix.
    assert request(stack.port, "GET", "/_dendrite/admin/health").json == {
        "status": "ok", "database": "ok"}
    for prefix in ("/_matrix/client/v3/admin", "/_matrix/client/r0/admin",
                   "/_synapse/admin/v1"):
        reply = request(stack.port, "GET", f"{prefix}/whois/%40alice%3A{SERVER}",
                        token=stack.alice["access_token"])
        assert reply.status == 200, reply.raw
        assert reply.json["user_id"] == f"@alice:{SERVER}"
    # Lock and suspend (MSC4323, stable and unstable prefix) reach the admin server.
    for prefix in ("/_matrix/client/v1/admin",
                   "/_matrix/client/unstable/uk.timedout.msc4323/admin"):
        for state in ("lock", "suspend"):
            reply = request(stack.port, "GET", f"{prefix}/{state}/%40alice%3A{SERVER}",
                            token=stack.root["access_token"])
            assert reply.status == 200, reply.raw
            assert reply.json == {("locked" if state == "lock" else "suspended"): False}


def test_percent_encoded_ids_and_bodies(stack: Stack) -> None:
    token = stack.root["access_token"]
    # A localpart with '/' (legal): %2F must reach the server, not be decoded by nginx.
    register(stack.port, "a/b", "slashpassword", source="127.0.0.4")
    reply = request(stack.port, "GET", f"/_matrix/client/v3/admin/whois/%40a%2Fb%3A{SERVER}",
                    token=token)
    assert (reply.status, reply.json["user_id"]) == (200, f"@a/b:{SERVER}")
    reply = request(stack.port, "POST", f"/_dendrite/admin/resetPassword/%40a%2Fb%3A{SERVER}",
                    token=token, body={"password": "another-password"})
    assert (reply.status, reply.json) == (200, {"password_updated": True})
    reply = request(stack.port, "POST", f"/_dendrite/admin/evacuateUser/%40alice%3A{SERVER}",
                    token=token)
    assert (reply.status, reply.json) == (200, {"affected": []})
    reply = request(stack.port, "POST", f"/_dendrite/admin/evacuateRoom/%21nope%3A{SERVER}",
                    token=token)
    assert (reply.status, reply.json["errcode"]) == (404, "M_NOT_FOUND")
    # Had nginx decoded the path, %3F would have become the start of a query string.
    reply = request(stack.port, "POST", f"/_dendrite/admin/evacuateRoom/%21a%3Fb%3A{SERVER}",
                    token=token)
    assert reply.status == 404 and f"!a?b:{SERVER}" in reply.json["error"]
    reply = request(stack.port, "POST", "/_synapse/admin/v1/send_server_notice", token=token,
                    body={"user_id": f"@alice:{SERVER}",
                          "content": {"msgtype": "m.text", "body": "über ✓",
                                      "format": "org.matrix.custom.html",
                                      "formatted_body": "<b>über</b>"}})
    assert reply.status == 200 and reply.json["event_id"].startswith("$")
    reply = request(stack.port, "POST", "/_dendrite/admin/resetPassword/alice", token=token,
                    raw=b"{not json")
    assert (reply.status, reply.json["errcode"]) == (400, "M_NOT_JSON")
    reply = request(stack.port, "POST", "/_dendrite/admin/resetPassword/alice", token=token,
                    body=["a list"])
    assert (reply.status, reply.json["errcode"]) == (400, "M_BAD_JSON")


def test_error_codes_arrive_as_json(stack: Stack) -> None:
    cases = [
        ("POST", "/_dendrite/admin/evacuateUser/%40alice%3Atest.example", None,
         401, "M_MISSING_TOKEN"),
        ("POST", "/_dendrite/admin/evacuateUser/%40alice%3Atest.example",
         stack.alice["access_token"], 403, "M_FORBIDDEN"),
        ("GET", "/_dendrite/admin/nothing/here", None, 404, "M_UNRECOGNIZED"),
        ("GET", "/_synapse/admin/v2/nothing/here", None, 404, "M_UNRECOGNIZED"),
        ("GET", "/_dendrite/admin/resetPassword/alice", None, 405, "M_UNRECOGNIZED"),
    ]
    for method, path, token, status, errcode in cases:
        reply = request(stack.port, method, path, token=token)
        assert (reply.status, reply.json["errcode"]) == (status, errcode), path
        assert reply.headers["Content-Type"].startswith("application/json")
    reply = request(stack.port, "GET", "/_dendrite/admin/resetPassword/alice")
    assert reply.headers["Allow"] == "POST"


def test_too_large_bodies(stack: Stack) -> None:
    token = stack.root["access_token"]
    # Over the admin server's 64 KiB: its own 413.
    big = {"password": "x" * 100_000}
    reply = request(stack.port, "POST", "/_dendrite/admin/resetPassword/alice", body=big,
                    token=token)
    assert (reply.status, reply.json["errcode"]) == (413, "M_TOO_LARGE")
    assert "X-Request-ID" in reply.headers  # it was the admin server
    # Over nginx's 1 MiB: nginx answers, in JSON too.
    huge = b'{"password": "' + b"x" * 2_000_000 + b'"}'
    reply = request(stack.port, "POST", "/_dendrite/admin/resetPassword/alice", raw=huge,
                    token=token)
    assert (reply.status, reply.json["errcode"]) == (413, "M_TOO_LARGE")
    assert "X-Request-ID" not in reply.headers  # it was nginx


def test_client_addresses(stack: Stack) -> None:
    token = stack.alice["access_token"]
    me = f"@alice:{SERVER}"
    # Through nginx: the real client address (from X-Forwarded-For, nginx is trusted).
    request(stack.port, "GET", f"/_matrix/client/v3/admin/whois/{me}", token=token,
            source="127.0.0.5", headers={"User-Agent": "via-nginx"})
    # A client spoofing X-Forwarded-For through nginx: nginx appends the real address,
    # which is the first untrusted hop from the right.
    request(stack.port, "GET", f"/_matrix/client/v3/admin/whois/{me}", token=token,
            source="127.0.0.6", headers={"User-Agent": "spoof-via-nginx",
                                         "X-Forwarded-For": "203.0.113.9"})
    # The same spoof sent straight to the admin server: the peer is not a trusted proxy.
    admin_port = int(stack.admin.url.rsplit(":", 1)[1])
    request(admin_port, "GET", f"/_matrix/client/v3/admin/whois/{me}", token=token,
            source="127.0.0.7", headers={"User-Agent": "spoof-direct",
                                         "X-Forwarded-For": "198.51.100.7, 127.0.0.1"})
    seen = connections(stack.port, token, me)
    assert seen["via-nginx"] == "127.0.0.5"
    assert seen["spoof-via-nginx"] == "127.0.0.6"
    assert seen["spoof-direct"] == "127.0.0.7"
    assert not {"203.0.113.9", "198.51.100.7"} & set(seen.values())


def test_registration_rate_limit_per_real_client(stack: Stack) -> None:
    statuses = []
    for _ in range(9):
        reply = request(stack.port, "GET", "/_synapse/admin/v1/register", source="127.0.0.8")
        statuses.append(reply.status)
        if reply.status == 429:
            assert reply.json["errcode"] == "M_LIMIT_EXCEEDED"
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json["retry_after_ms"] > 0
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429] * 3
    # Another client behind the same proxy is not affected; nor is a spoofed header.
    reply = request(stack.port, "GET", "/_synapse/admin/v1/register", source="127.0.0.9")
    assert reply.status == 200
    reply = request(stack.port, "GET", "/_synapse/admin/v1/register", source="127.0.0.8",
                    headers={"X-Forwarded-For": "192.0.2.44"})
    assert reply.status == 429


def test_audit_trail_through_the_proxy(stack: Stack) -> None:
    token = stack.root["access_token"]
    reply = request(stack.port, "POST", f"/_dendrite/admin/evacuateUser/%40alice%3A{SERVER}",
                    token=token, source="127.0.0.10")
    assert reply.status == 200
    request_id = reply.headers["X-Request-ID"]
    assert re.fullmatch("[0-9a-f]{32}", request_id)  # nginx's $request_id, passed on
    audit = request(stack.port, "GET", "/_dendrite/admin/auditLog?limit=50",
                    token=token).json["entries"]
    newest = audit[0]
    assert newest["request_id"] == request_id
    assert (newest["action"], newest["target"], newest["outcome"], newest["requester"]) == (
        "evacuateUser", f"@alice:{SERVER}", "ok", f"@root:{SERVER}")
    assert newest["detail"]["ip"] == "127.0.0.10"
    registrations = [e for e in audit if e["action"] == "register"]
    assert {e["target"] for e in registrations} >= {"root", "alice"}
    assert {e["detail"]["ip"] for e in registrations} >= {"127.0.0.2", "127.0.0.3"}
    assert "rootpassword" not in json.dumps(audit)


def test_untrusted_proxy_is_not_believed(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # no trusted_proxies: the default
    with fake_homeserver() as hs_port, running(config) as admin, \
            nginx(tmp_path / "nginx", int(admin.url.rsplit(":", 1)[1]), hs_port) as port:
        alice = register(port, "alice", "alicepassword", source="127.0.0.5")
        token = alice["access_token"]
        request(port, "GET", f"/_synapse/admin/v1/whois/@alice:{SERVER}", token=token,
                source="127.0.0.5", headers={"User-Agent": "ua",
                                             "X-Forwarded-For": "203.0.113.9"})
        # Without trust, the client is nginx itself.
        assert connections(port, token, f"@alice:{SERVER}")["ua"] == "127.0.0.1"


def test_registration_tokens_through_nginx(stack: Stack) -> None:
    """Both token admin paths and the spec's validity check reach the admin server;
    the rest of the client API's /register stays with the homeserver."""
    token = stack.root["access_token"]
    reply = request(stack.port, "POST", "/_synapse/admin/v1/registration_tokens/new",
                    token=token, body={"token": "via-nginx", "uses_allowed": 1})
    assert reply.status == 200, reply.raw
    reply = request(stack.port, "GET", "/_dendrite/admin/registrationTokens/via-nginx",
                    token=token)
    assert (reply.status, reply.json["uses_allowed"]) == (200, 1)
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for name, valid in (("via-nginx", True), ("other", False)):
        reply = request(stack.port, "GET", f"{validity}?token={name}", source="127.0.0.9")
        assert (reply.status, reply.json) == (200, {"valid": valid})
    for path in ("/_matrix/client/v3/register", "/_matrix/client/v1/register/other"):
        reply = request(stack.port, "GET", path)
        assert reply.json == {"homeserver": True, "method": "GET", "path": path}
