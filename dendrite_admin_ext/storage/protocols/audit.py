"""The audit trail of state-changing admin actions."""

from __future__ import annotations

from typing import Protocol

from ..types import AuditEntry

__all__ = ["AuditStore"]


class AuditStore(Protocol):
    async def add_audit_entry(self, entry: AuditEntry) -> None:
        """Append the entry; the storage assigns its ``id`` (increasing)."""

    async def get_audit_entries(self, *, before_id: int | None,
                                limit: int) -> list[AuditEntry]:
        """Newest first; only entries with ``id < before_id`` when given."""

    async def purge_audit_entries(self, older_than_ts: int) -> int:
        """Delete the entries with ``ts < older_than_ts``; return how many.  Later
        entries keep their ids, and new ones never reuse a deleted id."""
