"""Shared fixtures: a host application with the admin API mounted, and helpers to make
accounts and tokens directly in storage."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from dendrite_admin_ext import AdminContext, Config, UserID, parse_config, setup_admin
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType, NewAccount, NewDevice
from dendrite_admin_ext.validation import Schemas, load_schemas

from .postgres import PgServer, pg_dsn, pg_server, pg_shared_database  # noqa: F401
from .sql_backends import BACKENDS, make_storage

SERVER = "test.example"
SECRET = "dendritetest"


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return load_schemas()


def make_config(schemas: Schemas, **overrides: Any) -> Config:
    raw: dict[str, Any] = {
        "server_name": SERVER,
        "database": {"backend": "memory"},
        "registration_shared_secret": SECRET,
        "passwords": {"bcrypt_cost": 4},
        "server_notices": {"enabled": True},
        "http": {"activity_flush_interval": 0.05},
        # On, as in example_config.yaml, so that the route-walking tests cover it.
        "client_login": {"enabled": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    if raw["database"].get("shared_with") and "client_login" not in overrides:
        # Beside a homeserver, login is the homeserver's (SPEC 13: refused together).
        raw["client_login"] = {"enabled": False}
    return parse_config(raw, schemas=schemas)


@dataclass
class User:
    user_id: UserID
    token: str
    device_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(storage: AdminStorage, localpart: str,
                    account_type: AccountType = AccountType.USER,
                    password_hash: str | None = None, server_name: str = SERVER) -> User:
    token = secrets.token_urlsafe(16)
    device_id = "DEV" + secrets.token_hex(4).upper()
    await storage.create_account(
        NewAccount(UserID(localpart, server_name), password_hash, account_type, 1_000,
                   display_name=localpart),
        NewDevice(device_id, token, "test device"),
    )
    return User(UserID(localpart, server_name), token, device_id)


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands for the host's own middleware: it must keep working beside the admin API."""
    response = await handler(request)
    response.headers["X-Host-Middleware"] = "1"
    return response


async def host_ping(request: web.Request) -> web.Response:
    return web.json_response({"host": True})


def make_host_app(config: Config, storage: AdminStorage,
                  schemas: Schemas | None = None) -> tuple[web.Application, AdminContext]:
    app = web.Application(middlewares=[host_middleware])
    app.router.add_get("/_matrix/client/v3/ping", host_ping)
    ctx = setup_admin(app, config, storage, schemas=schemas)
    return app, ctx


@dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    ctx: AdminContext
    storage: AdminStorage

    async def user(self, localpart: str, *, admin: bool = False,
                   account_type: AccountType | None = None) -> User:
        kind = account_type or (AccountType.ADMIN if admin else AccountType.USER)
        return await make_user(self.storage, localpart, kind)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest,
                  tmp_path: Path) -> AsyncIterator[AdminStorage]:
    """Every backend shipped: the HTTP tests run on each (opened here; the admin app's
    own open/close nest inside)."""
    st = await make_storage(request, request.param, tmp_path)
    yield st
    await st.close()


@pytest.fixture
def harness_factory(aiohttp_client: Any, schemas: Schemas,
                    storage: AdminStorage) -> HarnessFactory:
    async def factory(storage_override: AdminStorage | None = None,
                      **overrides: Any) -> Harness:
        st = storage_override or storage
        app, ctx = make_host_app(make_config(schemas, **overrides), st, schemas)
        client = await aiohttp_client(app)
        return Harness(client, ctx, st)

    return factory


@pytest.fixture
async def h(harness_factory: HarnessFactory) -> Harness:
    return await harness_factory()


# -- room administration: one scenario suite over the shipped storage and a host's ------
# "host" is tests/host_storage.py: an independent, event-sourced implementation written
# from the protocol's docstrings, which also enforces the room auth rules.
# (Imports here, not at the top: this section is appended to a shared file.)
from collections.abc import Sequence  # noqa: E402

from dendrite_admin_ext.storage.types import MembershipChange, NewRoom  # noqa: E402

from .host_storage import HostStorage  # noqa: E402

_uid = UserID.from_stored  # user IDs written as strings in these tests


@pytest.fixture(params=[*BACKENDS, "host"])
async def room_storage(request: pytest.FixtureRequest,
                       tmp_path: Path) -> AsyncIterator[AdminStorage]:
    st: AdminStorage = (HostStorage() if request.param == "host"
                        else await make_storage(request, request.param, tmp_path))
    yield st
    await st.close()


@pytest.fixture
def room_harness_factory(aiohttp_client: Any, schemas: Schemas,
                         room_storage: AdminStorage) -> HarnessFactory:
    async def factory(**overrides: Any) -> Harness:
        app, ctx = make_host_app(make_config(schemas, **overrides), room_storage, schemas)
        return Harness(await aiohttp_client(app), ctx, room_storage)

    return factory


@pytest.fixture
async def rh(room_harness_factory: HarnessFactory) -> Harness:
    return await room_harness_factory()


REMOTE = "remote.example"


async def make_room(storage: AdminStorage, creator: str, *,
                    joined: Sequence[str | tuple[str, str | None, str | None]] = (),
                    invited: Sequence[str] = (), batch: int = 1000) -> str:
    """A public room made through the protocol only.  ``joined`` entries are user IDs
    or (user ID, displayname, avatar_url)."""
    # Not part of any storage protocol: every backend here can create rooms for tests.
    maker: Any = storage
    room_id: str = await maker.create_room(NewRoom(
        creator=UserID.from_stored(creator), room_version="10", create_content={"creator": creator},
        initial_state=(
            ("m.room.member", creator, {"membership": "join"}),
            ("m.room.power_levels", "", {"users": {creator: 100}}),
            ("m.room.join_rules", "", {"join_rule": "public"}),
        )))
    changes: list[MembershipChange] = []
    for entry in joined:
        user_id, name, avatar = (entry, None, None) if isinstance(entry, str) else entry
        content: dict[str, Any] = {"membership": "join"}
        if name is not None:
            content["displayname"] = name
        if avatar is not None:
            content["avatar_url"] = avatar
        changes.append(MembershipChange(_uid(user_id), _uid(user_id), content))
    changes += [MembershipChange(_uid(creator), _uid(u), {"membership": "invite"}) for u in invited]
    for i in range(0, len(changes), batch):
        await storage.apply_memberships(room_id, changes[i:i + batch])
    return room_id


def room_events(storage: AdminStorage, room_id: str) -> list[dict[str, Any]]:
    """The room's events in order, read the way the host's own APIs would."""
    if isinstance(storage, MemoryStorage):
        return [e for e in storage.events if e["room_id"] == room_id]
    reader = getattr(storage, "room_events", None)
    if reader is None:
        pytest.skip(f"{type(storage).__name__} cannot list a room's events in tests")
    events: list[dict[str, Any]] = reader(room_id)
    return events


def room_state(storage: AdminStorage, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for event in room_events(storage, room_id):
        if "state_key" in event:
            state[(event["type"], event["state_key"])] = event
    return state


def room_tags(storage: AdminStorage, user: UserID, room_id: str) -> dict[str, Any]:
    if isinstance(storage, MemoryStorage):
        data = storage.account_data.get((str(user), room_id, "m.tag"), {"tags": {}})
        return dict(data["tags"])
    reader = getattr(storage, "room_tags", None)
    if reader is None:
        pytest.skip(f"{type(storage).__name__} cannot read account data in tests")
    tags: dict[str, Any] = reader(user, room_id)
    return tags


# -- hypothesis profiles (tests/test_fuzz*.py) ----------------------------------------------
# "ci" (the default) keeps the suite within CI's budget; a long fuzzing run is
#   HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py tests/test_fuzz_openapi.py
# (or --hypothesis-profile=long); --hypothesis-seed=N re-runs with another seed.
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

# The fuzz tests drive one app per test through many examples on purpose.
_FUZZ_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=200, deadline=None, database=None,
                          suppress_health_check=_FUZZ_CHECKS, print_blob=True)
settings.register_profile("long", max_examples=5_000, deadline=None,
                          suppress_health_check=_FUZZ_CHECKS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- a standalone server's database section, on a database of the test's own ---------------
SERVER_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SERVER_BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The ``database:`` section of a config, on a database of this test's own (the SQL
    backends a standalone server process can share with the test)."""
    if request.param == "sqlite":
        yield {"backend": "sqlite", "path": str(tmp_path / "admin.db")}
        return
    pg: PgServer = request.getfixturevalue("pg_server")
    name = pg.new_database()
    yield {"backend": "postgres", "dsn": pg.dsn_for(name), "connect_timeout": 5}
    pg.drop_database(name)
