"""The registration-token store (SPEC 12): one contract for memory, SQLite, PostgreSQL
and the independent host implementation (tests/host_storage.py), plus Dendrite's view
of the SQL rows (its own queries on its own table)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.storage.sql import SqlStorage
from dendrite_admin_ext.storage.sql.ops import exec_, select
from dendrite_admin_ext.storage.types import RegistrationToken, TokenReservation

from .host_storage import HostStorage
from .sql_backends import BACKENDS, make_storage, unwrapped

NOW = 1_700_000_000_000
LATER = NOW + 3_600_000
R = TokenReservation


@pytest.fixture(params=[*BACKENDS, "host"])
async def st(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    storage: Any = (HostStorage() if request.param == "host"
                    else await make_storage(request, request.param, tmp_path))
    yield storage
    await storage.close()


def tok(name: str, uses: int | None = None, expiry: int | None = None,
        pending: int = 0, completed: int = 0) -> RegistrationToken:
    return RegistrationToken(name, uses, pending, completed, expiry)


async def test_create_get_and_duplicate(st: Any) -> None:
    assert await st.get_registration_token("abc") is None
    assert await st.create_registration_token(tok("abc", 3, LATER)) is True
    assert await st.get_registration_token("abc") == tok("abc", 3, LATER)
    # a second creation of the name changes nothing
    assert await st.create_registration_token(tok("abc", None, None)) is False
    assert await st.get_registration_token("abc") == tok("abc", 3, LATER)
    # names are case-sensitive
    assert await st.get_registration_token("ABC") is None
    assert await st.create_registration_token(tok("ABC")) is True


async def test_concurrent_creations_of_one_name_one_wins(st: Any) -> None:
    results = await asyncio.gather(*(st.create_registration_token(tok("same", i))
                                     for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert (await st.get_registration_token("same")).uses_allowed == winner


async def test_list_and_valid_filter(st: Any) -> None:
    tokens = [
        tok("unlimited"),                       # valid
        tok("zero", uses=0),                    # 0 = used up
        tok("used-up", uses=2, completed=2),    # invalid
        tok("pending-full", uses=2, pending=1, completed=1),  # pending counts
        tok("one-left", uses=3, pending=1, completed=1),      # valid
        tok("expired", expiry=NOW),             # expiry_time <= now: invalid
        tok("expires-later", uses=1, expiry=NOW + 1),         # valid
    ]
    for t in tokens:
        assert await st.create_registration_token(t)
    names = [t.token for t in await st.list_registration_tokens(None, NOW)]
    assert names == sorted(t.token for t in tokens)
    valid = [t.token for t in await st.list_registration_tokens(True, NOW)]
    assert valid == ["expires-later", "one-left", "unlimited"]
    invalid = [t.token for t in await st.list_registration_tokens(False, NOW)]
    assert invalid == ["expired", "pending-full", "used-up", "zero"]
    for t in await st.list_registration_tokens(None, NOW):
        assert t == next(x for x in tokens if x.token == t.token)
        assert t.is_valid(NOW) == (t.token in valid)


async def test_list_order_is_code_point_order(st: Any) -> None:
    for name in ("b", "B", "a", "_", "~", "-", "0"):
        await st.create_registration_token(tok(name))
    names = [t.token for t in await st.list_registration_tokens(None, NOW)]
    assert names == sorted(names) == ["-", "0", "B", "_", "a", "b", "~"]


async def test_update_only_given_fields(st: Any) -> None:
    await st.create_registration_token(tok("t", 5, LATER, pending=1, completed=2))
    assert await st.update_registration_token("t", {}) == tok("t", 5, LATER, 1, 2)
    assert await st.update_registration_token("t", {"uses_allowed": 9}) == tok("t", 9, LATER, 1, 2)
    assert await st.update_registration_token("t", {"expiry_time": None}) == tok("t", 9, None, 1, 2)
    both = {"uses_allowed": None, "expiry_time": NOW + 5}
    assert await st.update_registration_token("t", both) == tok("t", None, NOW + 5, 1, 2)
    assert await st.get_registration_token("t") == tok("t", None, NOW + 5, 1, 2)
    assert await st.update_registration_token("missing", {"uses_allowed": 1}) is None
    assert await st.get_registration_token("missing") is None


async def test_delete(st: Any) -> None:
    await st.create_registration_token(tok("t"))
    assert await st.delete_registration_token("t") is True
    assert await st.delete_registration_token("t") is False
    assert await st.get_registration_token("t") is None
    assert await st.list_registration_tokens(None, NOW) == []


async def test_reserve_complete_release(st: Any) -> None:
    await st.create_registration_token(tok("t", uses=2))
    assert await st.reserve_registration_token("t", "s1", NOW) is R.RESERVED
    # the same session again counts once; another token in it is refused
    assert await st.reserve_registration_token("t", "s1", NOW) is R.ALREADY_RESERVED
    await st.create_registration_token(tok("other"))
    assert await st.reserve_registration_token("other", "s1", NOW) is R.TOKEN_CHANGED
    assert (await st.get_registration_token("other")).pending == 0
    assert await st.reserve_registration_token("t", "s2", NOW) is R.RESERVED
    assert await st.get_registration_token("t") == tok("t", 2, pending=2)
    # pending uses count: the token is full
    assert await st.reserve_registration_token("t", "s3", NOW) is R.INVALID
    assert [t.token for t in await st.list_registration_tokens(True, NOW)] == ["other"]
    # s1 completes (twice: counted once), s2 gives its use back
    assert await st.complete_registration_token("s1") == "t"
    assert await st.complete_registration_token("s1") is None
    assert await st.get_registration_token("t") == tok("t", 2, pending=1, completed=1)
    assert await st.release_registration_token("s2") == "t"
    assert await st.release_registration_token("s2") is None
    assert await st.get_registration_token("t") == tok("t", 2, pending=0, completed=1)
    # the released use can be taken again, then the token is used up for good
    assert await st.reserve_registration_token("t", "s3", NOW) is R.RESERVED
    assert await st.complete_registration_token("s3") == "t"
    assert await st.get_registration_token("t") == tok("t", 2, pending=0, completed=2)
    assert await st.reserve_registration_token("t", "s4", NOW) is R.INVALID
    # a session that never reserved anything ends without effect
    assert await st.complete_registration_token("s4") is None
    assert await st.release_registration_token("nobody") is None


async def test_reserve_refuses_unknown_expired_and_zero(st: Any) -> None:
    await st.create_registration_token(tok("zero", uses=0))
    await st.create_registration_token(tok("soon", expiry=NOW + 10))
    assert await st.reserve_registration_token("nope", "s1", NOW) is R.INVALID
    assert await st.reserve_registration_token("zero", "s1", NOW) is R.INVALID
    assert await st.reserve_registration_token("soon", "s1", NOW + 10) is R.INVALID
    # a refused reservation binds nothing: the session may still use a good token
    assert await st.reserve_registration_token("soon", "s1", NOW + 9) is R.RESERVED
    assert await st.get_registration_token("zero") == tok("zero", 0)


async def test_deleted_token_sessions_end_quietly(st: Any) -> None:
    await st.create_registration_token(tok("t", 5))
    await st.create_registration_token(tok("kept", 5))
    assert await st.reserve_registration_token("t", "s1", NOW) is R.RESERVED
    assert await st.reserve_registration_token("t", "s2", NOW) is R.RESERVED
    assert await st.reserve_registration_token("kept", "s3", NOW) is R.RESERVED
    assert await st.delete_registration_token("t")
    # a new token of that name starts from zero, whatever the old sessions do
    await st.create_registration_token(tok("t", 5))
    assert await st.complete_registration_token("s1") is None
    assert await st.release_registration_token("s2") is None
    assert await st.get_registration_token("t") == tok("t", 5)
    # the deleted token's sessions are free again; others keep theirs
    assert await st.reserve_registration_token("t", "s1", NOW) is R.RESERVED
    assert await st.reserve_registration_token("t", "s3", NOW) is R.TOKEN_CHANGED
    assert await st.complete_registration_token("s3") == "kept"


async def test_release_stale(st: Any) -> None:
    await st.create_registration_token(tok("t", 3))
    assert await st.reserve_registration_token("t", "old1", NOW - 100) is R.RESERVED
    assert await st.reserve_registration_token("t", "old2", NOW - 50) is R.RESERVED
    assert await st.reserve_registration_token("t", "new", NOW) is R.RESERVED
    assert await st.release_stale_registration_tokens(NOW - 10) == 2
    assert await st.get_registration_token("t") == tok("t", 3, pending=1)
    assert await st.release_stale_registration_tokens(NOW - 10) == 0
    assert await st.complete_registration_token("old1") is None
    assert await st.complete_registration_token("new") == "t"
    assert await st.get_registration_token("t") == tok("t", 3, pending=0, completed=1)


async def test_concurrent_reservations_never_exceed_uses(st: Any) -> None:
    await st.create_registration_token(tok("five", 5))
    results = await asyncio.gather(*(st.reserve_registration_token("five", f"s{i}", NOW)
                                     for i in range(50)))
    assert results.count(R.RESERVED) == 5
    assert results.count(R.INVALID) == 45
    assert await st.get_registration_token("five") == tok("five", 5, pending=5)
    winners = [f"s{i}" for i, r in enumerate(results) if r is R.RESERVED]
    done = await asyncio.gather(*(st.complete_registration_token(s) for s in winners))
    assert done == ["five"] * 5
    assert await st.get_registration_token("five") == tok("five", 5, completed=5)


# -- Dendrite's table, as Dendrite reads and writes it --------------------------------------
# Dendrite's own statements (userapi/storage/*/registration_tokens_table.go), verbatim in
# meaning: its inserts and its "valid" listing on our rows, and ours on its rows.
DENDRITE_INSERT = ("INSERT INTO userapi_registration_tokens (token, uses_allowed, expiry_time,"
                   " pending, completed) VALUES (%s, %s, %s, %s, %s)")
DENDRITE_LIST_VALID = ("SELECT * FROM userapi_registration_tokens WHERE"
                       " (uses_allowed > pending + completed OR uses_allowed IS NULL) AND"
                       " (expiry_time > %s OR expiry_time IS NULL)")


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
async def sql(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    storage = await make_storage(request, request.param, tmp_path)
    inner = unwrapped(storage)
    assert isinstance(inner, SqlStorage)
    yield inner
    await storage.close()


async def test_dendrite_and_we_share_the_table(sql: SqlStorage) -> None:
    await sql._run(exec_(DENDRITE_INSERT, ("by-dendrite", 2, None, 0, 0)), write=True)
    assert await sql.get_registration_token("by-dendrite") == tok("by-dendrite", 2)
    assert await sql.reserve_registration_token("by-dendrite", "s1", NOW) is R.RESERVED
    assert await sql.complete_registration_token("s1") == "by-dendrite"
    await sql.create_registration_token(tok("by-us", 1, LATER))
    await sql.create_registration_token(tok("used", 1, completed=1))
    rows = await sql._run(select(DENDRITE_LIST_VALID, (NOW,)), write=False)
    # Dendrite's SELECT * column order: token, pending, completed, uses_allowed, expiry_time
    assert sorted(rows) == [("by-dendrite", 0, 1, 2, None), ("by-us", 0, 0, 1, LATER)]
    # rows with NULL counters (written by hand) still count as 0 for us
    await sql._run(exec_("INSERT INTO userapi_registration_tokens (token, uses_allowed)"
                         " VALUES (%s, %s)", ("nulls", 1)), write=True)
    assert await sql.get_registration_token("nulls") == tok("nulls", 1)
    assert await sql.reserve_registration_token("nulls", "s2", NOW) is R.RESERVED
    assert await sql.get_registration_token("nulls") == tok("nulls", 1, pending=1)
