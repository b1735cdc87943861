"""A server process for the benchmarks: the real standalone admin server, or the
ceiling (a bare aiohttp JSON handler), started the same way and seeded before it listens.

    python -m tests.benchmarks.server [--ceiling | --floor] [--hash-on-loop]
        [--form DEVICE=FORM ...] serve --config FILE

The admin server is :func:`dendrite_admin_ext.server.build_standalone_app` run like
``run_server`` does; the only additions are the seeding (``BENCH_*`` accounts made
through the storage protocol, so the memory backend can be benchmarked too), a
``/_bench/stats`` route outside the admin prefixes, and the ``--hash-on-loop`` switch
that puts bcrypt back on the event loop to show what the thread pool buys, and
``--form`` that swaps one speed device for its plain form or back (``devices.py``).

``--floor`` serves the ceiling's whois handler mounted the way the admin API is mounted
(one sub-application per admin prefix, each behind one pass-through middleware) and
nothing else: the most any admin API of that shape could reach, before it authenticates
anyone or reads anything.
"""

from __future__ import annotations

import argparse
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from dendrite_admin_ext.config import Config, load_config
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.passwords import PasswordHasher
from dendrite_admin_ext.server import build_standalone_app
from dendrite_admin_ext.storage import storage_from_config
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import AdminStorage
from dendrite_admin_ext.storage.types import AccountType, NewAccount, NewDevice

from .devices import apply_form, unwrap_storage

__all__ = ["ADMIN_TOKEN", "RESET_USERS", "WHOIS_ADMINS", "main", "reset_token",
           "whois_admin", "whois_token"]

ADMIN = "bench_admin"
ADMIN_TOKEN = "bench-admin-token"
NOTIFIED = "bench_notified"
RESET_USERS = 16
# whois load: connection ``w`` authenticates as admin ``w`` and asks about itself, so
# no two connections share a token or a target (no read is the same as another's).
WHOIS_ADMINS = 64


def reset_token(i: int) -> str:
    return f"bench-reset-token-{i}"


def whois_admin(i: int | str) -> str:
    return f"bench_admin{i}"


def whois_token(i: int | str) -> str:
    return f"bench-admin-token-{i}"


# A whois answer of the size the admin server gives for a seeded admin (one device,
# seen from one address); the ceiling puts the asked-for user ID in it.
_CEILING_WHOIS = {"user_id": "@bench_admin:bench.example", "devices": {"BENCHDEV": {
    "sessions": [{"connections": [
        {"ip": "127.0.0.1", "last_seen": 1_700_000_000_000, "user_agent": "bench"}]}]}}}


async def _ceiling_whois(request: web.Request) -> web.Response:
    return web.json_response({**_CEILING_WHOIS, "user_id": request.match_info["user_id"]})


async def _ceiling_notice(request: web.Request) -> web.Response:
    body = await request.json()
    assert isinstance(body, dict)
    return web.json_response({"event_id": "$" + secrets.token_urlsafe(32)})


async def _ceiling_nonce(request: web.Request) -> web.Response:
    return web.json_response({"nonce": secrets.token_hex(32)})


ADMIN_PREFIXES = ("/_dendrite/admin", "/_synapse/admin", "/_matrix/client/r0/admin",
                  "/_matrix/client/v3/admin")


@web.middleware
async def _pass_through(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


def floor_app() -> web.Application:
    app = web.Application()
    for prefix in ADMIN_PREFIXES:
        sub = web.Application(middlewares=[_pass_through])
        sub.router.add_get("/whois/{user_id:.+}", _ceiling_whois)
        app.add_subapp(prefix, sub)
    return app


def ceiling_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/_matrix/client/v3/admin/whois/{user_id:.+}", _ceiling_whois)
    app.router.add_put("/_synapse/admin/v1/send_server_notice/{txn_id}", _ceiling_notice)
    app.router.add_get("/_synapse/admin/v1/register", _ceiling_nonce)
    return app


async def seed(storage: AdminStorage, server_name: str) -> None:
    async def account(localpart: str, kind: AccountType, device: str, token: str) -> None:
        if await storage.get_account(UserID(localpart, server_name)) is not None:
            return  # a restarted server on a kept database
        await storage.create_account(
            NewAccount(UserID(localpart, server_name), None, kind, 1_000, display_name=localpart),
            NewDevice(device, token, "bench"))

    await account(ADMIN, AccountType.ADMIN, "BENCHDEV", ADMIN_TOKEN)
    await account(NOTIFIED, AccountType.USER, "NOTIFIEDDEV", "bench-notified-token")
    for i in range(RESET_USERS):
        await account(f"bench_reset{i}", AccountType.USER, f"RESETDEV{i}", reset_token(i))
    for i in range(WHOIS_ADMINS):
        await account(whois_admin(i), AccountType.ADMIN, f"WHOISDEV{i}", whois_token(i))


async def _stats(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    nonces = len(storage.nonces) if isinstance(storage, MemoryStorage) else None
    return web.json_response({"nonces": nonces})


STORAGE_KEY = web.AppKey("bench_storage", AdminStorage)


def admin_app(config: Config, forms: dict[str, str] | None = None) -> web.Application:
    storage = unwrap_storage(storage_from_config(config.database), forms or {})
    app = build_standalone_app(config, storage)
    app[STORAGE_KEY] = storage

    async def on_startup(_app: web.Application) -> None:
        # on_startup runs after the admin API's cleanup_ctx has opened the storage.
        await seed(storage, config.server_name)

    app.on_startup.append(on_startup)
    app.router.add_get("/_bench/stats", _stats)
    return app


def _hash_on_loop() -> None:
    async def hash_on_loop(self: PasswordHasher, password: str) -> str:
        return self.hash_sync(password)

    PasswordHasher.hash = hash_on_loop  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--ceiling", action="store_true")
    kind.add_argument("--floor", action="store_true")
    parser.add_argument("--hash-on-loop", action="store_true")
    parser.add_argument("--form", action="append", default=[], metavar="DEVICE=FORM",
                        help="a speed device's form: device or plain (see devices.py)")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    logging.basicConfig(level=config.logging.level)
    if args.hash_on_loop:
        _hash_on_loop()
    forms = dict(f.split("=", 1) for f in args.form)
    for device, form in forms.items():
        apply_form(device, form)
    app = (ceiling_app() if args.ceiling else floor_app() if args.floor
           else admin_app(config, forms))
    # The same knobs as dendrite_admin_ext.server.run_server, so both processes have
    # the same shape.
    run_kwargs: dict[str, Any] = {"shutdown_timeout": 5.0, "print": None, "access_log": None,
                                  "handle_signals": True}
    web.run_app(app, host=config.listen.host, port=config.listen.port, **run_kwargs)


if __name__ == "__main__":
    main()
