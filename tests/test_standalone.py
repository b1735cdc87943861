"""The standalone server and the CLI, as an operator runs them."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dendrite_admin_ext.cli import main, register_user
from dendrite_admin_ext.server import client_address

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
    # No secret in any log line, even at DEBUG.
    log = server.log()
    for secret in ("standalone-secret", "rootpassword", "bobpassword", token):
        assert secret not in log


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    with running(write_config(tmp_path)) as server:
        assert server.stop(signal.SIGINT) == 0


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
