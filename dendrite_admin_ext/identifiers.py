"""Matrix identifier grammar (user IDs, room IDs, server names, localparts).

One parser for user IDs, one rule (SPEC §2): every endpoint that takes a user ID
accepts the *historical* localparts that older servers allowed — any printable ASCII
except ``:`` (Matrix spec, appendix "Historical User IDs"), e.g. uppercase letters — so
that an account that already exists with one is reachable everywhere, exactly as an
evacuation of its rooms reaches it.  Only registration (SPEC §4.4) holds new accounts to
the strict grammar ``[a-z0-9._=\\-/+]+`` (:func:`is_valid_localpart`).  A whole user ID
or room ID is at most 255 bytes.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from . import messages
from .errors import InvalidParam

__all__ = [
    "MAX_ID_BYTES",
    "UserID",
    "is_historical_localpart",
    "is_valid_localpart",
    "is_valid_server_name",
    "parse_local_user_id",
    "parse_localpart_or_user_id",
    "parse_room_id",
    "parse_user_id",
]

MAX_ID_BYTES = 255

# The grammar of every account created here (registration).
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# What existing accounts may have: printable ASCII except ':' (0x3A); no space.
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_DNS_NAME = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_PORT = re.compile(r"[0-9]{1,5}")
# Opaque room-ID part: printable ASCII except ':' (the separator) and whitespace.
_ROOM_OPAQUE = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def is_valid_localpart(localpart: str) -> bool:
    """The strict grammar, for accounts created here (SPEC §4.4)."""
    return _LOCALPART.fullmatch(localpart) is not None


def is_historical_localpart(localpart: str) -> bool:
    """The grammar existing accounts may have: the strict one, or any printable ASCII
    except ``:`` (Matrix spec, appendix "Historical User IDs")."""
    return _HISTORICAL_LOCALPART.fullmatch(localpart) is not None


def is_valid_server_name(server_name: str) -> bool:
    host, port = server_name, None
    if server_name.startswith("["):
        end = server_name.find("]")
        if end < 0:
            return False
        host, rest = server_name[1:end], server_name[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
    else:
        if ":" in server_name:
            host, port = server_name.rsplit(":", 1)
        if not _DNS_NAME.fullmatch(host):
            return False
    return port is None or (_PORT.fullmatch(port) is not None and 0 < int(port) < 65536)


@dataclass(frozen=True, slots=True)
class UserID:
    localpart: str
    server_name: str

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"

    @classmethod
    def from_stored(cls, value: str) -> UserID:
        """A user ID read back from storage, trusted as well-formed (it was parsed on
        the way in): split at the first ``:`` without checking the grammar again."""
        localpart, _, server_name = value[1:].partition(":")
        return cls(localpart, server_name)


@functools.lru_cache(maxsize=4096)
def parse_user_id(value: str) -> UserID:
    """Parse ``@localpart:server_name`` (historical localparts included); a malformed
    ID, or one over 255 bytes, is 400 ``M_INVALID_PARAM``.

    Cached: the same few IDs (admins, their targets) are parsed on request after
    request; an exception is never cached."""
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidParam(messages.USER_ID_TOO_LONG)
    if not value.startswith("@") or ":" not in value:
        raise InvalidParam(messages.INVALID_USER_ID)
    localpart, server_name = value[1:].split(":", 1)
    if not is_historical_localpart(localpart):
        raise InvalidParam(messages.INVALID_USER_ID_LOCALPART)
    if not is_valid_server_name(server_name):
        raise InvalidParam(messages.INVALID_USER_ID_SERVER_NAME)
    return UserID(localpart, server_name)


def parse_local_user_id(value: str, server_name: str) -> UserID:
    """:func:`parse_user_id`, and the user must belong to ``server_name``: a
    well-formed remote ID is 400 ``M_INVALID_PARAM`` too (SPEC §2)."""
    user = parse_user_id(value)
    if user.server_name != server_name:
        raise InvalidParam(messages.NOT_LOCAL_USER)
    return user


def parse_localpart_or_user_id(value: str, server_name: str) -> UserID:
    """A full local user ID (starting with ``@``) or a bare localpart of this server
    (resetPassword, SPEC §4.3); the same grammar and 255-byte limit either way."""
    if value.startswith("@"):
        return parse_local_user_id(value, server_name)
    if ":" in value:
        raise InvalidParam(messages.INVALID_USER_ID_LOCALPART)
    return parse_local_user_id(f"@{value}:{server_name}", server_name)


def parse_room_id(value: str) -> str:
    """Validate ``!opaque:server_name`` (or domain-less ``!opaque``); returns it
    unchanged.  Malformed or over 255 bytes: 400 ``M_INVALID_PARAM``."""
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidParam(messages.ROOM_ID_TOO_LONG)
    if not value.startswith("!"):
        raise InvalidParam(messages.INVALID_ROOM_ID)
    opaque, sep, server_name = value[1:].partition(":")
    if not _ROOM_OPAQUE.fullmatch(opaque) or (sep and not is_valid_server_name(server_name)):
        raise InvalidParam(messages.INVALID_ROOM_ID)
    return value
