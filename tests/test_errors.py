"""SPEC section 2: bodies, sizes, percent-decoding, 500s that leak nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from dendrite_admin_ext.routes import ROUTES

from .conftest import Harness, HarnessFactory

RESET = "/_dendrite/admin/resetPassword/alice"


@pytest.fixture
async def admin_h(h: Harness) -> tuple[Harness, dict[str, str]]:
    admin = await h.user("root", admin=True)
    await h.user("alice")
    return h, admin.auth


@pytest.mark.parametrize(("body", "errcode"), [
    (b"", "M_NOT_JSON"),
    (b"{not json", "M_NOT_JSON"),
    (b'{"password": NaN}', "M_NOT_JSON"),
    (b'{"password": Infinity}', "M_NOT_JSON"),
    (b'{"password": "\xff\xfe"}', "M_NOT_JSON"),
    # Valid to json.loads, but deeper than its recursion limit, a lone surrogate
    # nothing can hash or store, an integer beyond 64 bits, a number that overflows to
    # infinity: 400, never 500.
    (b'{"password": ' + b"[" * 1100 + b"]" * 1100 + b"}", "M_NOT_JSON"),
    (b'{"password": "long enough \\ud800"}', "M_NOT_JSON"),
    (b'{"password": "long enough", "n": 123456789012345678901234}', "M_NOT_JSON"),
    (b'{"password": "long enough", "n": 1e400}', "M_NOT_JSON"),
    (b'{"password": "long enough", "n": [-1.5E+999]}', "M_NOT_JSON"),
    (b"[]", "M_BAD_JSON"),
    (b'"password"', "M_BAD_JSON"),
    (b"{}", "M_MISSING_PARAM"),
    (b'{"password": 5}', "M_BAD_JSON"),
    (b'{"password": "longenough", "logout_devices": "yes"}', "M_BAD_JSON"),
])
async def test_body_errors(admin_h: tuple[Harness, dict[str, str]], body: bytes,
                           errcode: str) -> None:
    h, auth = admin_h
    resp = await h.client.post(RESET, data=body, headers=auth)
    assert resp.status == 400
    got = await resp.json()
    assert got["errcode"] == errcode
    assert isinstance(got["error"], str) and got["error"]


async def test_missing_param_names_it(admin_h: tuple[Harness, dict[str, str]]) -> None:
    h, auth = admin_h
    got = await (await h.client.post(RESET, json={}, headers=auth)).json()
    assert "password" in got["error"]


async def test_too_large_by_content_length(admin_h: tuple[Harness, dict[str, str]]) -> None:
    h, auth = admin_h
    resp = await h.client.post(RESET, data=b"x" * 70000, headers=auth)
    assert resp.status == 413
    assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_too_large_chunked(admin_h: tuple[Harness, dict[str, str]]) -> None:
    h, auth = admin_h

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 8192

    resp = await h.client.post(RESET, data=gen(), headers=auth)
    assert resp.status == 413
    assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_body_limit_configurable(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"max_body_size": 2048})
    admin = await h.user("root", admin=True)
    await h.user("alice")
    big = {"password": "p" * 100, "pad": "x" * 3000}
    resp = await h.client.post(RESET, json=big, headers=admin.auth)
    assert resp.status == 413
    assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_unexpected_failure_is_500_without_leak(
        harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture) -> None:
    h = await harness_factory()
    admin = await h.user("root", admin=True)

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    h.storage.get_devices = boom  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.ERROR):
        resp = await h.client.get("/_synapse/admin/v1/whois/@root:test.example",
                                  headers=admin.auth)
    assert resp.status == 500
    body = await resp.json()
    assert body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert "secret internal detail" in caplog.text  # in the log only


async def test_storage_unavailable_is_503(h: Harness) -> None:
    from dendrite_admin_ext.errors import StorageUnavailableError

    async def down(*args: object, **kwargs: object) -> None:
        raise StorageUnavailableError("db gone")

    h.storage.add_nonce = down  # type: ignore[method-assign]
    resp = await h.client.get("/_synapse/admin/v1/register")
    assert resp.status == 503
    assert (await resp.json())["errcode"] == "M_UNKNOWN"
    assert int(resp.headers["Retry-After"]) > 0


async def test_every_admin_route_errors_are_json(h: Harness) -> None:
    for spec in ROUTES:
        path = (spec.full_path.replace("{user_id:.+}", "@x:test.example")
                .replace("{user:.+}", "x").replace("{room_id:.+}", "!r:test.example")
                .replace("{user_id:[^/]+}", "@alice:test.example").replace("{txn_id}", "t"))
        resp = await h.client.request(spec.method, path, data=b"{bad")
        assert resp.content_type == "application/json", path
        if resp.status >= 400:
            body = await resp.json()
            assert set(body) >= {"errcode", "error"}, path


def test_json_error_helper() -> None:
    from dendrite_admin_ext.errors import LimitExceeded
    resp = LimitExceeded(2.2).response()
    assert isinstance(resp, web.Response)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "3"


# -- one message per situation, defined once (messages.py) ------------------------------

def test_no_error_text_is_written_outside_the_message_table() -> None:
    """Every Matrix error raised by the package takes its text from messages.py: a
    literal (or f-string) passed to an error class anywhere else is a second wording
    waiting to drift."""
    import ast
    from pathlib import Path

    from dendrite_admin_ext import errors, limits

    error_classes = {name for module in (errors, limits)
                     for name, value in vars(module).items()
                     if isinstance(value, type) and issubclass(value, errors.MatrixError)}
    assert "RequestTimeout" in error_classes
    package = Path(errors.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "messages.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in error_classes and node.args
                    and isinstance(node.args[0], ast.Constant | ast.JoinedStr)):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []


async def test_one_wording_for_not_an_admin(h: Harness) -> None:
    """A non-admin refused an admin endpoint, or whois of someone else: one text."""
    alice = await h.user("alice")
    await h.user("bob")
    texts = set()
    for method, path in (("POST", "/_dendrite/admin/resetPassword/bob"),
                         ("GET", "/_synapse/admin/v1/whois/@bob:test.example"),
                         ("GET", "/_matrix/client/v3/admin/whois/@bob:test.example"),
                         ("POST", "/_dendrite/admin/evacuateUser/@bob:test.example"),
                         ("GET", "/_dendrite/admin/auditLog")):
        resp = await h.client.request(method, path, headers=alice.auth, json={})
        body = await resp.json()
        assert (resp.status, body["errcode"]) == (403, "M_FORBIDDEN"), path
        texts.add(body["error"])
    assert texts == {"This API can only be used by admin users."}


# -- query parameters: one reader (query_params.py) -------------------------------------
@pytest.mark.parametrize("path", ["/_synapse/admin/v2/users", "/_synapse/admin/v1/rooms",
                                  "/_dendrite/admin/jobs", "/_dendrite/admin/auditLog"])
@pytest.mark.parametrize("limit", ["9" * 5000, "-1", "1e3", "x", "99999999999999999999"])
async def test_a_malformed_limit_is_400_everywhere(h: Harness, path: str,
                                                   limit: str) -> None:
    """A digit string too long for Python to convert was a 500 on the user list."""
    admin = await h.user("admin", admin=True)
    resp = await h.client.get(path, params={"limit": limit}, headers=admin.auth)
    assert resp.status == 400
    body = await resp.json()
    assert body["errcode"] == "M_INVALID_PARAM" and "limit" in body["error"]
