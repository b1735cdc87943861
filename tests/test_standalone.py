"""The standalone server and the CLI, as an operator runs them."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from dendrite_admin_ext import __version__
from dendrite_admin_ext.addresses import normalize_address, normalize_network
from dendrite_admin_ext.cli import build_parser, main, register_user
from dendrite_admin_ext.server import (
    ListenError,
    bind_listener,
    build_standalone_app,
    client_address,
)
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.types import AccountType
from dendrite_admin_ext.validation import Schemas

from .conftest import make_config, make_host_app, make_user
from .standalone import running, write_config

CLI = [sys.executable, "-m", "dendrite_admin_ext"]


def get_json(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                 else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_register_whois_and_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with running(config) as server:
        out = subprocess.run([*CLI, "register-user", "-c", str(config), "-u", "root",
                              "-p", "rootpassword", "-a"], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "Success! Registered @root:test.example (admin)" in out.stdout
        # again: in use, then --exists-ok
        again = subprocess.run([*CLI, "register-user", "-c", str(config), "-u", "root",
                                "-p", "rootpassword", "-a"], capture_output=True, text=True,
                               timeout=60, check=False)
        assert again.returncode == 1 and "M_USER_IN_USE" in again.stderr
        ok = subprocess.run([*CLI, "register-user", "-c", str(config), "-u", "root",
                             "-p", "rootpassword", "-a", "--exists-ok"],
                            capture_output=True, text=True, timeout=60, check=False)
        assert ok.returncode == 0, ok.stderr
        # explicit -k and server_url
        body = register_user(server.url, "standalone-secret", "bob", "bobpassword", False)
        token = body["access_token"]
        status, who = get_json(server.url + "/_matrix/client/v3/admin/whois/@bob:test.example",
                               token)
        assert status == 200 and who["user_id"] == "@bob:test.example"
        status, err = get_json(server.url + "/_matrix/client/v3/admin/whois/@root:test.example",
                               token)
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
        status, err = get_json(server.url + "/nothing/here")
        assert (status, err["errcode"]) == (404, "M_UNRECOGNIZED")
        assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.log()
    # SIGTERM is logged: the operator sees the server go down on purpose.
    assert "shutting down" in server.log() and "stopped" in server.log()
    # No secret in any log line, even at DEBUG.
    log = server.log()
    for secret in ("standalone-secret", "rootpassword", "bobpassword", token):
        assert secret not in log


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    with running(write_config(tmp_path)) as server:
        assert server.stop(signal.SIGINT) == 0
    assert "shutting down" in server.log()


def test_port_in_use_is_one_line_and_migrates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "admin.db"
    config = write_config(tmp_path, database={"backend": "sqlite", "path": str(db)})
    port = yaml.safe_load(config.read_text())["listen"]["port"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        out = subprocess.run([*CLI, "serve", "--config", str(config)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    [line] = [ln for ln in out.stderr.splitlines() if "Cannot listen" in ln]
    assert f"127.0.0.1:{port}" in line and "already in use" in line
    assert "listen.port" in line
    assert not db.exists()  # no database created, let alone migrated


@pytest.mark.parametrize(("host", "port", "reason"), [
    ("192.0.2.1", 8008, "not available"),  # TEST-NET-1: not an address of this machine
    ("no-such-host.invalid", 8008, "unknown host name"),
])
def test_bind_listener_explains_other_failures(host: str, port: int, reason: str) -> None:
    with pytest.raises(ListenError) as info:
        bind_listener(host, port).close()
    assert reason in str(info.value) and f"{host}:{port}" in str(info.value)
    assert "\n" not in str(info.value)


def test_listen_errors_say_what_to_do() -> None:
    import errno

    from dendrite_admin_ext.server import _explain
    assert "ports below 1024" in _explain(PermissionError(errno.EACCES, "denied"))
    assert "listen.port" in _explain(OSError(errno.EADDRINUSE, "in use"))


def test_register_cli_wrong_secret(tmp_path: Path) -> None:
    with running(write_config(tmp_path)) as server:
        out = subprocess.run([*CLI, "register-user", "-k", "wrong", "-u", "eve", "-p",
                              "evepassword", "--no-admin", server.url],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 1
        assert "HMAC incorrect" in out.stderr


def test_register_cli_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    from .standalone import free_port
    code = main(["register-user", "-k", "s", "-u", "x", "-p", "passwordx", "--no-admin",
                 f"http://127.0.0.1:{free_port()}"])
    assert code == 1
    assert "Cannot reach" in capsys.readouterr().err


def test_invalid_config_exits_with_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_name: e.org\nlisten: {port: nope}\n")
    out = subprocess.run([*CLI, "serve", "--config", str(bad)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "Error in configuration at 'listen.port'" in out.stderr
    assert "Traceback" not in out.stderr


def test_version_flag() -> None:
    for argv in ([], ["serve"], ["check-config"], ["register-user"], ["openapi"]):
        out = subprocess.run([*CLI, *argv, "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, (argv, out.stderr)
        assert out.stdout.strip().endswith(__version__), argv


def test_every_subcommand_has_help_text() -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) >= {"serve", "check-config", "openapi", "register-user"}
    for name, command in sub.choices.items():
        assert command.description, name
        helps = [a.help for a in command._actions]
        assert all(helps), (name, helps)
    out = subprocess.run([*CLI, "check-config", "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "every problem" in out.stdout


def test_check_config_reports_every_problem(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: {port: nope}\nserver_notices: {room_name: 5}\n"
                   "passwords: {bcrypt_cost: 99}\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    for where in ("'server_name': this key is required", "'listen.port'",
                  "'server_notices.room_name'", "'passwords.bcrypt_cost'"):
        assert f"Error in configuration at {where}" in err, err
    assert "4 problems" in err
    good = tmp_path / "good.yaml"
    good.write_text("server_name: e.org\ndatabase: {backend: memory}\n")
    assert main(["check-config", "-c", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_help_lists_commands() -> None:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60,
                         check=True)
    for command in ("serve", "register-user", "check-config"):
        assert command in out.stdout
    reg = subprocess.run([*CLI, "register-user", "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    for flag in ("-u", "-p", "-a", "--no-admin", "-t", "-k", "-c", "--exists-ok",
                 "server_url"):
        assert flag in reg.stdout


TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(("peer", "xff", "want"), [
    ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),
    ("127.0.0.1", ["198.51.100.1, 203.0.113.5"], "203.0.113.5"),
    ("127.0.0.1", ["198.51.100.1, 10.1.1.1"], "198.51.100.1"),
    ("127.0.0.1", ["1.1.1.1", "203.0.113.5, 10.2.2.2"], "203.0.113.5"),
    ("192.0.2.9", ["203.0.113.5"], "192.0.2.9"),  # untrusted peer: header ignored
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", ["garbage"], "127.0.0.1"),
    ("127.0.0.1", ["[2001:db8::1]:1234"], "2001:db8::1"),
])
def test_client_address(peer: str, xff: list[str], want: str) -> None:
    assert client_address(peer, xff, TRUSTED) == want


def test_client_address_without_trusted_proxies() -> None:
    assert client_address("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"


# -- IPv4-mapped addresses are their IPv4 address (SPEC 2) -----------------------------

@pytest.mark.parametrize(("peer", "xff", "want"), [
    # The case: a dual-stack socket reports the proxy as ::ffff:127.0.0.1.
    ("::ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
    ("::ffff:7f00:1", ["203.0.113.9"], "203.0.113.9"),
    ("0:0:0:0:0:ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
    # Mapped hops are matched as IPv4 (10.0.0.0/8 is trusted) and recorded as IPv4.
    ("127.0.0.1", ["198.51.100.1, ::ffff:10.1.1.1"], "198.51.100.1"),
    ("127.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),
    ("127.0.0.1", ["[::ffff:203.0.113.7]:443"], "203.0.113.7"),
    # An untrusted mapped peer is the client, in IPv4 form.
    ("::ffff:192.0.2.9", ["203.0.113.5"], "192.0.2.9"),
    # Other IPv6 addresses take one (compressed) form.
    ("127.0.0.1", ["2001:DB8:0:0::1"], "2001:db8::1"),
])
def test_client_address_mapped(peer: str, xff: list[str], want: str) -> None:
    assert client_address(peer, xff, TRUSTED) == want


def test_trusted_proxies_written_as_mapped_networks() -> None:
    mapped = (ipaddress.ip_network("::ffff:127.0.0.0/104"),)
    assert client_address("127.0.0.5", ["203.0.113.9"], mapped) == "203.0.113.9"
    assert client_address("::ffff:127.0.0.5", ["203.0.113.9"], mapped) == "203.0.113.9"
    assert client_address("128.0.0.1", ["203.0.113.9"], mapped) == "128.0.0.1"
    assert normalize_network(ipaddress.ip_network("::ffff:10.0.0.0/104")) == (
        ipaddress.ip_network("10.0.0.0/8"))
    assert normalize_network(ipaddress.ip_network("2001:db8::/32")) == (
        ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(("value", "want"), [
    ("::ffff:203.0.113.9", "203.0.113.9"), ("203.0.113.9", "203.0.113.9"),
    ("::1", "::1"), ("2001:0db8::0001", "2001:db8::1"), ("", ""), ("unix-socket", "unix-socket"),
    ("::ffff:zz", "::ffff:zz"),
])
def test_normalize_address(value: str, want: str) -> None:
    assert normalize_address(value) == want


def _mapped_peer(peer: str) -> Middleware:
    """Stands for a dual-stack listening socket: the peer arrives IPv4-mapped."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request.clone(remote=peer))
    return middleware


async def test_mapped_proxy_peer_records_the_forwarded_client(
        aiohttp_client: Any, schemas: Schemas, caplog: pytest.LogCaptureFixture) -> None:
    """Through HTTP on the standalone app: whois, the audit trail, the access log and
    the rate limiter all see 203.0.113.9."""
    config = make_config(schemas, http={"trusted_proxies": ["127.0.0.1/32"]},
                         registration={"rate_limit": {"per_second": 0.001, "burst": 2}})
    storage = MemoryStorage()
    app = build_standalone_app(config, storage)
    app.middlewares.insert(0, _mapped_peer("::ffff:127.0.0.1"))
    client = await aiohttp_client(app)
    admin = await make_user(storage, "root", AccountType.ADMIN)
    xff = {"X-Forwarded-For": "203.0.113.9"}
    caplog.set_level(logging.INFO, logger="dendrite_admin_ext")
    resp = await client.get(f"/_synapse/admin/v1/whois/{admin.user_id}",
                            headers={**admin.auth, **xff})
    body = await resp.json()
    [conn] = body["devices"][admin.device_id]["sessions"][0]["connections"]
    assert conn["ip"] == "203.0.113.9"
    access = [r for r in caplog.records if r.name == "dendrite_admin_ext.access"]
    assert access and all(getattr(r, "fields", {}).get("remote") == "203.0.113.9"
                          for r in access)
    # The rate limit: one bucket for 203.0.113.9 whichever way it is written.
    for header in ("203.0.113.9", "::ffff:203.0.113.9"):
        resp = await client.get("/_synapse/admin/v1/register",
                                headers={"X-Forwarded-For": header})
        assert resp.status == 200
    resp = await client.get("/_synapse/admin/v1/register",
                            headers={"X-Forwarded-For": "::ffff:cb00:7109"})
    assert resp.status == 429
    # Another client is not limited.
    resp = await client.get("/_synapse/admin/v1/register",
                            headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status == 200
    # The audit trail records the IPv4 form.
    resp = await client.post("/_dendrite/admin/resetPassword/nobody",
                             json={"password": "long enough"}, headers={**admin.auth, **xff})
    assert resp.status == 404
    [entry] = await storage.get_audit_entries(before_id=None, limit=10)
    assert entry.detail.get("ip") == "203.0.113.9"


async def test_embedded_host_with_mapped_remote(aiohttp_client: Any, schemas: Schemas) -> None:
    """Embedded, request.remote is the host's: a mapped one is recorded as IPv4."""
    storage = MemoryStorage()
    app, _ = make_host_app(make_config(schemas), storage, schemas)
    app.middlewares.insert(0, _mapped_peer("::ffff:192.0.2.77"))
    client = await aiohttp_client(app)
    admin = await make_user(storage, "root", AccountType.ADMIN)
    resp = await client.get(f"/_synapse/admin/v1/whois/{admin.user_id}", headers=admin.auth)
    [conn] = (await resp.json())["devices"][admin.device_id]["sessions"][0]["connections"]
    assert conn["ip"] == "192.0.2.77"


def _synapse_register_script(tmp_path: Path) -> Path:
    """Synapse's own register_new_matrix_user, taken from its published wheel.

    The script imports only requests and yaml, so it runs on its own without the rest of
    Synapse."""
    import zipfile
    dest = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d",
                    str(dest), "matrix-synapse>=1.100"], check=True, timeout=600)
    wheel = next(dest.glob("matrix_synapse-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("synapse/_scripts/register_new_matrix_user.py")
    script = tmp_path / "register_new_matrix_user.py"
    script.write_bytes(source)
    return script


def test_synapse_register_new_matrix_user_client(tmp_path: Path) -> None:
    script = _synapse_register_script(tmp_path)
    config = write_config(tmp_path)
    with running(config) as server:
        def synapse_cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                                  text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)

        # -c reads registration_shared_secret from our config: the key names match.
        out = synapse_cli("-c", str(config), "-u", "syn", "-p", "synpassword", "-a",
                          server.url)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Success!" in out.stdout
        out = synapse_cli("-k", "standalone-secret", "-u", "bot1", "-p", "botpassword",
                          "--no-admin", "-t", "bot", server.url)
        assert out.returncode == 0, out.stdout + out.stderr
        out = synapse_cli("-k", "standalone-secret", "-u", "syn", "-p", "synpassword",
                          "--no-admin", "--exists-ok", server.url)
        assert out.returncode == 0 and "already exists" in out.stdout
        out = synapse_cli("-k", "wrong-secret", "-u", "eve", "-p", "evepassword",
                          "--no-admin", server.url)
        assert out.returncode == 1 and "HMAC incorrect" in out.stdout
        # the accounts it made are real: an admin can whois them
        body = register_user(server.url, "standalone-secret", "ops", "opspassword", True)
        for user in ("@syn:test.example", "@bot1:test.example"):
            status, who = get_json(server.url + "/_synapse/admin/v1/whois/" + user,
                                   str(body["access_token"]))
            assert (status, who["user_id"]) == (200, user)


def test_register_cli_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file-pw\n")
    with running(write_config(tmp_path)) as server:
        out = subprocess.run([*CLI, "register-user", "-k", "standalone-secret", "-u", "pf",
                              "--password-file", str(tmp_path / "pw"), "--no-admin",
                              server.url], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 0, out.stderr
        # the password from the file was used: registering the same name again with the
        # MAC over that password reaches the in-use check (the MAC matched)
        again = subprocess.run([*CLI, "register-user", "-k", "standalone-secret", "-u", "pf",
                                "-p", "from-a-file-pw", "--no-admin", server.url],
                               capture_output=True, text=True, timeout=60, check=False)
        assert "M_USER_IN_USE" in again.stderr
