"""A second, independent implementation of the storage protocol, as a host author would
write it from the docstrings of :mod:`dendrite_admin_ext.storage.base` alone.

It shares no code with the reference backend (``storage/memory.py``).  Rooms are
event-sourced: each room is an append-only list of events, and the current state
(memberships included) is *folded* from that log, incrementally, into a projection that
can be thrown away and rebuilt at any time.  It also enforces a simplified version of
the Matrix authorisation rules, so the scenario tests fail if the admin API ever asks
a host to send an event a real homeserver would reject (a leave of someone who is not
in the room, a join to an invite-only room without an invite, a message from a user who
is not joined or lacks power, …).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dendrite_admin_ext.errors import UserInUseError
from dendrite_admin_ext.events import build_event
from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.types import (
    Account,
    AccountState,
    AccountType,
    Activity,
    AuditEntry,
    Connection,
    DeviceInfo,
    Job,
    JobStep,
    LoginAccount,
    Member,
    MembershipChange,
    NewAccount,
    NewDevice,
    NewRoom,
    NoticeTxnKey,
    Profile,
    RegistrationToken,
    RoomBlock,
    RoomListQuery,
    RoomPage,
    RoomSummary,
    TokenOwner,
    TokenReservation,
    UserCursor,
    UserQuery,
    UserRecord,
    UserRoom,
)

__all__ = ["AuthRuleViolation", "HostStorage"]

StateKey = tuple[str, str]


class AuthRuleViolation(Exception):
    """The admin API asked for an event the room's auth rules forbid (a bug)."""


@dataclass
class _Device:
    token: str
    display_name: str | None
    seen: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _Account:
    account: Account
    password_hash: str | None
    devices: dict[str, _Device] = field(default_factory=dict)


@dataclass
class _Projection:
    """Current state of a room after folding its first ``folded`` events."""

    folded: int = 0
    state: dict[StateKey, dict[str, Any]] = field(default_factory=dict)


def _clock() -> int:
    return int(time.time() * 1000)


async def _io() -> None:
    """Where a real host would wait for its database: other requests run meanwhile,
    which is what makes the admin API's in-process serialisation observable."""
    await asyncio.sleep(0)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class HostStorage:
    """Event-sourced host store: room events are the only source of truth."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._profiles: dict[str, Profile] = {}
        self._nonces: dict[str, int] = {}
        self._logs: dict[str, list[dict[str, Any]]] = {}
        self._projections: dict[str, _Projection] = {}
        self._account_data: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._notice_rooms: dict[str, str] = {}
        self._txns: dict[tuple[str, str, str], tuple[str, int]] = {}
        self._audit: list[AuditEntry] = []
        self._audit_ids = 0
        # Moderation: the flags set on each account ("locked", "suspended", …).
        self._flags: dict[str, set[str]] = {}
        self._reg_tokens: dict[str, _TokenRow] = {}
        self._reg_session_map: dict[str, tuple[str, int]] = {}  # session -> (token, ts)
        self._reg_lock = asyncio.Lock()
        self._blocks: dict[str, RoomBlock] = {}
        self._job_rows: list[Job] = []
        self._job_item_rows: list[tuple[str, str]] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # -- authentication -------------------------------------------------------------------
    async def get_token_owner(self, access_token: str) -> TokenOwner | None:
        owner = self._tokens.get(access_token)
        if owner is None:
            return None
        user_id, device_id = owner
        row = self._accounts.get(user_id)
        if row is None or device_id not in row.devices:
            return None
        a = row.account
        flags = self._flags.get(user_id, set())
        return TokenOwner(a.user, device_id, a.account_type, a.is_deactivated,
                          locked="locked" in flags, suspended="suspended" in flags)

    async def record_activity(self, seen: Sequence[Activity]) -> None:
        for s in seen:
            row = self._accounts.get(str(s.user))
            device = row.devices.get(s.device_id) if row else None
            if device is not None:
                key = (s.ip, s.user_agent)
                device.seen[key] = max(device.seen.get(key, s.last_seen_ts), s.last_seen_ts)

    # -- accounts -------------------------------------------------------------------------
    async def get_account(self, user: UserID) -> Account | None:
        row = self._accounts.get(str(user))
        return row.account if row else None

    async def localpart_exists(self, user: UserID) -> bool:
        return any(r.account.user.localpart.lower() == user.localpart.lower()
                   and r.account.user.server_name == user.server_name
                   for r in self._accounts.values())

    async def create_account(self, account: NewAccount, device: NewDevice | None) -> None:
        if await self.localpart_exists(account.user):
            raise UserInUseError(account.user.localpart)
        user_id = str(account.user)
        row = _Account(Account(account.user, account.created_ts, account.account_type,
                               user_type=account.user_type),
                       account.password_hash)
        if device is not None:
            row.devices[device.device_id] = _Device(device.access_token, device.display_name)
            self._tokens[device.access_token] = (user_id, device.device_id)
        self._accounts[user_id] = row
        self._profiles[user_id] = Profile(account.display_name, account.avatar_url)

    async def set_password(
        self, user: UserID, password_hash: str, *, logout_devices: bool,
        keep_device_id: str | None = None,
    ) -> None:
        row = self._accounts.get(str(user))
        if row is None:
            return
        row.password_hash = password_hash
        if logout_devices:
            for device_id in [d for d in row.devices if d != keep_device_id]:
                del self._tokens[row.devices.pop(device_id).token]

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        row = self._accounts.get(str(user))
        if row is None:
            return []
        return [
            DeviceInfo(device_id, d.display_name, tuple(sorted(
                (Connection(ip, ua, ts) for (ip, ua), ts in d.seen.items()),
                key=lambda c: -c.last_seen_ts)))
            for device_id, d in row.devices.items()
        ]

    async def get_profile(self, user: UserID) -> Profile | None:
        return self._profiles.get(str(user))

    async def set_profile(self, user: UserID, profile: Profile) -> None:
        self._profiles[str(user)] = profile

    # -- nonces ---------------------------------------------------------------------------
    async def add_nonce(self, nonce: str, expires_ts: int, max_nonces: int) -> None:
        now = _clock()
        self._nonces = {n: exp for n, exp in self._nonces.items() if exp > now}
        while len(self._nonces) >= max_nonces:
            oldest = min(self._nonces, key=self._nonces.__getitem__)
            del self._nonces[oldest]
        self._nonces[nonce] = expires_ts

    async def take_nonce(self, nonce: str, now_ts: int) -> bool:
        return self._nonces.pop(nonce, -1) > now_ts

    # -- rooms: the event log and its projection -----------------------------------------
    def _state(self, room_id: str) -> dict[StateKey, dict[str, Any]]:
        """Fold the events not folded yet into the room's current state."""
        log = self._logs.get(room_id, [])
        projection = self._projections.setdefault(room_id, _Projection())
        for event in log[projection.folded:]:
            if "state_key" in event:
                projection.state[(event["type"], event["state_key"])] = event
        projection.folded = len(log)
        return projection.state

    def _membership(self, room_id: str, user_id: str) -> str | None:
        event = self._state(room_id).get(("m.room.member", user_id))
        return _text(event["content"].get("membership")) if event else None

    def _append(self, room_id: str, sender: str, event_type: str,
                content: Mapping[str, Any], state_key: str | None = None) -> str:
        log = self._logs[room_id]
        state = self._state(room_id)
        self._authorise(room_id, state, sender, event_type, content, state_key)
        auth_keys: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", ""),
                                     ("m.room.member", sender)]
        if event_type == "m.room.member" and state_key is not None:
            auth_keys += [("m.room.join_rules", ""), ("m.room.member", state_key)]
        auth_events = list(dict.fromkeys(
            state[k]["event_id"] for k in auth_keys if k in state))
        event = build_event(
            room_id=room_id, sender=sender, event_type=event_type, content=content,
            origin_server_ts=_clock(), depth=len(log) + 1,
            prev_events=[log[-1]["event_id"]] if log else [],
            auth_events=auth_events, state_key=state_key,
        )
        log.append(event)
        return str(event["event_id"])

    def _transaction(self, room_id: str) -> _Rollback:
        return _Rollback(self, room_id)

    def _rollback(self, room_id: str, length: int) -> None:
        del self._logs[room_id][length:]
        self._projections.pop(room_id, None)  # rebuilt by folding the log again

    def _power(self, state: Mapping[StateKey, dict[str, Any]], user_id: str) -> int:
        pl = state.get(("m.room.power_levels", ""))
        if pl is None:
            creator = state[("m.room.create", "")]["sender"]
            return 100 if user_id == creator else 0
        content = pl["content"]
        return int(content.get("users", {}).get(user_id, content.get("users_default", 0)))

    @staticmethod
    def _needed(state: Mapping[StateKey, dict[str, Any]], event_type: str,
                is_state: bool) -> int:
        pl = state.get(("m.room.power_levels", ""))
        if pl is None:  # no power levels yet: anyone joined may do anything
            return 0
        content = pl["content"]
        if event_type in content.get("events", {}):
            return int(content["events"][event_type])
        if is_state:
            return int(content.get("state_default", 50))
        return int(content.get("events_default", 0))

    def _authorise(self, room_id: str, state: Mapping[StateKey, dict[str, Any]],
                   sender: str, event_type: str, content: Mapping[str, Any],
                   state_key: str | None) -> None:
        def deny(why: str) -> AuthRuleViolation:
            return AuthRuleViolation(f"{event_type} by {sender} in {room_id}: {why}")

        if event_type == "m.room.create":
            if state:
                raise deny("the room already exists")
            return
        if ("m.room.create", "") not in state:
            raise deny("no create event")
        member = state.get(("m.room.member", sender))
        sender_membership = member["content"].get("membership") if member else None
        if event_type == "m.room.member" and state_key is not None:
            target = state.get(("m.room.member", state_key))
            before = target["content"].get("membership") if target else None
            wanted = content.get("membership")
            if wanted == "join":
                if sender != state_key:
                    raise deny("only the user can join")
                creator = state[("m.room.create", "")]["sender"]
                first_join = len(self._logs[room_id]) == 1 and sender == creator
                rule = state.get(("m.room.join_rules", ""))
                public = rule is not None and rule["content"].get("join_rule") == "public"
                if not (first_join or public or before in ("join", "invite")):
                    raise deny(f"cannot join from {before!r} without an invite")
                return
            if wanted == "invite":
                if sender_membership != "join":
                    raise deny("the inviter is not joined")
                if before in ("join", "ban"):
                    raise deny(f"cannot invite a user whose membership is {before}")
                pl = state.get(("m.room.power_levels", ""))
                needed = int(pl["content"].get("invite", 0)) if pl else 0
                if self._power(state, sender) < needed:
                    raise deny("the inviter lacks power")
                return
            if wanted == "leave":
                if sender != state_key:
                    raise deny("kicks are not supported by this host")
                if before not in ("join", "invite", "knock"):
                    raise deny(f"cannot leave from {before!r}")
                return
            raise deny(f"membership {wanted!r} is not supported by this host")
        if sender_membership != "join":
            raise deny("the sender is not joined")
        if self._power(state, sender) < self._needed(state, event_type, state_key is not None):
            raise deny("the sender lacks power")

    # -- rooms: the protocol ------------------------------------------------------------
    async def room_exists(self, room_id: str) -> bool:
        await _io()
        return ("m.room.create", "") in self._state(room_id)

    async def get_local_joined_members(
        self, room_id: str, server_name: str, *, after: UserID | None, limit: int
    ) -> list[Member]:
        await _io()
        suffix = ":" + server_name
        joined = (
            (user_id, event) for (event_type, user_id), event in self._state(room_id).items()
            if event_type == "m.room.member" and user_id.endswith(suffix)
            and event["content"].get("membership") == "join"
            and (after is None or user_id > str(after))
        )
        return [Member(UserID.from_stored(user_id), _text(event["content"].get("displayname")),
                       _text(event["content"].get("avatar_url")))
                for user_id, event in heapq.nsmallest(limit, joined, key=lambda p: p[0])]

    async def get_user_rooms(self, user: UserID) -> list[UserRoom]:
        await _io()
        user_id = str(user)
        out = []
        for room_id in self._logs:
            event = self._state(room_id).get(("m.room.member", user_id))
            membership = event["content"].get("membership") if event else None
            if event is not None and membership in ("join", "invite"):
                out.append(UserRoom(
                    room_id, membership, self._notice_rooms.get(user_id) == room_id,
                    _text(event["content"].get("displayname")),
                    _text(event["content"].get("avatar_url"))))
        return out

    async def get_membership(self, room_id: str, user: UserID) -> str | None:
        await _io()
        return self._membership(room_id, str(user))

    async def apply_memberships(
        self, room_id: str, changes: Sequence[MembershipChange]
    ) -> list[str]:
        await _io()
        if room_id not in self._logs:
            raise KeyError(room_id)
        with self._transaction(room_id):
            return [self._append(room_id, str(c.sender), "m.room.member", c.content,
                                 str(c.target))
                    for c in changes]

    async def create_room(self, room: NewRoom) -> str:
        await _io()
        return self._create_room(room)

    def _create_room(self, room: NewRoom) -> str:
        server_name = room.creator.server_name
        room_id = f"!{secrets.token_urlsafe(12)}:{server_name}"
        self._logs[room_id] = []
        try:
            self._append(room_id, str(room.creator), "m.room.create",
                         {**room.create_content, "room_version": room.room_version}, "")
            for event_type, state_key, content in room.initial_state:
                self._append(room_id, str(room.creator), event_type, content, state_key)
        except BaseException:
            del self._logs[room_id]
            self._projections.pop(room_id, None)
            raise
        return room_id

    async def send_event(
        self, room_id: str, sender: UserID, event_type: str, content: Mapping[str, Any],
        /, *, state_key: str | None = None, txn: NoticeTxnKey | None = None, txn_ts: int = 0,
    ) -> str:
        await _io()
        key = None if txn is None else (str(txn.user), txn.device_id, txn.txn_id)
        if key is not None and key in self._txns:
            return self._txns[key][0]
        event_id = self._append(room_id, str(sender), event_type, content, state_key)
        if key is not None:
            self._txns[key] = (event_id, txn_ts)
        return event_id

    async def get_state_content(
        self, room_id: str, event_type: str, state_key: str
    ) -> dict[str, Any] | None:
        await _io()
        if room_id not in self._logs:
            return None
        event = self._state(room_id).get((event_type, state_key))
        return None if event is None else copy.deepcopy(event["content"])

    async def send_state_event(
        self, room_id: str, sender: UserID, event_type: str, state_key: str,
        content: Mapping[str, Any], /,
    ) -> str:
        await _io()
        return self._append(room_id, str(sender), event_type, content, state_key)

    async def set_room_tag(
        self, user: UserID, room_id: str, tag: str, content: Mapping[str, Any]
    ) -> None:
        await _io()
        data = self._account_data.setdefault((str(user), room_id, "m.tag"), {"tags": {}})
        data["tags"][tag] = dict(content)

    async def get_server_notice_room(self, user: UserID) -> str | None:
        await _io()
        return self._notice_rooms.get(str(user))

    async def create_server_notice_room(
        self, user: UserID, room: NewRoom, *, replacing: str | None, tag: str,
        joins: Sequence[MembershipChange] = (),
    ) -> str | None:
        await _io()
        if self._notice_rooms.get(str(user)) != replacing:
            return None
        # No await from here on: the check, the room and the record happen at once.
        room_id = self._create_room(room)
        try:
            for c in joins:
                self._append(room_id, str(c.sender), "m.room.member", c.content,
                             str(c.target))
        except BaseException:
            del self._logs[room_id]
            self._projections.pop(room_id, None)
            raise
        data = self._account_data.setdefault((str(user), room_id, "m.tag"), {"tags": {}})
        data["tags"][tag] = {}
        self._notice_rooms[str(user)] = room_id
        return room_id

    # -- notice transactions --------------------------------------------------------------
    async def get_notice_txn(self, key: NoticeTxnKey) -> str | None:
        await _io()
        found = self._txns.get((str(key.user), key.device_id, key.txn_id))
        return found[0] if found else None

    async def purge_notice_txns(self, older_than_ts: int) -> int:
        await _io()
        before = len(self._txns)
        self._txns = {k: v for k, v in self._txns.items() if v[1] >= older_than_ts}
        return before - len(self._txns)

    # -- audit ------------------------------------------------------------------------------
    async def add_audit_entry(self, entry: AuditEntry) -> None:
        self._audit_ids += 1
        self._audit.append(replace(entry, id=self._audit_ids))

    async def get_audit_entries(
        self, *, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        older = [e for e in self._audit if before_id is None or (e.id or 0) < before_id]
        return list(reversed(older))[:limit]

    async def purge_audit_entries(self, older_than_ts: int) -> int:
        kept = [e for e in self._audit if e.ts >= older_than_ts]
        purged, self._audit = len(self._audit) - len(kept), kept
        return purged

    # -- moderation -----------------------------------------------------------------------
    async def get_account_state(self, user: UserID) -> AccountState:
        flags = self._flags.get(str(user), set())
        return AccountState(erased="erased" in flags, locked="locked" in flags,
                            suspended="suspended" in flags)

    def _flag(self, user: UserID, name: str, on: bool) -> None:
        flags = self._flags.setdefault(str(user), set())
        if on:
            flags.add(name)
        else:
            flags.discard(name)

    async def set_locked(self, user: UserID, locked: bool) -> None:
        self._flag(user, "locked", locked)

    async def set_suspended(self, user: UserID, suspended: bool) -> None:
        self._flag(user, "suspended", suspended)

    # -- client login -------------------------------------------------------------------
    async def get_login_account(self, user: UserID) -> LoginAccount | None:
        await _io()
        row = self._accounts.get(str(user))
        if row is None:
            return None
        return LoginAccount(row.account.user, row.password_hash, row.account.account_type,
                            row.account.is_deactivated,
                            "locked" in self._flags.get(str(user), set()))

    async def create_login_device(self, user: UserID, device: NewDevice,
                                  created_ts: int) -> bool:
        await _io()
        row = self._accounts.get(str(user))
        if row is None or row.account.is_deactivated:
            return False
        replaced = row.devices.get(device.device_id)
        if replaced is not None:
            del self._tokens[replaced.token]
        row.devices[device.device_id] = _Device(device.access_token, device.display_name)
        self._tokens[device.access_token] = (str(user), device.device_id)
        return True

    async def delete_login_device(self, user: UserID, device_id: str) -> bool:
        await _io()
        row = self._accounts.get(str(user))
        if row is None or device_id not in row.devices:
            return False
        del self._tokens[row.devices.pop(device_id).token]
        return True

    async def delete_login_devices(self, user: UserID) -> int:
        await _io()
        row = self._accounts.get(str(user))
        if row is None:
            return 0
        gone = list(row.devices)
        for device_id in gone:
            del self._tokens[row.devices.pop(device_id).token]
        return len(gone)
    # -- registration tokens --------------------------------------------------------------
    # Mutable rows and an explicit lock held across the simulated I/O: a host whose
    # database round trips let other requests run in between must make the check and
    # the increment one step, as the protocol demands.
    async def create_registration_token(self, token: RegistrationToken) -> bool:
        async with self._reg_lock:
            await _io()
            rows = self._reg_tokens
            if token.token in rows:
                return False
            rows[token.token] = _TokenRow(token.uses_allowed, token.pending,
                                          token.completed, token.expiry_time)
            return True

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        await _io()
        row = self._reg_tokens.get(token)
        return None if row is None else row.view(token)

    async def list_registration_tokens(self, valid: bool | None,
                                       now_ts: int) -> list[RegistrationToken]:
        await _io()
        out = []
        for name in sorted(self._reg_tokens):
            row = self._reg_tokens[name]
            if valid is None or row.usable(now_ts) is valid:
                out.append(row.view(name))
        return out

    async def update_registration_token(
            self, token: str, changes: Mapping[str, int | None]) -> RegistrationToken | None:
        async with self._reg_lock:
            await _io()
            row = self._reg_tokens.get(token)
            if row is None:
                return None
            for key, value in changes.items():
                if key == "uses_allowed":
                    row.uses_allowed = value
                elif key == "expiry_time":
                    row.expiry_time = value
                else:
                    raise ValueError(key)
            return row.view(token)

    async def delete_registration_token(self, token: str) -> bool:
        async with self._reg_lock:
            await _io()
            if token not in self._reg_tokens:
                return False
            del self._reg_tokens[token]
            for sid in [sid for sid, (t, _ts) in self._reg_session_map.items() if t == token]:
                del self._reg_session_map[sid]
            return True

    async def reserve_registration_token(self, token: str, session_id: str,
                                         now_ts: int) -> TokenReservation:
        async with self._reg_lock:
            await _io()
            bound = self._reg_session_map.get(session_id)
            if bound is not None:
                if bound[0] == token:
                    return TokenReservation.ALREADY_RESERVED
                return TokenReservation.TOKEN_CHANGED
            row = self._reg_tokens.get(token)
            if row is None or not row.usable(now_ts):
                return TokenReservation.INVALID
            await _io()  # between the check and the write, as a real database would be
            row.pending += 1
            self._reg_session_map[session_id] = (token, now_ts)
            return TokenReservation.RESERVED

    async def _finish_session(self, session_id: str, completed: bool) -> str | None:
        bound = self._reg_session_map.pop(session_id, None)
        if bound is None:
            return None
        row = self._reg_tokens.get(bound[0])
        if row is not None:
            row.pending = max(0, row.pending - 1)
            if completed:
                row.completed += 1
        return bound[0]

    async def complete_registration_token(self, session_id: str) -> str | None:
        async with self._reg_lock:
            await _io()
            return await self._finish_session(session_id, True)

    async def release_registration_token(self, session_id: str) -> str | None:
        async with self._reg_lock:
            await _io()
            return await self._finish_session(session_id, False)

    async def release_stale_registration_tokens(self, older_than_ts: int) -> int:
        async with self._reg_lock:
            await _io()
            old = [sid for sid, (_t, ts) in self._reg_session_map.items()
                   if ts < older_than_ts]
            for sid in old:
                await self._finish_session(sid, False)
            return len(old)

    # -- user administration --------------------------------------------------------------
    def _user_record(self, user_id: str) -> UserRecord | None:
        row = self._accounts.get(user_id)
        if row is None:
            return None
        a = row.account
        profile = self._profiles.get(user_id, Profile(None, None))
        flags = self._flags.get(user_id, set())
        times = [ts for d in row.devices.values() for ts in d.seen.values()]
        return UserRecord(a.user, a.account_type, a.is_deactivated, a.created_ts,
                          a.user_type, a.appservice_id, profile.display_name,
                          profile.avatar_url, "erased" in flags, "locked" in flags,
                          "suspended" in flags, max(times, default=None))

    @staticmethod
    def _fold(text: str) -> str:
        return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)

    def _wanted(self, r: UserRecord, q: UserQuery) -> bool:
        kind = int(r.account_type)
        checks = [
            q.guests or kind != 2,
            q.deactivated is None or q.deactivated == r.is_deactivated,
            q.admins is None or q.admins == (kind == 3),
            q.locked or not r.locked,
            (r.user_type or "") not in q.not_user_types,
        ]
        if q.name is not None:
            n = self._fold(q.name)
            checks.append(n in self._fold(r.user.localpart)
                          or n in self._fold(r.display_name or ""))
        elif q.user_id is not None:
            checks.append(self._fold(q.user_id) in self._fold(str(r.user)))
        return all(checks)

    @staticmethod
    def _key(r: UserRecord, order_by: str) -> int | str:
        kind = int(r.account_type)
        keys: dict[str, int | str] = {
            "displayname": r.display_name or "", "avatar_url": r.avatar_url or "",
            "user_type": r.user_type or "", "is_guest": int(kind == 2),
            "admin": int(kind == 3), "deactivated": int(r.is_deactivated),
            "locked": int(r.locked), "creation_ts": r.created_ts,
            "last_seen_ts": r.last_seen_ts or 0,
        }
        return keys.get(order_by, "")

    def _matching(self, server_name: str, q: UserQuery) -> list[UserRecord]:
        out = []
        for user_id in self._accounts:
            r = self._user_record(user_id)
            if r is not None and r.user.server_name == server_name and self._wanted(r, q):
                out.append(r)
        return out

    async def list_users(self, server_name: str, query: UserQuery, *,
                         after: UserCursor | None, offset: int,
                         limit: int) -> list[UserRecord]:
        await _io()
        back = query.direction == "b"
        keyed = sorted((((self._key(r, query.order_by), r.user.localpart), r)
                        for r in self._matching(server_name, query)), key=lambda p: p[0])
        if back:
            keyed.reverse()
        if after is not None:
            mark = (after.key, after.localpart)
            keyed = [(k, r) for k, r in keyed if (k < mark) == back and k != mark]
        return [r for _, r in keyed][offset:offset + limit]

    async def count_users(self, server_name: str, query: UserQuery) -> int:
        await _io()
        return len(self._matching(server_name, query))

    async def get_user(self, user: UserID) -> UserRecord | None:
        await _io()
        return self._user_record(str(user))

    async def set_admin(self, user: UserID, admin: bool) -> None:
        await _io()
        row = self._accounts.get(str(user))
        if row is None:
            return
        kind = row.account.account_type
        if admin:
            row.account = replace(row.account, account_type=type(kind)(3))
        elif int(kind) == 3:
            row.account = replace(row.account, account_type=type(kind)(1))

    async def set_deactivated(self, user: UserID, deactivated: bool) -> None:
        await _io()
        row = self._accounts.get(str(user))
        if row is not None:
            row.account = replace(row.account, is_deactivated=deactivated)
            if not deactivated:
                self._flag(user, "erased", False)

    async def revoke_credentials(self, user: UserID) -> None:
        await _io()
        row = self._accounts.get(str(user))
        if row is None:
            return
        for d in row.devices.values():
            self._tokens.pop(d.token, None)
        row.devices = {}
        row.password_hash = None

    async def delete_devices(self, user: UserID, device_ids: Sequence[str]) -> None:
        await _io()
        row = self._accounts.get(str(user))
        for device_id in device_ids:
            d = row.devices.pop(device_id, None) if row else None
            if d is not None:
                self._tokens.pop(d.token, None)

    async def update_account_state(self, user: UserID, *, erased: bool | None = None,
                                   locked: bool | None = None) -> None:
        await _io()
        for name, value in (("erased", erased), ("locked", locked)):
            if value is not None:
                self._flag(user, name, value)

    async def set_user_type(self, user: UserID, user_type: str | None) -> None:
        await _io()
        row = self._accounts.get(str(user))
        if row is not None:
            row.account = replace(row.account, user_type=user_type)
    # -- room administration (RoomDirectoryStore), folded from the logs ------------------
    def _room_summary(self, room_id: str, server_name: str) -> RoomSummary:
        state = self._state(room_id)

        def text(event_type: str, key: str) -> str | None:
            event = state.get((event_type, ""))
            return _text(event["content"].get(key)) if event else None

        create = state[("m.room.create", "")]
        joined = [sk for (t, sk), e in state.items()
                  if t == "m.room.member" and e["content"].get("membership") == "join"]
        join_rule = text("m.room.join_rules", "join_rule")
        return RoomSummary(
            room_id=room_id, name=text("m.room.name", "name"),
            canonical_alias=text("m.room.canonical_alias", "alias"),
            joined_members=len(joined),
            joined_local_members=len([u for u in joined
                                      if UserID.from_stored(u).server_name == server_name]),
            version=str(create["content"].get("room_version", "")),
            creator=create["sender"], encryption=text("m.room.encryption", "algorithm"),
            federatable=create["content"].get("m.federate", True) is not False,
            public=join_rule == "public", join_rules=join_rule,
            guest_access=text("m.room.guest_access", "guest_access"),
            history_visibility=text("m.room.history_visibility", "history_visibility"),
            state_events=len(state), room_type=_text(create["content"].get("type")),
            avatar=text("m.room.avatar", "url"), topic=text("m.room.topic", "topic"),
            replacement_room=text("m.room.tombstone", "replacement_room"))

    async def list_rooms(self, query: RoomListQuery, server_name: str) -> RoomPage:
        await _io()
        found = []
        for room_id in self._logs:
            room = self._room_summary(room_id, server_name)
            term = query.search_term
            if term is not None and not (
                    term.lower() in (room.name or "").lower()
                    or (room.canonical_alias is not None
                        and term.lower() in room.canonical_alias.lower())
                    or term in room_id):
                continue
            if query.public_rooms is not None and room.public != query.public_rooms:
                continue
            if query.empty_rooms is not None and (
                    (room.joined_members == 0) != query.empty_rooms):
                continue
            found.append(room)

        def key(room: RoomSummary) -> tuple[Any, ...]:
            value = (int(room.public) if query.order_by == "public"
                     else getattr(room, query.order_by))
            return (value is None, 0 if value is None else value, room.room_id)

        found.sort(key=key, reverse=query.reverse)
        return RoomPage(found[query.offset:query.offset + query.limit], len(found))

    async def get_room_summary(self, room_id: str, server_name: str) -> RoomSummary | None:
        await _io()
        if room_id not in self._logs:
            return None
        return self._room_summary(room_id, server_name)

    async def count_joined_local_devices(self, room_id: str, server_name: str) -> int:
        await _io()
        members = [u for u in await self.get_joined_members(room_id)
                   if u.server_name == server_name]
        return sum(len(self._accounts[str(u)].devices) for u in members
                   if str(u) in self._accounts)

    async def get_joined_members(self, room_id: str) -> list[UserID]:
        await _io()
        return sorted((UserID.from_stored(sk) for (t, sk), e in self._state(room_id).items()
                       if t == "m.room.member"
                       and e["content"].get("membership") == "join"), key=str)

    async def get_current_state(self, room_id: str) -> list[dict[str, Any]]:
        await _io()
        return [copy.deepcopy(e) for e in self._state(room_id).values()]

    async def get_room_block(self, room_id: str) -> RoomBlock | None:
        await _io()
        return self._blocks.get(room_id)

    async def set_room_block(self, room_id: str, user: UserID | None, ts: int, *,
                             block: bool) -> None:
        await _io()
        if block:
            self._blocks.setdefault(room_id, RoomBlock(room_id, user, ts))
        else:
            self._blocks.pop(room_id, None)

    async def get_empty_rooms(self, server_name: str) -> list[str]:
        await _io()
        return [r for r in self._logs
                if not any(u.server_name == server_name
                           for u in await self.get_joined_members(r))]

    async def purge_room(self, room_id: str) -> bool:
        await _io()
        if self._logs.pop(room_id, None) is None:
            return False
        self._projections.pop(room_id, None)
        self._account_data = {k: v for k, v in self._account_data.items()
                              if k[1] != room_id}
        return True

    # -- durable jobs (JobStore) ---------------------------------------------------------
    async def create_job(self, job: Job, *, exclusive: bool = False) -> bool:
        await _io()  # nothing awaits below: the check and the append are one step
        if exclusive and any(j.kind == job.kind and j.target == job.target
                             and j.status in ("scheduled", "active") for j in self._job_rows):
            return False
        self._job_rows.append(replace(job, seq=len(self._job_rows) + 1,
                                      status="scheduled"))
        return True

    def _job_index(self, job_id: str) -> int | None:
        for i, job in enumerate(self._job_rows):
            if job.job_id == job_id:
                return i
        return None

    async def get_job(self, job_id: str) -> Job | None:
        await _io()
        i = self._job_index(job_id)
        return None if i is None else self._job_rows[i]

    async def list_jobs(self, *, kind: str | None, status: str | None,
                        target: str | None, before_seq: int | None,
                        limit: int) -> list[Job]:
        await _io()
        return [j for j in reversed(self._job_rows)
                if kind in (None, j.kind) and status in (None, j.status)
                and target in (None, j.target)
                and (before_seq is None or j.seq < before_seq)][:limit]

    async def claim_job(self, worker_id: str, now: int, lease_ms: int,
                        kinds: tuple[str, ...]) -> Job | None:
        await _io()
        for i, job in enumerate(self._job_rows):
            free = job.status == "scheduled" or (
                job.status == "active" and job.lease_expires_ts is not None
                and job.lease_expires_ts < now)
            if free and job.kind in kinds:
                self._job_rows[i] = replace(
                    job, status="active", worker_id=worker_id,
                    lease_expires_ts=now + lease_ms,
                    started_ts=now if job.started_ts is None else job.started_ts)
                return self._job_rows[i]
        return None

    def _holding(self, job_id: str, worker_id: str) -> int | None:
        i = self._job_index(job_id)
        if i is None:
            return None
        job = self._job_rows[i]
        return i if job.status == "active" and job.worker_id == worker_id else None

    async def renew_lease(self, job_id: str, worker_id: str, now: int,
                          lease_ms: int) -> bool:
        await _io()
        i = self._holding(job_id, worker_id)
        if i is None:
            return False
        self._job_rows[i] = replace(self._job_rows[i], lease_expires_ts=now + lease_ms)
        return True

    async def record_job_step(self, job_id: str, worker_id: str, step: JobStep) -> bool:
        await _io()
        i = self._holding(job_id, worker_id)
        if i is None:
            return False
        job = self._job_rows[i]
        self._job_rows[i] = replace(
            job, cursor=step.cursor, done=job.done + step.done,
            failed=job.failed + step.failed, result={**job.result, **step.result},
            total=job.total if step.total is None else step.total)
        self._job_item_rows.extend((job_id, item) for item in step.items)
        return True

    async def finish_job(self, job_id: str, worker_id: str, now: int, status: str,
                         error: str | None, result: dict[str, Any]) -> bool:
        await _io()
        i = self._holding(job_id, worker_id)
        if i is None:
            return False
        job = self._job_rows[i]
        self._job_rows[i] = replace(job, status=status, error=error, finished_ts=now,
                                    lease_expires_ts=None, result={**job.result, **result})
        return True

    async def cancel_job(self, job_id: str, now: int) -> Job | None:
        await _io()
        i = self._job_index(job_id)
        if i is None:
            return None
        job = self._job_rows[i]
        if job.status in ("scheduled", "active"):
            self._job_rows[i] = replace(job, status="cancelled", finished_ts=now,
                                        lease_expires_ts=None)
        return self._job_rows[i]

    async def get_job_items(self, job_id: str, *, limit: int) -> list[str]:
        await _io()
        return [item for jid, item in self._job_item_rows if jid == job_id][:limit]

    # -- broadcast (BroadcastStore) ----------------------------------------------------------
    async def get_notice_recipients(
        self, server_name: str, *, after: UserID | None, limit: int,
        user_id_prefix: str | None, admins: bool | None,
        not_user_types: tuple[str, ...],
    ) -> list[UserID]:
        await _io()
        chosen = []
        for row in self._accounts.values():
            acc = row.account
            if (acc.user.server_name != server_name or acc.is_deactivated
                    or (after is not None and acc.user.localpart <= after.localpart)
                    or (admins is not None
                        and (acc.account_type is AccountType.ADMIN) != admins)
                    or (acc.user_type or "") in not_user_types
                    or (user_id_prefix is not None
                        and not str(acc.user).startswith(user_id_prefix))):
                continue
            chosen.append(acc.user)
        return sorted(chosen, key=lambda u: u.localpart)[:limit]

    # -- for tests: what a host's own APIs would do or show ----------------------------
    def set_login_state(self, user: UserID, *, deactivated: bool | None = None,
                        locked: bool | None = None) -> None:
        row = self._accounts[str(user)]
        if deactivated is not None:
            row.account = replace(row.account, is_deactivated=deactivated)
        if locked is not None:
            self._flag(user, "locked", locked)

    def set_account_flags(self, user: UserID, **changes: Any) -> None:
        row = self._accounts[str(user)]
        row.account = replace(row.account, **changes)

    def add_device(self, user: UserID, device: NewDevice) -> None:
        self._accounts[str(user)].devices[device.device_id] = _Device(
            device.access_token, device.display_name)
        self._tokens[device.access_token] = (str(user), device.device_id)


    def room_events(self, room_id: str) -> list[dict[str, Any]]:
        return list(self._logs.get(room_id, []))

    def password_hash(self, user: UserID) -> str | None:
        return self._accounts[str(user)].password_hash

    def room_tags(self, user: UserID, room_id: str) -> dict[str, Any]:
        data = self._account_data.get((str(user), room_id, "m.tag"), {"tags": {}})
        return dict(data["tags"])


@dataclass
class _TokenRow:
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def usable(self, now_ts: int) -> bool:
        if self.expiry_time is not None and now_ts >= self.expiry_time:
            return False
        return self.uses_allowed is None or self.uses_allowed > self.pending + self.completed

    def view(self, token: str) -> RegistrationToken:
        return RegistrationToken(token, self.uses_allowed, self.pending, self.completed,
                                 self.expiry_time)


class _Rollback:
    """All-or-nothing append: on an error the log is cut back and the projection
    dropped (it is rebuilt by folding the log again)."""

    def __init__(self, storage: HostStorage, room_id: str) -> None:
        self._storage = storage
        self._room_id = room_id
        self._length = len(storage._logs[room_id])

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._storage._rollback(self._room_id, self._length)
