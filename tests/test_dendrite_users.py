"""Synapse's user administration (SPEC 9) on a database Dendrite created (SPEC 8): the
list, details and changes read and write Dendrite's own rows, which Dendrite's own
statements still read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.validation import Schemas

from .dendrite_schema import SERVER, DendriteDb
from .test_dendrite_admin_api import ADMIN, ALICE, AUTH, _harness
from .test_dendrite_shared import LAYOUTS, _new_db


@pytest.fixture(params=LAYOUTS, ids=lambda p: "-".join(p))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> DendriteDb:
    engine, layout = request.param
    return _new_db(request, tmp_path, engine, layout)


async def test_user_admin_on_dendrites_rows(aiohttp_client: Any, schemas: Schemas,
                                            db: DendriteDb, tmp_path: Path) -> None:
    h = await _harness(aiohttp_client, schemas, db, tmp_path, None)
    db.create_account("bob")
    rows = db.query("SELECT localpart FROM userapi_accounts WHERE server_name = $1"
                    " AND NOT is_deactivated", SERVER)
    expected = sorted(f"@{r[0]}:{SERVER}" for r in rows)
    assert {ADMIN, ALICE, f"@bob:{SERVER}"} <= set(expected)
    # Paged two at a time through the keyset cursor: every account once, in order.
    seen: list[str] = []
    params = {"order_by": "name", "limit": "2"}
    while True:
        resp = await h.client.get("/_synapse/admin/v2/users", headers=AUTH, params=params)
        assert resp.status == 200, await resp.json()
        page = await resp.json()
        assert page["total"] == len(expected)
        seen += [u["name"] for u in page["users"]]
        if "next_token" not in page:
            break
        params = {"order_by": "name", "limit": "2", "from": page["next_token"]}
    assert seen == expected
    details = await (await h.client.get(f"/_synapse/admin/v2/users/{ALICE}",
                                        headers=AUTH)).json()
    assert (details["name"], details["admin"], details["deactivated"]) == (
        ALICE, False, False)
    # a change made here is one Dendrite reads back
    resp = await h.client.put(f"/_synapse/admin/v2/users/{ALICE}", headers=AUTH,
                              json={"displayname": "Alice A.", "admin": True})
    assert resp.status == 200, await resp.json()
    assert db.select("profile", "alice", SERVER)[0][2] == "Alice A."
    assert db.select("account", "alice", SERVER)[0][3] == 3
    resp = await h.client.post(f"/_synapse/admin/v1/reset_password/{ALICE}", headers=AUTH,
                               json={"new_password": "a new long password"})
    assert resp.status == 200
    stored = db.query("SELECT password_hash FROM userapi_accounts WHERE localpart = $1",
                      "alice")[0][0]
    assert isinstance(stored, str) and stored.startswith("$2")
