"""The admin API mounted into a host application: routes resolve, the host keeps its
own routes and middleware, and admin auth applies to admin paths only."""

from __future__ import annotations

import pytest

from dendrite_admin_ext import MemoryStorage
from dendrite_admin_ext.routes import ROUTES, RouteSpec

from .conftest import Harness, HarnessFactory


async def test_host_routes_untouched(h: Harness) -> None:
    resp = await h.client.get("/_matrix/client/v3/ping")
    assert resp.status == 200
    assert await resp.json() == {"host": True}
    assert resp.headers["X-Host-Middleware"] == "1"
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_host_404_is_not_admin(h: Harness) -> None:
    resp = await h.client.get("/_matrix/client/v3/sync")
    assert resp.status == 404
    assert resp.content_type != "application/json"


@pytest.mark.parametrize("spec", ROUTES, ids=lambda r: f"{r.method} {r.full_path}")
async def test_every_route_resolves(h: Harness, spec: object) -> None:
    from dendrite_admin_ext.routes import RouteSpec
    assert isinstance(spec, RouteSpec)
    path = (spec.full_path.replace("{user_id:.+}", "@alice:test.example")
            .replace("{user:.+}", "alice").replace("{room_id:.+}", "!r:test.example")
            .replace("{user_id:[^/]+}", "@alice:test.example").replace("{txn_id}", "t1")
            .replace("{token}", "abc").replace("{device_id}", "DEVICE")
            .replace("{job_id}", "j1").replace("{delete_id}", "d1"))
    resp = await h.client.request(spec.method, path)
    # Resolves: not the 404/405 of an unknown route (which is M_UNRECOGNIZED).
    body = await resp.json()
    assert resp.content_type == "application/json"
    assert body.get("errcode") != "M_UNRECOGNIZED", (path, body)
    assert resp.headers["X-Host-Middleware"] == "1"


async def test_unknown_admin_path_is_json_404(h: Harness) -> None:
    for path in ("/_dendrite/admin/nope", "/_synapse/admin/v2/nope",
                 "/_matrix/client/r0/admin/x"):
        resp = await h.client.get(path)
        assert resp.status == 404
        assert await resp.json() == {"errcode": "M_UNRECOGNIZED",
                                     "error": "Unrecognized request"}


async def test_wrong_method_is_405_with_allow(h: Harness) -> None:
    resp = await h.client.delete("/_synapse/admin/v1/register")
    assert resp.status == 405
    assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_options_needs_no_auth(h: Harness) -> None:
    resp = await h.client.options("/_dendrite/admin/resetPassword/alice")
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


async def test_cors_on_errors(h: Harness) -> None:
    resp = await h.client.post("/_dendrite/admin/resetPassword/alice")
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_can_be_disabled(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"cors": False})
    resp = await h.client.get("/_synapse/admin/v1/register")
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_disabled_features_are_not_mounted(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration_shared_secret=None,
                              endpoints={"whois": False, "reset_password": False})
    admin = await h.user("root", admin=True)
    for method, path in [("GET", "/_synapse/admin/v1/register"),
                         ("GET", "/_matrix/client/v3/admin/whois/@root:test.example"),
                         ("POST", "/_dendrite/admin/resetPassword/root")]:
        resp = await h.client.request(method, path, headers=admin.auth)
        assert resp.status == 404, path
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


def test_setup_rejects_non_storage() -> None:
    from aiohttp import web

    from dendrite_admin_ext import parse_config, setup_admin
    with pytest.raises(TypeError):
        setup_admin(web.Application(), parse_config({"server_name": "x.org"}), object())  # type: ignore[arg-type]
    setup_admin(web.Application(), parse_config({"server_name": "x.org"}), MemoryStorage())


# -- HEAD wherever GET (SPEC 2) ---------------------------------------------------------

_GET_ROUTES = [r for r in ROUTES if r.method == "GET"]


def _concrete(path: str, user_id: str) -> str:
    """A GET path with its parameters filled in (a room nobody knows: no evacuation)."""
    return (path.replace("{user_id:.+}", user_id)
            .replace("{room_id:.+}", "!nowhere:test.example")
            .replace("{job_id}", "j1").replace("{delete_id}", "d1"))


@pytest.mark.parametrize("spec", _GET_ROUTES, ids=lambda r: f"HEAD {r.full_path}")
async def test_head_answers_as_get_without_body(h: Harness, spec: RouteSpec) -> None:
    admin = await h.user("root", admin=True)
    path = _concrete(spec.full_path, str(admin.user_id))
    for headers in (admin.auth, {}):
        got = await h.client.get(path, headers=headers)
        await got.read()
        head = await h.client.head(path, headers=headers)
        assert head.status == got.status, path
        assert await head.read() == b""
        for name in ("Content-Type", "Access-Control-Allow-Origin"):
            assert head.headers.get(name) == got.headers.get(name), name
        if spec.path in ("/health", "/openapi.json", "/v1/register") or got.status >= 400:
            assert head.headers["Content-Length"] == got.headers["Content-Length"]


async def test_head_where_no_get_is_405(h: Harness) -> None:
    resp = await h.client.head("/_synapse/admin/v1/send_server_notice")
    assert resp.status == 405
    assert "HEAD" not in resp.headers["Allow"]
    resp = await h.client.delete("/_synapse/admin/v1/register")
    assert "HEAD" in resp.headers["Allow"].replace(" ", "").split(",")
