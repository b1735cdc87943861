"""Property-based fuzzing of every route of ``routes.ROUTES``: request bodies (from each
endpoint's own JSON Schema, mutated, arbitrary JSON and arbitrary bytes), path
parameters, unknown paths and tokens.

For every request: no 5xx; every error is JSON ``{"errcode", "error"}`` with the status
its errcode implies; and a rejected request changes nothing in storage (compared with a
snapshot taken just before).  Examples per test come from the hypothesis profile
(``ci`` by default; ``HYPOTHESIS_PROFILE=long`` for a long run, see conftest.py).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import assume, event, given
from hypothesis import strategies as st

from dendrite_admin_ext.routes import PREFIXES, ROUTES, RouteSpec
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.validation import Schemas

from .conftest import SERVER, User, make_config, make_host_app, make_room, make_user

# The status each errcode may come with (SPEC sections 2-4).  5xx never.
STATUS_OF: dict[str, set[int]] = {
    "M_MISSING_TOKEN": {401}, "M_UNKNOWN_TOKEN": {401},
    "M_FORBIDDEN": {403}, "M_GUEST_ACCESS_FORBIDDEN": {403},
    "M_NOT_FOUND": {404}, "M_UNRECOGNIZED": {404, 405},
    "M_TOO_LARGE": {413}, "M_LIMIT_EXCEEDED": {429},
    **{code: {400} for code in ("M_NOT_JSON", "M_BAD_JSON", "M_MISSING_PARAM",
                                "M_INVALID_PARAM", "M_WEAK_PASSWORD", "M_INVALID_USERNAME",
                                "M_USER_IN_USE", "M_UNKNOWN")},
}

FUZZ_CONFIG: dict[str, Any] = {
    "registration": {"rate_limit": {"per_second": 0}},
    "server_notices": {"enabled": True},
}

_PARAM = re.compile(r"\{(\w+)(?::[^{}]*)?\}")


def snapshot(storage: MemoryStorage) -> Any:
    """Everything a request could change, except what every request may touch:
    nonces (consumed even by failing registrations), device activity and the audit
    trail (refusals are recorded)."""
    return copy.deepcopy((
        {key: (row.account, row.password_hash,
               sorted((d.device_id, d.access_token, d.display_name)
                      for d in row.devices.values()))
         for key, row in storage.accounts.items()},
        dict(storage.tokens), dict(storage.profiles),
        {rid: (r.depth, dict(r.state), dict(r.members)) for rid, r in storage.rooms.items()},
        len(storage.events), storage.account_data, dict(storage.notice_rooms),
        {key: event for key, (event, _ts) in storage.notice_txns.items()},
        dict(storage.registration_tokens), dict(storage.token_sessions),
    ))


async def jobs_settled(storage: MemoryStorage) -> None:
    """Jobs (room deletion, broadcast) that earlier accepted requests started run in
    the background: let them end before the next snapshot, their work is not the next
    request's."""
    for _ in range(2000):
        if all(j.status not in ("scheduled", "active") for j in storage.jobs.values()):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("background jobs did not end")


@dataclass
class Fuzz:
    client: TestClient[web.Request, web.Application]
    storage: MemoryStorage
    admin: User
    room_id: str

    async def check(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                    data: bytes | None = None) -> tuple[int, Any]:
        await jobs_settled(self.storage)
        before = snapshot(self.storage)
        resp = await self.client.request(method, path, headers=headers, data=data)
        raw = await resp.read()
        where = f"{method} {path} -> {resp.status}: {raw[:300]!r}"
        assert resp.status < 500, where
        assert resp.content_type == "application/json", where
        body = json.loads(raw)
        event(f"{resp.status} {body.get('errcode', '') if isinstance(body, dict) else ''}")
        if resp.status >= 400:
            assert isinstance(body, dict), where
            assert isinstance(body.get("errcode"), str), where
            assert isinstance(body.get("error"), str), where
            assert resp.status in STATUS_OF.get(body["errcode"], set()), where
            assert snapshot(self.storage) == before, f"state changed by a refusal: {where}"
        return resp.status, body

    def path(self, spec: RouteSpec, **values: str) -> str:
        defaults = {"user": "alice", "user_id": f"@alice:{SERVER}", "room_id": self.room_id,
                    "txn_id": "fuzz-txn", "token": "fuzz-token"}
        return _PARAM.sub(lambda m: values.get(m.group(1), defaults.get(m.group(1), "x")),
                          spec.full_path)

    def auth(self) -> dict[str, str]:
        return self.admin.auth


@pytest.fixture
async def fuzz(aiohttp_client: Callable[..., Awaitable[Any]], schemas: Schemas) -> Fuzz:
    storage = MemoryStorage()
    app, _ctx = make_host_app(make_config(schemas, **FUZZ_CONFIG), storage, schemas)
    client = await aiohttp_client(app)
    admin = await make_user(storage, "root", _admin_type())
    await make_user(storage, "alice")
    await make_user(storage, "bob")
    room_id = await make_room(storage, f"@root:{SERVER}",
                              joined=[f"@alice:{SERVER}", f"@bob:{SERVER}"])
    from dendrite_admin_ext.storage.types import RegistrationToken
    await storage.create_registration_token(RegistrationToken("fuzz-token", 3))
    return Fuzz(client, storage, admin, room_id)


def _admin_type() -> Any:
    from dendrite_admin_ext.storage.types import AccountType

    return AccountType.ADMIN


# -- strategies ----------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)

# Not JSON, or JSON that Python's parser would otherwise accept too eagerly.
odd_bodies = st.sampled_from([
    b"", b"NaN", b"Infinity", b"-Infinity", b'{"password": NaN}', b"\xff\xfe{}", b"[]",
    b"null", b"{", b'{"a": 1}garbage', "\"caf\u00e9\"".encode("latin-1"), b"\x00",
]) | st.integers(60_000, 70_000).map(lambda n: b'{"password": "' + b"x" * n + b'"}')


def _merge(schema: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    for key, value in extra.items():
        if key == "properties":
            props = dict(out.get("properties", {}))
            for name, sub in value.items():
                props[name] = _merge(props.get(name, {}), sub)
            out["properties"] = props
        elif key == "required":
            out["required"] = sorted({*out.get("required", []), *value})
        else:
            out[key] = value
    return out


# Known values for properties of these names, so that some requests get all the way.
KNOWN = [f"@alice:{SERVER}", f"@bob:{SERVER}", f"@root:{SERVER}", f"@nobody:{SERVER}",
         "@alice:remote.example", f"@_server:{SERVER}"]
HINTS: dict[str, st.SearchStrategy[Any]] = {"user_id": st.sampled_from(KNOWN)}


def from_json_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values that mostly satisfy ``schema``: the keywords our request schemas use
    (type, properties, required, lengths, pattern, const, enum, and an if/then whose
    ``then`` is folded in).  hypothesis-jsonschema would do this in general, but its
    current release does not work with this hypothesis version."""
    if "then" in schema:
        schema = _merge({k: v for k, v in schema.items() if k not in ("if", "then")},
                        schema["then"])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type", ["string", "boolean", "object", "null", "integer"])
    options: list[st.SearchStrategy[Any]] = []
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind == "string":
            if "pattern" in schema:
                options.append(st.from_regex(schema["pattern"], fullmatch=True).filter(
                    lambda v: len(v) <= schema.get("maxLength", 300)))
            else:
                options.append(st.text(min_size=schema.get("minLength", 0),
                                       max_size=min(schema.get("maxLength", 40), 300)))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "null":
            options.append(st.none())
        elif kind in ("integer", "number"):
            options.append(st.integers(-(2**53), 2**53))
        elif kind == "object":
            props = schema.get("properties")
            if not props:
                options.append(st.dictionaries(st.text(max_size=12), json_values, max_size=4))
                continue
            required = set(schema.get("required", []))
            options.append(st.fixed_dictionaries(
                {k: from_json_schema(v, k) for k, v in props.items() if k in required},
                optional={k: from_json_schema(v, k) for k, v in props.items()
                          if k not in required}))
        elif kind == "array":
            options.append(st.lists(json_values, max_size=4))
    if name in HINTS:
        options.append(HINTS[name])
    return st.one_of(options)


def body_strategy(schemas: Schemas, name: str) -> st.SearchStrategy[bytes]:
    document = dict(schemas.documents[name])
    valid = from_json_schema(document)
    properties = sorted(document.get("properties", {}))
    mutated = st.builds(lambda base, key, value: {**base, key: value}, valid,
                        st.sampled_from(properties), json_values)
    dropped = st.builds(lambda base, key: {k: v for k, v in base.items() if k != key}, valid,
                        st.sampled_from(properties))
    as_json = (valid | mutated | dropped | json_values).map(
        lambda value: json.dumps(value).encode())
    return as_json | odd_bodies | st.binary(max_size=64)


# Identifiers near the Matrix grammar, and garbage.
_id_chars = st.sampled_from(list("abcz09._=-/+@!:#$%?& \u00e9\u0000\u202eA"))
identifierish = st.builds(
    lambda sigil, local, server: f"{sigil}{local}:{server}",
    st.sampled_from(["@", "!", "#", "$", ""]), st.text(_id_chars, max_size=20),
    st.sampled_from([SERVER, "remote.example", "", "[::1]:8448", "bad host", SERVER + ":80"]))
path_values = (identifierish | st.text(max_size=40) | st.just("a" * 300)
               | st.just(f"@{'a' * 260}:{SERVER}") | st.sampled_from(["alice", "bob", *KNOWN]))


def encode_path_value(value: str, raw: bool) -> str:
    # raw: let the client quote what it must; otherwise percent-encode everything.
    return value if raw and "?" not in value and "#" not in value else quote(value, safe="")


BODY_ROUTES = [r for r in ROUTES if r.body_schema is not None]
PARAM_ROUTES = [r for r in ROUTES if _PARAM.search(r.path)]


def _route_id(spec: RouteSpec) -> str:
    return f"{spec.method} {spec.full_path}"


# -- tests ---------------------------------------------------------------------------------
# One app per test (the fixture), many examples through it: @given on the async test,
# which pytest-asyncio runs in the test's event loop.

@functools.cache
def _bodies(schema_name: str) -> st.SearchStrategy[bytes]:
    from dendrite_admin_ext.validation import load_schemas

    return body_strategy(load_schemas(), schema_name)


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=_route_id)
@given(data=st.data())
async def test_fuzz_request_bodies(fuzz: Fuzz, spec: RouteSpec, data: st.DataObject) -> None:
    assert spec.body_schema is not None
    body = data.draw(_bodies(spec.body_schema), label="body")
    await fuzz.check(spec.method, fuzz.path(spec), headers=fuzz.auth(), data=body)


@pytest.mark.parametrize("spec", PARAM_ROUTES, ids=_route_id)
@given(value=path_values, raw=st.booleans(), with_body=st.booleans())
async def test_fuzz_path_parameters(fuzz: Fuzz, spec: RouteSpec, value: str, raw: bool,
                                    with_body: bool) -> None:
    names = _PARAM.findall(spec.path)
    if spec.prefix not in PREFIXES:
        # An exact path in the host's router (client login): a value that is not one
        # path segment makes another path, which is the host's (its plain 404).
        encoded = encode_path_value(value, raw)
        assume(encoded not in ("", ".", "..") and "/" not in encoded)
    path = fuzz.path(spec, **{n: encode_path_value(value, raw) for n in names})
    body = json.dumps({"password": "long enough password", "logout_devices": False,
                       "user_id": f"@alice:{SERVER}",
                       "content": {"msgtype": "m.text", "body": "fuzz"}}).encode()
    await fuzz.check(spec.method, path, headers=fuzz.auth(), data=body if with_body else None)


@given(prefix=st.sampled_from(PREFIXES), suffix=st.text(max_size=40),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
async def test_fuzz_unknown_paths_and_methods(fuzz: Fuzz, prefix: str, suffix: str,
                                              method: str) -> None:
    await fuzz.check(method, prefix + "/" + quote(suffix, safe="/"), headers=fuzz.auth())


RESET = next(r for r in ROUTES if r.method == "POST" and "resetPassword" in r.path)


@given(header=st.none() | st.text(max_size=60), query=st.none() | st.text(max_size=60))
async def test_fuzz_tokens(fuzz: Fuzz, header: str | None, query: str | None) -> None:
    headers = {}
    if header is not None:
        headers["Authorization"] = "".join(ch for ch in header
                                           if ch.isprintable() and ord(ch) < 128)
    path = fuzz.path(RESET)
    if query is not None:
        path += "?access_token=" + quote(query, safe="")
    status, body = await fuzz.check(RESET.method, path, headers=headers,
                                    data=b'{"password": "long enough password"}')
    assert status in (401, 403), body
