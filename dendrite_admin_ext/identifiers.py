"""Matrix identifier grammar (user IDs, room IDs, server names, localparts)."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidParam

__all__ = [
    "MAX_ID_BYTES",
    "UserID",
    "is_valid_localpart",
    "is_valid_server_name",
    "parse_room_id",
    "parse_user_id",
]

MAX_ID_BYTES = 255

_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
_DNS_NAME = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_PORT = re.compile(r"[0-9]{1,5}")
# Opaque room-ID part: printable ASCII except ':' (the separator) and whitespace.
_ROOM_OPAQUE = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def is_valid_localpart(localpart: str) -> bool:
    return _LOCALPART.fullmatch(localpart) is not None


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
    """Parse ``@localpart:server_name``; a malformed ID is 400 M_INVALID_PARAM.

    Cached: the same few IDs (admins, their targets) are parsed on request after
    request; an exception is never cached."""
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidParam("User ID is longer than 255 bytes")
    if not value.startswith("@") or ":" not in value:
        raise InvalidParam(f"Invalid user ID: {value!r}")
    localpart, server_name = value[1:].split(":", 1)
    if not is_valid_localpart(localpart):
        raise InvalidParam(f"Invalid user ID localpart: {value!r}")
    if not is_valid_server_name(server_name):
        raise InvalidParam(f"Invalid user ID server name: {value!r}")
    return UserID(localpart, server_name)


def parse_room_id(value: str) -> str:
    """Validate ``!opaque:server_name`` (or domain-less ``!opaque``); returns it unchanged."""
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidParam("Room ID is longer than 255 bytes")
    if not value.startswith("!"):
        raise InvalidParam(f"Invalid room ID: {value!r}")
    opaque, sep, server_name = value[1:].partition(":")
    if not _ROOM_OPAQUE.fullmatch(opaque) or (sep and not is_valid_server_name(server_name)):
        raise InvalidParam(f"Invalid room ID: {value!r}")
    return value
