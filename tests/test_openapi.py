"""The OpenAPI document stays in step with the route table and the schema files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from dendrite_admin_ext.openapi import openapi_path
from dendrite_admin_ext.routes import ROUTES, enabled_routes
from dendrite_admin_ext.validation import Schemas

from .conftest import Harness, HarnessFactory, make_config

ROOT = Path(__file__).resolve().parent.parent
DOC = "/_dendrite/admin/openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


async def fetch(h: Harness) -> dict[str, Any]:
    admin = await h.user("boss", admin=True)
    r = await h.client.get(DOC, headers=admin.auth)
    assert r.status == 200
    doc: dict[str, Any] = await r.json()
    return doc


def test_path_conversion() -> None:
    assert openapi_path("/whois/{user_id:.+}") == ("/whois/{user_id}", ["user_id"])
    assert openapi_path("/a/{x}/b/{y:[0-9]{1,3}}") == ("/a/{x}/b/{y}", ["x", "y"])


async def test_every_enabled_route_and_nothing_else(h: Harness, schemas: Schemas) -> None:
    doc = await fetch(h)
    validate(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"] == "3.1.0"
    expected = {(r.method, openapi_path(r.full_path)[0]) for r in enabled_routes(h.ctx.config)}
    assert operations(doc) == expected
    assert len(expected) == len(enabled_routes(h.ctx.config))  # no two routes collapsed
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for spec in enabled_routes(h.ctx.config):
        op = doc["paths"][openapi_path(spec.full_path)[0]][spec.method.lower()]
        assert op["x-access"] == spec.access.value
        assert (op["security"] == []) == (spec.access.value == "public")
        if spec.body_schema is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            name = ref.rsplit("/", 1)[1]
            # The schema file itself, not a copy that could drift.
            assert doc["components"]["schemas"][name] == schemas.documents[spec.body_schema]
        if spec.rate_limited:
            assert "429" in op["responses"]
        assert (op.get("x-audit-action") is None) == (spec.audit is None)


async def test_disabled_features_are_absent(harness_factory: HarnessFactory,
                                            schemas: Schemas) -> None:
    h = await harness_factory(server_notices={"enabled": False},
                              endpoints={"evacuate": False},
                              http={"access_token_query_param": False})
    doc = await fetch(h)
    validate(doc)
    paths = " ".join(doc["paths"])
    assert "send_server_notice" not in paths and "evacuate" not in paths
    assert "accessTokenQuery" not in doc["components"]["securitySchemes"]
    all_on = make_config(schemas)
    assert len(operations(doc)) < len(enabled_routes(all_on)) <= len(ROUTES)


async def test_admins_only_and_switchable(harness_factory: HarnessFactory) -> None:
    h = await harness_factory()
    alice = await h.user("alice")
    assert (await h.client.get(DOC, headers=alice.auth)).status == 403
    assert (await h.client.get(DOC)).status == 401
    off = await harness_factory(endpoints={"openapi": False})
    admin = await off.user("boss", admin=True)
    r = await off.client.get(DOC, headers=admin.auth)
    assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")


@pytest.mark.parametrize("args", [[], ["-c", str(ROOT / "example_config.yaml")]])
def test_cli_prints_it(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "dendrite_admin_ext", "openapi", *args],
                         capture_output=True, text=True, check=True, timeout=60)
    doc = json.loads(out.stdout)
    validate(doc)
    assert "/_dendrite/admin/health" in doc["paths"]
