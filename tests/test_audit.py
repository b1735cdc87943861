"""The audit trail: every state-changing action, success or refusal, in storage and in
the log, readable by admins page by page, with no secret in it."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext.audit import ANONYMOUS_BURST, Audited
from dendrite_admin_ext.routes import ROUTES
from dendrite_admin_ext.services.evacuation import wait_for_running
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage.types import AuditEntry

from .conftest import SECRET, SERVER, Harness, HarnessFactory

AUDIT = "/_dendrite/admin/auditLog"


async def audit_entries(h: Harness, token: str, **query: str) -> dict[str, Any]:
    r = await h.client.get(AUDIT, params=query, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def register(h: Harness, username: str, password: str, *, mac: str | None = None
                   ) -> tuple[int, dict[str, Any]]:
    nonce = (await (await h.client.get("/_synapse/admin/v1/register")).json())["nonce"]
    body = {"nonce": nonce, "username": username, "password": password, "admin": False,
            "mac": mac or compute_mac(SECRET, nonce, username, password, False)}
    r = await h.client.post("/_synapse/admin/v1/register", json=body)
    return r.status, {**await r.json(), "_nonce": nonce, "_mac": body["mac"]}


def test_every_state_changing_route_is_audited() -> None:
    state_changing = {
        ("/_dendrite/admin", "/resetPassword"), ("/_dendrite/admin", "/evacuateRoom"),
        ("/_dendrite/admin", "/evacuateUser"), ("/_synapse/admin", "/v1/send_server_notice"),
    }
    for spec in ROUTES:
        key = (spec.prefix, "/" + spec.path.split("/")[1])
        if key in state_changing or (spec.path == "/v1/register" and spec.method == "POST"):
            assert isinstance(spec.audit, Audited), spec.full_path
            # The target comes from one place, never the whole body.
            assert (spec.audit.path_param is None) != (spec.audit.body_key is None)
        if spec.audit is not None and spec.audit.path_param is not None:
            assert "{" + spec.audit.path_param in spec.path, spec.full_path


async def test_successes_and_refusals_recorded(h: Harness,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dendrite_admin_ext.audit")
    admin = await h.user("boss", admin=True)
    await h.user("alice")
    bob = await h.user("bob")
    target = quote(f"@alice:{SERVER}", safe="")
    # ok
    r = await h.client.post(f"/_dendrite/admin/resetPassword/{target}",
                            json={"password": "sup3r-secret-pw"}, headers=admin.auth)
    assert r.status == 200
    # 403: a non-admin, named as the requester
    r = await h.client.post(f"/_dendrite/admin/evacuateUser/{target}", headers=bob.auth)
    assert r.status == 403
    # 401: nobody
    r = await h.client.post("/_dendrite/admin/evacuateRoom/%21nowhere%3Atest.example")
    assert r.status == 401
    # 404 after auth
    r = await h.client.post("/_dendrite/admin/evacuateRoom/%21nowhere%3Atest.example",
                            headers=admin.auth)
    assert r.status == 404
    # a notice: target from the body
    r = await h.client.post("/_synapse/admin/v1/send_server_notice", headers=admin.auth,
                            json={"user_id": f"@alice:{SERVER}",
                                  "content": {"msgtype": "m.text", "body": "hi"}})
    assert r.status == 200
    # registration refused (bad MAC) and accepted
    status, bad = await register(h, "mallory", "mallorypassword", mac="00" * 20)
    assert status == 403
    status, good = await register(h, "carol", "carolpassword")
    assert status == 200

    body = await audit_entries(h, admin.token)
    got = [(e["action"], e["requester"], e["target"], e["outcome"]) for e in body["entries"]]
    assert got == [
        ("register", None, "carol", "ok"),
        ("register", None, "mallory", "M_FORBIDDEN"),
        ("sendServerNotice", f"@boss:{SERVER}", f"@alice:{SERVER}", "ok"),
        ("evacuateRoom", f"@boss:{SERVER}", f"!nowhere:{SERVER}", "M_NOT_FOUND"),
        ("evacuateRoom", None, f"!nowhere:{SERVER}", "M_MISSING_TOKEN"),
        ("evacuateUser", f"@bob:{SERVER}", f"@alice:{SERVER}", "M_FORBIDDEN"),
        ("resetPassword", f"@boss:{SERVER}", f"@alice:{SERVER}", "ok"),
    ]
    for entry in body["entries"]:
        assert isinstance(entry["id"], int) and entry["ts"] > 0
        assert len(entry["request_id"]) >= 8
        assert entry["detail"]["method"] == "POST"
        assert entry["detail"]["ip"] == "127.0.0.1"
    assert "next_from" not in body
    # The request id is the one the client saw.
    r = await h.client.post(f"/_dendrite/admin/evacuateUser/{target}", headers={
        **admin.auth, "X-Request-ID": "trace-0123456789"})
    assert r.headers["X-Request-ID"] == "trace-0123456789"
    newest = (await audit_entries(h, admin.token, limit="1"))["entries"][0]
    assert newest["request_id"] == "trace-0123456789" and newest["outcome"] == "ok"

    # No secret anywhere: not in storage, not in the log.
    secrets = ["sup3r-secret-pw", "mallorypassword", "carolpassword", good["access_token"],
               good["_nonce"], good["_mac"], bad["_nonce"], bad["_mac"], SECRET,
               admin.token, bob.token]
    dumped = json.dumps(body) + caplog.text
    for secret in secrets:
        assert secret not in dumped
    # The log has one structured line per action.
    records = [r for r in caplog.records if r.name == "dendrite_admin_ext.audit"]
    assert len(records) == 8
    assert records[0].fields["audit"]["action"] == "resetPassword"  # type: ignore[attr-defined]


async def test_pagination(h: Harness) -> None:
    admin = await h.user("boss", admin=True)
    for i in range(5):
        await h.client.post(f"/_dendrite/admin/evacuateRoom/%21r{i}%3Atest.example",
                            headers=admin.auth)
    page1 = await audit_entries(h, admin.token, limit="2")
    page2 = await audit_entries(h, admin.token, limit="2", **{"from": page1["next_from"]})
    page3 = await audit_entries(h, admin.token, limit="2", **{"from": page2["next_from"]})
    targets = [e["target"] for p in (page1, page2, page3) for e in p["entries"]]
    assert targets == [f"!r{i}:test.example" for i in (4, 3, 2, 1, 0)]
    assert "next_from" not in page3


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1001"}, {"limit": "x"},
                                   {"from": "0"}, {"from": "-3"}, {"from": "1e3"},
                                   {"limit": "²"}, {"from": "٣"}])
async def test_bad_query(h: Harness, query: dict[str, str]) -> None:
    admin = await h.user("boss", admin=True)
    r = await h.client.get(AUDIT, params=query, headers=admin.auth)
    assert r.status == 400
    assert (await r.json())["errcode"] == "M_INVALID_PARAM"


async def test_admin_only_and_switchable(harness_factory: HarnessFactory) -> None:
    h = await harness_factory()
    alice = await h.user("alice")
    r = await h.client.get(AUDIT, headers=alice.auth)
    assert (r.status, (await r.json())["errcode"]) == (403, "M_FORBIDDEN")
    r = await h.client.get(AUDIT)
    assert r.status == 401
    off = await harness_factory(endpoints={"audit": False})
    admin = await off.user("boss", admin=True)
    r = await off.client.get(AUDIT, headers=admin.auth)
    assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_storage_failure_does_not_fail_the_action(
        h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dendrite_admin_ext.audit")
    admin = await h.user("boss", admin=True)
    await h.user("alice")

    async def broken(entry: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(h.storage, "add_audit_entry", broken)
    r = await h.client.post(f"/_dendrite/admin/evacuateUser/@alice:{SERVER}",
                            headers=admin.auth)
    assert r.status == 200
    assert "could not store the audit entry" in caplog.text
    assert "evacuateUser" in caplog.text  # the log line still has it


async def test_anonymous_refusal_flood_is_not_a_write_flood(h: Harness) -> None:
    admin = await h.user("boss", admin=True)
    for _ in range(ANONYMOUS_BURST + 30):
        r = await h.client.post("/_dendrite/admin/evacuateRoom/%21x%3Atest.example")
        assert r.status == 401
    entries = (await audit_entries(h, admin.token, limit="1000"))["entries"]
    assert ANONYMOUS_BURST <= len(entries) <= ANONYMOUS_BURST + 2
    # A known requester is always recorded, flood or not.
    r = await h.client.post("/_dendrite/admin/evacuateRoom/%21x%3Atest.example",
                            headers=admin.auth)
    newest = (await audit_entries(h, admin.token, limit="1"))["entries"][0]
    assert (newest["requester"], newest["outcome"]) == (f"@boss:{SERVER}", "M_NOT_FOUND")


async def test_old_entries_are_purged_hourly_past_retention(
        harness_factory: HarnessFactory) -> None:
    h = await harness_factory(audit={"retention_days": 1})
    now = [1_800_000_000_000]
    h.ctx.clock = lambda: now[0]
    admin = await h.user("boss", admin=True)
    await h.user("alice")
    day, hour = 86_400_000, 3_600_000

    async def old_entry(request_id: str, ts: int) -> None:
        await h.storage.add_audit_entry(AuditEntry(
            ts=ts, request_id=request_id, requester=None, action="register", target=None,
            outcome="ok"))

    async def reset() -> None:
        r = await h.client.post(f"/_dendrite/admin/resetPassword/@alice:{SERVER}",
                                json={"password": "sup3r-secret-pw"}, headers=admin.auth)
        assert r.status == 200
        await wait_for_running(h.ctx, 5)  # the purge runs beside the request

    def ids(body: dict[str, Any]) -> list[str]:
        return [e["request_id"] for e in body["entries"]]

    await old_entry("two-days-old", now[0] - 2 * day)
    await old_entry("an-hour-old", now[0] - hour)
    await reset()  # the first stored entry purges
    left = ids(await audit_entries(h, admin.token))
    assert "two-days-old" not in left and "an-hour-old" in left and len(left) == 2

    await old_entry("also-old", now[0] - 3 * day)
    now[0] += hour // 2
    await reset()  # within the hour: no second purge
    assert "also-old" in ids(await audit_entries(h, admin.token))
    now[0] += hour
    await reset()
    left = ids(await audit_entries(h, admin.token))
    assert "also-old" not in left and "an-hour-old" in left


async def test_retention_zero_keeps_everything(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(audit={"retention_days": 0})
    admin = await h.user("boss", admin=True)
    await h.user("alice")
    await h.storage.add_audit_entry(AuditEntry(
        ts=1, request_id="ancient", requester=None, action="register", target=None,
        outcome="ok"))
    r = await h.client.post(f"/_dendrite/admin/resetPassword/@alice:{SERVER}",
                            json={"password": "sup3r-secret-pw"}, headers=admin.auth)
    assert r.status == 200
    await wait_for_running(h.ctx, 5)  # a purge, had one started, would be done
    body = await audit_entries(h, admin.token)
    assert "ancient" in [e["request_id"] for e in body["entries"]]


async def test_a_dry_run_is_recorded_as_one(h: Harness) -> None:
    """SPEC 11: ``?dry_run=true`` changes nothing; an auditor must tell it from the real
    action (a first-hour review found both recorded alike)."""
    admin = await h.user("admin", admin=True)
    alice = await h.user("alice")
    path = f"/_dendrite/admin/evacuateUser/{quote(str(alice.user_id))}"
    assert (await h.client.post(path + "?dry_run=true", headers=admin.auth)).status == 200
    # a route without a dry run records what it did, whatever the query says
    reset = f"/_dendrite/admin/resetPassword/{quote(str(alice.user_id))}?dry_run=true"
    assert (await h.client.post(reset, headers=admin.auth,
                                json={"password": "a long password"})).status == 200
    assert (await h.client.post(path, headers=admin.auth)).status == 200
    await wait_for_running(h.ctx, 5)
    entries = (await audit_entries(h, admin.token))["entries"]
    assert [(e["action"], e["detail"].get("dry_run")) for e in entries[:3]] == [
        ("evacuateUser", None), ("resetPassword", None), ("evacuateUserDryRun", True)]
