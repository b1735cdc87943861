"""Coalesced reads (storage/batching.py): which keys go together, what each caller gets,
and that no caller is ever answered from a read made before it asked."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from dendrite_admin_ext.errors import StorageUnavailableError
from dendrite_admin_ext.storage.batching import SIZES, BatchedReadError, ReadBatcher, padded


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


def test_padded_rounds_up_to_a_fixed_size() -> None:
    assert padded(["a"]) == ["a"]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    assert len(padded([str(i) for i in range(17)])) == 32
    assert len(padded([str(i) for i in range(SIZES[-1])])) == SIZES[-1]
    with pytest.raises(ValueError, match="a batch has 1 to"):
        padded([])
    with pytest.raises(ValueError, match="a batch has 1 to"):
        padded([str(i) for i in range(SIZES[-1] + 1)])


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
    keys = [f"k{i}" for i in range(SIZES[-1] * 2 + 5)]
    src = Source({k: i for i, k in enumerate(keys)})
    batcher: ReadBatcher[str, int | None] = ReadBatcher(src.fetch, lambda: None)
    assert await asyncio.gather(*(batcher.get(k) for k in keys)) == list(range(len(keys)))
    assert [len(b) for b in src.batches] == [SIZES[-1], SIZES[-1], 5]


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
    for task in list(batcher._running):
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
