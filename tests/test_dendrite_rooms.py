"""The room list, details and members beside Dendrite (SPEC 8 and 11), read from
Dendrite's roomserver tables (tests/dendrite_schema.py), read-only, on SQLite and
PostgreSQL, with the roomserver in the userapi's database or in one of its own
(``homeserver.roomserver_database``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dendrite_admin_ext.config import ConfigError
from dendrite_admin_ext.storage.sql.ops import Op, Stmt
from dendrite_admin_ext.validation import Schemas

from .conftest import Harness, make_config
from .dendrite_schema import (
    INVITE,
    JOIN,
    LEAVE_OR_BAN,
    SERVER,
    DendriteDb,
    build_roomserver,
)
from .test_dendrite_admin_api import AUTH, _harness
from .test_dendrite_shared import ENGINES, _new_db

REMOTE = "remote.example"
ADMIN = f"@admin:{SERVER}"
ALICE = f"@alice:{SERVER}"
ROOM_A, ROOM_B, ROOM_C, ROOM_D = (f"!a:{SERVER}", f"!b:{SERVER}", f"!c:{SERVER}",
                                  f"!d:{REMOTE}")
ROOMS = "/_synapse/admin/v1/rooms"


def _roomserver_db(request: pytest.FixtureRequest, tmp_path: Path, userapi: DendriteDb,
                   where: str) -> DendriteDb:
    """The roomserver's tables: in the userapi's database ("same") or in a database
    of their own ("separate", as Dendrite's SQLite default is)."""
    if where == "same":
        return build_roomserver(userapi)
    if userapi.engine == "sqlite":
        return build_roomserver(DendriteDb("sqlite", "fresh", path=tmp_path / "roomserver.db"))
    server = request.getfixturevalue("pg_server")
    name = server.new_database(empty=True)
    request.addfinalizer(lambda: server.drop_database(name))
    return build_roomserver(DendriteDb("postgres", "fresh", dsn=server.dsn_for(name)))


def _populate(rs: DendriteDb) -> None:
    """Four rooms with local and remote members, invites, leaves and a ban."""
    event = iter(range(100, 1000))
    a = rs.create_room(ROOM_A, "10")
    for user in (ALICE, ADMIN, f"@r1:{REMOTE}"):
        rs.set_membership(a, user, JOIN, next(event))
    rs.set_membership(a, f"@bob:{SERVER}", INVITE, 0)
    rs.set_membership(a, f"@carol:{SERVER}", LEAVE_OR_BAN, next(event))
    b = rs.create_room(ROOM_B, "9")
    for user in (f"@r1:{REMOTE}", f"@r2:{REMOTE}"):
        rs.set_membership(b, user, JOIN, next(event))
    c = rs.create_room(ROOM_C, "10")
    rs.set_membership(c, ALICE, JOIN, next(event))
    rs.set_membership(c, f"@r3:{REMOTE}", LEAVE_OR_BAN, next(event))  # banned
    d = rs.create_room(ROOM_D, "11")
    rs.set_membership(d, ALICE, LEAVE_OR_BAN, next(event))


@pytest.fixture(params=["same", "separate"])
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ENGINES)
def dbs(request: pytest.FixtureRequest, tmp_path: Path, where: str
        ) -> tuple[DendriteDb, DendriteDb]:
    userapi = _new_db(request, tmp_path, request.param, "fresh")
    roomserver = _roomserver_db(request, tmp_path, userapi, where)
    _populate(roomserver)
    return userapi, roomserver


def _extra(userapi: DendriteDb, roomserver: DendriteDb) -> dict[str, Any]:
    if roomserver is userapi:
        return {}
    location = str(roomserver.path) if roomserver.engine == "sqlite" else roomserver.dsn
    return {"homeserver": {"roomserver_database": location}}


@pytest.fixture
async def h(aiohttp_client: Any, schemas: Schemas, tmp_path: Path,
            dbs: tuple[DendriteDb, DendriteDb]) -> Harness:
    userapi, roomserver = dbs
    return await _harness(aiohttp_client, schemas, userapi, tmp_path, None,
                          **_extra(userapi, roomserver))


async def _get(h: Harness, path: str, **params: str) -> tuple[int, Any]:
    resp = await h.client.get(path, headers=AUTH, params=params)
    return resp.status, await resp.json()


async def test_the_room_list_reads_dendrites_rooms(
        h: Harness, dbs: tuple[DendriteDb, DendriteDb]) -> None:
    userapi, roomserver = dbs
    before = roomserver.table_rows(), roomserver.catalogue(), userapi.catalogue()

    status, body = await _get(h, ROOMS)
    assert status == 200
    assert body["total_rooms"] == 4 and body["offset"] == 0
    assert "next_batch" not in body and "prev_batch" not in body
    rooms = {r["room_id"]: r for r in body["rooms"]}
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_A, ROOM_B, ROOM_C, ROOM_D]
    assert {k: (r["version"], r["joined_members"], r["joined_local_members"])
            for k, r in rooms.items()} == {
        ROOM_A: ("10", 3, 2), ROOM_B: ("9", 2, 0), ROOM_C: ("10", 1, 1), ROOM_D: ("11", 0, 0)}
    # Synapse's keys all there; what comes from room state is not read: null
    assert rooms[ROOM_A]["name"] is None and rooms[ROOM_A]["canonical_alias"] is None
    assert {"creator", "public", "join_rules", "state_events", "room_type"} <= set(
        rooms[ROOM_A])

    # largest first by default (Synapse), ties by room ID; "size" is Synapse's alias
    for order in ("joined_members", "size"):
        _, body = await _get(h, ROOMS, order_by=order)
        assert [r["room_id"] for r in body["rooms"]] == [ROOM_A, ROOM_B, ROOM_C, ROOM_D]
    _, body = await _get(h, ROOMS, order_by="joined_members", dir="b")
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_D, ROOM_C, ROOM_B, ROOM_A]
    _, body = await _get(h, ROOMS, order_by="joined_local_members")
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_A, ROOM_C, ROOM_B, ROOM_D]
    _, body = await _get(h, ROOMS, order_by="name", dir="b")
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_D, ROOM_C, ROOM_B, ROOM_A]

    # pages
    status, body = await _get(h, ROOMS, limit="2")
    assert status == 200 and [r["room_id"] for r in body["rooms"]] == [ROOM_A, ROOM_B]
    assert body["next_batch"] == 2 and body["total_rooms"] == 4
    _, body = await _get(h, ROOMS, limit="2", **{"from": "2"})
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_C, ROOM_D]
    assert "next_batch" not in body and body["prev_batch"] == 0
    _, body = await _get(h, ROOMS, limit="2", order_by="joined_members", **{"from": "1"})
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_B, ROOM_C]
    _, body = await _get(h, ROOMS, **{"from": "10"})
    assert body["rooms"] == [] and body["total_rooms"] == 4
    # Synapse's empty_rooms: nobody joined
    _, body = await _get(h, ROOMS, empty_rooms="true")
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_D] and body["total_rooms"] == 1
    _, body = await _get(h, ROOMS, empty_rooms="false", order_by="size", limit="2")
    assert [r["room_id"] for r in body["rooms"]] == [ROOM_A, ROOM_B]
    assert body["total_rooms"] == 3 and body["next_batch"] == 2

    # details and members
    status, body = await _get(h, f"{ROOMS}/{ROOM_A}")
    assert status == 200
    assert (body["room_id"], body["version"], body["joined_members"],
            body["joined_local_members"]) == (ROOM_A, "10", 3, 2)
    assert body["topic"] is None and body["joined_local_devices"] is None
    status, body = await _get(h, f"{ROOMS}/{ROOM_A}/members")
    assert status == 200
    assert body == {"members": [ADMIN, ALICE, f"@r1:{REMOTE}"], "total": 3}
    _, body = await _get(h, f"{ROOMS}/{ROOM_D}/members")
    assert body == {"members": [], "total": 0}

    # nothing of Dendrite's changed: rows, schema, journal mode
    assert (roomserver.table_rows(), roomserver.catalogue(), userapi.catalogue()) == before


async def test_the_readers_connection_cannot_write(
        h: Harness, dbs: tuple[DendriteDb, DendriteDb]) -> None:
    """Read-only by the database's own rule, not only by the statements sent."""
    _, roomserver = dbs
    before = roomserver.table_rows()
    reader = h.ctx.dendrite_rooms
    assert reader is not None

    def delete() -> Op[int]:
        res = yield Stmt("DELETE FROM roomserver_membership")
        return res.rowcount

    with pytest.raises(Exception, match=r"(?i)read.only|readonly"):
        await reader._db._run(delete(), write=False)
    assert roomserver.table_rows() == before
    assert (await _get(h, ROOMS))[1]["total_rooms"] == 4  # and it still reads


async def test_what_dendrites_tables_cannot_answer_is_refused(h: Harness) -> None:
    for params in ({"order_by": "state_events"}, {"order_by": "canonical_alias"},
                   {"search_term": "a"}, {"public_rooms": "true"}):
        status, body = await _get(h, ROOMS, **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params
        assert "beside dendrite" in body["error"].lower()
    # bad input is refused as everywhere
    status, body = await _get(h, ROOMS, order_by="nonsense")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # unknown rooms
    for path in (f"{ROOMS}/!nope:{SERVER}", f"{ROOMS}/!nope:{SERVER}/members"):
        status, body = await _get(h, path)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), path
    # what needs room state or this package's tables stays unmounted beside Dendrite:
    # /state and /block then reach the details route, whose room ID they are not
    status, body = await _get(h, "/_dendrite/admin/emptyRooms")
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    for path in (f"{ROOMS}/{ROOM_A}/state", f"{ROOMS}/{ROOM_A}/block"):
        status, body = await _get(h, path)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), (path, body)
        resp = await h.client.put(path, headers=AUTH, json={"block": True})
        assert resp.status == 405, path
    # admins only, checked before any lookup
    resp = await h.client.get(ROOMS)
    assert resp.status == 401


@pytest.mark.parametrize("engine", ENGINES)
async def test_without_roomserver_tables_the_room_reads_say_where_to_look(
        request: pytest.FixtureRequest, aiohttp_client: Any, schemas: Schemas,
        tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture) -> None:
    """Dendrite on SQLite keeps the roomserver in a file of its own by default: a
    deployment that names only the userapi's still starts, creates nothing, and the
    room reads say what to set."""
    userapi = _new_db(request, tmp_path, engine, "fresh")
    before = userapi.catalogue()
    h = await _harness(aiohttp_client, schemas, userapi, tmp_path, None)
    assert "roomserver tables were not found" in caplog.text
    for path in (ROOMS, f"{ROOMS}/{ROOM_A}", f"{ROOMS}/{ROOM_A}/members"):
        status, body = await _get(h, path)
        assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED"), path
        assert "homeserver.roomserver_database" in body["error"]
    assert (await h.client.get(f"/_synapse/admin/v1/whois/{ADMIN}", headers=AUTH)).status == 200
    assert userapi.catalogue() == before
    # once Dendrite has them, they are read
    build_roomserver(userapi)
    _populate(userapi)
    status, body = await _get(h, ROOMS)
    assert status == 200 and body["total_rooms"] == 4


def test_roomserver_database_config(schemas: Schemas, tmp_path: Path) -> None:
    config = make_config(schemas, database={"backend": "sqlite", "path": "d.db",
                                            "shared_with": "dendrite"},
                         homeserver={"roomserver_database": "file:/srv/roomserver.db"})
    assert config.homeserver.roomserver_database == "/srv/roomserver.db"
    assert "roomserver" not in repr(config.homeserver)  # may be a DSN with a password
    with pytest.raises(ConfigError, match="shared_with"):
        make_config(schemas, database={"backend": "sqlite", "path": "d.db"},
                    homeserver={"roomserver_database": "roomserver.db"})
