"""The route table: every admin path, its handler, access level and config switch.

This table is the single source for mounting (:mod:`.app`), the OpenAPI document and the
tests that walk every route (auth matrix, fuzzing), so a new route cannot escape them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.typedefs import Handler

from .audit import Audited
from .auth import Access
from .config import Config
from .features import FEATURES
from .handlers import admin, notices, registration, rooms, users
from .handlers import registration_tokens as reg_tokens

__all__ = ["HOST_PREFIXES", "PREFIXES", "ROUTES", "RouteSpec", "enabled_routes"]

DENDRITE = "/_dendrite/admin"
SYNAPSE = "/_synapse/admin"
CLIENT_V3 = "/_matrix/client/v3/admin"
CLIENT_R0 = "/_matrix/client/r0/admin"
# The spec's registration-token validity check: inside the host's own client API, so
# the narrowest prefix, mounted only while a route of ours is there (HOST_PREFIXES).
CLIENT_REGISTER = "/_matrix/client/v1/register/m.login.registration_token"
PREFIXES = (DENDRITE, SYNAPSE, CLIENT_V3, CLIENT_R0, CLIENT_REGISTER)
HOST_PREFIXES = frozenset({CLIENT_REGISTER})

# Trailing identifiers use ".+" so an unencoded '/' (legal in localparts) still routes.
_USER = "{user_id:.+}"
_ROOM = "{room_id:.+}"
_NAME = "{token}"


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
    # Recorded in the audit trail (state-changing actions), and how to find the target.
    audit: Audited | None = None
    # Per-client-IP rate limit (registration.rate_limit): unauthenticated endpoints.
    rate_limited: bool = False
    # Query parameters for the OpenAPI document: (name, JSON Schema).
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    # Access log at DEBUG instead of INFO (polled endpoints).
    quiet: bool = False

    @property
    def full_path(self) -> str:
        return self.prefix + self.path


ROUTES: list[RouteSpec] = [
    RouteSpec(DENDRITE, "POST", "/resetPassword/{user:.+}", users.reset_password,
              Access.ADMIN, "reset_password", "Reset a local user's password",
              "reset_password", audit=Audited("resetPassword", path_param="user")),
    *(RouteSpec(DENDRITE, method, f"/evacuateRoom/{_ROOM}", rooms.evacuate_room,
                Access.ADMIN, "evacuate", "Part every local member from a room",
                audit=Audited("evacuateRoom", path_param="room_id"))
      for method in ("GET", "POST")),
    *(RouteSpec(DENDRITE, method, f"/evacuateUser/{_USER}", rooms.evacuate_user,
                Access.ADMIN, "evacuate",
                "Part a local user from every room and reject their invites",
                audit=Audited("evacuateUser", path_param="user_id"))
      for method in ("GET", "POST")),
    RouteSpec(SYNAPSE, "POST", "/v1/send_server_notice", notices.send_notice, Access.ADMIN,
              "server_notices", "Send a server notice to a local user", "server_notice",
              audit=Audited("sendServerNotice", body_key="user_id")),
    RouteSpec(SYNAPSE, "PUT", "/v1/send_server_notice/{txn_id}", notices.send_notice_txn,
              Access.ADMIN, "server_notices",
              "Send a server notice, idempotent per transaction id", "server_notice",
              audit=Audited("sendServerNotice", body_key="user_id")),
    RouteSpec(SYNAPSE, "GET", "/v1/register", registration.get_nonce, Access.PUBLIC,
              "register", "Get a nonce for shared-secret registration", rate_limited=True),
    RouteSpec(SYNAPSE, "POST", "/v1/register", registration.post_register, Access.PUBLIC,
              "register", "Register an account with the shared secret", "register",
              audit=Audited("register", body_key="username"), rate_limited=True),
    RouteSpec(SYNAPSE, "GET", f"/v1/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
    RouteSpec(CLIENT_V3, "GET", f"/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
    RouteSpec(CLIENT_R0, "GET", f"/whois/{_USER}", users.whois, Access.USER, "whois",
              "Who is connected as this user (self or admin)"),
    RouteSpec(DENDRITE, "GET", "/health", admin.health, Access.PUBLIC, "health",
              "Liveness and database reachability (no auth)", quiet=True),
    RouteSpec(DENDRITE, "GET", "/openapi.json", admin.openapi_json, Access.ADMIN, "openapi",
              "This API's OpenAPI 3.1 document"),
    RouteSpec(DENDRITE, "GET", "/auditLog", admin.audit_log, Access.ADMIN, "audit",
              "The audit trail of state-changing admin actions, newest first",
              query=admin.AUDIT_QUERY),
    # Registration tokens (SPEC 12): Synapse's and Dendrite's paths on one store.
    *(route
      for prefix, base in ((SYNAPSE, "/v1/registration_tokens"),
                           (DENDRITE, "/registrationTokens"))
      for route in (
          RouteSpec(prefix, "GET", base, reg_tokens.list_all, Access.ADMIN,
                    "registration_tokens", "List registration tokens",
                    query=reg_tokens.LIST_QUERY),
          RouteSpec(prefix, "POST", f"{base}/new", reg_tokens.create, Access.ADMIN,
                    "registration_tokens", "Create a registration token",
                    "registration_token_new",
                    audit=Audited("createRegistrationToken", body_key="token")),
          RouteSpec(prefix, "GET", f"{base}/{_NAME}", reg_tokens.get, Access.ADMIN,
                    "registration_tokens", "Show a registration token"),
          RouteSpec(prefix, "PUT", f"{base}/{_NAME}", reg_tokens.update, Access.ADMIN,
                    "registration_tokens", "Change a registration token's uses or expiry",
                    "registration_token_update",
                    audit=Audited("updateRegistrationToken", path_param="token")),
          RouteSpec(prefix, "DELETE", f"{base}/{_NAME}", reg_tokens.delete, Access.ADMIN,
                    "registration_tokens", "Delete a registration token",
                    audit=Audited("deleteRegistrationToken", path_param="token")),
      )),
    RouteSpec(CLIENT_REGISTER, "GET", "/validity", reg_tokens.validity,
              Access.PUBLIC, "registration_tokens",
              "Whether a registration token can be used (no auth)",
              rate_limited=True, query=reg_tokens.VALIDITY_QUERY),
]


def enabled_routes(config: Config) -> list[RouteSpec]:
    return [r for r in ROUTES if FEATURES[r.feature].enabled(config)]
