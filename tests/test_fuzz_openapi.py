"""Schema-driven API fuzzing: schemathesis generates requests from the OpenAPI document
the server itself serves (``GET /_dendrite/admin/openapi.json``) and sends them to a
real standalone server over loopback, as an admin.

Checked for every generated request: no 5xx, every error a JSON ``{"errcode",
"error"}``.  (Storage snapshots around refused requests are compared in-process by
tests/test_fuzz.py.)  Examples per operation: a quarter of the hypothesis profile's count.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.core.result import Ok

from dendrite_admin_ext.cli import register_user
from dendrite_admin_ext.routes import ROUTES

from .standalone import running, write_config

SECRET = "openapi-fuzz-secret"


@dataclass
class Live:
    url: str
    token: str
    document: dict[str, Any]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("openapi-fuzz")
    config = write_config(folder, registration_shared_secret=SECRET,
                          registration={"rate_limit": {"per_second": 0}},
                          client_login={"enabled": True},
                          logging={"level": "WARNING"})
    with running(config) as server:
        token = register_user(server.url, SECRET, "root", "fuzz password", True)
        token_value = str(token["access_token"])
        register_user(server.url, SECRET, "alice", "fuzz password", False)
        req = urllib.request.Request(server.url + "/_dendrite/admin/openapi.json",
                                     headers={"Authorization": f"Bearer {token_value}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            document = json.loads(resp.read())
        yield Live(server.url, token_value, document)


def check_response(case: Any, live: Live) -> None:
    response = case.call(base_url=live.url,
                         headers={"Authorization": f"Bearer {live.token}"}, timeout=30)
    where = (f"{case.method} {case.formatted_path} -> {response.status_code}: "
             f"{response.text[:300]}")
    assert response.status_code < 500, where
    # schemathesis gives headers as {lower-case name: [values]}
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), where
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict), where
        assert isinstance(body.get("errcode"), str), where
        assert isinstance(body.get("error"), str), where


def test_openapi_fuzz(live: Live) -> None:
    # schemathesis's own pytest plugin does not work with this pytest release
    # (it touches Function._nodeid), so each operation's case strategy is driven by
    # hypothesis directly; the examples per operation follow the active profile.
    schema = schemathesis.openapi.from_dict(live.document)
    labels = []
    for result in schema.get_all_operations():
        # An operation schemathesis cannot read is an error in the document.
        assert isinstance(result, Ok), result
        operation = result.ok()
        labels.append(operation.label)
        if "/logout" in operation.label:
            # It would end the fuzzing admin's session, and every operation after it
            # would only see 401.  tests/test_client_login.py covers logout.
            continue

        # Over HTTP each example costs more: a quarter of the profile's count per
        # operation (50 under "ci"), still thousands under "long".
        @settings(max_examples=max(1, settings().max_examples // 4))
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            check_response(case, live)

        fuzz()
    # Every mounted admin route is in the document, so every route was fuzzed.
    assert len(labels) >= len({(r.method, r.full_path) for r in ROUTES}) - 1, labels
