"""In-memory storage of the core features (auth, accounts, nonces, rooms, notices, audit).

It keeps no data across restarts.  Every other backend must behave exactly like this
one; the contract suite in ``tests/contract/`` checks that they do.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ...errors import UserInUseError
from ...events import (
    ROOM_VERSION,
    build_event,
    canonical_json,
    member_profile,
    new_room_id,
    now_ms,
)
from ...identifiers import UserID
from ..types import (
    Account,
    Activity,
    AuditEntry,
    Connection,
    DeviceInfo,
    Member,
    MembershipChange,
    NewAccount,
    NewDevice,
    NewRoom,
    NoticeTxnKey,
    Profile,
    TokenOwner,
    UserRoom,
)
from .base import MemoryBase, _AccountRow, _Device, _Room

__all__ = ["MemoryCore"]


class MemoryCore(MemoryBase):
    """Reference backend of the core protocols.  No method awaits, so each is atomic."""

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # -- authentication ----------------------------------------------------------------
    async def get_token_owner(self, access_token: str) -> TokenOwner | None:
        found = self.tokens.get(access_token)
        if found is None:
            return None
        user, device_id = found
        row = self.accounts.get(user)
        if row is None or device_id not in row.devices:
            return None
        acc = row.account
        state = self.account_state.get(user)
        if state is None:
            return TokenOwner(user, device_id, acc.account_type, acc.is_deactivated)
        return TokenOwner(user, device_id, acc.account_type, acc.is_deactivated,
                          state.locked, state.suspended)

    async def record_activity(self, seen: Sequence[Activity]) -> None:
        for a in seen:
            row = self.accounts.get(a.user)
            dev = row.devices.get(a.device_id) if row else None
            if dev is None:
                continue
            key = (a.ip, a.user_agent)
            if dev.connections.get(key, -1) < a.last_seen_ts:
                dev.connections[key] = a.last_seen_ts
            if (dev.last_seen_ts or -1) < a.last_seen_ts:
                dev.last_seen_ts, dev.ip, dev.user_agent = a.last_seen_ts, a.ip, a.user_agent

    # -- accounts ------------------------------------------------------------------------
    async def get_account(self, user: UserID) -> Account | None:
        row = self.accounts.get(user)
        return row.account if row else None

    async def localpart_exists(self, user: UserID) -> bool:
        wanted = user.localpart.lower()
        return any(u.localpart.lower() == wanted and u.server_name == user.server_name
                   for u in self.accounts)

    async def create_account(self, account: NewAccount, device: NewDevice | None) -> None:
        key = account.user
        if key in self.accounts:
            raise UserInUseError(key.localpart)
        row = _AccountRow(
            Account(key, account.created_ts, account.account_type,
                    user_type=account.user_type),
            account.password_hash,
        )
        self.accounts[key] = row
        self.profiles[key] = Profile(account.display_name or None, account.avatar_url or None)
        if device is not None:
            self._add_device(row, device, account.created_ts)

    def _add_device(self, row: _AccountRow, device: NewDevice, now: int) -> None:
        old = row.devices.pop(device.device_id, None)
        if old is not None:
            self.tokens.pop(old.access_token, None)
        self._session_seq += 1
        row.devices[device.device_id] = _Device(
            device.device_id, device.access_token, device.display_name, now, self._session_seq
        )
        acc = row.account
        self.tokens[device.access_token] = (acc.user, device.device_id)

    async def set_password(
        self, user: UserID, password_hash: str, *, logout_devices: bool,
        keep_device_id: str | None = None,
    ) -> None:
        row = self.accounts.get(user)
        if row is None:
            return
        row.password_hash = password_hash
        if logout_devices:
            for device_id in list(row.devices):
                if device_id != keep_device_id:
                    self.tokens.pop(row.devices.pop(device_id).access_token, None)

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        row = self.accounts.get(user)
        if row is None:
            return []
        out = []
        for dev in row.devices.values():
            conns = sorted(
                (Connection(ip, ua, ts) for (ip, ua), ts in dev.connections.items()),
                key=lambda c: c.last_seen_ts, reverse=True,
            )
            if not conns and dev.last_seen_ts is not None:
                conns = [Connection(dev.ip or "", dev.user_agent or "", dev.last_seen_ts)]
            out.append(DeviceInfo(dev.device_id, dev.display_name, tuple(conns)))
        return out

    async def get_profile(self, user: UserID) -> Profile | None:
        return self.profiles.get(user)

    async def set_profile(self, user: UserID, profile: Profile) -> None:
        # '' is "no value", as the SQL backends (Dendrite's '' columns) read it back.
        self.profiles[user] = Profile(profile.display_name or None, profile.avatar_url or None)

    # test helpers (not part of the protocol) ------------------------------------------
    def add_device(self, user: UserID, device: NewDevice) -> None:
        self._add_device(self.accounts[user], device,
                         now_ms())

    def set_account_flags(self, user: UserID, **changes: Any) -> None:
        row = self.accounts[user]
        row.account = replace(row.account, **changes)

    def password_hash(self, user: UserID) -> str | None:
        return self.accounts[user].password_hash

    # -- nonces ---------------------------------------------------------------------------
    async def add_nonce(self, nonce: str, expires_ts: int, max_nonces: int) -> None:
        now = now_ms()
        # dicts keep insertion order: the first key is the oldest nonce, and with one
        # lifetime for all also the first to expire.  Purging from the front keeps this
        # O(1) per call; scanning every nonce made a full store cost O(max_nonces) per
        # GET under a flood.
        nonces = self.nonces
        while nonces:
            oldest = next(iter(nonces))
            if len(nonces) < max_nonces and nonces[oldest] > now:
                break
            del nonces[oldest]
        nonces[nonce] = expires_ts

    async def take_nonce(self, nonce: str, now_ts: int) -> bool:
        expires = self.nonces.pop(nonce, None)
        return expires is not None and expires > now_ts

    # -- rooms ------------------------------------------------------------------------------
    def _append(self, room: _Room, sender: str, event_type: str,
                content: Mapping[str, Any], state_key: str | None = None) -> str:
        return self._append_all(room, [(sender, event_type, content, state_key)])[0]

    def _append_all(
        self, room: _Room,
        items: Sequence[tuple[str, str, Mapping[str, Any], str | None]],
    ) -> list[str]:
        """Append events (sender, type, content, state_key) in order, all or none."""
        built: list[dict[str, Any]] = []
        depth, latest, now = room.depth, room.latest, now_ms()
        for sender, event_type, content, state_key in items:
            depth += 1
            event = build_event(
                room_id=room.room_id, sender=sender, event_type=event_type,
                content=content, origin_server_ts=now, depth=depth, prev_events=latest,
                state_key=state_key,
            )
            latest = [event["event_id"]]
            built.append(event)
        # Nothing changes until every event is built: a content that cannot be
        # serialised, or an event over the Matrix limits, leaves the room as it was.
        for event in built:
            room.depth += 1
            event_id: str = event["event_id"]
            self.events.append(event)
            room.latest = [event_id]
            state_key = event.get("state_key")
            if state_key is not None:
                event_type = event["type"]
                room.state[(event_type, state_key)] = event_id
                room.state_content[(event_type, state_key)] = event["content"]
                if event_type == "m.room.member":
                    self._set_member(room, state_key, dict(event["content"]))
        return [e["event_id"] for e in built]

    @staticmethod
    def _set_member(room: _Room, user_id: str, content: dict[str, Any]) -> None:
        membership = str(content.get("membership"))
        old = room.members.get(user_id)
        room.members[user_id] = (membership, content)
        was_joined = old is not None and old[0] == "join"
        if was_joined and membership != "join":
            i = bisect.bisect_left(room.joined, user_id)
            del room.joined[i]
        elif membership == "join" and not was_joined:
            bisect.insort(room.joined, user_id)

    async def room_exists(self, room_id: str) -> bool:
        return room_id in self.rooms

    async def get_local_joined_members(
        self, room_id: str, server_name: str, *, after: UserID | None, limit: int
    ) -> list[Member]:
        room = self.rooms.get(room_id)
        if room is None:
            return []
        start = 0 if after is None else bisect.bisect_right(room.joined, str(after))
        suffix = ":" + server_name
        out: list[Member] = []
        for i in range(start, len(room.joined)):  # no slice copy: pages stay O(limit)
            if len(out) >= limit:
                break
            user_id = room.joined[i]
            if user_id.endswith(suffix):
                out.append(Member(UserID.from_stored(user_id),
                                  *member_profile(room.members[user_id][1])))
        return out

    async def get_user_rooms(self, user: UserID) -> list[UserRoom]:
        uid = str(user)
        notice_room = self.notice_rooms.get(uid)
        out = []
        for room in self.rooms.values():
            m = room.members.get(uid)
            if m is not None and m[0] in ("join", "invite"):
                out.append(UserRoom(room.room_id, m[0], room.room_id == notice_room,
                                    *member_profile(m[1])))
        return out

    async def get_membership(self, room_id: str, user: UserID) -> str | None:
        room = self.rooms.get(room_id)
        m = room.members.get(str(user)) if room else None
        return m[0] if m else None

    async def apply_memberships(
        self, room_id: str, changes: Sequence[MembershipChange]
    ) -> list[str]:
        room = self.rooms[room_id]
        _check_storable(changes)  # all or nothing, like the SQL backends' transaction
        return self._append_members(room, changes)

    def _append_members(self, room: _Room, changes: Sequence[MembershipChange]) -> list[str]:
        return self._append_all(room, [(str(c.sender), "m.room.member", c.content, str(c.target))
                                       for c in changes])

    async def create_room(self, room: NewRoom) -> str:
        return self._create_room(room)

    def _create_room(self, room: NewRoom) -> str:
        room_id = new_room_id(room.creator.server_name)
        r = _Room(room_id)
        self.rooms[room_id] = r
        events = len(self.events)
        try:
            self._append(r, str(room.creator), "m.room.create",
                         {**room.create_content,
                          "room_version": room.room_version or ROOM_VERSION}, "")
            for event_type, state_key, content in room.initial_state:
                self._append(r, str(room.creator), event_type, content, state_key)
        except BaseException:  # atomic, like the SQL backends' transaction
            del self.rooms[room_id]
            del self.events[events:]
            raise
        return room_id

    async def send_event(
        self, room_id: str, sender: UserID, event_type: str, content: Mapping[str, Any],
        /, *, state_key: str | None = None, txn: NoticeTxnKey | None = None, txn_ts: int = 0,
    ) -> str:
        if txn is not None and txn in self.notice_txns:
            return self.notice_txns[txn][0]
        event_id = self._append(self.rooms[room_id], str(sender), event_type, content,
                                state_key)
        if txn is not None:  # no await in between: recorded with the event
            self.notice_txns[txn] = (event_id, txn_ts)
        return event_id

    async def get_state_content(
        self, room_id: str, event_type: str, state_key: str
    ) -> dict[str, Any] | None:
        room = self.rooms.get(room_id)
        content = None if room is None else room.state_content.get((event_type, state_key))
        return None if content is None else copy.deepcopy(content)

    async def send_state_event(
        self, room_id: str, sender: UserID, event_type: str, state_key: str,
        content: Mapping[str, Any], /,
    ) -> str:
        return self._append(self.rooms[room_id], str(sender), event_type, content, state_key)

    async def set_room_tag(
        self, user: UserID, room_id: str, tag: str, content: Mapping[str, Any]
    ) -> None:
        self._set_room_tag(user, room_id, tag, content)

    def _set_room_tag(self, user: UserID, room_id: str, tag: str,
                      content: Mapping[str, Any]) -> None:
        key = (str(user), room_id, "m.tag")
        data = self.account_data.setdefault(key, {"tags": {}})
        data["tags"][tag] = dict(content)

    async def get_server_notice_room(self, user: UserID) -> str | None:
        return self.notice_rooms.get(str(user))

    async def create_server_notice_room(
        self, user: UserID, room: NewRoom, *, replacing: str | None, tag: str,
        joins: Sequence[MembershipChange] = (),
    ) -> str | None:
        if self.notice_rooms.get(str(user)) != replacing:
            return None
        # No await below: nothing else runs in between, so all of it happens at once.
        # The joins are checked first (as apply_memberships does); _create_room undoes
        # itself if its initial state fails.
        _check_storable(joins)
        room_id = self._create_room(room)
        self._append_members(self.rooms[room_id], joins)
        self._set_room_tag(user, room_id, tag, {})
        self.notice_rooms[str(user)] = room_id
        return room_id

    # -- notice transactions --------------------------------------------------------------
    async def get_notice_txn(self, key: NoticeTxnKey) -> str | None:
        found = self.notice_txns.get(key)
        return found[0] if found else None

    async def purge_notice_txns(self, older_than_ts: int) -> int:
        old = [k for k, (_, ts) in self.notice_txns.items() if ts < older_than_ts]
        for k in old:
            del self.notice_txns[k]
        return len(old)

    # -- audit ------------------------------------------------------------------------------
    async def add_audit_entry(self, entry: AuditEntry) -> None:
        self._audit_ids += 1
        self.audit.append(replace(entry, id=self._audit_ids))

    async def get_audit_entries(
        self, *, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        # Ids ascend along the list (a purge removes a prefix of it).
        end = (len(self.audit) if before_id is None
               else bisect.bisect_left(self.audit, before_id, key=_audit_id))
        return list(reversed(self.audit[max(0, end - max(0, limit)):end]))

    async def purge_audit_entries(self, older_than_ts: int) -> int:
        before = len(self.audit)
        self.audit = [e for e in self.audit if e.ts >= older_than_ts]
        return before - len(self.audit)


def _audit_id(entry: AuditEntry) -> int:
    return entry.id or 0


def _check_storable(changes: Sequence[MembershipChange]) -> None:
    """Raise, before anything is written, if any change's content is not JSON."""
    for c in changes:
        canonical_json(dict(c.content))
