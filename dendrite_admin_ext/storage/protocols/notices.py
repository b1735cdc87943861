"""Server notices (SPEC 4.5): the notices room of each user, its events, and the
transaction records of the idempotent PUT.

Events follow the rules of :mod:`.rooms`.  Within one process the admin API serialises
the notice-room set-up for one user; across workers :meth:`create_server_notice_room` is
a compare-and-set, so of two workers setting up one user's room exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ...identifiers import UserID
from ..types import MembershipChange, NewRoom, NoticeTxnKey

__all__ = ["ServerNoticeStore"]


class ServerNoticeStore(Protocol):
    async def send_event(self, room_id: str, sender: UserID, event_type: str,
                         content: Mapping[str, Any], /, *, state_key: str | None = None,
                         txn: NoticeTxnKey | None = None, txn_ts: int = 0) -> str:
        """Send an event with this content, unchanged (extra keys such as ``format`` and
        ``formatted_body`` kept); return its event ID.  A message (non-state) event, or
        with ``state_key`` a state event that becomes the room's current state for
        (``event_type``, ``state_key``), as :meth:`send_state_event` (a server notice
        sent as state; never ``m.room.member``).  ``state_key`` is passed only when set,
        so a host written before it existed still sends message notices.

        With ``txn`` (an idempotent PUT), in the same transaction: record ``txn`` → the
        event ID, at ``txn_ts`` — unless ``txn`` is recorded already (another worker, or
        a retry whose first answer was lost): then send nothing and return the recorded
        event ID.  A send of the same ``txn`` running at the same time (on another
        worker) waits for this one and then sends nothing.  A failure sends and records
        nothing.  The first four arguments are passed by position."""

    async def get_state_content(self, room_id: str, event_type: str,
                                state_key: str) -> dict[str, Any] | None:
        """The content of the room's current state event of this type and state key (a
        copy the caller may keep), or None: no such state, or an unknown room."""

    async def send_state_event(self, room_id: str, sender: UserID, event_type: str,
                               state_key: str, content: Mapping[str, Any], /) -> str:
        """Send a state event with this content and make it the room's current state for
        (``event_type``, ``state_key``), atomically; return its event ID.  Not for
        ``m.room.member`` (that is ``apply_memberships``)."""

    async def set_room_tag(self, user: UserID, room_id: str, tag: str,
                           content: Mapping[str, Any]) -> None:
        """Set (add or replace) a tag in the user's ``m.tag`` room account data for that
        room, keeping the user's other tags; ``content`` is the tag's object (e.g. ``{}``
        or ``{"order": 0.5}``).  Idempotent."""

    async def get_server_notice_room(self, user: UserID) -> str | None:
        """The room last recorded by ``create_server_notice_room`` for the user, or None.
        It may since have been left or evacuated: the admin API checks membership."""

    async def create_server_notice_room(self, user: UserID, room: NewRoom, *,
                                        replacing: str | None, tag: str,
                                        joins: Sequence[MembershipChange] = ()
                                        ) -> str | None:
        """In one transaction: create ``room`` (a new room ID on this server, the
        ``m.room.create`` event from ``room.creator`` with ``create_content`` plus
        ``room_version``, then every ``initial_state`` event in order), apply ``joins``
        (as ``apply_memberships``), tag it ``tag`` (content ``{}``) for ``user``, and
        record it as the user's server-notices room — provided the room recorded for the
        user is still ``replacing`` (None: no room recorded).  Return the new room's ID;
        or None, having changed nothing, when another writer recorded a different room
        first.  Never leaves a room that is created but not recorded."""

    async def get_notice_txn(self, key: NoticeTxnKey) -> str | None:
        """The event ID recorded for this transaction (by ``send_event(…, txn=…)``), or
        None.  Records are durable and shared by every worker."""

    async def purge_notice_txns(self, older_than_ts: int) -> int:
        """Delete the records with ``ts < older_than_ts``; return how many.  The admin
        API purges records older than 24 hours now and then."""
