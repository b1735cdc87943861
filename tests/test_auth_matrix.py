"""SPEC section 3 as a matrix: every route of ``routes.ROUTES`` by every kind of caller.

The rows are generated from the route table, so a route added there is checked here
without anyone remembering to; a route whose feature this file does not switch on fails
:func:`test_every_route_is_mounted` instead of silently escaping the matrix.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse

from dendrite_admin_ext.auth import Access
from dendrite_admin_ext.routes import ROUTES, RouteSpec, enabled_routes
from dendrite_admin_ext.storage.types import AccountType

from .conftest import SERVER, Harness, HarnessFactory, User

# Every feature on, so that every route of the table is mounted.
MATRIX_CONFIG: dict[str, Any] = {
    "endpoints": {"evacuate": True, "reset_password": True, "whois": True, "audit": True,
                  "openapi": True, "health": True},
    "server_notices": {"enabled": True},
    # Rate limits must not turn a matrix row into a 429.
    "registration": {"rate_limit": {"per_second": 1000, "burst": 1000}},
}

CALLERS = ["none", "unknown", "user", "guest", "deactivated_admin", "admin_header",
           "admin_query"]

# SPEC section 3: (status, errcode) for callers that must be refused on admin routes.
ADMIN_REFUSALS = {
    "none": (401, "M_MISSING_TOKEN"),
    "unknown": (401, "M_UNKNOWN_TOKEN"),
    "user": (403, "M_FORBIDDEN"),
    "guest": (403, "M_GUEST_ACCESS_FORBIDDEN"),
    "deactivated_admin": (401, "M_UNKNOWN_TOKEN"),
}
AUTH_ERRCODES = {"M_MISSING_TOKEN", "M_UNKNOWN_TOKEN", "M_GUEST_ACCESS_FORBIDDEN"}

_PARAM = re.compile(r"\{(\w+)(?::[^{}]*)?\}")


def concrete_path(spec: RouteSpec, values: dict[str, str]) -> str:
    """The route's path with each ``{name}`` / ``{name:regex}`` filled in."""
    return _PARAM.sub(lambda m: values.get(m.group(1), "x"), spec.full_path)


@dataclass
class Cast:
    """The accounts the matrix acts as."""

    admin: User
    user: User
    guest: User
    deactivated: User
    target: User

    def path_values(self) -> dict[str, str]:
        target = str(self.target.user_id)
        return {"user_id": target, "user": target, "room_id": f"!nosuchroom:{SERVER}",
                "txn_id": "matrix-txn"}


async def make_cast(h: Harness) -> Cast:
    admin = await h.user("root", admin=True)
    deactivated = await h.user("former", admin=True)
    # Every test backend has this helper (MemoryStorage, tests/sql_backends.py).
    flags: Callable[..., None] = h.storage.set_account_flags  # type: ignore[attr-defined]
    flags(deactivated.user_id, is_deactivated=True)
    return Cast(admin=admin, user=await h.user("bob"),
                guest=await h.user("visitor", account_type=AccountType.GUEST),
                deactivated=deactivated, target=await h.user("alice"))


def request_for(cast: Cast, caller: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) of one caller."""
    tokens = {"unknown": "no-such-token", "user": cast.user.token, "guest": cast.guest.token,
              "deactivated_admin": cast.deactivated.token,
              "admin_header": cast.admin.token}
    if caller == "none":
        return {}, {}
    if caller == "admin_query":
        return {}, {"access_token": cast.admin.token}
    return {"Authorization": f"Bearer {tokens[caller]}"}, {}


Send = Callable[[str], Awaitable[tuple[int, dict[str, Any]]]]


def sender(h: Harness, cast: Cast, spec: RouteSpec) -> Send:
    path = concrete_path(spec, cast.path_values())

    async def send(caller: str) -> tuple[int, dict[str, Any]]:
        headers, query = request_for(cast, caller)
        # No body: an admin row must get past auth and then fail on (or ignore) the
        # body, so the matrix changes nothing it could not undo.
        resp: ClientResponse = await h.client.request(spec.method, path, headers=headers,
                                                      params=query)
        assert resp.content_type == "application/json", (caller, resp.content_type)
        body = await resp.json()
        assert isinstance(body, dict)
        if resp.status >= 400:
            assert isinstance(body.get("errcode"), str), body
            assert isinstance(body.get("error"), str), body
        return resp.status, body

    return send


@pytest.fixture
async def mh(harness_factory: HarnessFactory) -> Harness:
    return await harness_factory(**MATRIX_CONFIG)


def test_every_route_is_mounted(schemas: Any) -> None:
    from .conftest import make_config

    mounted = enabled_routes(make_config(schemas, **MATRIX_CONFIG))
    missing = [f"{r.method} {r.full_path} ({r.feature})" for r in ROUTES if r not in mounted]
    assert not missing, f"switch these features on in MATRIX_CONFIG: {missing}"


def _route_id(spec: RouteSpec) -> str:
    return f"{spec.method} {spec.full_path}"


@pytest.mark.parametrize("spec", [r for r in ROUTES if r.access is Access.ADMIN], ids=_route_id)
async def test_admin_route(mh: Harness, spec: RouteSpec) -> None:
    cast = await make_cast(mh)
    send = sender(mh, cast, spec)
    for caller, (status, errcode) in ADMIN_REFUSALS.items():
        got_status, body = await send(caller)
        assert (got_status, body["errcode"]) == (status, errcode), caller
        if errcode == "M_UNKNOWN_TOKEN":
            assert body.get("soft_logout") is False, caller
        if caller == "user":
            assert body["error"] == "This API can only be used by admin users."
    for caller in ("admin_header", "admin_query"):
        got_status, body = await send(caller)
        assert got_status not in (401, 403), (caller, body)
        assert body.get("errcode") not in {*AUTH_ERRCODES, "M_UNRECOGNIZED"}, (caller, body)
    # The matrix itself must not have logged anybody out.
    assert await mh.storage.get_token_owner(cast.admin.token) is not None


# Client login's USER routes are about the caller (whoami, logout) or public facts
# (profile), not self-or-admin: tests/test_client_login.py walks them.
@pytest.mark.parametrize("spec", [r for r in ROUTES if r.access is Access.USER
                                  and r.feature != "client_login"], ids=_route_id)
async def test_user_route_self_or_admin(mh: Harness, spec: RouteSpec) -> None:
    cast = await make_cast(mh)
    send = sender(mh, cast, spec)
    for caller in ("none", "unknown", "guest", "deactivated_admin"):
        got_status, body = await send(caller)
        assert (got_status, body["errcode"]) == ADMIN_REFUSALS[caller], caller
    # A plain user asking about somebody else: refused before any lookup.
    got_status, body = await send("user")
    assert (got_status, body["errcode"]) == (403, "M_FORBIDDEN")
    for caller in ("admin_header", "admin_query"):
        got_status, body = await send(caller)
        assert got_status == 200, (caller, body)
    # ... and about themself: allowed.
    own = concrete_path(spec, {**cast.path_values(), "user_id": str(cast.user.user_id),
                               "user": str(cast.user.user_id)})
    resp = await mh.client.request(spec.method, own, headers=cast.user.auth)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("spec", [r for r in ROUTES if r.access is Access.PUBLIC],
                         ids=_route_id)
async def test_public_route_ignores_tokens(mh: Harness, spec: RouteSpec) -> None:
    cast = await make_cast(mh)
    send = sender(mh, cast, spec)
    outcomes = {}
    for caller in CALLERS:
        got_status, body = await send(caller)
        assert got_status not in (401,), (caller, body)
        assert body.get("errcode") not in AUTH_ERRCODES, (caller, body)
        outcomes[caller] = (got_status, body.get("errcode"))
    assert len(set(outcomes.values())) == 1, outcomes


@pytest.mark.parametrize("spec", [r for r in ROUTES if r.access is not Access.PUBLIC
                                  and not r.allow_locked], ids=_route_id)
async def test_locked_account_is_refused_with_soft_logout(mh: Harness,
                                                         spec: RouteSpec) -> None:
    """SPEC 10: a locked account gets 401 M_USER_LOCKED with soft_logout on every
    authenticated route, and keeps its token, so unlocking restores access."""
    cast = await make_cast(mh)
    send = sender(mh, cast, spec)
    await mh.storage.set_locked(cast.admin.user_id, True)
    for caller in ("admin_header", "admin_query"):
        got_status, body = await send(caller)
        assert (got_status, body["errcode"], body.get("soft_logout")) == (
            401, "M_USER_LOCKED", True), caller
    await mh.storage.set_locked(cast.admin.user_id, False)
    got_status, body = await send("admin_header")
    assert got_status != 401 and body.get("errcode") != "M_USER_LOCKED", body


@pytest.mark.parametrize("spec", [r for r in ROUTES if r.allow_locked], ids=_route_id)
async def test_locked_account_may_still_log_out(mh: Harness, spec: RouteSpec) -> None:
    """Matrix spec "Account locking": every API but logout and logout/all answers a
    locked account 401 M_USER_LOCKED; those two still work, and end the session."""
    cast = await make_cast(mh)
    send = sender(mh, cast, spec)
    await mh.storage.set_locked(cast.admin.user_id, True)
    got_status, body = await send("admin_header")
    assert got_status == 200, body
    got_status, body = await send("admin_header")
    assert (got_status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
