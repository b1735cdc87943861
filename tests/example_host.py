"""A worked example: a host homeserver that embeds the admin API.

Run it from the repository root::

    python -m tests.example_host --port 8008

It shows what a host does, and nothing more:

* it has its own ``web.Application``, routes and middlewares — they keep working, and
  they see the admin requests too (root middlewares wrap sub-applications), so the
  host's own auth must leave the admin paths to the admin API;
* it hands the admin API its own storage: ``HostStorage`` (tests/host_storage.py) is a
  complete implementation of :class:`dendrite_admin_ext.AdminStorage`, written from the
  protocol's docstrings alone, that the host also uses for its own routes — here it
  manages that storage's lifetime itself (``manage_storage=False``);
* its access log prints the path without the query string (a deprecated
  ``?access_token=`` must never reach a log), and its log lines carry the admin
  request ids (``RequestIdFilter``);
* it enforces account locking and suspension on its own client routes with one
  middleware (``moderation_middleware``), and advertises ``m.account_moderation`` to
  admins in ``/capabilities`` (``account_moderation_capabilities``).
* its ``POST /_matrix/client/v3/register`` takes registration tokens: a one-stage
  ``m.login.registration_token`` UIA flow built on the package's hook
  (:mod:`dendrite_admin_ext.services.registration_tokens`: reserve a use for the
  session, complete it once the account exists, release it when the session expires).

``tests/test_example_host.py`` runs this file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Container
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from dendrite_admin_ext import AdminContext, AdminStorage, Config, UserID, parse_config, setup_admin
from dendrite_admin_ext.errors import (
    InvalidUsername,
    MatrixError,
    MissingParam,
    NotJson,
    UserInUse,
    UserInUseError,
)
from dendrite_admin_ext.events import now_ms
from dendrite_admin_ext.identifiers import is_valid_localpart
from dendrite_admin_ext.moderation import (
    account_moderation_capabilities,
    moderation_middleware,
)
from dendrite_admin_ext.observability import RequestIdFilter
from dendrite_admin_ext.services.registration_tokens import (
    complete_token_use,
    release_stale_token_uses,
    release_token_use,
    reserve_token_use,
)
from dendrite_admin_ext.storage.types import AccountType, NewAccount, NewDevice, TokenOwner

from .host_storage import HostStorage

SERVER_NAME = "example.org"
USER_ID_KEY = web.RequestKey("example_host.user_id", str)
SESSION_KEY = web.RequestKey("example_host.session", TokenOwner)

# The admin API's configuration: the same keys as example_config.yaml (listen/database
# are ignored when embedded: the host owns both).
ADMIN_CONFIG: dict[str, Any] = {
    "server_name": SERVER_NAME,
    "registration_shared_secret": "example host secret, change me",
    "server_notices": {"enabled": True},
    "passwords": {"bcrypt_cost": 10},
    # CORS is this host's business, not the admin API's.
    "http": {"cors": False},
}


@web.middleware
async def server_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A host middleware that applies to every response, admin ones included."""
    response = await handler(request)
    response.headers["Server"] = "ExampleHS/1.0"
    return response


def host_auth(storage: AdminStorage, protected: Container[AbstractRoute]) -> Middleware:
    """The host's own auth, for the host's routes only.  Admin paths authenticate in
    the admin sub-application (and some, like shared-secret registration, need no
    token at all)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route in protected:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            session = await storage.get_token_owner(token) if token else None
            if session is None:
                return web.json_response({"errcode": "M_MISSING_TOKEN",
                                          "error": "Missing access token"}, status=401)
            request[USER_ID_KEY] = str(session.user)
            request[SESSION_KEY] = session
        return await handler(request)

    return middleware


async def versions(request: web.Request) -> web.Response:
    return web.json_response({"versions": ["v1.8"]})


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"user_id": request[USER_ID_KEY]})


# Stand-ins for the host's client API: just enough to show what the moderation
# middleware lets through (the real ones would sync, send, join …).
async def sync(request: web.Request) -> web.Response:
    return web.json_response({"next_batch": "s1", "rooms": {}})


async def send(request: web.Request) -> web.Response:
    return web.json_response({"event_id": "$" + request.match_info["txn_id"]})


async def join(request: web.Request) -> web.Response:
    return web.json_response({"room_id": request.match_info["room"]})


async def leave(request: web.Request) -> web.Response:
    return web.json_response({})


async def logout(request: web.Request) -> web.Response:
    return web.json_response({})


def capabilities(config: Config) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        is_admin = request[SESSION_KEY].account_type == AccountType.ADMIN
        return web.json_response({"capabilities": {
            "m.change_password": {"enabled": True},
            **account_moderation_capabilities(config, is_admin=is_admin),
        }})

    return handler


# -- registration with a token ----------------------------------------------------------
TOKEN_STAGE = "m.login.registration_token"
SESSION_LIFETIME_MS = 15 * 60_000  # how long a UIA session lives (the host decides)


@dataclass
class UiaSessions:
    """The host's UIA sessions (here in memory: one worker's own).  Only the token
    reservation lives in the admin API's storage, shared by every worker."""

    started: dict[str, int] = field(default_factory=dict)  # session ID -> created ms
    completed: dict[str, set[str]] = field(default_factory=dict)


ADMIN_KEY = web.AppKey("example_host.admin", AdminContext)
SESSIONS_KEY = web.AppKey("example_host.sessions", UiaSessions)


def _uia_challenge(session_id: str, done: set[str]) -> web.Response:
    return web.json_response({"flows": [{"stages": [TOKEN_STAGE]}], "params": {},
                              "session": session_id, "completed": sorted(done)},
                             status=401)


async def register(request: web.Request) -> web.Response:
    """``POST /_matrix/client/v3/register`` with one UIA stage,
    ``m.login.registration_token`` (Matrix spec; errors as Synapse answers them)."""
    ctx, sessions = request.app[ADMIN_KEY], request.app[SESSIONS_KEY]
    try:
        try:
            body = await request.json()
        except ValueError:
            raise NotJson("Content not JSON.") from None
        if not isinstance(body, dict):
            raise NotJson("Content must be a JSON object.")
        auth = body.get("auth")
        session_id = auth.get("session") if isinstance(auth, dict) else None
        if not isinstance(session_id, str) or session_id not in sessions.started:
            # First request (or an unknown session): start a session, ask for the stage.
            session_id = secrets.token_urlsafe(18)
            sessions.started[session_id] = now_ms()
            sessions.completed[session_id] = set()
            return _uia_challenge(session_id, set())
        done = sessions.completed[session_id]
        if isinstance(auth, dict) and auth.get("type") == TOKEN_STAGE:
            # Raises 400 (missing, changed) or 401 M_UNAUTHORIZED (invalid token).
            await reserve_token_use(ctx, auth.get("token"), session_id)
            done.add(TOKEN_STAGE)
        if TOKEN_STAGE not in done:
            return _uia_challenge(session_id, done)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise MissingParam("username and password are required")
        if not is_valid_localpart(username):
            raise InvalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
        user = UserID(username, ctx.config.server_name)
        device_id = "EX" + secrets.token_hex(5).upper()
        access_token = secrets.token_urlsafe(32)
        try:
            await ctx.storage.create_account(
                NewAccount(user, await ctx.hasher.hash(password), AccountType.USER,
                           now_ms(), display_name=username),
                NewDevice(device_id, access_token, "example host"))
        except UserInUseError:
            # The session keeps its reservation: the client may retry another name.
            raise UserInUse("User ID already taken.") from None
        await complete_token_use(ctx, session_id)
        del sessions.started[session_id], sessions.completed[session_id]
        return web.json_response({"user_id": str(user), "access_token": access_token,
                                  "device_id": device_id})
    except MatrixError as exc:
        return exc.response()


async def expire_sessions(app: web.Application) -> int:
    """End the UIA sessions past their lifetime and give back their token uses; also
    those of sessions another (perhaps crashed) worker started."""
    ctx, sessions = app[ADMIN_KEY], app[SESSIONS_KEY]
    horizon = now_ms() - SESSION_LIFETIME_MS
    for session_id, started in list(sessions.started.items()):
        if started < horizon:
            del sessions.started[session_id], sessions.completed[session_id]
            await release_token_use(ctx, session_id)
    return await release_stale_token_uses(ctx, SESSION_LIFETIME_MS)


async def session_expiry(app: web.Application) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):  # storage down: next minute
                await expire_sessions(app)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class PathOnlyAccessLogger(AbstractAccessLogger):
    """aiohttp's default format logs the request line, query string included."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method,
                         request.path, response.status, time * 1000)


def build_app(storage: AdminStorage | None = None) -> web.Application:
    store = storage or HostStorage()
    config = parse_config(ADMIN_CONFIG)
    protected: set[AbstractRoute] = set()
    app = web.Application(middlewares=[server_header, host_auth(store, protected),
                                       # Lock and suspension, for the host's routes.
                                       moderation_middleware(store)])
    app.router.add_get("/_matrix/client/versions", versions)
    client = "/_matrix/client/v3"
    for method, path, handler in (
        ("GET", "/account/whoami", whoami),
        ("GET", "/sync", sync),
        ("PUT", "/rooms/{room}/send/{type}/{txn_id}", send),
        ("POST", "/join/{room}", join),
        ("POST", "/rooms/{room}/leave", leave),
        ("POST", "/logout", logout),
        ("GET", "/capabilities", capabilities(config)),
    ):
        protected.add(app.router.add_route(method, client + path, handler))
    app.router.add_post("/_matrix/client/v3/register", register)

    async def storage_lifetime(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        yield
        await store.close()

    # The host's storage opens before, and closes after, the admin API's clean-up.
    app.cleanup_ctx.append(storage_lifetime)
    app[ADMIN_KEY] = setup_admin(app, config, store, manage_storage=False)
    app[SESSIONS_KEY] = UiaSessions()
    app.cleanup_ctx.append(session_expiry)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An example homeserver embedding "
                                                 "dendrite_admin_ext")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8008)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    web.run_app(build_app(), host=args.host, port=args.port, print=None,
                access_log_class=PathOnlyAccessLogger)


if __name__ == "__main__":
    main()
