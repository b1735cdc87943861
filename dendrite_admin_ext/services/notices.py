"""Server notices: the Matrix server-notices module (``send_server_notice``).

A system user, ``@<local_part>:<server_name>``, talks to each local user in one private
room of its own: invite-only, not federated, tagged ``m.server_notice`` for the user,
with the system user at power 100 and everyone else below ``events_default`` so that
the user can read but not reply (Synapse's ``users_default: -10``).

* A notice is a message event, or a state event of the notices room when the body has
  a ``state_key`` (as Synapse documents); the types that make up the room itself
  (:data:`STRUCTURAL_TYPES`) are refused either way.  Its size is checked against the
  Matrix event limits before anything is stored (:func:`.events.check_new_event`).
* First notice: create the room with the user invited in its initial state, tag it,
  record it, and with ``auto_join`` join the user — all in one storage transaction.
* Later notices reuse the room; a user who left is invited (or joined) again, and a
  room made before the config's ``room_name`` or the system user's profile changed is
  brought in line (checked at most once a minute per room and worker).
* If the system user is no longer joined (the room was evacuated, or purged by the
  host), or the user was banned from it, a new room replaces it.

Within one process the set-up for one user is serialised (``ctx.locks``).  Across
workers, a new room is created, joined, tagged and recorded in one storage transaction
that first claims the user's record (it must still name the room being replaced): of
two workers setting up the same user's room at once, one wins and the other uses its
room, so there is one room and never an unrecorded one.  Idempotent PUTs are recorded
in storage with their event, keyed by (requesting user, device, txnId), so a retry
reaching another worker, or arriving after a restart, is still recognised.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .. import messages
from ..config import Config
from ..context import AdminContext, KeyedLocks, RecentChecks
from ..errors import InvalidParam, NotFound, StorageUnavailableError, UserInUseError
from ..events import ROOM_VERSION, check_new_event
from ..identifiers import UserID, parse_user_id
from ..storage.protocols import AccountStore, RoomStore, ServerNoticeStore
from ..storage.types import (
    AccountType,
    Member,
    MembershipChange,
    NewAccount,
    NewRoom,
    NoticeTxnKey,
    Profile,
)
from .evacuation import Detaching, member_content, room_lock_key, run_to_completion

__all__ = [
    "SERVER_NOTICE_TAG",
    "STRUCTURAL_TYPES",
    "TXN_LIFETIME_MS",
    "Notice",
    "check_notice_fits",
    "NoticeNeeds",
    "NoticeStore",
    "ensure_system_user",
    "notice_power_levels",
    "notice_room_template",
    "parse_notice",
    "purge_old_txns",
    "send_server_notice",
    "send_server_notice_once",
    "send_recorded_notice",
    "system_user",
]

log = logging.getLogger(__name__)

SERVER_NOTICE_TAG = "m.server_notice"
TXN_LIFETIME_MS = 24 * 60 * 60 * 1000
# Old transaction records are purged after about one successful PUT in this many:
# often enough to keep the table small, rarely enough to cost nothing per request.
PURGE_ONE_IN = 64
_MEMBER_PAGE = 100
# Set-up attempts when other workers keep recording a notices room for the same user
# first (each attempt after the first reuses the room another worker made).
_CLAIM_ATTEMPTS = 3

# The state that makes the notices room what it is (SPEC §4.5): a notice may not
# replace it, as a state event or as a message of that type.
STRUCTURAL_TYPES = frozenset({
    "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
    "m.room.encryption", "m.room.server_acl", "m.room.third_party_invite",
})


@dataclass(frozen=True, slots=True)
class Notice:
    """What to send: a message event, or with ``state_key`` a state event."""

    user: UserID
    event_type: str
    content: Mapping[str, Any]
    state_key: str | None = None


def parse_notice(body: Mapping[str, Any], server_name: str) -> Notice:
    """Build a notice from a body that passed ``server_notice.schema.json``.
    Remote user or structural type: 400 ``M_INVALID_PARAM``."""
    user = parse_user_id(body["user_id"])
    if user.server_name != server_name:
        raise InvalidParam(messages.NOT_LOCAL_USER_NOTICE)
    event_type: str = body.get("type", "m.room.message")
    if event_type in STRUCTURAL_TYPES:
        raise InvalidParam(messages.STRUCTURAL_EVENT_TYPE.format(event_type=event_type))
    return Notice(user, event_type, body["content"], body.get("state_key"))


def check_notice_fits(ctx: NoticeNeeds, notice: Notice) -> None:
    """The Matrix event limits (SPEC §2), checked before anything is stored: 413
    ``M_TOO_LARGE`` or 400 ``M_BAD_JSON``."""
    check_new_event(sender=str(system_user(ctx)), event_type=notice.event_type,
                    content=notice.content, state_key=notice.state_key)


class NoticeStore(AccountStore, RoomStore, ServerNoticeStore, Protocol):
    """The storage server notices read and write."""


class NoticeNeeds(Detaching, Protocol):
    """What the notice services use (the ``AdminContext`` has it all)."""

    @property
    def config(self) -> Config: ...

    @property
    def storage(self) -> NoticeStore: ...

    @property
    def locks(self) -> KeyedLocks: ...

    @property
    def recent(self) -> RecentChecks: ...

    @property
    def clock(self) -> Callable[[], int]: ...


def system_user(ctx: NoticeNeeds) -> UserID:
    return UserID(ctx.config.server_notices.local_part, ctx.config.server_name)


def _wanted_profile(ctx: NoticeNeeds) -> Profile:
    cfg = ctx.config.server_notices
    return Profile(cfg.display_name or None, cfg.avatar_url or None)


def _member_content(membership: str, profile: Profile | None) -> dict[str, Any]:
    if profile is None:
        return member_content(membership)
    return member_content(membership, profile.display_name, profile.avatar_url)


def notice_power_levels(system: str) -> dict[str, Any]:
    """Only the system user may do anything; members sit below ``events_default``."""
    return {
        "users": {system: 100},
        "users_default": -10,
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "events": {
            "m.room.name": 50,
            "m.room.avatar": 50,
            "m.room.canonical_alias": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.encryption": 100,
            "m.room.server_acl": 100,
            "m.room.tombstone": 100,
        },
        "notifications": {"room": 50},
    }


async def ensure_system_user(ctx: NoticeNeeds) -> UserID:
    """Create the system user if missing (no password, so nobody can log in as it) and
    bring its profile in line with the config.  Checked in storage at most once per
    ``ctx.recent.ttl_ms`` (a minute) by each process: a host that changes or removes
    the account behind the API's back is seen again within a minute."""
    storage = ctx.storage
    system = system_user(ctx)
    want = _wanted_profile(ctx)
    checked = ("notices_system_user", system, want)
    if ctx.recent.fresh(checked, ctx.clock()):
        return system
    if await storage.get_account(system) is None:
        with contextlib.suppress(UserInUseError):  # another worker created it first
            await storage.create_account(NewAccount(
                system, None, AccountType.USER, ctx.clock(),
                display_name=want.display_name, avatar_url=want.avatar_url), None)
    if await storage.get_profile(system) != want:
        await storage.set_profile(system, want)
    ctx.recent.mark(checked, ctx.clock())
    return system


async def send_server_notice(ctx: NoticeNeeds, notice: Notice) -> str:
    """Send one notice; return its event ID.  Unknown user or the system user itself:
    :class:`NotFound`."""
    check_notice_fits(ctx, notice)
    # Once started, finish even if the client goes away: a user invited back to the
    # room but sent no notice, or a new room left without its first notice, would
    # confuse whoever looks at it.
    return await run_to_completion(ctx, _send_checked(ctx, notice))


async def _send_checked(ctx: NoticeNeeds, notice: Notice,
                        txn: NoticeTxnKey | None = None) -> str:
    if notice.user == system_user(ctx):
        raise NotFound(messages.CANNOT_NOTICE_SYSTEM_USER)
    if await ctx.storage.get_account(notice.user) is None:
        raise NotFound(messages.unknown_user(notice.user))
    return await _send(ctx, notice, txn)


async def _send(ctx: NoticeNeeds, notice: Notice, txn: NoticeTxnKey | None) -> str:
    storage = ctx.storage
    system = await ensure_system_user(ctx)

    async def send(room_id: str) -> str:
        # With a transaction id, the event and its record are written together: a retry
        # finds both or neither, whichever worker it reaches.  The first four arguments
        # go by position, as the protocol documents them (a host may name them otherwise).
        # state_key is passed only for state notices: a host written before it existed
        # keeps sending message notices.
        extra = {} if notice.state_key is None else {"state_key": notice.state_key}
        return await storage.send_event(room_id, system, notice.event_type, notice.content,
                                        txn=txn, txn_ts=ctx.clock() if txn else 0, **extra)

    async with ctx.locks(("server_notice_room", str(notice.user))):
        for _ in range(_CLAIM_ATTEMPTS):
            room_id = await storage.get_server_notice_room(notice.user)
            if room_id is not None:
                # The room lock keeps an evacuation of this room from parting the system
                # user between the check and the send.
                async with ctx.locks(room_lock_key(room_id)):
                    if await _reuse_room(ctx, room_id, system, notice.user):
                        return await send(room_id)
            new_room = await _create_room(ctx, system, notice.user, replacing=room_id)
            if new_room is not None:
                # Made just now with the configured name and system user's profile.
                now = ctx.clock()
                ctx.recent.mark(_member_check(ctx, new_room), now)
                ctx.recent.mark(_name_check(ctx, new_room), now)
                return await send(new_room)
            # Another worker recorded a room for this user meanwhile: look again.
        raise StorageUnavailableError(
            f"the server-notices room of {notice.user} kept changing; try again")


async def _reuse_room(ctx: NoticeNeeds, room_id: str, system: UserID,
                      target: UserID) -> bool:
    """Make the recorded room usable again (re-invite, refresh the system user's
    profile); False when it cannot be and a new room is needed."""
    storage = ctx.storage
    if await storage.get_membership(room_id, system) != "join":
        return False
    membership = await storage.get_membership(room_id, target)
    if membership == "ban":
        return False
    await _refresh_system_member(ctx, room_id, system)
    await _refresh_room_name(ctx, room_id, system)
    changes: list[MembershipChange] = []
    profile = await storage.get_profile(target) if membership != "join" else None
    if membership not in ("join", "invite"):
        changes.append(MembershipChange(system, target,
                                        _member_content("invite", profile)))
    if membership != "join" and ctx.config.server_notices.auto_join:
        changes.append(MembershipChange(target, target,
                                        _member_content("join", profile)))
    if changes:
        # A user invited back gets the room's tag back too.  Tagged first (idempotent):
        # if the invite then fails, the next notice finds the user still out and does
        # both again; the other way round, a failed tag would never be retried.
        await storage.set_room_tag(target, room_id, SERVER_NOTICE_TAG, {})
        await storage.apply_memberships(room_id, changes)
    return True


async def _find_local_member(ctx: NoticeNeeds, room_id: str, user: UserID) -> Member | None:
    after: UserID | None = None
    while True:  # notices rooms have two members: one page in practice
        page = await ctx.storage.get_local_joined_members(
            room_id, ctx.config.server_name, after=after, limit=_MEMBER_PAGE)
        for member in page:
            if member.user == user:
                return member
        if len(page) < _MEMBER_PAGE:
            return None
        after = page[-1].user


def _member_check(ctx: NoticeNeeds, room_id: str) -> tuple[str, str, Profile]:
    """The :class:`RecentChecks` key of "the system user's member event in this room
    shows the configured profile"."""
    return ("notices_system_member", room_id, _wanted_profile(ctx))


def _name_check(ctx: NoticeNeeds, room_id: str) -> tuple[str, str, str]:
    """The :class:`RecentChecks` key of "this room is named as the config says"."""
    return ("notices_room_name", room_id, ctx.config.server_notices.room_name)


async def _refresh_room_name(ctx: NoticeNeeds, room_id: str, system: UserID) -> None:
    """After ``room_name`` changed in the config, rename the rooms made before, as each
    is reused (as Synapse does); checked at most once per ``ctx.recent.ttl_ms`` per
    room and process.  An empty ``room_name`` leaves names alone."""
    name = ctx.config.server_notices.room_name
    checked = _name_check(ctx, room_id)
    if not name or ctx.recent.fresh(checked, ctx.clock()):
        return
    current = await ctx.storage.get_state_content(room_id, "m.room.name", "")
    if current is None or current.get("name") != name:
        await ctx.storage.send_state_event(room_id, system, "m.room.name", "",
                                           {"name": name})
    ctx.recent.mark(checked, ctx.clock())


async def _refresh_system_member(ctx: NoticeNeeds, room_id: str, system: UserID) -> None:
    """After a config change, show the new display name and avatar in the room too
    (checked at most once per ``ctx.recent.ttl_ms`` per room and process)."""
    want = _wanted_profile(ctx)
    checked = _member_check(ctx, room_id)
    if ctx.recent.fresh(checked, ctx.clock()):
        return
    member = await _find_local_member(ctx, room_id, system)
    if member is not None and (member.display_name, member.avatar_url) != (
            want.display_name, want.avatar_url):
        await ctx.storage.apply_memberships(room_id, [MembershipChange(
            system, system, _member_content("join", want))])
    ctx.recent.mark(checked, ctx.clock())


async def _create_room(ctx: NoticeNeeds, system: UserID, target: UserID, *,
                       replacing: str | None) -> str | None:
    """Create, join (with ``auto_join``), tag and record the user's new notices room in
    one storage transaction; None if another worker recorded one first."""
    storage = ctx.storage
    cfg = ctx.config.server_notices
    target_profile = await storage.get_profile(target)
    base = notice_room_template(ctx, system)
    # The invite is part of the initial state, so the room never exists without it.
    invite = ("m.room.member", str(target), _member_content("invite", target_profile))
    joins = [MembershipChange(target, target, _member_content("join", target_profile))
             ] if cfg.auto_join else []
    return await storage.create_server_notice_room(target, replace(
        base, initial_state=(*base.initial_state, invite),
    ), replacing=replacing, tag=SERVER_NOTICE_TAG, joins=joins)


def notice_room_template(ctx: NoticeNeeds, system: UserID) -> NewRoom:
    """A notices room as configured, up to (not including) the target's invite."""
    cfg = ctx.config.server_notices
    sender = str(system)
    state: list[tuple[str, str, Mapping[str, Any]]] = [
        ("m.room.member", sender, _member_content("join", _wanted_profile(ctx))),
        ("m.room.power_levels", "", notice_power_levels(sender)),
        ("m.room.join_rules", "", {"join_rule": "invite"}),
        ("m.room.history_visibility", "", {"history_visibility": "shared"}),
        ("m.room.guest_access", "", {"guest_access": "forbidden"}),
    ]
    if cfg.room_name:
        state.append(("m.room.name", "", {"name": cfg.room_name}))
    return NewRoom(creator=system, room_version=ROOM_VERSION,
                   create_content={"creator": sender, "m.federate": False},
                   initial_state=tuple(state))


async def send_server_notice_once(ctx: NoticeNeeds, notice: Notice,
                                  key: NoticeTxnKey) -> str:
    """Send the notice unless this transaction was already sent; return the event ID
    of the first send.  The event and its record are written in one transaction, so
    a retry — on this worker or another, or after an answer that was lost on the
    way — finds both or neither; a failed send is not recorded and can be retried."""
    check_notice_fits(ctx, notice)
    return await run_to_completion(ctx, _send_once(ctx, notice, key))


async def _send_once(ctx: NoticeNeeds, notice: Notice, key: NoticeTxnKey) -> str:
    async with ctx.locks(("notice_txn", key)):
        existing = await ctx.storage.get_notice_txn(key)
        if existing is not None:
            return existing
        kept = await _send_checked(ctx, notice, key)
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        ctx.detach(_purge_quietly(ctx))  # housekeeping: not on this request's time
    return kept


async def send_recorded_notice(ctx: AdminContext, notice: Notice,
                               key: NoticeTxnKey) -> str:
    """For a sender that already knows the user exists (the broadcast, SPEC 11): send
    the notice with ``key`` recorded in the event's own transaction, without the
    pre-reads of :func:`send_server_notice_once` (a repeat of ``key`` still sends
    nothing and returns the first event ID)."""
    async def send() -> str:
        async with ctx.locks(("notice_txn", key)):
            return await _send(ctx, notice, key)

    return await run_to_completion(ctx, send())


async def _purge_quietly(ctx: NoticeNeeds) -> None:
    try:
        await purge_old_txns(ctx)
    except Exception:  # the notices are sent; a purge that fails waits for the next
        log.warning("could not purge old server-notice transactions", exc_info=True)


async def purge_old_txns(ctx: NoticeNeeds) -> int:
    return await ctx.storage.purge_notice_txns(ctx.clock() - TXN_LIFETIME_MS)
