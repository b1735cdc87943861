"""Coalesced reads (storage/batching.py, storage/coalescing.py): which keys go together,
what each caller gets, and that no caller is ever answered from a read made before it
asked; and the wrapper around a real SQL backend, observed through a spy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.errors import StorageUnavailableError, UserInUseError
from dendrite_admin_ext.features import FEATURES, MissingStorageError, check_storage
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.batching import MAX_BATCH, BatchedReadError, ReadBatcher
from dendrite_admin_ext.storage.coalescing import CoalescingStorage
from dendrite_admin_ext.storage.sql.ops import KEY_GROUP_SIZES, key_groups
from dendrite_admin_ext.storage.types import AccountType, NewAccount, NewDevice

from .sql_backends import BACKENDS, HeldReads, make_storage


class Source:
    """A fake table: ``fetch`` records each batch and may be held open."""

    def __init__(self, rows: Mapping[str, int]) -> None:
        self.rows = dict(rows)
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail: BaseException | None = None

    async def fetch(self, keys: Sequence[str]) -> dict[str, int]:
        self.batches.append(list(keys))
        # What the table holds when the batch is sent, not when it is answered.
        snapshot = {k: self.rows[k] for k in keys if k in self.rows}
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return snapshot


async def held_read(src: Source, key: str, max_running: int = 1) -> tuple[
        ReadBatcher[str, int | None], asyncio.Task[int | None], asyncio.Event]:
    """A batcher whose first read (of ``key``) is in flight, held open until the
    returned gate (``src.gate``) is set."""
    gate = src.gate = asyncio.Event()
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None,
                                                        max_running=max_running)
    task = asyncio.create_task(batcher.get(key))
    await src.started.wait()
    return batcher, task, gate


def test_key_groups_are_padded_to_a_few_sizes() -> None:
    top = KEY_GROUP_SIZES[-1]
    assert key_groups([]) == []
    assert key_groups(["a"]) == [["a"]]
    assert key_groups(["a", "b", "c"]) == [["a", "b", "c", "c"]]
    assert [len(g) for g in key_groups([str(i) for i in range(17)])] == [32]
    assert [len(g) for g in key_groups([str(i) for i in range(top)])] == [top]
    groups = key_groups([str(i) for i in range(top + 3)])
    assert [len(g) for g in groups] == [top, 4]
    assert groups[1] == [str(top), str(top + 1), str(top + 2), str(top + 2)]


async def test_reads_asked_together_go_in_one_batch() -> None:
    src = Source({"a": 1, "b": 2, "c": 3})
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    got = await asyncio.gather(*(batcher.get(k) for k in ["a", "b", "x", "a", "c"]))
    assert got == [1, 2, None, 1, 3]
    # One statement for all of them, each key once.
    assert src.batches == [["a", "b", "x", "c"]]
    assert batcher.idle


async def test_missing_values_are_not_shared() -> None:
    async def nothing(keys: Sequence[str]) -> dict[str, list[int]]:
        return {}

    batcher: ReadBatcher[str, list[int]] = ReadBatcher(nothing, list)
    first, second = await asyncio.gather(batcher.get("x"), batcher.get("y"))
    assert first == second == []
    first.append(1)
    assert second == []


async def test_a_read_asked_during_a_batch_waits_for_the_next_one() -> None:
    """The freshness rule: a caller is never answered by a read sent before it asked,
    even for the same key (an admin demoted meanwhile must lose access)."""
    src = Source({"tok": 1})
    batcher, early, gate = await held_read(src, "tok")
    src.rows["tok"] = 2  # changed while the first read is in flight
    late = [asyncio.create_task(batcher.get(k)) for k in ("tok", "other")]
    for _ in range(3):  # as many turns as a second batch would need to start
        await asyncio.sleep(0)
    assert src.batches == [["tok"]]  # at most one batch in flight by default
    gate.set()
    assert await early == 1
    assert await asyncio.gather(*late) == [2, None]
    assert src.batches == [["tok"], ["tok", "other"]]


async def test_more_keys_than_a_batch_holds_are_split() -> None:
    keys = [f"k{i}" for i in range(MAX_BATCH * 2 + 5)]
    src = Source({k: i for i, k in enumerate(keys)})
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    assert await asyncio.gather(*(batcher.get(k) for k in keys)) == list(range(len(keys)))
    assert [len(b) for b in src.batches] == [MAX_BATCH, MAX_BATCH, 5]


async def test_max_running_lets_batches_overlap() -> None:
    src = Source({"a": 1, "b": 2})
    batcher, first, gate = await held_read(src, "a", max_running=2)
    second = asyncio.create_task(batcher.get("b"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert src.batches == [["a"], ["b"]]  # the second did not wait for the first
    gate.set()
    assert (await first, await second) == (1, 2)


async def test_a_caller_going_away_leaves_the_batch_to_the_others() -> None:
    src = Source({"a": 1})
    src.gate = asyncio.Event()
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    gone = asyncio.create_task(batcher.get("a"))
    stays = asyncio.create_task(batcher.get("a"))
    await src.started.wait()
    gone.cancel()
    await asyncio.sleep(0)
    src.gate.set()
    assert await stays == 1
    assert gone.cancelled()
    await batcher.drain()
    assert batcher.idle


async def test_callers_that_went_away_before_the_batch_are_not_read() -> None:
    src = Source({"a": 1, "b": 2})
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    gone = asyncio.create_task(batcher.get("a"))
    stays = asyncio.create_task(batcher.get("b"))
    await asyncio.sleep(0)  # both are waiting; the batch has not started yet
    gone.cancel()
    assert await stays == 2
    assert src.batches == [["b"]]


@pytest.mark.parametrize(("failure", "kind", "text"), [
    (StorageUnavailableError("database gone"), StorageUnavailableError, "database gone"),
    (ValueError("bug"), BatchedReadError, "batched read failed: ValueError('bug')"),
])
async def test_a_failed_batch_fails_each_caller_with_its_own_error(
        failure: Exception, kind: type[Exception], text: str) -> None:
    src = Source({"a": 1, "b": 2})
    src.fail = failure
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    results = await asyncio.gather(batcher.get("a"), batcher.get("b"), batcher.get("a"),
                                   return_exceptions=True)
    assert all(type(r) is kind for r in results)
    assert len({id(r) for r in results}) == 3  # not one instance raised in three tasks
    assert all(isinstance(r, BaseException) and r.__cause__ is failure for r in results)
    assert all(str(r) == text for r in results)
    # The next read works again: nothing is left stuck.
    src.fail = None
    assert await batcher.get("b") == 2


async def test_a_batch_cancelled_with_the_loop_fails_its_waiters() -> None:
    src = Source({"a": 1, "b": 2})
    batcher, first, _ = await held_read(src, "a")
    second = asyncio.create_task(batcher.get("b"))  # waits for the next batch
    await asyncio.sleep(0)
    # The batch's own task (what the loop cancels when it closes).
    for task in asyncio.all_tasks() - {asyncio.current_task(), first, second}:
        task.cancel()
    with pytest.raises(StorageUnavailableError):
        await first
    with pytest.raises(StorageUnavailableError):
        await second
    assert batcher.idle


async def test_a_key_the_driver_refuses_fails_only_its_own_callers() -> None:
    src = Source({"a": 1, "b": 2})
    tried: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        tried.append(list(keys))
        if "poison" in keys:
            raise ValueError("the driver cannot take this key")
        return await src.fetch(keys)

    batcher: ReadBatcher[str, int | None] = ReadBatcher(fetch, lambda: None)
    results = await asyncio.gather(batcher.get("a"), batcher.get("poison"), batcher.get("b"),
                                   batcher.get("poison"), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2
    assert all(isinstance(r, BatchedReadError) for r in (results[1], results[3]))
    # One try together, then each key alone.
    assert tried == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
    assert src.batches == [["a"], ["b"]]


async def test_the_storage_being_down_is_not_retried_key_by_key() -> None:
    calls: list[list[str]] = []

    async def down(keys: Sequence[str]) -> dict[str, int]:
        calls.append(list(keys))
        raise StorageUnavailableError("database gone")

    batcher: ReadBatcher[str, int | None] = ReadBatcher(down, lambda: None)
    results = await asyncio.gather(batcher.get("a"), batcher.get("b"),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageUnavailableError) for r in results)
    assert calls == [["a", "b"]]


async def test_a_stalled_batch_does_not_hold_up_the_next_ones() -> None:
    """A read that hangs (a database that stopped answering) must not queue every
    later caller behind it: after ``stall_after`` another batch may start."""
    src = Source({"slow": 1, "quick": 2})
    hang = asyncio.Event()

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        if "slow" in keys:
            await hang.wait()
        return await src.fetch(keys)

    batcher: ReadBatcher[str, int | None] = ReadBatcher(fetch, lambda: None,
                                                        stall_after=0.05)
    slow = asyncio.create_task(batcher.get("slow"))
    await asyncio.sleep(0)
    quick = asyncio.create_task(batcher.get("quick"))
    await asyncio.sleep(0.02)
    assert not quick.done()  # within stall_after: it waits for the next batch
    assert await asyncio.wait_for(quick, 1.0) == 2
    assert not slow.done()
    hang.set()
    assert await slow == 1


async def test_stalled_batches_are_bounded() -> None:
    from dendrite_admin_ext.storage.batching import MAX_STALLED

    hang = asyncio.Event()
    started: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        started.append(list(keys))
        await hang.wait()
        return {k: 0 for k in keys}

    batcher: ReadBatcher[str, int | None] = ReadBatcher(fetch, lambda: None,
                                                        stall_after=0.01)
    tasks = [asyncio.create_task(batcher.get(f"k{i}")) for i in range(3)]
    for i in range(MAX_STALLED + 3):
        tasks.append(asyncio.create_task(batcher.get(f"later{i}")))
        await asyncio.sleep(0.02)
    assert len(started) == MAX_STALLED
    hang.set()
    assert await asyncio.gather(*tasks) == [0] * len(tasks)


async def test_drain_waits_for_reads_in_flight_and_only_those() -> None:
    src = Source({"a": 1, "b": 2})
    batcher, first, gate = await held_read(src, "a")
    drained = asyncio.create_task(batcher.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()  # the read in flight is waited for
    later = asyncio.create_task(batcher.get("b"))  # asked after drain began
    await asyncio.sleep(0)
    src.gate = asyncio.Event()  # the next batch will hang
    gate.set()
    await asyncio.wait_for(drained, 1.0)
    assert first.result() == 1
    assert not later.done()
    src.gate.set()
    assert await later == 2


# -- the wrapper around the SQL backends -----------------------------------------------------
SN = "coalescing.example"
SQL_BACKENDS = [b for b in BACKENDS if b != "memory"]


@pytest.fixture(params=SQL_BACKENDS)
async def sql(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An opened SQL backend without the wrapper (make_storage wraps it)."""
    wrapped = await make_storage(request, request.param, tmp_path)
    assert isinstance(wrapped, CoalescingStorage)
    yield wrapped.inner
    await wrapped.close()


async def _users(storage: Any, n: int) -> list[UserID]:
    users = [UserID(f"u{i}", SN) for i in range(n)]
    for i, user in enumerate(users):
        await storage.create_account(NewAccount(user, None, AccountType.USER, 1),
                                     NewDevice(f"D{i}", f"tok{i}"))
    return users


async def test_reads_waiting_together_reach_the_backend_as_one(sql: Any) -> None:
    """32 token reads asked while one is in flight: the backend is asked twice (the
    first, then the 31 together), and each caller gets its own token's owner."""
    users = await _users(sql, 32)
    spy = HeldReads(sql, hold=True)
    storage = CoalescingStorage(spy)
    first = asyncio.create_task(storage.get_token_owner("tok0"))
    await spy.read.wait()
    rest = [asyncio.create_task(storage.get_token_owner(f"tok{i}")) for i in range(1, 32)]
    rest.append(asyncio.create_task(storage.get_token_owner("unknown")))
    await asyncio.sleep(0.01)
    assert len(spy.token_batches) == 1  # the others wait for the one in flight
    spy.answer.set()
    owners = [await first, *await asyncio.gather(*rest)]
    assert [o.user if o else None for o in owners] == [*users, None]
    assert [o.device_id for o in owners if o] == [f"D{i}" for i in range(32)]
    assert spy.token_batches == [["tok0"], [*(f"tok{i}" for i in range(1, 32)), "unknown"]]

    spy.hold = False
    lists = await asyncio.gather(*(storage.get_devices(u) for u in users[:5]),
                                 storage.get_devices(users[0]))
    assert [[d.device_id for d in devices] for devices in lists] == [
        ["D0"], ["D1"], ["D2"], ["D3"], ["D4"], ["D0"]]
    assert lists[0] is not lists[-1]  # one read, a list each
    assert spy.device_batches == [users[:5]]


async def test_the_backend_alone_answers_the_same(sql: Any) -> None:
    """Unwrapped, every read is its own: same answers, no coalescing needed for them."""
    users = await _users(sql, 3)
    wrapped = CoalescingStorage(sql)
    for i, user in enumerate(users):
        assert await sql.get_token_owner(f"tok{i}") == await wrapped.get_token_owner(f"tok{i}")
        assert await sql.get_devices(user) == await wrapped.get_devices(user)
    assert await sql.get_token_owner("unknown") is None
    assert await sql.get_devices(UserID("ghost", SN)) == []
    many = await sql.get_token_owners([f"tok{i % 3}" for i in range(70)])
    assert sorted(many) == ["tok0", "tok1", "tok2"]


async def test_everything_else_is_the_inner_storages_own(sql: Any) -> None:
    wrapped = CoalescingStorage(sql)
    await wrapped.ping()
    user = (await _users(wrapped, 1))[0]
    with pytest.raises(UserInUseError):
        await wrapped.create_account(NewAccount(user, None, AccountType.USER, 1), None)
    assert wrapped.dialect is sql.dialect
    with pytest.raises(AttributeError):
        wrapped.no_such_method  # noqa: B018


class _TokensOnly:
    """A host storage with batch reads but no accounts."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def record_activity(self, seen: Any) -> None: ...
    async def add_audit_entry(self, entry: Any) -> None: ...
    async def get_audit_entries(self, *, before_id: Any, limit: int) -> Any: ...
    async def purge_audit_entries(self, older_than_ts: int) -> int:
        return 0
    async def get_token_owners(self, tokens: Any) -> Any: ...
    async def get_devices_of(self, users: Any) -> Any: ...


def test_the_start_up_check_sees_through_the_wrapper() -> None:
    wrapped = CoalescingStorage(_TokensOnly())  # type: ignore[arg-type]
    check_storage(wrapped, [FEATURES["audit"]])
    with pytest.raises(MissingStorageError, match=r"'whois'.*lacks create_account"):
        check_storage(wrapped, [FEATURES["whois"]])
