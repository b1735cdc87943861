"""synadm (the Synapse admin CLI, from PyPI) driven against the standalone server: user
list with filters, details, modify, password reset, deactivate and version (SPEC 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dendrite_admin_ext.cli import register_user

from .standalone import Server, call, running, write_config

pytest.importorskip("synadm")

SERVER = "test.example"
SECRET = "standalone-secret"


def synadm(config: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "synadm", "-c", str(config), "--batch", "-o", "json", *args],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def synadm_json(config: Path, *args: str) -> Any:
    return json.loads(synadm(config, *args))


@pytest.fixture
def live(tmp_path: Path) -> Any:
    with running(write_config(tmp_path)) as server:
        yield server


def synadm_config(folder: Path, server: Server, token: str) -> Path:
    path = folder / "synadm.yaml"
    path.write_text(yaml.safe_dump({
        "user": f"@root:{SERVER}", "token": token, "protocol": "http",
        "base_url": server.url, "admin_path": "/_synapse/admin", "matrix_path": "/_matrix",
        "timeout": 30, "server_discovery": "well-known", "homeserver": SERVER,
        "ssl_verify": False, "format": "json",
    }))
    return path


def test_synadm_manages_users(live: Server, tmp_path: Path) -> None:
    root = register_user(live.url, SECRET, "root", "root password", True)
    register_user(live.url, SECRET, "alice", "alice password", False)
    bob = register_user(live.url, SECRET, "bob", "bob password", False)
    config = synadm_config(tmp_path, live, root["access_token"])

    listed = synadm_json(config, "user", "list")
    assert listed["total"] == 3
    assert [u["name"] for u in listed["users"]] == [
        f"@alice:{SERVER}", f"@bob:{SERVER}", f"@root:{SERVER}"]
    assert synadm_json(config, "user", "list", "--name", "ALI")["users"][0]["name"] == (
        f"@alice:{SERVER}")
    admins = synadm_json(config, "user", "list", "--admins")
    assert [u["name"] for u in admins["users"]] == [f"@root:{SERVER}"]
    page = synadm_json(config, "user", "list", "--limit", "1", "--sort-by", "creation_ts",
                       "--reverse")
    assert page["total"] == 3 and len(page["users"]) == 1 and "next_token" in page

    details = synadm_json(config, "user", "details", f"@alice:{SERVER}")
    assert details["name"] == f"@alice:{SERVER}" and details["admin"] is False
    assert details["creation_ts"] < 10**11  # seconds, as Synapse

    out = synadm(config, "user", "modify", f"@alice:{SERVER}", "--display-name", "Alice A",
                 "--admin")
    assert "Alice A" in out
    details = synadm_json(config, "user", "details", f"@alice:{SERVER}")
    assert (details["displayname"], details["admin"]) == ("Alice A", True)

    assert synadm_json(config, "user", "password", f"@bob:{SERVER}", "-p",
                       "bob's new password") == {}
    status, err, _ = call("GET", live.url + "/_synapse/admin/v1/server_version",
                          token=bob["access_token"])
    assert status == 200  # public
    status, err, _ = call("GET", live.url + "/_synapse/admin/v2/users",
                          token=bob["access_token"])
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")  # logged out by the reset

    out = synadm(config, "user", "deactivate", f"@bob:{SERVER}")
    assert '"id_server_unbind_result": "success"' in out
    listed = synadm_json(config, "user", "list")
    assert [u["name"] for u in listed["users"]] == [f"@alice:{SERVER}", f"@root:{SERVER}"]
    listed = synadm_json(config, "user", "list", "--deactivated")
    bob_row = next(u for u in listed["users"] if u["name"] == f"@bob:{SERVER}")
    assert bob_row["deactivated"] is True

    version = synadm_json(config, "version")
    assert version["server_version"].startswith("dendrite_admin_ext ")
