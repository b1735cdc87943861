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
from .handlers import (
    admin,
    client_login,
    moderation,
    notices,
    registration,
    rooms,
    rooms_admin,
    user_admin,
    users,
)
from .handlers import jobs as jobs_handlers
from .handlers import registration_tokens as reg_tokens

__all__ = ["CLIENT", "HOST_PREFIXES", "PREFIXES", "ROUTES", "RouteSpec", "enabled_routes"]

DENDRITE = "/_dendrite/admin"
SYNAPSE = "/_synapse/admin"
CLIENT_V3 = "/_matrix/client/v3/admin"
CLIENT_R0 = "/_matrix/client/r0/admin"
# Account moderation (SPEC 10): the narrowest prefixes, so the host's own client routes
# under /_matrix/client/v1 and /unstable stay the host's.
CLIENT_V1 = "/_matrix/client/v1/admin"
MSC4323 = "/_matrix/client/unstable/uk.timedout.msc4323/admin"
# Client login (SPEC 13): not a mounted prefix.  Its routes are exact paths in the host's
# router (app.py), so that the host's own client API under /_matrix/client stays its own.
CLIENT = "/_matrix/client"
# The spec's registration-token validity check: inside the host's own client API, so
# the narrowest prefix, mounted only while a route of ours is there (HOST_PREFIXES).
CLIENT_REGISTER = "/_matrix/client/v1/register/m.login.registration_token"
PREFIXES = (DENDRITE, SYNAPSE, CLIENT_V3, CLIENT_R0, CLIENT_V1, MSC4323, CLIENT_REGISTER)
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
    # Served to a locked account too (Matrix spec "Account locking": POST /logout and
    # /logout/all); every other authenticated route answers it 401 M_USER_LOCKED.
    allow_locked: bool = False

    @property
    def full_path(self) -> str:
        return self.prefix + self.path


ROUTES: list[RouteSpec] = [
    RouteSpec(DENDRITE, "POST", "/resetPassword/{user:.+}", users.reset_password,
              Access.ADMIN, "reset_password", "Reset a local user's password",
              "reset_password", audit=Audited("resetPassword", path_param="user")),
    *(RouteSpec(DENDRITE, method, f"/evacuateRoom/{_ROOM}", rooms.evacuate_room,
                Access.ADMIN, "evacuate", "Part every local member from a room",
                audit=Audited("evacuateRoom", path_param="room_id", dry_run=True))
      for method in ("GET", "POST")),
    *(RouteSpec(DENDRITE, method, f"/evacuateUser/{_USER}", rooms.evacuate_user,
                Access.ADMIN, "evacuate",
                "Part a local user from every room and reject their invites",
                audit=Audited("evacuateUser", path_param="user_id", dry_run=True))
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
    # Account moderation (SPEC 10, Matrix v1.18 / MSC4323, and Synapse's suspend).
    *(spec for prefix in (CLIENT_V1, MSC4323) for spec in (
        RouteSpec(prefix, "GET", f"/lock/{_USER}", moderation.get_lock, Access.ADMIN,
                  "moderation", "Whether a local account is locked"),
        RouteSpec(prefix, "PUT", f"/lock/{_USER}", moderation.put_lock, Access.ADMIN,
                  "moderation", "Lock or unlock a local account", "account_lock",
                  audit=Audited("lock", path_param="user_id",
                                when_false=("locked", "unlock"))),
        RouteSpec(prefix, "GET", f"/suspend/{_USER}", moderation.get_suspend,
                  Access.ADMIN, "moderation", "Whether a local account is suspended"),
        RouteSpec(prefix, "PUT", f"/suspend/{_USER}", moderation.put_suspend,
                  Access.ADMIN, "moderation", "Suspend or unsuspend a local account",
                  "account_suspend",
                  audit=Audited("suspend", path_param="user_id",
                                when_false=("suspended", "unsuspend"))),
    )),
    RouteSpec(SYNAPSE, "PUT", f"/v1/suspend/{_USER}", moderation.synapse_suspend,
              Access.ADMIN, "moderation", "Suspend or unsuspend a local account (Synapse)",
              "synapse_suspend",
              audit=Audited("suspend", path_param="user_id",
                            when_false=("suspend", "unsuspend"))),
    # -- client login (SPEC 13), for the admin web UIs; r0 for the older synapse-admin --
    RouteSpec(CLIENT, "GET", "/versions", client_login.versions, Access.PUBLIC,
              "client_login", "The client-server spec versions served (no auth)"),
    *(spec for version in ("v3", "r0") for spec in (
        RouteSpec(CLIENT, "GET", f"/{version}/login", client_login.login_flows,
                  Access.PUBLIC, "client_login", "Login flows: m.login.password"),
        RouteSpec(CLIENT, "POST", f"/{version}/login", client_login.login, Access.PUBLIC,
                  "client_login", "Log in with a password; a new access token", "login",
                  audit=Audited("login")),
        RouteSpec(CLIENT, "GET", f"/{version}/account/whoami", client_login.whoami,
                  Access.USER, "client_login", "The user and device of this access token"),
        RouteSpec(CLIENT, "GET", f"/{version}/profile/{{user_id:[^/]+}}",
                  client_login.profile, Access.USER, "client_login",
                  "A local user's display name and avatar URL"),
        RouteSpec(CLIENT, "POST", f"/{version}/logout", client_login.logout, Access.USER,
                  "client_login", "Log out: delete this device and its access token",
                  audit=Audited("logout"), allow_locked=True),
        RouteSpec(CLIENT, "POST", f"/{version}/logout/all", client_login.logout_all,
                  Access.USER, "client_login",
                  "Log out everywhere: delete every device of the user",
                  audit=Audited("logoutAll"), allow_locked=True),
    )),
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
    # -- user administration (SPEC 9).  The paths below /users/{user_id} come before
    # /users/{user_id} itself: the first route that matches wins.
    RouteSpec(SYNAPSE, "GET", "/v2/users", user_admin.list_users_v2, Access.ADMIN, "users",
              "List local accounts (deactivated only with deactivated=true)",
              query=user_admin.LIST_QUERY),
    RouteSpec(SYNAPSE, "GET", "/v3/users", user_admin.list_users_v3, Access.ADMIN, "users",
              "List local accounts (deactivated: absent both, true only, false none)",
              query=user_admin.LIST_QUERY),
    RouteSpec(SYNAPSE, "GET", f"/v2/users/{_USER}/devices", user_admin.user_devices,
              Access.ADMIN, "users", "A local user's devices"),
    RouteSpec(SYNAPSE, "DELETE", f"/v2/users/{_USER}/devices/{{device_id}}",
              user_admin.delete_device, Access.ADMIN, "users",
              "Delete one device of a local user (and its access token)",
              audit=Audited("deleteDevice", path_param="user_id")),
    RouteSpec(SYNAPSE, "POST", f"/v2/users/{_USER}/delete_devices", user_admin.delete_devices,
              Access.ADMIN, "users", "Delete devices of a local user", "synapse_delete_devices",
              audit=Audited("deleteDevices", path_param="user_id")),
    RouteSpec(SYNAPSE, "GET", f"/v2/users/{_USER}", user_admin.get_user, Access.ADMIN,
              "users", "A local account's details (creation_ts in seconds)"),
    RouteSpec(SYNAPSE, "PUT", f"/v2/users/{_USER}", user_admin.put_user, Access.ADMIN,
              "users", "Create (201) or modify (200) a local account", "synapse_user",
              audit=Audited("putUser", path_param="user_id")),
    RouteSpec(SYNAPSE, "POST", f"/v1/deactivate/{_USER}", user_admin.post_deactivate,
              Access.ADMIN, "users",
              "Deactivate a local account: logged out, rooms left, optionally erased",
              "synapse_deactivate", audit=Audited("deactivate", path_param="user_id")),
    RouteSpec(SYNAPSE, "POST", f"/v1/reset_password/{_USER}", user_admin.reset_password,
              Access.ADMIN, "users", "Set a local user's password",
              "synapse_reset_password", audit=Audited("resetPassword", path_param="user_id")),
    RouteSpec(SYNAPSE, "GET", f"/v1/users/{_USER}/admin", user_admin.get_admin,
              Access.ADMIN, "users", "Whether a local account is an admin"),
    RouteSpec(SYNAPSE, "PUT", f"/v1/users/{_USER}/admin", user_admin.put_admin,
              Access.ADMIN, "users", "Make a local account an admin or not",
              "synapse_admin_flag", audit=Audited("setAdmin", path_param="user_id")),
    RouteSpec(SYNAPSE, "GET", f"/v1/users/{_USER}/joined_rooms", user_admin.joined_rooms,
              Access.ADMIN, "users", "The rooms a user is joined to"),
    RouteSpec(SYNAPSE, "GET", "/v1/server_version", user_admin.server_version,
              Access.PUBLIC, "users", "This server's name and version (no auth)"),
    # -- room administration and durable jobs (SPEC 11) ---------------------------------
    # The longer paths come before "/v1/rooms/{room_id}": a room ID may hold '/'.
    RouteSpec(SYNAPSE, "GET", "/v1/rooms", rooms_admin.list_rooms, Access.ADMIN, "room_reads",
              "List rooms (filters, order, pagination)", query=rooms_admin.ROOM_LIST_QUERY),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/members", rooms_admin.room_members,
              Access.ADMIN, "room_reads", "The users joined to a room"),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/state", rooms_admin.room_state,
              Access.ADMIN, "rooms", "A room's current state events"),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}/block", rooms_admin.get_block,
              Access.ADMIN, "rooms", "Whether a room is blocked, and by whom"),
    RouteSpec(SYNAPSE, "PUT", f"/v1/rooms/{_ROOM}/block", rooms_admin.put_block,
              Access.ADMIN, "rooms", "Block or unblock a room", "room_block",
              audit=Audited("blockRoom", path_param="room_id")),
    RouteSpec(SYNAPSE, "GET", f"/v1/rooms/{_ROOM}", rooms_admin.room_details, Access.ADMIN,
              "room_reads", "Details of a room"),
    RouteSpec(SYNAPSE, "GET", "/v2/rooms/delete_status/{delete_id}",
              rooms_admin.delete_status, Access.ADMIN, "room_changes",
              "Status of a room deletion by its delete_id", quiet=True),
    RouteSpec(SYNAPSE, "GET", f"/v2/rooms/{_ROOM}/delete_status",
              rooms_admin.delete_status_by_room, Access.ADMIN, "room_changes",
              "Status of every deletion of a room", quiet=True),
    RouteSpec(SYNAPSE, "DELETE", f"/v2/rooms/{_ROOM}", rooms_admin.delete_room,
              Access.ADMIN, "room_changes",
              "Delete a room as a job: part local members, block, purge (?dry_run=true)",
              "room_delete", audit=Audited("deleteRoom", path_param="room_id", dry_run=True),
              query=(("dry_run", {"enum": ["true", "false"]}),)),
    RouteSpec(DENDRITE, "GET", "/emptyRooms", rooms_admin.empty_rooms, Access.ADMIN,
              "rooms", "Rooms no local user is joined to"),
    RouteSpec(DENDRITE, "POST", f"/purgeRoom/{_ROOM}", rooms_admin.purge_room,
              Access.ADMIN, "room_changes", "Delete everything stored for a room",
              audit=Audited("purgeRoom", path_param="room_id")),
    RouteSpec(DENDRITE, "GET", "/jobs", jobs_handlers.list_jobs, Access.ADMIN, "room_changes",
              "Durable jobs, newest first", query=jobs_handlers.JOBS_QUERY),
    RouteSpec(DENDRITE, "GET", "/jobs/{job_id}", jobs_handlers.get_job, Access.ADMIN,
              "room_changes", "A durable job's status and progress", quiet=True),
    RouteSpec(DENDRITE, "POST", "/jobs/{job_id}/cancel", jobs_handlers.cancel,
              Access.ADMIN, "room_changes", "Cancel a scheduled or running job",
              audit=Audited("cancelJob", path_param="job_id")),
    RouteSpec(DENDRITE, "POST", "/broadcastServerNotice", jobs_handlers.broadcast_notice,
              Access.ADMIN, "broadcast", "Send a server notice to every local user (a job)",
              "broadcast_server_notice", audit=Audited("broadcastServerNotice")),
]


def enabled_routes(config: Config) -> list[RouteSpec]:
    return [r for r in ROUTES if FEATURES[r.feature].enabled(config)]
