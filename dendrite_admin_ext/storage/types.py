"""The values the storage protocols (:mod:`.protocols`) take and return.

Plain frozen dataclasses in the host's vocabulary (accounts, devices, memberships,
events).  Timestamps are integer milliseconds since the Unix epoch; a user is always a
:class:`~dendrite_admin_ext.identifiers.UserID`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..identifiers import UserID

__all__ = [
    "Account",
    "AccountState",
    "AccountType",
    "Activity",
    "AuditEntry",
    "Connection",
    "DeviceInfo",
    "Member",
    "MembershipChange",
    "NewAccount",
    "NewDevice",
    "NewRoom",
    "NoticeTxnKey",
    "Profile",
    "TokenOwner",
    "UserRoom",
    "JOB_STATUSES",
    "Job",
    "JobStep",
    "ROOM_ORDERS",
    "RoomBlock",
    "RoomListQuery",
    "RoomPage",
    "RoomSummary",
]


class AccountType(enum.IntEnum):
    """Dendrite's ``userapi_accounts.account_type`` values."""

    USER = 1
    GUEST = 2
    ADMIN = 3
    APPSERVICE = 4


@dataclass(frozen=True, slots=True)
class Account:
    user: UserID
    created_ts: int
    account_type: AccountType
    is_deactivated: bool = False
    appservice_id: str | None = None
    user_type: str | None = None  # "bot", "support", … (shared-secret registration)


@dataclass(frozen=True, slots=True)
class AccountState:
    """What an account is beyond Dendrite's columns: ``erased`` by a deactivation with
    erase (SPEC 9), ``locked`` and ``suspended`` by moderation (SPEC 10).  All false
    for an account never marked."""

    erased: bool = False
    locked: bool = False
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """What an access token resolves to: the device and its account, read fresh."""

    user: UserID
    device_id: str
    account_type: AccountType
    is_deactivated: bool


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    access_token: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class NewAccount:
    user: UserID
    password_hash: str | None
    account_type: AccountType
    created_ts: int
    display_name: str | None = None
    avatar_url: str | None = None
    user_type: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    display_name: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class Connection:
    ip: str
    user_agent: str
    last_seen_ts: int


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device with every distinct (ip, user agent) it was seen with."""

    device_id: str
    display_name: str | None
    connections: tuple[Connection, ...] = ()


@dataclass(frozen=True, slots=True)
class Activity:
    """One coalesced sighting of a device: the newest time for that (ip, user agent)."""

    user: UserID
    device_id: str
    ip: str
    user_agent: str
    last_seen_ts: int


@dataclass(frozen=True, slots=True)
class Member:
    """A current member of a room, with the profile fields of its membership event
    (``displayname`` and ``avatar_url`` of the current ``m.room.member`` content; None
    when absent or not a string)."""

    user: UserID
    display_name: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True, slots=True)
class UserRoom:
    """A room a user is joined or invited to, from the user's side.

    ``display_name``/``avatar_url`` are those of the user's current membership event in
    that room (as for :class:`Member`), so a leave can carry them on.
    ``is_server_notice_room`` is true when the room is the one recorded by
    :meth:`.protocols.notices.ServerNoticeStore.create_server_notice_room` for this user."""

    room_id: str
    membership: str  # "join" or "invite"
    is_server_notice_room: bool = False
    display_name: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """An ``m.room.member`` state event to send: ``sender`` acts on ``target``
    (the event's ``state_key``); ``content`` is the complete event content, including
    ``membership``."""

    sender: UserID
    target: UserID
    content: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NewRoom:
    """A room to create, with its initial state in order (after ``m.room.create``).

    ``create_content`` is the content of ``m.room.create`` without ``room_version``,
    which the host adds from ``room_version``.  Every ``initial_state`` event is sent by
    ``creator``; the first one is always the creator's own join."""

    creator: UserID
    room_version: str
    create_content: Mapping[str, Any]
    # (type, state_key, content), sent in order after the create event.
    initial_state: tuple[tuple[str, str, Mapping[str, Any]], ...]


@dataclass(frozen=True, slots=True)
class NoticeTxnKey:
    user: UserID
    device_id: str
    txn_id: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: int
    request_id: str
    requester: str | None
    action: str
    target: str | None
    outcome: str  # "ok", or the errcode of a refusal
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


# -- rooms administration and durable jobs (SPEC 11) -----------------------------------
@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as Synapse's room list shows it (``GET /_synapse/admin/v1/rooms``), from
    its current state.  ``public`` is true when the join rule is ``public`` (this
    package keeps no room directory, so the join rule stands for publication);
    ``joined_local_members`` counts joined members of the server asked about."""

    room_id: str
    name: str | None
    canonical_alias: str | None
    joined_members: int
    joined_local_members: int
    version: str
    creator: str
    encryption: str | None
    federatable: bool
    public: bool
    join_rules: str | None
    guest_access: str | None
    history_visibility: str | None
    state_events: int
    room_type: str | None
    avatar: str | None = None
    topic: str | None = None
    replacement_room: str | None = None  # from m.room.tombstone


@dataclass(frozen=True, slots=True)
class RoomListQuery:
    """``order_by`` is one of :data:`ROOM_ORDERS`; ``search_term`` matches a substring
    of the name or canonical alias (case-insensitive) or of the room ID (exact case);
    ``public_rooms``/``empty_rooms`` None = no filter (empty = no joined member)."""

    order_by: str = "name"
    reverse: bool = False
    offset: int = 0
    limit: int = 100
    search_term: str | None = None
    public_rooms: bool | None = None
    empty_rooms: bool | None = None


# The orders of the room list (Synapse's names); "size" and "alphabetical" are aliases.
ROOM_ORDERS = ("name", "canonical_alias", "joined_members", "joined_local_members",
               "version", "creator", "encryption", "federatable", "public", "join_rules",
               "guest_access", "history_visibility", "state_events")


@dataclass(frozen=True, slots=True)
class RoomPage:
    rooms: list[RoomSummary]
    total: int  # rooms matching the filters, all pages


@dataclass(frozen=True, slots=True)
class RoomBlock:
    room_id: str
    user: UserID | None  # who blocked it
    ts: int


JOB_STATUSES = ("scheduled", "active", "complete", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Job:
    """A durable job (SPEC 11).  ``seq`` orders jobs by creation; ``cursor`` is where
    the job resumes (opaque to storage); ``params`` and ``result`` are JSON objects;
    ``worker_id``/``lease_expires_ts`` name the worker holding it while active."""

    job_id: str
    seq: int
    kind: str
    target: str | None
    params: Mapping[str, Any]
    status: str
    created_ts: int
    total: int | None = None
    done: int = 0
    failed: int = 0
    cursor: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_ts: int | None = None
    finished_ts: int | None = None
    worker_id: str | None = None
    lease_expires_ts: int | None = None


@dataclass(frozen=True, slots=True)
class JobStep:
    """One step of a job's work, recorded atomically: the new ``cursor``, counters
    added to ``done``/``failed``, keys merged into ``result``, ``total`` when known,
    and items appended to the job's item list (e.g. the users a deletion parted)."""

    cursor: str | None
    done: int = 0
    failed: int = 0
    total: int | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    items: tuple[str, ...] = ()
