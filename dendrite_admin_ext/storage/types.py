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
    "LoginAccount",
    "Member",
    "MembershipChange",
    "NewAccount",
    "NewDevice",
    "NewRoom",
    "NoticeTxnKey",
    "Profile",
    "TokenOwner",
    "UserRoom",
    "RegistrationToken",
    "TokenReservation",
    "USER_ORDERS",
    "UserCursor",
    "UserQuery",
    "UserRecord",
    "user_sort_key",
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
    # The account's moderation state (SPEC 10), read with the token in the same query:
    # a locked account is refused on every authenticated route.  False from hosts
    # without account moderation.
    locked: bool = False
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    access_token: str
    display_name: str | None = None
    # Where the device was created from, when the homeserver records it at creation
    # (Dendrite does; None leaves the columns NULL until the device is first seen).
    ip: str | None = None
    user_agent: str | None = None


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


@dataclass(frozen=True, slots=True)
class LoginAccount:
    """What a password login needs to know about an account (SPEC 13): its bcrypt hash
    (None: no password, e.g. cleared by deactivation), type, whether it is deactivated,
    and whether it is locked (``AccountState.locked``)."""

    user: UserID
    password_hash: str | None = field(repr=False)
    account_type: AccountType
    is_deactivated: bool = False
    locked: bool = False


# -- registration tokens (SPEC 12) ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegistrationToken:
    """A registration token as Synapse's and Dendrite's admin APIs show it (Synapse doc
    ``registration_tokens.md``; Dendrite's ``userapi_registration_tokens`` row).

    ``uses_allowed``: registrations it may complete; None = unlimited, 0 = used up.
    ``pending``: uses reserved by registration sessions still in progress;
    ``completed``: registrations completed with it.  Both count against
    ``uses_allowed`` (Synapse's rule).  ``expiry_time``: ms since the epoch after which
    it is invalid; None = never."""

    token: str
    uses_allowed: int | None = None
    pending: int = 0
    completed: int = 0
    expiry_time: int | None = None

    def is_valid(self, now_ts: int) -> bool:
        """Synapse's and Dendrite's definition: uses left and not expired."""
        return ((self.uses_allowed is None
                 or self.pending + self.completed < self.uses_allowed)
                and (self.expiry_time is None or self.expiry_time > now_ts))


class TokenReservation(enum.Enum):
    """What reserving a registration token's use for a registration session did."""

    # A use was reserved for the session now (``pending`` + 1).
    RESERVED = "reserved"
    # The session had reserved a use of this same token already: nothing changed.
    ALREADY_RESERVED = "already_reserved"
    # Unknown, used up or expired token: nothing changed.
    INVALID = "invalid"
    # The session had reserved a use of another token: nothing changed.
    TOKEN_CHANGED = "token_changed"  # noqa: S105 (a state's name, not a secret)


# -- user administration (SPEC 9) ------------------------------------------------------------
# The ``order_by`` values of Synapse's user list that map to this package's data
# (``shadow_banned`` is always false here, so it orders by name alone).
USER_ORDERS = ("name", "displayname", "is_guest", "admin", "deactivated", "user_type",
               "avatar_url", "shadow_banned", "creation_ts", "last_seen_ts", "locked")


@dataclass(frozen=True, slots=True)
class UserQuery:
    """The filters and order of Synapse's ``GET /_synapse/admin/v2|v3/users``.

    ``user_id``: substring of the whole user ID; ``name``: substring of the localpart
    or of the display name (when given, ``user_id`` is ignored, as Synapse does); both
    compare with ASCII letters case-folded.  ``guests`` False excludes guests.
    ``deactivated``: None = no filter, True = only deactivated, False = exclude them.
    ``admins``: None = both, True = only admins, False = exclude admins.  ``locked``
    False excludes locked accounts (True: no filter).  ``not_user_types`` excludes
    accounts of those types; ``""`` in it excludes accounts without a type.
    ``order_by`` is one of :data:`USER_ORDERS`; ``direction`` ``"f"`` (ascending) or
    ``"b"``; ties are broken by localpart in the same direction."""

    user_id: str | None = None
    name: str | None = None
    guests: bool = True
    deactivated: bool | None = False
    admins: bool | None = None
    locked: bool = False
    not_user_types: tuple[str, ...] = ()
    order_by: str = "name"
    direction: str = "f"


@dataclass(frozen=True, slots=True)
class UserCursor:
    """A keyset position in a user list: the sort key of the last row seen (see
    :func:`user_sort_key`) and its localpart.  The next page starts after it."""

    key: int | str
    localpart: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One account as user administration shows it.  ``created_ts`` and
    ``last_seen_ts`` are ms; ``last_seen_ts`` is the newest sighting of any of the
    user's devices (None if never seen); ``display_name``/``avatar_url`` come from the
    global profile; ``erased``/``locked``/``suspended`` from :class:`AccountState`."""

    user: UserID
    account_type: AccountType
    is_deactivated: bool
    created_ts: int
    user_type: str | None = None
    appservice_id: str | None = None
    display_name: str | None = None
    avatar_url: str | None = None
    erased: bool = False
    locked: bool = False
    suspended: bool = False
    last_seen_ts: int | None = None


def user_sort_key(record: UserRecord, order_by: str) -> int | str:
    """The value a user list ordered by ``order_by`` sorts ``record`` by (before the
    localpart, which breaks ties): text compares by code point, booleans are 0/1,
    an absent text or time is ``""`` / 0."""
    if order_by == "displayname":
        return record.display_name or ""
    if order_by == "avatar_url":
        return record.avatar_url or ""
    if order_by == "user_type":
        return record.user_type or ""
    if order_by == "is_guest":
        return int(record.account_type == AccountType.GUEST)
    if order_by == "admin":
        return int(record.account_type == AccountType.ADMIN)
    if order_by == "deactivated":
        return int(record.is_deactivated)
    if order_by == "locked":
        return int(record.locked)
    if order_by == "creation_ts":
        return record.created_ts
    if order_by == "last_seen_ts":
        return record.last_seen_ts or 0
    return ""  # name, shadow_banned: the localpart alone


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
