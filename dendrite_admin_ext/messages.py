"""The human text of every error the admin API returns, one message per situation.

Handlers and services raise :mod:`.errors` classes with these texts, so a situation
reads the same on every endpoint (the errcode says what happened; the text says it to a
person).  Situations whose text a client or the SPEC fixes keep that text here too
(Synapse's "HMAC incorrect", "unrecognised nonce", …).  Texts never quote a secret.
"""

from __future__ import annotations

__all__ = [
    "BAD_AUTHORIZATION_HEADER",
    "BAD_USER_LIST_FROM",
    "BODY_NOT_JSON",
    "BODY_NOT_OBJECT",
    "BODY_NOT_STORABLE_JSON",
    "BODY_NOT_UTF8",
    "CANNOT_DEMOTE_SELF",
    "CANNOT_NOTICE_SYSTEM_USER",
    "DATABASE_UNREACHABLE",
    "DEACTIVATED_AND_LOCKED",
    "DEACTIVATION_NEEDS_HOMESERVER",
    "DRY_RUN_BESIDE_DENDRITE",
    "ROOM_FILTER_BESIDE_DENDRITE",
    "EMPTY_SEARCH_TERM",
    "EVENT_FIELD_TOO_LONG",
    "EVENT_TOO_LARGE",
    "EXPIRY_TIME_IN_PAST",
    "EXPIRY_TIME_NOT_INTEGER",
    "GUEST_ACCESS",
    "HASHER_BUSY",
    "HMAC_INCORRECT",
    "HOMESERVER_FAILED",
    "HOMESERVER_UNEXPECTED",
    "HOMESERVER_UNREACHABLE",
    "INTERNAL_ERROR",
    "INVALID_REGISTRATION_TOKEN",
    "INVALID_ROOM_ID",
    "INVALID_USER_ID",
    "INVALID_USER_ID_LOCALPART",
    "INVALID_USER_ID_SERVER_NAME",
    "MISSING_REGISTRATION_TOKEN",
    "MISSING_TOKEN",
    "MISSING_UIA_SESSION",
    "MIXED_TOKENS",
    "NEXT_TOKEN_OF_ANOTHER_ORDER",
    "NOT_ADMIN",
    "NOT_LOCAL_USER",
    "NOT_LOCAL_USER_NOTICE",
    "NOT_LOCAL_USER_WHOIS",
    "NOT_SELF_OR_ADMIN",
    "NO_DELETE_TASK",
    "PROFILE_NOT_FOUND",
    "REGISTRATION_DISABLED",
    "REGISTRATION_TOKEN_CHANGED",
    "REGISTRATION_TOKEN_NOT_STRING",
    "ROOM_ID_TOO_LONG",
    "STORAGE_UNAVAILABLE",
    "STRUCTURAL_EVENT_TYPE",
    "TOKEN_EXISTS",
    "UNKNOWN_DELETE_ID",
    "UNKNOWN_JOB",
    "UNKNOWN_LOGIN_IDENTIFIER",
    "UNKNOWN_LOGIN_TYPE",
    "UNKNOWN_TOKEN",
    "UNRECOGNISED_NONCE",
    "UNRECOGNIZED",
    "USERNAME_GRAMMAR",
    "USERNAME_NUMERIC",
    "USERNAME_TOO_LONG",
    "USERNAME_UNDERSCORE",
    "USER_DEACTIVATED",
    "USER_ID_TOO_LONG",
    "USER_IN_USE",
    "USER_LOCKED",
    "USER_SUSPENDED",
    "WRONG_CREDENTIALS",
    "bad_token_length",
    "bad_token_name",
    "bad_uses_allowed",
    "body_too_large",
    "cannot_moderate_admin",
    "cannot_moderate_self",
    "deletion_in_progress",
    "integer_out_of_range",
    "invalid_user_type",
    "method_not_allowed",
    "missing_param",
    "missing_query_param",
    "no_unused_token",
    "not_a_boolean_param",
    "not_one_of",
    "not_printable",
    "password_too_long",
    "password_too_short",
    "request_timeout",
    "room_order_beside_dendrite",
    "roomserver_tables_missing",
    "txn_id_too_long",
    "unknown_registration_token",
    "unknown_room",
    "unknown_user",
]

# -- requests (SPEC §2) -----------------------------------------------------------------
UNRECOGNIZED = "Unrecognized request"
INTERNAL_ERROR = "Internal server error"
STORAGE_UNAVAILABLE = "Storage is unavailable, try again shortly"
DATABASE_UNREACHABLE = "Database unreachable"
HASHER_BUSY = "Too many password hashes in progress, try again shortly"
BODY_NOT_UTF8 = "Request body is not valid UTF-8"
BODY_NOT_JSON = "Content not JSON."
BODY_NOT_STORABLE_JSON = "Content not JSON: lone surrogate or out-of-range integer"
BODY_NOT_OBJECT = "Request body must be a JSON object"


def method_not_allowed(method: str) -> str:
    return f"Method {method} is not allowed here"


def body_too_large(limit: int | None) -> str:
    """413: the request body is over ``http.max_body_size`` (None: limit not known)."""
    return ("Request body too large" if limit is None
            else f"Request body is larger than {limit} bytes")


def missing_param(name: str) -> str:
    return f"Missing parameter: {name}"


def request_timeout(seconds: str) -> str:
    """504: the request ran over ``http.request_timeout``."""
    return (f"The request took longer than {seconds} s; the operation may still complete "
            "in the background")


# -- authentication and authorisation (SPEC §3) ------------------------------------------
BAD_AUTHORIZATION_HEADER = "Invalid Authorization header: expected 'Bearer <token>'"
MIXED_TOKENS = "Mixing Authorization headers and access_token query parameters."
MISSING_TOKEN = "Missing access token."  # noqa: S105 (a message, not a token)
UNKNOWN_TOKEN = "Unrecognised access token."  # noqa: S105
NOT_ADMIN = "This API can only be used by admin users."
# whois of someone else by a non-admin: the same situation as NOT_ADMIN.
NOT_SELF_OR_ADMIN = NOT_ADMIN
GUEST_ACCESS = "Guest access not allowed"

# -- identifiers (SPEC §2) -------------------------------------------------------------
INVALID_USER_ID = "Invalid user ID: expected @localpart:server_name"
INVALID_USER_ID_LOCALPART = "Invalid user ID localpart"
INVALID_USER_ID_SERVER_NAME = "Invalid user ID server name"
USER_ID_TOO_LONG = "User ID is longer than 255 bytes"
INVALID_ROOM_ID = "Invalid room ID: expected !opaque:server_name"
ROOM_ID_TOO_LONG = "Room ID is longer than 255 bytes"
NOT_LOCAL_USER = "Only local users can be managed by this server"
# The two texts the SPEC (and Synapse) fix for the same situation on their endpoints.
NOT_LOCAL_USER_WHOIS = "Can only whois a local user"
NOT_LOCAL_USER_NOTICE = "Server notices can only be sent to local users"


def unknown_user(user: object) -> str:
    """404 ``M_NOT_FOUND``: no account with that user ID on this server."""
    return f"Unknown user {user}"


# Beside Dendrite: its admin API could not do what was asked (SPEC 8).
HOMESERVER_UNREACHABLE = "The homeserver is unavailable, try again shortly"
HOMESERVER_UNEXPECTED = "The homeserver gave an unexpected answer"
HOMESERVER_FAILED = "The homeserver failed, try again shortly"

DEACTIVATION_NEEDS_HOMESERVER = ("Beside Dendrite, deactivation parts the user from "
                                 "Dendrite's rooms through its admin API: set homeserver.url")

BLOCK_BESIDE_DENDRITE = ("block is not available beside Dendrite: its admin API cannot "
                         "block a room; delete it without block")
NEW_ROOM_BESIDE_DENDRITE = ("new_room_user_id is not available beside Dendrite: its "
                            "admin API cannot create the new room")

DRY_RUN_BESIDE_DENDRITE = ("dry_run is not available beside Dendrite: its admin API "
                           "cannot preview an evacuation")

# The room list beside Dendrite reads only its roomserver's room and membership tables.
ROOM_FILTER_BESIDE_DENDRITE = ("search_term and public_rooms are not available beside "
                               "Dendrite: the room list reads Dendrite's rooms and "
                               "memberships, not their state")


def room_order_beside_dendrite(allowed: list[str]) -> str:
    """400 ``M_INVALID_PARAM``: an order of the room list that needs room state."""
    return (f"Beside Dendrite the room list can only be ordered by one of {allowed}: "
            f"names, aliases and other state are Dendrite's and not read here")


def roomserver_tables_missing(where: str) -> str:
    """404 ``M_UNRECOGNIZED`` (and a start-up warning): the room list beside Dendrite
    finds no roomserver tables where ``homeserver.roomserver_database`` (or
    ``database``) says (SPEC 8)."""
    return (f"The room list is not available: Dendrite's roomserver tables were not "
            f"found in {where}; set homeserver.roomserver_database to the roomserver's "
            f"database (Dendrite's room_server.database)")

USER_LOCKED = "This account has been locked."
USER_DEACTIVATED = "This account has been deactivated"
# Client login (SPEC 13): one answer for an unknown user and a wrong password alike.
WRONG_CREDENTIALS = "Invalid username or password"
UNKNOWN_LOGIN_TYPE = "Unknown login type: only m.login.password is supported"
UNKNOWN_LOGIN_IDENTIFIER = "Unknown login identifier type: only m.id.user is supported"
PROFILE_NOT_FOUND = "Profile not found"


def missing_query_param(name: str) -> str:
    return f"Missing string query parameter '{name}'"


def not_a_boolean_param(name: str) -> str:
    return f"Boolean query parameter '{name}' must be one of ['true', 'false']"


# Registration tokens (SPEC 12): Synapse's wording.
TOKEN_EXISTS = "Token already exists"  # noqa: S105 (a message, not a token)
EXPIRY_TIME_NOT_INTEGER = "expiry_time must be an integer or null"
EXPIRY_TIME_IN_PAST = "expiry_time must not be in the past"
MISSING_REGISTRATION_TOKEN = "Missing registration token"  # noqa: S105
REGISTRATION_TOKEN_NOT_STRING = "Registration token must be a string"  # noqa: S105
MISSING_UIA_SESSION = "Missing UIA session"
REGISTRATION_TOKEN_CHANGED = "Registration token has changed"  # noqa: S105
INVALID_REGISTRATION_TOKEN = "Invalid registration token"  # noqa: S105


def unknown_registration_token(token: str) -> str:
    return f"No such registration token: {token}"


def bad_uses_allowed(maximum: int) -> str:
    return f"uses_allowed must be a non-negative integer or null (at most {maximum})"


def bad_token_name(maximum: int) -> str:
    return ("token must consist only of characters matched by the regex [A-Za-z0-9._~-]"
            f" and be 1 to {maximum} characters long")


def bad_token_length(maximum: int) -> str:
    return f"length must be an integer between 1 and {maximum}"


def no_unused_token(length: int) -> str:
    return f"Could not generate an unused token of length {length}; ask for a longer one"


def not_one_of(name: str, allowed: list[str]) -> str:
    return f"Query parameter '{name}' must be one of {allowed}"


# User administration (SPEC 9): Synapse's wording where it has one.
CANNOT_DEMOTE_SELF = "You may not demote yourself."
DEACTIVATED_AND_LOCKED = "A user can't be deactivated and locked"
BAD_USER_LIST_FROM = ("Query parameter from must be a string representing a positive "
                      "integer or a next_token")
NEXT_TOKEN_OF_ANOTHER_ORDER = "This next_token belongs to another order_by or dir"  # noqa: S105


# Rooms and jobs (SPEC 11).
UNKNOWN_JOB = "Unknown job"
UNKNOWN_DELETE_ID = "delete id not found"
NO_DELETE_TASK = "No delete task for room"
EMPTY_SEARCH_TERM = "search_term cannot be an empty string"


def deletion_in_progress(room_id: str) -> str:
    return f"History purge already in progress for {room_id}"


def not_printable(name: str) -> str:
    return f"{name} may only contain printable characters"

# The Matrix spec's own wording (Account suspension).
USER_SUSPENDED = "You cannot perform this action while suspended."


def cannot_moderate_self(action: str) -> str:
    """MSC4323: an admin may not lock or suspend their own account."""
    return f"You cannot {action} your own account."


def cannot_moderate_admin(action: str) -> str:
    """MSC4323: another server admin may not be locked or suspended."""
    return f"You cannot {action} another server administrator."


def unknown_room(room_id: str) -> str:
    """404 ``M_NOT_FOUND``: the server does not know the room."""
    return f"Unknown room {room_id}"


# -- events (SPEC §2, §4.5) ------------------------------------------------------------
EVENT_TOO_LARGE = "The event would be larger than 65536 bytes"
EVENT_FIELD_TOO_LONG = "'{field}' is longer than 255 bytes"
STRUCTURAL_EVENT_TYPE = "Events of type {event_type} cannot be sent as server notices"
CANNOT_NOTICE_SYSTEM_USER = "Cannot send server notices to the server notices user"


def txn_id_too_long(limit: int) -> str:
    return f"Transaction ID is longer than {limit} characters"


def integer_out_of_range(name: str, low: int, high: int) -> str:
    """400 ``M_INVALID_PARAM``: a query parameter that must be an integer in a range."""
    return f"'{name}' must be an integer from {low} to {high}"

# -- passwords (SPEC §4.3) ----------------------------------------------------------------
def password_too_short(minimum: int) -> str:
    return f"Password too short (minimum {minimum} characters)"


def password_too_long(maximum: int) -> str:
    return f"Password too long (maximum {maximum} characters)"


# -- registration (SPEC §4.4, Synapse's texts) -----------------------------------------
REGISTRATION_DISABLED = "Shared secret registration is not enabled"


def invalid_user_type(user_type: str) -> str:
    return f"Invalid user type: {user_type}"


UNRECOGNISED_NONCE = "unrecognised nonce"
HMAC_INCORRECT = "HMAC incorrect"
USER_IN_USE = "User ID already taken."
USERNAME_GRAMMAR = "User ID can only contain characters a-z, 0-9, or '=_-./+'"
USERNAME_UNDERSCORE = "User ID may not begin with '_'"
USERNAME_NUMERIC = "Numeric user IDs are reserved for guest users."
USERNAME_TOO_LONG = "User ID may not be longer than 255 bytes"
