"""Building Matrix events for the shipped storage backends, and the limits on events.

Every event the admin API creates obeys the Matrix limits (SPEC §2, Matrix spec "Size
limits"): the whole event in canonical JSON at most 65,536 bytes (413 ``M_TOO_LARGE``),
and ``type``, ``state_key``, ``sender`` and ``room_id`` at most 255 bytes each (400
``M_BAD_JSON``).  :func:`check_event_limits` is the one check: :func:`build_event` runs
it on every event it builds (the shipped backends and hosts that use it), and services
run it through :func:`check_new_event` on a worst-case envelope *before* they store
anything, so a notice that cannot fit does not leave a new room behind.

Event IDs follow room versions 4 and later: ``$`` followed by the unpadded URL-safe
base64 of the SHA-256 *reference hash* — the hash of the canonical JSON of the redacted
event without ``signatures`` and ``unsigned``.  The content hash (``hashes.sha256``) is
computed first, over the event without ``unsigned``, ``signatures`` and ``hashes``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import time
from collections.abc import Mapping
from typing import Any

from . import messages
from .errors import BadJson, TooLarge

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_EVENT_FIELD_BYTES",
    "ROOM_VERSION",
    "build_event",
    "canonical_json",
    "check_event_limits",
    "check_new_event",
    "member_profile",
    "new_room_id",
    "now_ms",
    "redact",
    "reference_event_id",
]

ROOM_VERSION = "10"

MAX_EVENT_BYTES = 65_536
MAX_EVENT_FIELD_BYTES = 255
_LIMITED_FIELDS = ("type", "state_key", "sender", "room_id")

# The envelope a host may put around an event's content before storing or federating
# it, assumed at its largest by check_new_event: up to 10 prev_events (Synapse's cap for
# new local events) and 10 auth_events, a room ID and a state key of 255 bytes when not
# known yet, the largest timestamp and depth, the content hash, the event ID and one
# ed25519 signature of the origin server.
_ENVELOPE_PREV_EVENTS = 10
_ENVELOPE_AUTH_EVENTS = 10
_PLACEHOLDER_EVENT_ID = "$" + "A" * 43
_PLACEHOLDER_ROOM_ID = "!" + "A" * (MAX_EVENT_FIELD_BYTES - 1)
_MAX_SAFE_INT = 2**53 - 1


def now_ms() -> int:
    """Milliseconds since the Unix epoch: every timestamp of the API and its storage."""
    return int(time.time() * 1000)


def member_profile(content: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(displayname, avatar_url) of ``m.room.member`` content; anything not a string
    (a client may send anything) is None."""
    name, avatar = content.get("displayname"), content.get("avatar_url")
    return (name if isinstance(name, str) else None,
            avatar if isinstance(avatar, str) else None)

# Top-level keys kept by redaction (room versions 1 to 10).
_KEPT_KEYS = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
    "origin_server_ts", "membership",
})
_KEPT_CONTENT: dict[str, frozenset[str]] = {
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
    "m.room.power_levels": frozenset({
        "ban", "events", "events_default", "kick", "redact", "state_default",
        "users", "users_default",
    }),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def redact(event: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k in _KEPT_KEYS}
    kept = _KEPT_CONTENT.get(str(event.get("type")), frozenset())
    out["content"] = {k: v for k, v in dict(event.get("content", {})).items() if k in kept}
    return out


def reference_event_id(event: Mapping[str, Any]) -> str:
    redacted = redact(event)
    redacted.pop("signatures", None)  # redact() has already dropped "unsigned"
    redacted.pop("event_id", None)
    return "$" + _b64(hashlib.sha256(canonical_json(redacted)).digest())


def check_event_limits(event: Mapping[str, Any]) -> None:
    """Raise unless ``event`` (a complete event dict) obeys the Matrix size limits:
    :class:`BadJson` when ``type``, ``state_key``, ``sender`` or ``room_id`` is over 255
    bytes, :class:`TooLarge` when the canonical JSON is over 65,536 bytes."""
    for field in _LIMITED_FIELDS:
        value = event.get(field)
        if isinstance(value, str) and len(value.encode("utf-8")) > MAX_EVENT_FIELD_BYTES:
            raise BadJson(messages.EVENT_FIELD_TOO_LONG.format(field=field))
    if len(canonical_json(event)) > MAX_EVENT_BYTES:
        raise TooLarge(messages.EVENT_TOO_LARGE)


def check_new_event(*, sender: str, event_type: str, content: Mapping[str, Any],
                    state_key: str | None = None, room_id: str | None = None) -> None:
    """:func:`check_event_limits` for an event not built yet, wrapped in the largest
    envelope a host may give it (``room_id`` None: a room not chosen or created yet).
    Services call it before storing anything; an event that passes here passes again
    when :func:`build_event` builds it, on any host within that envelope."""
    server_name = sender.partition(":")[2]
    event: dict[str, Any] = {
        "room_id": room_id if room_id is not None else _PLACEHOLDER_ROOM_ID,
        "sender": sender,
        "type": event_type,
        "content": content,
        "origin_server_ts": _MAX_SAFE_INT,
        "depth": _MAX_SAFE_INT,
        "prev_events": [_PLACEHOLDER_EVENT_ID] * _ENVELOPE_PREV_EVENTS,
        "auth_events": [_PLACEHOLDER_EVENT_ID] * _ENVELOPE_AUTH_EVENTS,
        "hashes": {"sha256": "A" * 43},
        "signatures": {server_name: {"ed25519:AAAAAAAA": "A" * 86}},
        "event_id": _PLACEHOLDER_EVENT_ID,
    }
    if state_key is not None:
        event["state_key"] = state_key
    check_event_limits(event)


def build_event(
    *,
    room_id: str,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
    origin_server_ts: int,
    depth: int,
    prev_events: list[str],
    auth_events: list[str] | None = None,
    state_key: str | None = None,
) -> dict[str, Any]:
    """A complete event dict (with ``hashes`` and ``event_id``) ready to store.
    Raises :class:`BadJson` or :class:`TooLarge` (:func:`check_event_limits`) before
    anything could be stored."""
    event: dict[str, Any] = {
        "room_id": room_id,
        "sender": sender,
        "type": event_type,
        "content": dict(content),
        "origin_server_ts": origin_server_ts,
        "depth": depth,
        "prev_events": list(prev_events),
        "auth_events": list(auth_events or []),
    }
    if state_key is not None:
        event["state_key"] = state_key
    event["hashes"] = {"sha256": _b64(hashlib.sha256(canonical_json(event)).digest())}
    event["event_id"] = reference_event_id(event)
    check_event_limits(event)
    return event


_ROOM_ALPHABET = string.ascii_letters


def new_room_id(server_name: str) -> str:
    opaque = "".join(secrets.choice(_ROOM_ALPHABET) for _ in range(18))
    return f"!{opaque}:{server_name}"
