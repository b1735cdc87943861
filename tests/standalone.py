"""Running the real standalone server in a subprocess (loopback only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(folder: Path, **overrides: Any) -> Path:
    raw: dict[str, Any] = {
        "server_name": "test.example",
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "database": {"backend": "memory"},
        "registration_shared_secret": "standalone-secret",
        "passwords": {"bcrypt_cost": 4},
        "server_notices": {"enabled": True},
        "logging": {"level": "DEBUG"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Server:
    def __init__(self, config_path: Path, python: str = sys.executable,
                 command: list[str] | None = None) -> None:
        self.config_path = config_path
        raw = yaml.safe_load(config_path.read_text())
        self.url = f"http://127.0.0.1:{raw['listen']['port']}"
        self.python = python
        self.command = command or [python, "-m", "dendrite_admin_ext"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config_path.parent / "server.log"

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "serve", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/_dendrite/admin/none", timeout=1):
                    pass
            except urllib.error.HTTPError:
                return  # it answered (404): up
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def running(config_path: Path, **kwargs: Any) -> Iterator[Server]:
    server = Server(config_path, **kwargs)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def call(method: str, url: str, body: Any = None, token: str | None = None,
         timeout: float = 60) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One JSON request to a running server: (status, JSON body, response headers)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)
