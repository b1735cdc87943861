"""Rows of Dendrite's own that the package writes beside Dendrite (SPEC 8).

Dendrite creates an account in one transaction with three rows: the account, a profile
with ``''`` display name and avatar (its Go code scans both into plain strings, so a
NULL breaks every profile lookup), and the account's default push rules in
``userapi_account_datas`` (room ``''``, type ``m.push_rules``).  The rules below are
the Matrix spec's server-default push rules as Dendrite 0.15 writes them for a new
account (``internal/pushrules`` default override, content and underride rules).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUSH_RULES_TYPE", "SHARED_SECRET_DEVICE_ID", "default_push_rules"]

PUSH_RULES_TYPE = "m.push_rules"
# The device Dendrite's shared-secret registration logs the new account in with
# (clientapi/routing/register.go, handleSharedSecretRegistration).
SHARED_SECRET_DEVICE_ID = "shared_secret_registration"  # noqa: S105 (not a secret)

_NOTIFY = "notify"
_DONT_NOTIFY = "dont_notify"


def _sound(value: str) -> dict[str, Any]:
    return {"set_tweak": "sound", "value": value}


def _highlight(value: bool | None = None) -> dict[str, Any]:
    # Without a value the tweak means true (Matrix spec, push rules actions).
    return {"set_tweak": "highlight"} if value is None else {"set_tweak": "highlight",
                                                              "value": value}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, actions: list[Any], conditions: list[dict[str, Any]] | None = None,
          *, enabled: bool = True, pattern: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"rule_id": rule_id, "default": True, "enabled": enabled,
                            "actions": actions}
    if conditions is not None:
        rule["conditions"] = conditions
    if pattern is not None:
        rule["pattern"] = pattern
    return rule


def default_push_rules(localpart: str, server_name: str) -> dict[str, Any]:
    """The ``m.push_rules`` account data of a new account: ``{"global": {override,
    content, underride}}``."""
    user_id = f"@{localpart}:{server_name}"
    override = [
        _rule(".m.rule.master", [_DONT_NOTIFY], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_DONT_NOTIFY],
              [_match("content.msgtype", "m.notice")]),
        _rule(".m.rule.invite_for_me", [_NOTIFY, _sound("default"), _highlight()],
              [_match("type", "m.room.member"), _match("content.membership", "invite"),
               _match("state_key", user_id)]),
        _rule(".m.rule.member_event", [_DONT_NOTIFY], [_match("type", "m.room.member")]),
        _rule(".m.rule.contains_display_name", [_NOTIFY, _sound("default"), _highlight()],
              [{"kind": "contains_display_name"}]),
        _rule(".m.rule.tombstone", [_NOTIFY, _highlight()],
              [_match("type", "m.room.tombstone"), _match("state_key", "")]),
        _rule(".m.rule.roomnotif", [_NOTIFY, _highlight()],
              [_match("content.body", "@room"),
               {"kind": "sender_notification_permission", "key": "room"}]),
    ]
    content = [
        _rule(".m.rule.contains_user_name", [_NOTIFY, _sound("default"), _highlight(True)],
              pattern=localpart),
    ]
    one_to_one = {"kind": "room_member_count", "is": "2"}
    underride = [
        _rule(".m.rule.call", [_NOTIFY, _sound("ring"), _highlight(False)],
              [_match("type", "m.call.invite")]),
        _rule(".m.rule.room_one_to_one", [_NOTIFY, _highlight(False), _highlight(False)],
              [one_to_one, _match("type", "m.room.message")]),
        _rule(".m.rule.encrypted_room_one_to_one",
              [_NOTIFY, _sound("default"), _highlight(False)],
              [one_to_one, _match("type", "m.room.encrypted")]),
        _rule(".m.rule.message", [_NOTIFY, _highlight(False)],
              [_match("type", "m.room.message")]),
        _rule(".m.rule.encrypted", [_NOTIFY, _highlight(False)],
              [_match("type", "m.room.encrypted")]),
    ]
    return {"global": {"override": override, "content": content, "underride": underride}}
