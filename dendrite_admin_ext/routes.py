"""The route table: every admin path, its handler, access level and config switch.

This table is the single source for mounting (:mod:`.app`), the OpenAPI document and the
tests that walk every route (auth matrix, fuzzing), so a new route cannot escape them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp.typedefs import Handler

from .auth import Access
from .config import Config
from .handlers import notices, registration, rooms, users

__all__ = ["PREFIXES", "ROUTES", "RouteSpec", "enabled_routes"]

DENDRITE = "/_dendrite/admin"
SYNAPSE = "/_synapse/admin"
CLIENT_V3 = "/_matrix/client/v3/admin"
CLIENT_R0 = "/_matrix/client/r0/admin"
PREFIXES = (DENDRITE, SYNAPSE, CLIENT_V3, CLIENT_R0)

# Trailing identifiers use ".+" so an unencoded '/' (legal in localparts) still routes.
_USER = "{user_id:.+}"
_ROOM = "{room_id:.+}"


@dataclass(frozen=True)
class RouteSpec:
    prefix: str
    method: str
    path: str
    handler: Handler
    access: Access
    feature: str
    summary: str
    body_schema: str | None = None

    @property
    def full_path(self) -> str:
        return self.prefix + self.path


_FEATURES: dict[str, Callable[[Config], bool]] = {
    "whois": lambda c: c.endpoints.whois,
    "reset_password": lambda c: c.endpoints.reset_password,
    "register": lambda c: c.registration.enabled,
    "evacuate": lambda c: c.endpoints.evacuate,
    "server_notices": lambda c: c.server_notices.enabled,
}

ROUTES: list[RouteSpec] = [
    RouteSpec(DENDRITE, "POST", "/resetPassword/{user:.+}", users.reset_password,
              Access.ADMIN, "reset_password", "Reset a local user's password",
              "reset_password"),
    *(RouteSpec(DENDRITE, method, f"/evacuateRoom/{_ROOM}", rooms.evacuate_room,
                Access.ADMIN, "evacuate", "Part every local member from a room")
      for method in ("GET", "POST")),
    *(RouteSpec(DENDRITE, method, f"/evacuateUser/{_USER}", rooms.evacuate_user,
                Access.ADMIN, "evacuate",
                "Part a local user from every room and reject their invites")
      for method in ("GET", "POST")),
    RouteSpec(SYNAPSE, "POST", "/v1/send_server_notice", notices.send_notice, Access.ADMIN,
              "server_notices", "Send a server notice to a local user", "server_notice"),
    RouteSpec(SYNAPSE, "PUT", "/v1/send_server_notice/{txn_id}", notices.send_notice_txn,
              Access.ADMIN, "server_notices",
              "Send a server notice, idempotent per transaction id", "server_notice"),
    RouteSpec(SYNAPSE, "GET", "/v1/register", registration.get_nonce, Access.PUBLIC,
              "register", "Get a nonce for shared-secret registration"),
    RouteSpec(SYNAPSE, "POST", "/v1/register", registration.post_register, Access.PUBLIC,
              "register", "Register an account with the shared secret", "register"),
    RouteSpec(SYNAPSE, "GET", f"/v1/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
    RouteSpec(CLIENT_V3, "GET", f"/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
    RouteSpec(CLIENT_R0, "GET", f"/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
]


def register_feature(name: str, check: Callable[[Config], bool]) -> None:
    _FEATURES[name] = check


def enabled_routes(config: Config) -> list[RouteSpec]:
    return [r for r in ROUTES if _FEATURES[r.feature](config)]
