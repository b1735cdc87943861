"""The storage protocol: everything the admin API needs from its host homeserver.

A host implements :class:`AdminStorage` over its own database (or uses one of the
backends shipped here, which share Dendrite's table names).  The protocol speaks the
host's vocabulary — accounts, devices, memberships, events — and nothing here knows
about HTTP.  Methods are grouped by the feature that needs them; a host that disables
a feature in the config may leave that group raising ``NotImplementedError``.

Conventions for every method:

* Timestamps are integer milliseconds since the Unix epoch.
* A backend that cannot reach its database raises
  :class:`~dendrite_admin_ext.errors.StorageUnavailableError` (the API answers 503 with
  ``Retry-After`` and keeps serving); any other exception is a bug (500).
* Methods documented as atomic must either apply completely or not at all.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..identifiers import UserID

__all__ = [
    "Account",
    "AccountType",
    "Activity",
    "AdminStorage",
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
    "Session",
    "UserRoom",
]


class AccountType(enum.IntEnum):
    """Dendrite's ``userapi_accounts.account_type`` values."""

    USER = 1
    GUEST = 2
    ADMIN = 3
    APPSERVICE = 4


@dataclass(frozen=True, slots=True)
class Account:
    localpart: str
    server_name: str
    created_ts: int
    account_type: AccountType
    is_deactivated: bool = False
    appservice_id: str | None = None
    user_type: str | None = None  # "bot", "support", … (shared-secret registration)

    @property
    def user_id(self) -> UserID:
        return UserID(self.localpart, self.server_name)


@dataclass(frozen=True, slots=True)
class Session:
    """What an access token resolves to: the device and its account, read fresh."""

    localpart: str
    server_name: str
    device_id: str
    account_type: AccountType
    is_deactivated: bool

    @property
    def user_id(self) -> UserID:
        return UserID(self.localpart, self.server_name)


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    access_token: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class NewAccount:
    localpart: str
    server_name: str
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

    localpart: str
    server_name: str
    device_id: str
    ip: str
    user_agent: str
    last_seen_ts: int


@dataclass(frozen=True, slots=True)
class Member:
    """A current member of a room, with the profile fields of its membership event
    (``displayname`` and ``avatar_url`` of the current ``m.room.member`` content; None
    when absent or not a string)."""

    user_id: str
    display_name: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True, slots=True)
class UserRoom:
    """A room a user is joined or invited to, from the user's side.

    ``display_name``/``avatar_url`` are those of the user's current membership event in
    that room (as for :class:`Member`), so a leave can carry them on.
    ``is_server_notice_room`` is true when the room is the one recorded by
    :meth:`AdminStorage.create_server_notice_room` for this user."""

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

    sender: str
    target: str
    content: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NewRoom:
    """A room to create, with its initial state in order (after ``m.room.create``).

    ``create_content`` is the content of ``m.room.create`` without ``room_version``,
    which the host adds from ``room_version``.  Every ``initial_state`` event is sent by
    ``creator``; the first one is always the creator's own join."""

    creator: str
    room_version: str
    create_content: Mapping[str, Any]
    # (type, state_key, content), sent in order after the create event.
    initial_state: tuple[tuple[str, str, Mapping[str, Any]], ...]


@dataclass(frozen=True, slots=True)
class NoticeTxnKey:
    user_id: str
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


@runtime_checkable
class AdminStorage(Protocol):
    """Everything the admin API reads or writes.  See the README for the host contract."""

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and apply migrations.  Called once at application start-up."""

    async def close(self) -> None:
        """Release connections.  Called once at application clean-up."""

    async def ping(self) -> None:
        """Raise StorageUnavailableError unless the database answers (health check)."""

    # -- authentication (every authenticated request) --------------------------------
    async def get_session(self, access_token: str) -> Session | None:
        """The device owning ``access_token`` joined with its account, or None."""

    async def record_activity(self, seen: Sequence[Activity]) -> None:
        """Store a batch of sightings: keep the newest ``last_seen_ts`` per
        (device, ip, user agent) and update the device's last-seen fields.  Called
        from a background flusher, never per request; must be idempotent."""

    # -- accounts (whois, resetPassword, registration) --------------------------------
    async def get_account(self, user: UserID) -> Account | None: ...

    async def localpart_exists(self, localpart: str, server_name: str) -> bool:
        """True if an account exists whose localpart matches case-insensitively."""

    async def create_account(self, account: NewAccount, device: NewDevice | None) -> None:
        """Atomically create the account, its profile and optionally a device.
        Raise UserInUseError if the localpart is taken (the unique constraint decides
        races: of two concurrent calls for one name exactly one succeeds)."""

    async def set_password(
        self, user: UserID, password_hash: str, *, logout_devices: bool,
        keep_device_id: str | None = None,
    ) -> None:
        """Atomically set the hash and, with ``logout_devices``, delete every device
        and access token of the user except ``keep_device_id``."""

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        """Every device of the user with its connections, newest first."""

    async def get_profile(self, user: UserID) -> Profile | None: ...

    async def set_profile(self, user: UserID, profile: Profile) -> None: ...

    # -- shared-secret registration nonces ------------------------------------------
    async def add_nonce(self, nonce: str, expires_ts: int, max_nonces: int) -> None:
        """Store a nonce.  Expired nonces are purged and at most about ``max_nonces``
        are kept (the oldest go first), so a flood cannot exhaust storage."""

    async def take_nonce(self, nonce: str, now_ts: int) -> bool:
        """Delete the nonce; True if it existed and had not expired (single use)."""

    # -- rooms (evacuation, server notices) ------------------------------------------
    # The admin API decides *what* to send; the host appends the events.  Events the
    # host creates here must be complete Matrix events stored in room order, with
    # ``sender``, ``type``, ``state_key`` (state events), ``content`` and
    # ``origin_server_ts``, and an event ID of room versions >= 4 (``$`` + unpadded
    # URL-safe base64 of the SHA-256 reference hash; :func:`..events.build_event` does
    # it, and refuses — before anything is stored — an event over the Matrix size
    # limits; a host building its own calls :func:`..events.check_event_limits`).
    # A host that federates sends them on as it would its own clients' events.
    # The host may assume: every room ID passed to a writing method was returned by
    # ``create_room`` or answered True by ``room_exists``; user IDs are well-formed;
    # each event it is asked to send is allowed by the room's auth rules in the
    # current state — self-leaves of joined or invited users, the notices user's
    # invites, profile updates and room-name changes, joins of invited users, messages
    # from joined users with the power to send them.  Within one process the admin API
    # serialises the changes to one room and the notice-room set-up for one user; it
    # does not lock across workers, so two workers racing may ask for a leave of
    # someone who has just left.  A host that enforces auth rules may refuse it by
    # raising (the request fails; a re-run finishes the job); one that does not may
    # store it.
    async def room_exists(self, room_id: str) -> bool:
        """True if the server knows the room (it has its create event)."""

    async def get_local_joined_members(
        self, room_id: str, server_name: str, *, after: str | None, limit: int
    ) -> list[Member]:
        """Up to ``limit`` members joined now whose user ID ends with ``:server_name``,
        ordered by user ID (code-point / byte order, as SQL ``COLLATE "C"``), strictly
        after ``after`` (None: from the start).  Called page by page with the last
        user ID of the previous page, while leaves are being sent, so it must be
        cheap for rooms of tens of thousands of members (an index on
        (room, membership, user ID) in SQL).  Unknown room: an empty list."""

    async def get_user_rooms(self, user: UserID) -> list[UserRoom]:
        """Rooms the user is joined to or invited to now (current state; not left,
        banned or knocking), in any order."""

    async def get_membership(self, room_id: str, user_id: str) -> str | None:
        """The user's current membership in the room ("join", "invite", "leave",
        "ban", "knock"), or None if the user never had one (or the room is unknown)."""

    async def apply_memberships(
        self, room_id: str, changes: Sequence[MembershipChange]
    ) -> list[str]:
        """Send one ``m.room.member`` event per change, in order, atomically (all of
        them are stored, and the current memberships updated, or none), and return
        their event IDs in the same order.  Called with batches of up to a few hundred
        changes; the admin API never holds more than one batch in memory."""

    async def create_room(self, room: NewRoom) -> str:
        """Create the room atomically: a new room ID on this server, the
        ``m.room.create`` event (sender ``creator``) and then every ``initial_state``
        event in order.  Return the room ID."""

    async def send_event(
        self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any], /,
        *, state_key: str | None = None, txn: NoticeTxnKey | None = None, txn_ts: int = 0,
    ) -> str:
        """Send an event with this content, unchanged (extra keys such as ``format``
        and ``formatted_body`` kept); return its event ID.  A message (non-state) event,
        or with ``state_key`` a state event that becomes the room's current state for
        (``event_type``, ``state_key``), as :meth:`send_state_event` (a server notice
        sent as state; never ``m.room.member``).

        With ``txn`` (an idempotent PUT), in the same transaction: record ``txn`` →
        the event ID, at ``txn_ts`` — unless ``txn`` is recorded already (another
        worker, or a retry whose first answer was lost): then send nothing and return
        the recorded event ID.  A send of the same ``txn`` running at the same time (on
        another worker) waits for this one and then sends nothing.  A failure sends
        and records nothing.  The first four arguments are passed by position."""

    async def get_state_content(
        self, room_id: str, event_type: str, state_key: str
    ) -> dict[str, Any] | None:
        """The content of the room's current state event of this type and state key
        (a copy the caller may keep), or None: no such state, or an unknown room."""

    async def send_state_event(
        self, room_id: str, sender: str, event_type: str, state_key: str,
        content: Mapping[str, Any], /,
    ) -> str:
        """Send a state event with this content and make it the room's current state
        for (``event_type``, ``state_key``), atomically; return its event ID.  Not for
        ``m.room.member`` (that is :meth:`apply_memberships`).  The server-notices module
        uses it to keep a notices room's name in line with the config."""

    async def set_room_tag(
        self, user: UserID, room_id: str, tag: str, content: Mapping[str, Any]
    ) -> None:
        """Set (add or replace) a tag in the user's ``m.tag`` room account data for
        that room, keeping the user's other tags; ``content`` is the tag's object
        (e.g. ``{}`` or ``{"order": 0.5}``).  Idempotent."""

    async def get_server_notice_room(self, user: UserID) -> str | None:
        """The room last recorded by ``create_server_notice_room`` for the user, or
        None.  It may since have been left or evacuated: the admin API checks
        membership."""

    async def create_server_notice_room(
        self, user: UserID, room: NewRoom, *, replacing: str | None, tag: str,
        joins: Sequence[MembershipChange] = (),
    ) -> str | None:
        """In one transaction: create ``room`` (as :meth:`create_room`), apply
        ``joins`` to it (as :meth:`apply_memberships`), tag it ``tag`` (content ``{}``)
        for ``user``, and record it as the user's server-notices room — provided the
        room recorded for the user is still ``replacing`` (None: no room recorded).
        Return the new room's ID; or None, having changed nothing, when another writer
        (another worker) recorded a different room first.  Never leaves a room that is
        created but not recorded."""

    # -- notice transaction ids ----------------------------------------------------------
    # Kept by the host so that a PUT retried on another worker, or after a restart, is
    # still recognised (recorded by ``send_event(…, txn=…)``, with the event); the
    # admin API purges records older than 24 hours.
    async def get_notice_txn(self, key: NoticeTxnKey) -> str | None:
        """The event ID recorded for this transaction, or None."""

    async def purge_notice_txns(self, older_than_ts: int) -> int:
        """Delete the records with ``ts < older_than_ts``; return how many."""

    # -- audit trail ----------------------------------------------------------------------
    async def add_audit_entry(self, entry: AuditEntry) -> None: ...

    async def get_audit_entries(
        self, *, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        """Newest first; only entries with ``id < before_id`` when given."""

    async def purge_audit_entries(self, older_than_ts: int) -> int:
        """Delete the entries with ``ts < older_than_ts``; return how many.  Later
        entries keep their ids, and new ones never reuse a deleted id."""
