"""The standalone server: the admin API on its own port, usually behind a reverse proxy.

Only here is ``X-Forwarded-For`` trusted, and only from the configured proxies; when
embedded, the client address is ``request.remote`` as the host set it.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from . import messages
from .addresses import IPAddress, IPNetwork, normalize_address, normalize_network, parse_ip
from .app import setup_admin
from .config import Config
from .errors import Unrecognized
from .storage import storage_from_config
from .storage.protocols import AdminStorage

__all__ = [
    "ListenError",
    "bind_listener",
    "build_standalone_app",
    "client_address",
    "forwarded_middleware",
    "run_server",
]

log = logging.getLogger(__name__)

def client_address(peer: str | None, forwarded_for: Sequence[str],
                   trusted: Sequence[IPNetwork]) -> str | None:
    """The client's address: walk ``X-Forwarded-For`` from the right while each hop is
    a trusted proxy; the first untrusted address is the client.  A peer that is not a
    trusted proxy is the client itself, whatever headers it sends.  Addresses are
    matched and returned in :mod:`.addresses`' normal form (an IPv4-mapped address is
    its IPv4 address)."""
    networks = [normalize_network(net) for net in trusted]

    def is_trusted(ip: IPAddress | None) -> bool:
        return ip is not None and any(ip in net for net in networks)

    if peer is not None:
        peer = normalize_address(peer)
    if not networks or not is_trusted(parse_ip(peer or "")):
        return peer
    hops = [h for header in forwarded_for for h in header.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            break  # garbage: stop at the last address we could trust
        client = str(ip)
        if not is_trusted(ip):
            break
    return client


def forwarded_middleware(trusted: Sequence[IPNetwork]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if trusted:
            real = client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                                  trusted)
            if real is not None and real != request.remote:
                request = request.clone(remote=real)
        return await handler(request)

    return middleware


def build_standalone_app(config: Config, storage: AdminStorage | None = None
                         ) -> web.Application:
    # The root app needs no body limit of its own: each admin route enforces
    # http.max_body_size itself.  Without trusted proxies the forwarded middleware would
    # only pass requests on: it is left out rather than paid for on every request.
    trusted = config.http.trusted_proxies
    app = web.Application(middlewares=[forwarded_middleware(trusted)] if trusted else [])
    setup_admin(app, config, storage or storage_from_config(config.database))
    # Paths outside the admin prefixes get a Matrix JSON 404 too.  A catch-all route
    # rather than a root middleware, which every admin request would pass through.
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def _not_found(request: web.Request) -> web.Response:
    return Unrecognized(messages.UNRECOGNIZED).response()


SHUTDOWN_TIMEOUT_S = 30.0
_BACKLOG = 128


class ListenError(Exception):
    """The listening socket could not be opened; the message is one line for the
    operator: the address, the reason, and what to do."""


def _explain(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return ("address already in use: stop the program listening there, or choose "
                "another 'listen.port' in the config")
    if exc.errno == errno.EACCES:
        return ("permission denied: ports below 1024 need privileges; choose another "
                "'listen.port' in the config")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ("address not available on this machine: check 'listen.host' in the "
                "config")
    if isinstance(exc, socket.gaierror):
        return "unknown host name: check 'listen.host' in the config"
    return f"{exc.strerror or exc}: check 'listen' in the config"


def bind_listener(host: str, port: int) -> socket.socket:
    """Open the listening socket for ``listen.host``/``listen.port`` (before the storage
    is opened or migrated: a server that cannot listen changes nothing).
    Raises :class:`ListenError`."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ListenError(f"Cannot listen on {where}: {_explain(exc)}.") from None
    return sock


async def _log_shutdown(_app: web.Application) -> None:
    log.info("dendrite_admin_ext shutting down: no new connections; finishing the "
             "requests in flight (up to %d s)", SHUTDOWN_TIMEOUT_S)


def run_server(config: Config) -> None:
    """Serve until SIGINT or SIGTERM.  The port is bound first, then the storage opened
    (and migrated) as the app starts.  Raises :class:`ListenError` when the port cannot
    be had."""
    sock = bind_listener(config.listen.host, config.listen.port)
    try:
        app = build_standalone_app(config)
        app.on_shutdown.append(_log_shutdown)
        log.info("dendrite_admin_ext serving %s on %s:%d (%s storage)", config.server_name,
                 config.listen.host, config.listen.port, config.database.backend)
        web.run_app(app, sock=sock, shutdown_timeout=SHUTDOWN_TIMEOUT_S, print=None,
                    access_log=None, handle_signals=True)
    finally:
        sock.close()
    log.info("dendrite_admin_ext stopped")
