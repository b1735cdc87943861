"""A throw-away PostgreSQL for the tests.

``DENDRITE_ADMIN_TEST_PG_DSN`` names an existing server (its role must be allowed to
create databases).  Otherwise the binaries are looked up (PATH, then
/usr/lib/postgresql/*/bin), and a cluster is created with initdb in a temporary folder
and started with pg_ctl on a free loopback port (unix sockets in that folder too).
initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
system user.  When no PostgreSQL can be had the tests that need it are skipped — but
not under CI (``CI`` set), where they fail: CI must really run them.

Every test gets its own database, created from a template that already has the schema.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.sql import drive_sync
from dendrite_admin_ext.storage.sql.schema import POSTGRES

__all__ = [
    "PgCluster", "PgServer", "find_pg_bin", "local_cluster", "pg_dsn", "pg_server",
    "pg_shared_database", "unavailable",
]

ENV_DSN = "DENDRITE_ADMIN_TEST_PG_DSN"


def unavailable(reason: str) -> None:
    """Skip, except under CI where a missing PostgreSQL is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def find_pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One initdb'd cluster in its own folder, started and stopped with pg_ctl."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="dendrite-admin-pg-"))
        self.data = self.tmp / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self._ensure_postgres_user()
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.tmp, "postgres", "postgres")

    @staticmethod
    def _ensure_postgres_user() -> None:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"],
                           check=True, capture_output=True)

    def _run(self, *args: str, timeout: float = 60) -> None:
        out = subprocess.run([*self.as_user, *args], capture_output=True, text=True,
                             timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{out.stdout}\n{out.stderr}")

    def init(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        # Durability is pointless for throw-away data; speed is not.
        opts = (f"-h 127.0.0.1 -p {self.port} -k {self.tmp} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.tmp / "server.log"), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "stop")

    def running(self) -> bool:
        out = subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D",
                              str(self.data), "status"], capture_output=True, check=False)
        return out.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"


class PgServer:
    """A PostgreSQL the tests may create databases on."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.template = "dendrite_admin_tmpl_" + secrets.token_hex(4)
        self._execute(f"CREATE DATABASE {self.template}")
        # Synchronously (no event loop here): this may run inside an async fixture.
        conn = psycopg2.connect(self.dsn_for(self.template), connect_timeout=10)
        try:
            with conn, conn.cursor() as cur:
                drive_sync(cur, POSTGRES, PostgresStorage(self.admin_dsn)._migrate())
        finally:
            conn.close()

    def _execute(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def dsn_for(self, dbname: str) -> str:
        return str(psycopg2.extensions.make_dsn(self.admin_dsn, dbname=dbname))

    def new_database(self, *, empty: bool = False) -> str:
        """A new database: migrated already, or ``empty`` (no tables at all)."""
        name = "dendrite_admin_t_" + secrets.token_hex(6)
        # Names are generated above, never user input; identifiers cannot be parameters.
        template = "template1" if empty else self.template
        self._execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.drop_database(self.template)


def _wait_ready(dsn: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(dsn, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def local_cluster() -> Iterator[PgCluster]:
    """A fresh cluster of our own (for tests that stop and start the server)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        unavailable("no initdb/pg_ctl found")
        raise AssertionError("unreachable")
    cluster = PgCluster(bin_dir)
    try:
        cluster.init()
        cluster.start()
        _wait_ready(cluster.dsn)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    env_dsn = os.environ.get(ENV_DSN)
    if env_dsn:
        server = PgServer(env_dsn)
        yield server
        server.close()
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        unavailable(f"no PostgreSQL: set {ENV_DSN} or install initdb/pg_ctl")
    try:
        cm = local_cluster()
        cluster = cm.__enter__()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"could not start a PostgreSQL: {exc}")
        raise
    try:
        server = PgServer(cluster.dsn)
        yield server
        server.close()
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def pg_shared_database(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.new_database()
    yield pg_server.dsn_for(name)
    pg_server.drop_database(name)


@pytest.fixture
def pg_dsn(pg_shared_database: str) -> str:
    """The DSN of a migrated database with empty tables.

    Emptying one database (a TRUNCATE) costs a few milliseconds where creating one per
    test costs half a second; tests that need a database of their own (migrations,
    several servers) use :meth:`PgServer.new_database`."""
    conn = psycopg2.connect(pg_shared_database, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET lock_timeout = '10s'")
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'dendrite_admin_schema_version'")
            tables = [row[0] for row in cur.fetchall()]
            cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
            cur.execute("ALTER SEQUENCE userapi_device_session_id_seq RESTART")
    finally:
        conn.close()
    return pg_shared_database
