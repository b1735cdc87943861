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
from .handlers import admin, notices, registration, rooms, rooms_admin, users
from .handlers import jobs as jobs_handlers

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
    # -- room administration and durable jobs (SPEC 11) ---------------------------------
    # The longer paths come before "/v1/rooms/{room_id}": a room ID may hold '/'.
    RouteSpec(SYNAPSE, "GET", "/v1/rooms", rooms_admin.list_rooms, Access.ADMIN, "rooms",
              "List rooms (filters, order, pagination)", query=rooms_admin.ROOM_LIST_QUERY),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/members", rooms_admin.room_members,
              Access.ADMIN, "rooms", "The users joined to a room"),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/state", rooms_admin.room_state,
              Access.ADMIN, "rooms", "A room's current state events"),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/block", rooms_admin.get_block,
              Access.ADMIN, "rooms", "Whether a room is blocked, and by whom"),
    RouteSpec(SYNAPSE, "PUT", f"/v1/rooms/{_ROOM}/block", rooms_admin.put_block,
              Access.ADMIN, "rooms", "Block or unblock a room", "room_block",
              audit=Audited("blockRoom", path_param="room_id")),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}", rooms_admin.room_details, Access.ADMIN,
              "rooms", "Details of a room"),
    RouteSpec(SYNAPSE, "GET", "/v2/rooms/delete_status/{delete_id}",
              rooms_admin.delete_status, Access.ADMIN, "rooms",
              "Status of a room deletion by its delete_id", quiet=True),
    RouteSpec(SYNAPSE, "GET", f"/v2/rooms/{_ROOM}/delete_status",
              rooms_admin.delete_status_by_room, Access.ADMIN, "rooms",
              "Status of every deletion of a room", quiet=True),
    RouteSpec(SYNAPSE, "DELETE", f"/v2/rooms/{_ROOM}", rooms_admin.delete_room,
              Access.ADMIN, "rooms",
              "Delete a room as a job: part local members, block, purge (?dry_run=true)",
              "room_delete", audit=Audited("deleteRoom", path_param="room_id"),
              query=(("dry_run", {"enum": ["true", "false"]}),)),
    RouteSpec(DENDRITE, "GET", "/emptyRooms", rooms_admin.empty_rooms, Access.ADMIN,
              "rooms", "Rooms no local user is joined to"),
    RouteSpec(DENDRITE, "POST", f"/purgeRoom/{_ROOM}", rooms_admin.purge_room,
              Access.ADMIN, "rooms", "Delete everything stored for a room",
              audit=Audited("purgeRoom", path_param="room_id")),
    RouteSpec(DENDRITE, "GET", "/jobs", jobs_handlers.list_jobs, Access.ADMIN, "rooms",
              "Durable jobs, newest first", query=jobs_handlers.JOBS_QUERY),
    RouteSpec(DENDRITE, "GET", "/jobs/{job_id}", jobs_handlers.get_job, Access.ADMIN,
              "rooms", "A durable job's status and progress", quiet=True),
    RouteSpec(DENDRITE, "POST", "/jobs/{job_id}/cancel", jobs_handlers.cancel,
              Access.ADMIN, "rooms", "Cancel a scheduled or running job",
              audit=Audited("cancelJob", path_param="job_id")),
    RouteSpec(DENDRITE, "POST", "/broadcastServerNotice", jobs_handlers.broadcast_notice,
              Access.ADMIN, "broadcast", "Send a server notice to every local user (a job)",
              "broadcast_server_notice", audit=Audited("broadcastServerNotice")),
]


def enabled_routes(config: Config) -> list[RouteSpec]:
    return [r for r in ROUTES if FEATURES[r.feature].enabled(config)]
