"""The storage contract of AuditStore: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import asyncio

from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AuditEntry, NewDevice

from .common import SN, account


# -- audit ---------------------------------------------------------------------------------
async def test_audit_entries(st: AdminStorage) -> None:
    assert await st.get_audit_entries(before_id=None, limit=10) == []
    for i in range(5):
        await st.add_audit_entry(AuditEntry(
            ts=100 + i, request_id=f"r{i}", requester=f"@admin:{SN}" if i else None,
            action="resetPassword", target=f"@u{i}:{SN}", outcome="ok" if i % 2 else
            "M_NOT_FOUND", detail={"i": i, "nested": {"x": [1, "y"]}}))
    newest = await st.get_audit_entries(before_id=None, limit=2)
    assert [e.request_id for e in newest] == ["r4", "r3"]
    ids = [e.id for e in newest]
    assert all(isinstance(i, int) for i in ids) and ids[0] is not None and ids[1] is not None
    assert ids[0] > ids[1]
    older = await st.get_audit_entries(before_id=ids[1], limit=10)
    assert [e.request_id for e in older] == ["r2", "r1", "r0"]
    e0 = older[-1]
    assert (e0.ts, e0.requester, e0.action, e0.target, e0.outcome) == (
        100, None, "resetPassword", f"@u0:{SN}", "M_NOT_FOUND")
    assert dict(e0.detail) == {"i": 0, "nested": {"x": [1, "y"]}}
    assert await st.get_audit_entries(before_id=None, limit=0) == []
    assert await st.get_audit_entries(before_id=e0.id, limit=10) == []


async def test_audit_purge_by_age_keeps_ids(st: AdminStorage) -> None:
    for i in range(6):
        await st.add_audit_entry(AuditEntry(
            ts=1_000 * (i + 1), request_id=f"r{i}", requester=None, action="register",
            target=None, outcome="ok"))
    before = await st.get_audit_entries(before_id=None, limit=10)
    ids = {e.request_id: e.id for e in before}
    assert await st.purge_audit_entries(3_000) == 2  # r0 (1000) and r1 (2000)
    assert await st.purge_audit_entries(3_000) == 0
    kept = await st.get_audit_entries(before_id=None, limit=10)
    assert [e.request_id for e in kept] == ["r5", "r4", "r3", "r2"]
    assert all(e.id == ids[e.request_id] for e in kept)  # the survivors keep their ids
    page = await st.get_audit_entries(before_id=ids["r4"], limit=10)
    assert [e.request_id for e in page] == ["r3", "r2"]
    # A new entry never takes a purged id, nor one below the survivors'.
    await st.add_audit_entry(AuditEntry(ts=9_000, request_id="r6", requester=None,
                                        action="register", target=None, outcome="ok"))
    newest = (await st.get_audit_entries(before_id=None, limit=1))[0]
    assert newest.request_id == "r6" and newest.id is not None
    assert newest.id > max(i for i in ids.values() if i is not None)
    assert await st.purge_audit_entries(10_000) == 5
    assert await st.get_audit_entries(before_id=None, limit=10) == []


async def test_cancellation_is_never_lost(st: AdminStorage) -> None:
    """A task looping over storage calls stops when cancelled, whenever the cancel
    lands (a background flusher is stopped exactly so)."""
    await st.create_account(account("alice"), NewDevice("D1", "tok"))

    async def loop_forever() -> None:
        while True:
            await st.get_token_owner("tok")
            await asyncio.sleep(0)  # MemoryStorage never suspends by itself

    for i in range(150):
        task = asyncio.create_task(loop_forever())
        await asyncio.sleep(0.0003 * (i % 7))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done, "a cancelled task kept running"
        assert task.cancelled()
