"""The storage contract of NonceStore: every backend behaves like the in-memory
reference."""

from __future__ import annotations

import time
from typing import Any

from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage

from .common import FAR


# -- nonces --------------------------------------------------------------------------------
async def test_nonce_single_use_and_expiry(st: AdminStorage) -> None:
    now = int(time.time() * 1000)
    await st.add_nonce("n-live", now + 60_000, 100)
    await st.add_nonce("n-old", now - 1, 100)
    assert await st.take_nonce("n-unknown", now) is False
    assert await st.take_nonce("n-live", now) is True
    assert await st.take_nonce("n-live", now) is False  # single use
    assert await st.take_nonce("n-old", now) is False  # expired
    await st.add_nonce("n-edge", 5_000, 100)
    assert await st.take_nonce("n-edge", 5_000) is False  # expiry is exclusive
    await st.add_nonce("n-edge2", 5_001, 100)
    assert await st.take_nonce("n-edge2", 5_000) is True


async def test_nonces_are_bounded_oldest_first(st: Any) -> None:
    for i in range(5):
        await st.add_nonce(f"n{i}", FAR, 3)
    assert [await st.take_nonce(f"n{i}", 0) for i in range(5)] == [
        False, False, True, True, True]
    for i in range(300):
        await st.add_nonce(f"m{i}", FAR, 10)
    kept = len(st.nonces) if isinstance(st, MemoryStorage) else st.count(
        "dendrite_admin_nonces")
    assert kept <= 10
    assert await st.take_nonce("m299", 0) is True
