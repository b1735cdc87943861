"""A built wheel, installed into a brand-new virtualenv, finds its schemas and serves.

Slow-ish (builds a wheel and installs the dependencies), but it is the only way to know
that what operators install works outside this checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from .standalone import running, write_config

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_in_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, timeout=600, cwd=tmp_path)
    wheels = list(dist.glob("dendrite_admin_ext-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], check=True,
                   timeout=600, cwd=tmp_path)
    # The installed package reads its schemas from site-packages, not from this checkout.
    where = subprocess.run(
        [str(py), "-c", "from dendrite_admin_ext.validation import schema_dir, load_schemas;"
                        "print(schema_dir()); print(sorted(load_schemas().validators))"],
        check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout.split("\n")
    assert "site-packages" in where[0]
    assert str(ROOT) not in where[0]
    assert "register" in where[1] and "config" in where[1]

    config = write_config(tmp_path)
    script = venv / "bin" / "dendrite-admin-ext"
    with running(config, command=[str(script)]) as server:
        with urllib.request.urlopen(server.url + "/_synapse/admin/v1/register",
                                    timeout=10) as resp:
            assert len(json.loads(resp.read())["nonce"]) >= 32
        assert server.stop() == 0
