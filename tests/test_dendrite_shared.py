"""Beside Dendrite (``database.shared_with: dendrite``, SPEC 8): on a database laid out
as Dendrite 0.15.2 leaves it (tests/dendrite_schema.py), PostgreSQL and SQLite, fresh
and upgraded, the package changes nothing of Dendrite's schema, and every row it writes
into Dendrite's tables is read back by Dendrite's own statements."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dendrite_admin_ext import parse_config
from dendrite_admin_ext.config import ConfigError
from dendrite_admin_ext.errors import StartupRefusedError
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage import storage_from_config
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.sql import SqlStorage
from dendrite_admin_ext.storage.sqlite import SqliteStorage
from dendrite_admin_ext.validation import Schemas

from .conftest import SECRET, Harness, make_config, make_host_app
from .dendrite_schema import SERVER, DendriteDb, build_dendrite
from .sql_backends import unwrapped

LAYOUTS = [
    ("sqlite", "fresh"), ("sqlite", "restarted"), ("sqlite", "upgraded"),
    pytest.param(("postgres", "fresh"), marks=pytest.mark.postgres),
    pytest.param(("postgres", "upgraded"), marks=pytest.mark.postgres),
]
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _new_db(request: pytest.FixtureRequest, tmp_path: Path, engine: str,
            layout: str) -> DendriteDb:
    if engine == "sqlite":
        return build_dendrite(DendriteDb("sqlite", layout, path=tmp_path / "dendrite.db"))
    server = request.getfixturevalue("pg_server")
    name = server.new_database(empty=True)
    request.addfinalizer(lambda: server.drop_database(name))
    return build_dendrite(DendriteDb("postgres", layout, dsn=server.dsn_for(name)))


def _storage(db: DendriteDb) -> SqlStorage:
    if db.engine == "sqlite":
        assert db.path is not None
        return SqliteStorage(db.path, shared_with="dendrite")
    assert db.dsn is not None
    return PostgresStorage(db.dsn, pool_size=2, shared_with="dendrite")


def _config(schemas: Schemas, db: DendriteDb, **overrides: Any) -> Any:
    database: dict[str, Any] = {"backend": db.engine, "shared_with": "dendrite"}
    if db.engine == "sqlite":
        database["path"] = str(db.path)
    else:
        database["dsn"] = db.dsn
    return make_config(schemas, database=database, **overrides)


@pytest.fixture(params=LAYOUTS, ids=lambda p: "-".join(p))
def dendrite(request: pytest.FixtureRequest, tmp_path: Path) -> DendriteDb:
    engine, layout = request.param
    return _new_db(request, tmp_path, engine, layout)


@pytest.fixture
async def h(aiohttp_client: Any, schemas: Schemas, dendrite: DendriteDb
            ) -> Harness:
    storage = _storage(dendrite)
    app, ctx = make_host_app(_config(schemas, dendrite), storage, schemas)
    return Harness(await aiohttp_client(app), ctx, storage)


# -- the schema is Dendrite's --------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
async def test_refuses_to_start_before_dendrite(request: pytest.FixtureRequest,
                                                tmp_path: Path, engine: str) -> None:
    db = _new_db(request, tmp_path, engine, "empty")
    storage = _storage(db)
    if engine == "sqlite":
        # no file at all: none is created
        with pytest.raises(StartupRefusedError, match="start Dendrite once first"):
            await storage.open()
        assert db.path is not None and not db.path.exists()
        sqlite3.connect(db.path).close()  # an empty file, as Dendrite's first open makes
    with pytest.raises(StartupRefusedError, match="start Dendrite once first") as refused:
        await storage.open()
    assert "\n" not in str(refused.value) and "userapi_accounts" in str(refused.value)
    # nothing was created: Dendrite's first start finds the database as it left it
    assert db.tables() == set()
    # once Dendrite has run, the same storage starts
    build_dendrite(DendriteDb(db.engine, "fresh", path=db.path, dsn=db.dsn))
    await storage.open()
    await storage.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_refuses_a_database_the_package_set_up_on_its_own(
        request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> None:
    """Package first (without shared_with) made Dendrite's tables itself: that is not
    Dendrite's database, and beside Dendrite the package says so instead of starting."""
    db = _new_db(request, tmp_path, engine, "empty")
    owned: SqlStorage = (SqliteStorage(db.path or "") if engine == "sqlite"
                         else PostgresStorage(db.dsn or "", pool_size=2))
    await owned.open()
    await owned.close()
    with pytest.raises(StartupRefusedError, match=r"without database\.shared_with"):
        await _storage(db).open()


async def test_start_changes_nothing_of_dendrites(dendrite: DendriteDb) -> None:
    before = dendrite.catalogue()
    storage = _storage(dendrite)
    await storage.open()
    await storage.close()
    await storage.open()  # a second start (migrations already applied)
    await storage.close()
    assert dendrite.catalogue() == before
    ours = {t for t in dendrite.tables() if t.startswith("dendrite_admin_")}
    assert "dendrite_admin_device_connections" in ours and "dendrite_admin_nonces" in ours
    if dendrite.engine == "sqlite":
        assert dendrite.query("PRAGMA journal_mode") == [("delete",)]
        # no foreign key of ours points into Dendrite's tables
        for (table,) in dendrite.query("SELECT name FROM sqlite_master WHERE type = 'table'"
                                       " AND name LIKE 'dendrite_admin_%'"):
            assert dendrite.query(f"PRAGMA foreign_key_list({table})") == []


async def test_dendrite_restart_after_the_package(dendrite: DendriteDb) -> None:
    """Dendrite's start-up statements still run on the database the package used."""
    storage = _storage(dendrite)
    await storage.open()
    await storage.close()
    if dendrite.engine == "sqlite":
        from .dendrite_schema import SQLITE_SCHEMAS
        dendrite.run(SQLITE_SCHEMAS)
    else:
        from .dendrite_schema import PG_FRESH
        dendrite.run(PG_FRESH[1:-1])


def test_setup_refuses_a_storage_that_owns_its_schema(schemas: Schemas,
                                                      tmp_path: Path) -> None:
    from aiohttp import web

    from dendrite_admin_ext import setup_admin
    db = DendriteDb("sqlite", "fresh", path=tmp_path / "d.db")
    with pytest.raises(ValueError, match="shared_with"):
        setup_admin(web.Application(), _config(schemas, db), SqliteStorage(tmp_path / "d.db"))


def test_config_shared_with(schemas: Schemas, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("syt_admin_token\n")
    cfg = parse_config({"server_name": "x", "database": {"backend": "sqlite",
                                                          "shared_with": "dendrite"},
                        "homeserver": {"url": "http://127.0.0.1:8008/",
                                       "access_token_path": str(token)}}, schemas=schemas)
    assert cfg.database.shared_with == "dendrite"
    assert cfg.homeserver.url == "http://127.0.0.1:8008"
    assert cfg.homeserver.access_token == "syt_admin_token"
    assert "syt_admin_token" not in repr(cfg)
    assert isinstance(unwrapped(storage_from_config(cfg.database)), SqliteStorage)
    assert storage_from_config(cfg.database).shared_with == "dendrite"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"database\.shared_with"):
        parse_config({"server_name": "x", "database": {"backend": "memory",
                                                        "shared_with": "dendrite"}},
                     schemas=schemas)
    with pytest.raises(ConfigError, match="homeserver"):
        parse_config({"server_name": "x", "homeserver": {"url": "http://h",
                                                         "access_token_path": str(token)}},
                     schemas=schemas)
    with pytest.raises(ConfigError, match=r"homeserver\.access_token_path"):
        parse_config({"server_name": "x", "database": {"shared_with": "dendrite"},
                      "homeserver": {"url": "http://h"}}, schemas=schemas)
    with pytest.raises(ConfigError, match=r"database\.shared_with"):
        parse_config({"server_name": "x", "database": {"shared_with": "synapse"}},
                     schemas=schemas)


# -- rows Dendrite reads -------------------------------------------------------------------
async def _register(client: TestClient[Any, Any], username: str, password: str,
                    **extra: Any) -> dict[str, Any]:
    resp = await client.get("/_synapse/admin/v1/register")
    nonce = (await resp.json())["nonce"]
    body = {"nonce": nonce, "username": username, "password": password,
            "mac": compute_mac(SECRET, nonce, username, password, False), **extra}
    resp = await client.post("/_synapse/admin/v1/register", json=body,
                             headers={"User-Agent": "register_new_matrix_user/1.0"})
    assert resp.status == 200, await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


async def test_shared_secret_registration_as_dendrite_does_it(
        h: Harness, dendrite: DendriteDb) -> None:
    client = h.client
    # Dendrite's own devices first; one logged out, so the SQLite numbering shows
    dendrite.create_account("carol")
    dendrite.create_device("carol", "C1", "tok-c1", ip="198.51.100.7", user_agent="Element")
    dendrite.create_device("carol", "C2", "tok-c2", ip="198.51.100.7", user_agent="Element")
    dendrite.delete_device("carol", "C1")
    devices_before = int(dendrite.query("SELECT COUNT(access_token) FROM userapi_devices")[0][0])

    out = await _register(client, "Bob", "a long password")
    assert out["user_id"] == f"@bob:{SERVER}"
    assert out["device_id"] == "shared_secret_registration"

    assert dendrite.select("account", "bob", SERVER) == [("bob", SERVER, None, 1)]
    (hash_row,) = dendrite.select("password_hash", "bob", SERVER)
    assert hash_row[0].startswith("$2")
    assert dendrite.select("profile", "bob", SERVER) == [("bob", SERVER, "bob", "")]
    (device,) = dendrite.select("device_by_token", out["access_token"])
    assert device[1:] == ("shared_secret_registration", "bob", SERVER)
    if dendrite.engine == "sqlite":
        assert device[0] == devices_before + 1  # COUNT(access_token) + 1, as Dendrite does
    (listed,) = dendrite.select("devices_by_localpart", "bob", SERVER, "")
    assert listed[0] == "shared_secret_registration" and listed[1] == "bob"
    assert listed[3] == "127.0.0.1" and listed[4] == "register_new_matrix_user/1.0"
    ((room_id, kind, content),) = dendrite.select("account_data", "bob", SERVER)
    assert (room_id, kind) == ("", "m.push_rules")
    rules = json.loads(content)["global"]
    assert [r["rule_id"] for r in rules["override"]][:3] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me"]
    assert rules["override"][2]["conditions"][2]["pattern"] == f"@bob:{SERVER}"
    assert rules["content"][0]["pattern"] == "bob"
    assert {r["rule_id"] for r in rules["underride"]} >= {".m.rule.message", ".m.rule.call"}

    # displayname "" (no display name) is '' in Dendrite's column, never NULL
    await _register(client, "dora", "a long password", displayname="",
                    initial_device_display_name="laptop", device_id="DORADEV")
    assert dendrite.select("profile", "dora", SERVER) == [("dora", SERVER, "", "")]
    assert dendrite.select("devices_by_localpart", "dora", SERVER, "")[0][:2] == (
        "DORADEV", "laptop")


async def test_whois_merges_dendrites_sighting_and_never_writes_it(
        h: Harness, dendrite: DendriteDb) -> None:
    client = h.client
    dendrite.create_account("admin", account_type=3)
    dendrite.create_device("admin", "ADMINDEV", "tok-admin", ip="203.0.113.5:51240",
                           user_agent="Element/1.11")
    row_before = dendrite.query("SELECT ip, user_agent, last_seen_ts FROM userapi_devices"
                                " WHERE device_id = 'ADMINDEV'")
    url = f"/_synapse/admin/v1/whois/@admin:{SERVER}"
    auth = {"Authorization": "Bearer tok-admin", "User-Agent": "synadm/0.46"}
    resp = await client.get(url, headers=auth)
    assert resp.status == 200
    await h.ctx.activity.flush()
    # Dendrite's device columns are Dendrite's: untouched by the package's sighting
    assert dendrite.query("SELECT ip, user_agent, last_seen_ts FROM userapi_devices"
                          " WHERE device_id = 'ADMINDEV'") == row_before
    body = await (await client.get(url, headers=auth)).json()
    conns = body["devices"]["ADMINDEV"]["sessions"][0]["connections"]
    assert {(c["ip"], c["user_agent"]) for c in conns} == {
        ("203.0.113.5:51240", "Element/1.11"), ("127.0.0.1", "synadm/0.46")}
    # Dendrite sees the device later, from elsewhere: that sighting comes first
    later = int(time.time() * 1000) + 60_000
    dendrite.update_last_seen("admin", "ADMINDEV", "192.0.2.44:61000", "Element/1.12", later)
    body = await (await client.get(url, headers=auth)).json()
    conns = body["devices"]["ADMINDEV"]["sessions"][0]["connections"]
    assert conns[0] == {"ip": "192.0.2.44:61000", "user_agent": "Element/1.12",
                        "last_seen": later}
    assert ("127.0.0.1", "synadm/0.46") in {(c["ip"], c["user_agent"]) for c in conns}


async def test_sightings_of_a_device_dendrite_deleted_are_not_shown(
        h: Harness, dendrite: DendriteDb) -> None:
    client = h.client
    dendrite.create_account("admin", account_type=3)
    dendrite.create_device("admin", "ADMINDEV", "tok-admin", ip="203.0.113.5",
                           user_agent="Element")
    dendrite.create_device("admin", "PHONE", "tok-phone", ip="203.0.113.6",
                           user_agent="Element Android")
    url = f"/_synapse/admin/v1/whois/@admin:{SERVER}"
    assert (await client.get(url, headers={"Authorization": "Bearer tok-phone",
                                           "User-Agent": "old client"})).status == 200
    await h.ctx.activity.flush()
    # Dendrite logs the phone out, and later a new phone logs in with the same device ID
    dendrite.delete_device("admin", "PHONE")
    new = int(time.time() * 1000) + 1_000
    dendrite.create_device("admin", "PHONE", "tok-phone-2", ip="192.0.2.9",
                           user_agent="Element Android 2", created_ts=new)
    body = await (await client.get(url, headers={"Authorization": "Bearer tok-admin"})).json()
    conns = body["devices"]["PHONE"]["sessions"][0]["connections"]
    assert conns == [{"ip": "192.0.2.9", "user_agent": "Element Android 2", "last_seen": new}]


def test_sqlite_layout_is_dendrites() -> None:
    """The fixture itself: a first start leaves the SQLite layout the research found."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        db = build_dendrite(DendriteDb("sqlite", "fresh", path=Path(folder) / "d.db"))
        conn = sqlite3.connect(db.path or "")
        try:
            accounts = conn.execute("SELECT sql FROM sqlite_master WHERE name ="
                                    " 'userapi_accounts'").fetchone()[0]
            devices = conn.execute("SELECT sql FROM sqlite_master WHERE name ="
                                   " 'userapi_devices'").fetchone()[0]
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master"
                                                  " WHERE type = 'index'")}
        finally:
            conn.close()
        assert "localpart TEXT NOT NULL PRIMARY KEY" in accounts
        assert "UNIQUE (localpart, device_id)" in devices
        assert "userapi_accounts_idx" not in indexes  # back only on the second start


async def test_reset_password_of_a_dendrite_account(h: Harness, dendrite: DendriteDb) -> None:
    """Dendrite's login reads the new hash; the devices go as Dendrite's own
    RemoveAllDevices removes them, and so do the package's sightings of them."""
    import bcrypt

    dendrite.create_account("admin", account_type=3)
    dendrite.create_device("admin", "ADMINDEV", "tok-admin", ip="203.0.113.5",
                           user_agent="Element")
    dendrite.create_account("erin")
    dendrite.create_device("erin", "E1", "tok-e1", ip="198.51.100.3", user_agent="Element")
    whois = await h.client.get(f"/_synapse/admin/v1/whois/@erin:{SERVER}",
                               headers={"Authorization": "Bearer tok-e1"})
    assert whois.status == 200
    await h.ctx.activity.flush()
    resp = await h.client.post(f"/_dendrite/admin/resetPassword/@erin:{SERVER}",
                               headers={"Authorization": "Bearer tok-admin"},
                               json={"password": "a new long password"})
    assert resp.status == 200
    ((hashed,),) = dendrite.select("password_hash", "erin", SERVER)
    assert bcrypt.checkpw(b"a new long password", hashed.encode())
    assert dendrite.select("devices_by_localpart", "erin", SERVER, "") == []
    assert dendrite.query("SELECT COUNT(*) FROM dendrite_admin_device_connections"
                          " WHERE localpart = 'erin'") == [(0,)]


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgres"])
def test_no_migration_touches_dendrites_tables_beside_dendrite(dialect_name: str) -> None:
    """Every feature's migration, as run beside Dendrite: no DDL on a userapi_* table
    (create, alter, drop, index on, foreign key into), no sequence of Dendrite's, no
    PRAGMA.  Such statements belong in Migration.owned (see storage/sql/schema.py)."""
    import re

    from dendrite_admin_ext.storage.sql.schema import MIGRATIONS, POSTGRES, SQLITE

    dialect = SQLITE if dialect_name == "sqlite" else POSTGRES
    forbidden = re.compile(
        r"(CREATE|ALTER|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|SEQUENCE|VIEW|TRIGGER)"
        r"(\s+IF\s+(NOT\s+)?EXISTS)?\s+\"?userapi_"
        r"|\bON\s+\"?userapi_\w+\s*\(|\bREFERENCES\s+\"?userapi_|\bPRAGMA\b",
        re.IGNORECASE)
    for migration in MIGRATIONS:
        for statement in migration.for_dialect(dialect, shared=True):
            assert not forbidden.search(statement), (migration.version, statement[:120])
    # and the same check finds what the package does when it owns the schema
    owned = [s for m in MIGRATIONS for s in m.for_dialect(dialect)]
    assert any(forbidden.search(s) for s in owned)
