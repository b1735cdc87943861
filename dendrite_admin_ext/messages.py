"""The human text of every error the admin API returns, one message per situation.

Handlers and services raise :mod:`.errors` classes with these texts, so a situation
reads the same on every endpoint (the errcode says what happened; the text says it to a
person).  Situations whose text a client or the SPEC fixes keep that text here too
(Synapse's "HMAC incorrect", "unrecognised nonce", …).  Texts never quote a secret.
"""

from __future__ import annotations

__all__ = [
    "CANNOT_NOTICE_SYSTEM_USER",
    "EVENT_FIELD_TOO_LONG",
    "EVENT_TOO_LARGE",
    "GUEST_ACCESS",
    "HMAC_INCORRECT",
    "INVALID_ROOM_ID",
    "INVALID_USER_ID",
    "INVALID_USER_ID_LOCALPART",
    "INVALID_USER_ID_SERVER_NAME",
    "NOT_ADMIN",
    "NOT_LOCAL_USER",
    "NOT_LOCAL_USER_NOTICE",
    "NOT_LOCAL_USER_WHOIS",
    "NOT_SELF_OR_ADMIN",
    "ROOM_ID_TOO_LONG",
    "STRUCTURAL_EVENT_TYPE",
    "UNRECOGNISED_NONCE",
    "USER_ID_TOO_LONG",
    "USERNAME_GRAMMAR",
    "USERNAME_NUMERIC",
    "USERNAME_TOO_LONG",
    "USERNAME_UNDERSCORE",
    "USER_IN_USE",
    "unknown_room",
    "unknown_user",
]

# -- authorisation (SPEC §3) -----------------------------------------------------------
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


def unknown_room(room_id: str) -> str:
    """404 ``M_NOT_FOUND``: the server does not know the room."""
    return f"Unknown room {room_id}"


# -- events (SPEC §2, §4.5) ------------------------------------------------------------
EVENT_TOO_LARGE = "The event would be larger than 65536 bytes"
EVENT_FIELD_TOO_LONG = "'{field}' is longer than 255 bytes"
STRUCTURAL_EVENT_TYPE = "Events of type {event_type} cannot be sent as server notices"
CANNOT_NOTICE_SYSTEM_USER = "Cannot send server notices to the server notices user"

# -- registration (SPEC §4.4, Synapse's texts) -----------------------------------------
UNRECOGNISED_NONCE = "unrecognised nonce"
HMAC_INCORRECT = "HMAC incorrect"
USER_IN_USE = "User ID already taken."
USERNAME_GRAMMAR = "User ID can only contain characters a-z, 0-9, or '=_-./+'"
USERNAME_UNDERSCORE = "User ID may not begin with '_'"
USERNAME_NUMERIC = "Numeric user IDs are reserved for guest users."
USERNAME_TOO_LONG = "User ID may not be longer than 255 bytes"
