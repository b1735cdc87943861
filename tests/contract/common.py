"""What every part of the storage contract shares: names, builders and the ``st`` fixture
(every backend shipped, opened)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import (
    AccountType,
    MembershipChange,
    NewAccount,
    NewRoom,
    NoticeTxnKey,
)

from ..conftest import room_events
from ..sql_backends import BACKENDS, make_storage

SN = "contract.example"
U = UserID.from_stored
ALICE = UserID("alice", SN)
BOB = UserID("bob", SN)
SERVER_USER = f"@_server:{SN}"
FAR = 10**13  # a timestamp far in the future


@pytest.fixture(params=BACKENDS)
async def st(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    storage = await make_storage(request, request.param, tmp_path)
    yield storage
    await storage.close()


def account(localpart: str, kind: AccountType = AccountType.USER, **kw: Any) -> NewAccount:
    return NewAccount(UserID(localpart, SN), kw.pop("password_hash", "hash-" + localpart), kind,
                      kw.pop("created_ts", 1_000), **kw)


async def make_room(st: AdminStorage, creator: str = SERVER_USER) -> str:
    maker: Any = st  # create_room is a test utility of every backend, not a protocol method
    room_id: str = await maker.create_room(NewRoom(
        creator=U(creator), room_version="10", create_content={"creator": creator},
        initial_state=(
            ("m.room.member", creator, {"membership": "join", "displayname": "Srv"}),
            ("m.room.power_levels", "", {"users": {creator: 100}}),
            ("m.room.join_rules", "", {"join_rule": "invite"}),
        )))
    return room_id


def joins(*user_ids: str, **names: str) -> list[MembershipChange]:
    return [MembershipChange(U(u), U(u), {"membership": "join",
                                    **({"displayname": names[u[1:].split(":")[0]]}
                                       if u[1:].split(":")[0] in names else {})})
            for u in user_ids]


def message_bodies(st: AdminStorage, room_id: str) -> list[str]:
    return [e["content"]["body"] for e in room_events(st, room_id)
            if e["type"] == "m.room.message"]


async def send_once(st: AdminStorage, room_id: str, key: NoticeTxnKey, body: str,
                    ts: int) -> str:
    return await st.send_event(room_id, U(SERVER_USER), "m.room.message",
                               {"msgtype": "m.text", "body": body}, txn=key, txn_ts=ts)
