"""SPEC section 5: the YAML config, its schema, key-path errors, secret files."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dendrite_admin_ext import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid_and_sqlite() -> None:
    config = load_config(ROOT / "example_config.yaml")
    assert config.database.backend == "sqlite"
    assert config.database.path == ROOT / "dendrite_admin.db"  # relative to the file
    assert config.registration.enabled
    assert config.server_notices.enabled
    assert config.passwords.bcrypt_cost == 12


def test_example_config_documents_every_schema_key() -> None:
    import json
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    text = (ROOT / "example_config.yaml").read_text()

    def keys(node: dict[str, object]) -> set[str]:
        out: set[str] = set()
        for name, sub in dict(node.get("properties", {})).items():  # type: ignore[call-overload]
            out.add(name)
            if isinstance(sub, dict) and "$ref" in sub:
                ref = sub["$ref"].split("/")[-1]
                sub = schema["$defs"][ref]
            if isinstance(sub, dict):
                out |= keys(sub)
        return out

    missing = sorted(k for k in keys(schema) if f"{k}:" not in text)
    assert missing == []


def test_defaults() -> None:
    config = parse_config({"server_name": "example.org"})
    assert config.listen.host == "127.0.0.1" and config.listen.port == 8008
    assert not config.registration.enabled
    assert not config.server_notices.enabled
    assert config.server_notices.local_part == "_server"
    assert config.server_notices.display_name == "Server Alerts"
    assert config.http.max_body_size == 65536
    assert config.http.trusted_proxies == ()
    assert config.passwords.min_length == 8 and config.passwords.max_length == 512


@pytest.mark.parametrize(("raw", "where"), [
    ({}, "'server_name'"),
    ({"server_name": "ex ample"}, "'server_name'"),
    ({"server_name": "e.org", "server_notices": {"room_name": 5}}, "'server_notices.room_name'"),
    ({"server_name": "e.org", "listen": {"port": 70000}}, "'listen.port'"),
    ({"server_name": "e.org", "listen": {"hots": "x"}}, "'listen'"),
    ({"server_name": "e.org", "database": {"backend": "mysql"}}, "'database.backend'"),
    ({"server_name": "e.org", "database": {"backend": "postgres"}}, "'database.dsn'"),
    ({"server_name": "e.org", "passwords": {"bcrypt_cost": 2}}, "'passwords.bcrypt_cost'"),
    ({"server_name": "e.org", "audit": {"retention_days": -1}}, "'audit.retention_days'"),
    ({"server_name": "e.org", "http": {"trusted_proxies": ["nope"]}},
     "'http.trusted_proxies.0'"),
    ({"server_name": "e.org", "passwords": {"min_length": 10, "max_length": 5}},
     "'passwords.min_length'"),
])
def test_errors_name_key_path(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert f"Error in configuration at {where}" in str(info.value)


def test_secret_value_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server_name": "e.org", "registration_shared_secret": 123456789})
    assert "123456789" not in str(info.value)


def test_secret_path(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("hunter2hunter2\n")
    (tmp_path / "c.yaml").write_text("server_name: e.org\nregistration_shared_secret_path: s\n")
    assert load_config(tmp_path / "c.yaml").registration.shared_secret == "hunter2hunter2"
    with pytest.raises(ConfigError, match="registration_shared_secret_path"):
        parse_config({"server_name": "e.org",
                      "registration_shared_secret_path": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="not both"):
        parse_config({"server_name": "e.org", "registration_shared_secret": "a",
                      "registration_shared_secret_path": str(tmp_path / "s")})


def test_bad_yaml_names_position_only(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("server_name: e.org\nregistration_shared_secret: [topsecret\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    assert "line" in str(info.value) and "topsecret" not in str(info.value)


def test_trusted_proxies_parsed() -> None:
    config = parse_config({"server_name": "e.org",
                           "http": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}})
    assert ipaddress.ip_address("10.1.2.3") in config.http.trusted_proxies[1]
    assert len(config.http.trusted_proxies) == 3


def test_schemas_reject_unchecked_formats(tmp_path: Path) -> None:
    from dendrite_admin_ext.validation import SCHEMA_BASE, load_schemas
    (tmp_path / "x.schema.json").write_text(
        f'{{"$id": "{SCHEMA_BASE}x.schema.json", "type": "string", "format": "emial"}}')
    with pytest.raises(RuntimeError, match="emial"):
        load_schemas(tmp_path)


# -- every problem of a file in one run ---------------------------------------------------

def test_every_problem_is_reported_with_its_key_path() -> None:
    """A missing required key and bad values together: all of them, in one error."""
    with pytest.raises(ConfigError) as info:
        parse_config({"listen": {"port": 70000, "hots": "x"},
                      "database": {"backend": "postgres"},
                      "passwords": {"bcrypt_cost": 2, "min_length": 10, "max_length": 5},
                      "server_notices": {"room_name": 5}})
    text = str(info.value)
    for where in ("'server_name': this key is required", "'listen.port'", "'listen'",
                  "'database.dsn'", "'passwords.bcrypt_cost'", "'passwords.min_length'",
                  "'server_notices.room_name'"):
        assert f"Error in configuration at {where}" in text, where
    paths = [p.path for p in info.value.problems]
    assert len(paths) == len(text.splitlines()) == 7
    assert ("server_name",) in paths and ("listen", "port") in paths


def test_several_missing_keys_and_secret_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server_name": "e.org", "registration_shared_secret": 12345678,
                      "database": {"backend": "postgres",
                                   "dsn_path": str(tmp_path / "no-such-file")},
                      "http": {"trusted_proxies": ["nope", "10.0.0.0/8", "also bad"]}})
    problems = {p.path for p in info.value.problems}
    assert problems == {("registration_shared_secret",), ("database", "dsn_path"),
                        ("http", "trusted_proxies", 0), ("http", "trusted_proxies", 2)}
    assert "12345678" not in str(info.value)


def test_a_single_problem_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server_name": "e.org", "listen": {"port": 70000}})
    assert str(info.value).count("\n") == 0 and info.value.path == ("listen", "port")
    assert info.value.problems == (info.value,)
