"""Room memberships: evacuations (SPEC 4.1, 4.2), and the membership checks of server
notices.

The admin API decides *what* to send; the host appends the events.  Events the host
creates must be complete Matrix events stored in room order, with ``sender``, ``type``,
``state_key`` (state events), ``content`` and ``origin_server_ts``, and an event ID of
room versions >= 4 (:func:`dendrite_admin_ext.events.build_event` does it).  A host that
federates sends them on as it would its own clients' events.  ``build_event`` refuses,
before anything is stored, an event over the Matrix size limits; a host building its
own calls :func:`dendrite_admin_ext.events.check_event_limits`.

The host may assume: every room ID passed to a writing method exists; each event it is
asked to send is allowed by the room's auth rules in the current state (self-leaves of
joined or invited users, the notices user's invites, joins of invited users, …).  Within
one process the admin API serialises the changes to one room; it does not lock across
workers, so two workers racing may ask for a leave of someone who has just left: a host
that enforces auth rules may refuse it by raising (the request fails; a re-run finishes
the job), one that does not may store it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ...identifiers import UserID
from ..types import Member, MembershipChange, UserRoom

__all__ = ["RoomStore"]


class RoomStore(Protocol):
    async def room_exists(self, room_id: str) -> bool:
        """True if the server knows the room (it has its create event)."""

    async def get_local_joined_members(self, room_id: str, server_name: str, *,
                                       after: UserID | None, limit: int) -> list[Member]:
        """Up to ``limit`` members joined now whose server is ``server_name``, ordered by
        user ID string (code-point / byte order, as SQL ``COLLATE "C"``), strictly after
        ``after`` (None: from the start), each with the ``displayname``/``avatar_url`` of
        its current member event.  Called page by page while leaves are being sent, so it
        must be cheap for rooms of tens of thousands of members (an index on (room,
        membership, user ID) in SQL).  Unknown room: an empty list."""

    async def get_user_rooms(self, user: UserID) -> list[UserRoom]:
        """Rooms the user is joined to or invited to now (current state; not left,
        banned or knocking), in any order."""

    async def get_membership(self, room_id: str, user: UserID) -> str | None:
        """The user's current membership in the room ("join", "invite", "leave", "ban",
        "knock"), or None if the user never had one (or the room is unknown)."""

    async def apply_memberships(self, room_id: str,
                                changes: Sequence[MembershipChange]) -> list[str]:
        """Send one ``m.room.member`` event per change, in order, atomically (all of them
        are stored, and the current memberships updated, or none), and return their
        event IDs in the same order.  Called with batches of up to a few hundred
        changes; the admin API never holds more than one batch in memory."""
