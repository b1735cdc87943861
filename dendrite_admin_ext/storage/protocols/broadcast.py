"""Broadcast of a server notice to every local user (SPEC 11): who receives it."""

from __future__ import annotations

from typing import Protocol

from ...identifiers import UserID

__all__ = ["BroadcastStore"]


class BroadcastStore(Protocol):
    async def get_notice_recipients(
        self, server_name: str, *, after: UserID | None, limit: int,
        user_id_prefix: str | None, admins: bool | None,
        not_user_types: tuple[str, ...],
    ) -> list[UserID]:
        """Up to ``limit`` accounts of ``server_name`` that are not deactivated,
        ordered by localpart (byte order), with a localpart strictly after ``after``'s;
        only those
        whose user ID starts with ``user_id_prefix`` (when given); with ``admins``
        True only admins, False no admins; none whose ``user_type`` is listed in
        ``not_user_types`` (the empty string there meaning accounts without a type).
        Guests are included; the caller skips the notices user itself."""
