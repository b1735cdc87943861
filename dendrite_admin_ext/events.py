"""Building Matrix events for the shipped storage backends.

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

__all__ = [
    "ROOM_VERSION",
    "build_event",
    "canonical_json",
    "member_profile",
    "new_room_id",
    "now_ms",
    "redact",
    "reference_event_id",
]

ROOM_VERSION = "10"


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
    """A complete event dict (with ``hashes`` and ``event_id``) ready to store."""
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
    return event


_ROOM_ALPHABET = string.ascii_letters


def new_room_id(server_name: str) -> str:
    opaque = "".join(secrets.choice(_ROOM_ALPHABET) for _ in range(18))
    return f"!{opaque}:{server_name}"
