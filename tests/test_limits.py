"""Limits: per-IP rate limit on registration, request timeout, bounded bcrypt queue,
bounded nonces, the bounded memo of recent checks."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dendrite_admin_ext.context import RecentChecks
from dendrite_admin_ext.errors import ServiceUnavailable
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.limits import RateLimiter, RequestTimeout
from dendrite_admin_ext.passwords import PasswordHasher
from dendrite_admin_ext.pipeline import deadline_step
from dendrite_admin_ext.services.registration import compute_mac
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage

from .conftest import SECRET, SERVER, Harness, HarnessFactory, make_room

REGISTER = "/_synapse/admin/v1/register"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=2, burst=3, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a") == pytest.approx(0.5)
    assert limiter.check("b") == 0.0  # per key
    clock.now += 0.5
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0
    clock.now += 100  # refills up to the burst, not beyond
    assert [limiter.check("a") for _ in range(4)][-1] > 0


def test_token_bucket_memory_is_bounded() -> None:
    limiter = RateLimiter(per_second=1, burst=1, max_keys=100)
    for i in range(10_000):
        limiter.check(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    limiter.check("10.0.39.15")  # the most recent key is still remembered
    assert limiter.check("10.0.39.15") > 0


def test_zero_rate_switches_it_off() -> None:
    limiter = RateLimiter(per_second=0, burst=1)
    assert all(limiter.check("a") == 0.0 for _ in range(100))
    assert len(limiter) == 0


async def test_registration_burst_gets_429(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration={"rate_limit": {"per_second": 0.5, "burst": 3}})
    statuses = [(await h.client.get(REGISTER)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = await h.client.get(REGISTER)
    assert r.status == 429
    body = await r.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    assert 1000 <= body["retry_after_ms"] <= 2000
    assert r.headers["Retry-After"] == "2"
    r = await h.client.post(REGISTER, json={})
    assert r.status == 429  # the POST shares the bucket, before any body parsing
    # Pre-flight requests are not counted, and authenticated endpoints are not limited.
    assert (await h.client.options(REGISTER)).status == 200
    admin = await h.user("boss", admin=True)
    r = await h.client.get(f"/_matrix/client/v3/admin/whois/@boss:{SERVER}",
                           headers=admin.auth)
    assert r.status == 200


async def timed_out_evacuation(harness_factory: HarnessFactory, storage: AdminStorage,
                               monkeypatch: pytest.MonkeyPatch
                               ) -> tuple[Harness, str, list[str], asyncio.Event]:
    """An evacuateRoom whose storage is slower than the 0.2 s request timeout: the
    request has answered 504; returns the room, its members and an event set once the
    leaves are stored."""
    h = await harness_factory(http={"request_timeout": 0.2})
    admin = await h.user("boss", admin=True)
    members = [f"@m{i}:{SERVER}" for i in range(3)]
    room = await make_room(storage, str(admin.user_id), joined=members)
    real = storage.apply_memberships
    done = asyncio.Event()

    async def slow(room_id: str, changes: Any) -> list[str]:
        await asyncio.sleep(0.5)
        result = await real(room_id, changes)
        done.set()
        return result

    monkeypatch.setattr(storage, "apply_memberships", slow)
    r = await h.client.post(f"/_dendrite/admin/evacuateRoom/{room}", headers=admin.auth)
    assert r.status == 504
    body = await r.json()
    assert body["errcode"] == "M_UNKNOWN" and "0.2 s" in body["error"]
    assert "Retry-After" not in r.headers
    return h, room, members, done


async def test_request_timeout_is_504_and_evacuation_still_completes(
        harness_factory: HarnessFactory, storage: AdminStorage,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, room, members, done = await timed_out_evacuation(harness_factory, storage,
                                                        monkeypatch)
    # Not cut half-way: the shielded evacuation runs on and parts everyone.
    await asyncio.wait_for(done.wait(), 5)
    for m in members:
        assert await storage.get_membership(room, UserID.from_stored(m)) == "leave"


async def test_fast_requests_unaffected_by_timeout(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(http={"request_timeout": 5})
    admin = await h.user("boss", admin=True)
    r = await h.client.get(f"/_synapse/admin/v1/whois/@boss:{SERVER}", headers=admin.auth)
    assert r.status == 200
    assert (await r.json())["user_id"] == f"@boss:{SERVER}"


async def test_the_deadline_step_times_out_only_what_it_timed() -> None:
    """The deadline is 504 RequestTimeout; a TimeoutError of the handler's own (a
    bounded wait inside it, as the health check has) stays what it is."""
    step = deadline_step(0.05)
    no_request: Any = None  # the step does not look at the request

    async def through(handler: Any) -> Any:
        return await step(handler)(no_request)

    async def slow(request: Any) -> Any:
        await asyncio.sleep(5)

    async def own_timeout(request: Any) -> Any:
        async with asyncio.timeout(0.001):
            await asyncio.sleep(1)

    async def quick(request: Any) -> Any:
        return "answer"

    with pytest.raises(RequestTimeout, match=r"longer than 0\.05 s"):
        await asyncio.wait_for(through(slow), 2)
    with pytest.raises(TimeoutError) as caught:
        await through(own_timeout)
    assert not isinstance(caught.value, RequestTimeout)
    assert await through(quick) == "answer"
    # The task that ran a timed-out request is not left cancelling.
    task = asyncio.create_task(through(slow))
    with pytest.raises(RequestTimeout):
        await task
    assert task.cancelling() == 0


@contextlib.contextmanager
def gated_hasher(max_queued: int) -> Iterator[tuple[PasswordHasher, threading.Event,
                                                     threading.Event]]:
    """A one-thread hasher whose hashes wait for ``release`` once they have started
    (``entered``); released and closed on exit."""
    hasher = PasswordHasher(cost=4, max_concurrent=1, max_queued=max_queued)
    hasher.start()
    release = threading.Event()
    entered = threading.Event()
    real = hasher.hash_sync

    def blocking(password: str) -> str:
        entered.set()
        release.wait(10)
        return real(password)

    hasher.hash_sync = blocking  # type: ignore[method-assign]
    try:
        yield hasher, entered, release
    finally:
        release.set()
        hasher.close()


async def test_bcrypt_queue_is_bounded() -> None:
    with gated_hasher(max_queued=1) as (hasher, entered, release):
        running = asyncio.create_task(hasher.hash("password-one"))
        queued = asyncio.create_task(hasher.hash("password-two"))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
        await asyncio.sleep(0.01)
        with pytest.raises(ServiceUnavailable) as refused:
            await hasher.hash("password-three")
        assert refused.value.http_status == 503
        assert refused.value.headers["Retry-After"] == "1"
        release.set()
        hashes = await asyncio.gather(running, queued)
        assert all(PasswordHasher.verify_sync(p, h_) for p, h_ in
                   zip(("password-one", "password-two"), hashes, strict=True))
        assert hasher._in_flight == 0
        assert PasswordHasher.verify_sync("password-four", await hasher.hash("password-four"))


async def test_bcrypt_slot_held_until_a_cancelled_hash_finishes() -> None:
    """A caller that goes away (client disconnect) does not stop bcrypt: its slot stays
    taken until the hash is done, so cancelled requests cannot pile up hashes."""
    with gated_hasher(max_queued=0) as (hasher, entered, release):
        abandoned = asyncio.create_task(hasher.hash("password-one"))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        with pytest.raises(ServiceUnavailable):  # the thread is still hashing
            await hasher.hash("password-two")
        release.set()
        for _ in range(200):
            if hasher._in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert hasher._in_flight == 0
        assert PasswordHasher.verify_sync("password-three",
                                          await hasher.hash("password-three"))


async def test_nonce_flood_is_bounded(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(registration={"max_nonces": 5,
                                            "rate_limit": {"per_second": 0}})

    async def nonce() -> str:
        value: str = (await (await h.client.get(REGISTER)).json())["nonce"]
        return value

    oldest = await nonce()
    newest = ""
    for _ in range(30):
        newest = await nonce()

    async def try_register(n: str, user: str) -> dict[str, Any]:
        r = await h.client.post(REGISTER, json={
            "nonce": n, "username": user, "password": "longenough", "admin": False,
            "mac": compute_mac(SECRET, n, user, "longenough", False)})
        body: dict[str, Any] = await r.json()
        return body

    assert (await try_register(oldest, "first"))["errcode"] == "M_UNKNOWN"  # evicted
    assert (await try_register(newest, "second"))["user_id"] == f"@second:{SERVER}"


async def test_shutdown_waits_for_detached_evacuation(
        harness_factory: HarnessFactory, storage: AdminStorage,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An evacuation whose request timed out still finishes before storage closes."""
    h, room, members, done = await timed_out_evacuation(harness_factory, storage,
                                                        monkeypatch)
    assert not done.is_set()
    await h.client.close()  # app clean-up: must wait for the evacuation
    if isinstance(storage, MemoryStorage):
        for m in members:
            assert await storage.get_membership(room, UserID.from_stored(m)) == "leave"
    else:
        await storage.open()  # the shipped SQL backends are reopened to look
        try:
            for m in members:
                assert await storage.get_membership(room, UserID.from_stored(m)) == "leave"
        finally:
            await storage.close()


# -- RecentChecks: what the notices path may skip re-reading ------------------------------

def test_recent_checks_trusted_for_ttl_only() -> None:
    recent = RecentChecks(ttl_ms=60_000)
    assert not recent.fresh("system user", 1_000)
    recent.mark("system user", 1_000)
    assert recent.fresh("system user", 1_000)
    assert recent.fresh("system user", 60_999)
    assert not recent.fresh("system user", 61_000)
    assert not recent.fresh("system user", 999)  # the clock went back: check again
    assert not recent.fresh("another fact", 1_000)
    recent.mark("system user", 61_000)
    assert recent.fresh("system user", 120_000)


def test_recent_checks_bounded_oldest_first() -> None:
    recent = RecentChecks(ttl_ms=60_000, max_entries=3)
    for key in ("a", "b", "c"):
        recent.mark(key, 0)
    recent.mark("a", 1)  # checked again: now the newest
    recent.mark("d", 2)  # over the bound: "b", the oldest, goes
    assert [recent.fresh(k, 2) for k in "abcd"] == [True, False, True, True]
