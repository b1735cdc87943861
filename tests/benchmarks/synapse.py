"""Synapse as a reference: the same admin endpoints served by another homeserver.

    python -m tests.benchmarks.run --synapse auto      # a venv in the user's cache
    python -m tests.benchmarks.run --synapse /path/to/python   # one with matrix-synapse

``auto`` installs ``matrix-synapse[postgres]`` (the version pinned below) into a virtualenv
under ``~/.cache/dendrite-admin-bench/`` the first time (PyPI must be reachable).  Synapse
runs as its own process on a loopback port, on a fresh SQLite file or a fresh database of
the benchmarks' throw-away PostgreSQL cluster, with the defaults an operator gets except:
bcrypt cost 4 (only to set up accounts quickly), no federation key servers, no metrics,
logging at WARNING.  Its accounts are made through its shared-secret registration API,
by this project's own MAC code (``dendrite_admin_ext.services.registration.compute_mac``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dendrite_admin_ext.services.registration import compute_mac

from ..standalone import free_port

__all__ = ["SYNAPSE_VERSION", "SynapseServer", "synapse", "synapse_python", "version_of"]

SYNAPSE_VERSION = "1.163.2"
SECRET = "bench-synapse-shared-secret"
PASSWORD = "bench-synapse-password"


def synapse_python(choice: str) -> str:
    """The Python to run Synapse with: ``choice`` itself, or for ``auto`` the cached
    virtualenv's (made and filled on first use)."""
    if choice != "auto":
        return choice
    venv = Path.home() / ".cache" / "dendrite-admin-bench" / f"synapse-{SYNAPSE_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing matrix-synapse {SYNAPSE_VERSION} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"matrix-synapse[postgres]=={SYNAPSE_VERSION}"], check=True)
    return str(python)


def version_of(python: str) -> str:
    out = subprocess.run([python, "-c", "import synapse; print(synapse.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class SynapseServer:
    """One Synapse homeserver process for the benchmarks (loopback only)."""

    def __init__(self, folder: Path, python: str, server_name: str,
                 postgres: dict[str, Any] | None = None) -> None:
        """``postgres``: psycopg2 connection arguments of an empty database, or None
        for SQLite."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.python = python
        self.server_name = server_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = folder / "homeserver.yaml"
        log_config = folder / "log.yaml"
        log_config.write_text(yaml.safe_dump({
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain",
                                  "filename": str(folder / "synapse.log")}},
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }))
        database: dict[str, Any] = (
            {"name": "sqlite3", "args": {"database": str(folder / "homeserver.db")}}
            if postgres is None else
            {"name": "psycopg2", "allow_unsafe_locale": True,
             "args": {**postgres, "cp_min": 5, "cp_max": 10}})
        self.config.write_text(yaml.safe_dump({
            "server_name": server_name,
            "pid_file": str(folder / "homeserver.pid"),
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                           "tls": False, "x_forwarded": False,
                           "resources": [{"names": ["client"], "compress": False}]}],
            "database": database,
            "log_config": str(log_config),
            "media_store_path": str(folder / "media"),
            "signing_key_path": str(folder / "signing.key"),
            "registration_shared_secret": SECRET,
            "bcrypt_rounds": 4,
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "server_notices": {"system_mxid_localpart": "_server",
                               "system_mxid_display_name": "Server Alerts",
                               "room_name": "Server Alerts"},
        }))

    def start(self, timeout: float = 180.0) -> None:
        subprocess.run([self.python, "-m", "synapse.app.homeserver", "--config-path",
                        str(self.config), "--generate-keys"], check=True,
                       capture_output=True, cwd=self.folder)
        with (self.folder / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [self.python, "-m", "synapse.app.homeserver", "--config-path",
                 str(self.config)], stdout=out, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited early:\n{self.log()}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"Synapse did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        parts = [(self.folder / name) for name in ("stdout.log", "synapse.log")]
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in parts if p.exists())

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def register(self, localpart: str, *, admin: bool) -> str:
        """Make the account with Synapse's shared-secret registration; its access token."""
        nonce = self._call("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = compute_mac(SECRET, nonce, localpart, PASSWORD, admin)
        got = self._call("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": PASSWORD, "admin": admin,
            "mac": mac})
        token: str = got["access_token"]
        return token


@contextlib.contextmanager
def synapse(folder: Path, python: str, server_name: str,
            postgres: dict[str, Any] | None = None) -> Iterator[SynapseServer]:
    server = SynapseServer(folder, python, server_name, postgres)
    try:
        server.start()
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # a quick check by hand: start one, register, whois
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, \
            synapse(Path(tmp), synapse_python(sys.argv[1] if len(sys.argv) > 1 else "auto"),
                    "bench.example") as hs:
        token = hs.register("bench_admin", admin=True)
        req = urllib.request.Request(
            hs.url + "/_matrix/client/v3/admin/whois/@bench_admin:bench.example",
            headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as resp:
            print(resp.read().decode())
