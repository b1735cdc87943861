"""PostgreSQL going away while the API runs (SPEC 2): 503 M_UNKNOWN with Retry-After,
promptly, and recovery without a restart when it comes back.

Runs on a PostgreSQL of its own, since it stops and starts the server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dendrite_admin_ext.errors import StorageUnavailableError
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.postgres import PostgresStorage
from dendrite_admin_ext.storage.sql.ops import one
from dendrite_admin_ext.storage.types import AccountType
from dendrite_admin_ext.validation import Schemas

from .conftest import make_config, make_host_app, make_user
from .postgres import _wait_ready, local_cluster

pytestmark = pytest.mark.postgres

CONNECT_TIMEOUT = 2.0
STATEMENT_TIMEOUT = 3.0


async def test_outage_answers_503_then_recovers(aiohttp_client: Any,
                                                schemas: Schemas) -> None:
    with local_cluster() as cluster:
        storage = CoalescingStorage(PostgresStorage(
            cluster.dsn, pool_size=3, connect_timeout=CONNECT_TIMEOUT,
            statement_timeout=STATEMENT_TIMEOUT))
        app, _ctx = make_host_app(make_config(schemas), storage, schemas)
        client = await aiohttp_client(app)
        admin = await make_user(storage, "admin", AccountType.ADMIN)
        whois = f"/_synapse/admin/v1/whois/{admin.user_id}"
        # several pooled connections in use before the outage
        answers = await asyncio.gather(*(client.get(whois, headers=admin.auth)
                                          for _ in range(5)))
        assert [r.status for r in answers] == [200] * 5

        await asyncio.to_thread(cluster.stop, "fast")
        for _ in range(3):
            started = time.monotonic()
            resp = await client.get(whois, headers=admin.auth)
            elapsed = time.monotonic() - started
            assert resp.status == 503
            body = await resp.json()
            assert body["errcode"] == "M_UNKNOWN" and body["error"]
            assert int(resp.headers["Retry-After"]) > 0
            assert elapsed < CONNECT_TIMEOUT + STATEMENT_TIMEOUT
        # unauthenticated routes that touch storage fail the same way
        resp = await client.get("/_synapse/admin/v1/register")
        assert resp.status == 503

        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(_wait_ready, cluster.dsn)
        # the very first request after the return already succeeds: broken
        # connections were dropped, new ones are made on demand
        answers = await asyncio.gather(*(client.get(whois, headers=admin.auth)
                                          for _ in range(5)))
        assert [r.status for r in answers] == [200] * 5
        resp = await client.get("/_synapse/admin/v1/register")
        assert resp.status == 200


async def test_statement_timeout_is_enforced() -> None:
    with local_cluster() as cluster:
        storage = PostgresStorage(cluster.dsn, pool_size=2, connect_timeout=CONNECT_TIMEOUT,
                                  statement_timeout=0.5)
        await storage.open()
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError):
                await storage._run(one("SELECT pg_sleep(5)"), write=False)
            assert time.monotonic() - started < 3
            await storage.ping()  # the pool is still usable
        finally:
            await storage.close()
