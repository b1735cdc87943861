"""The in-memory reference backend's state, shared by its per-feature mixins.

The state is plain dictionaries keyed by the same things the SQL tables are keyed by.
Every method of every mixin completes without awaiting, so each is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...identifiers import UserID
from ..types import Account, AccountState, AuditEntry, NoticeTxnKey, Profile

__all__ = ["MemoryBase"]


@dataclass
class _Device:
    device_id: str
    access_token: str
    display_name: str | None
    created_ts: int
    session_id: int
    last_seen_ts: int | None = None
    ip: str | None = None
    user_agent: str | None = None
    # (ip, user_agent) -> last_seen_ts
    connections: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _AccountRow:
    account: Account
    password_hash: str | None
    devices: dict[str, _Device] = field(default_factory=dict)


@dataclass
class _Room:
    room_id: str
    depth: int = 0
    latest: list[str] = field(default_factory=list)
    state: dict[tuple[str, str], str] = field(default_factory=dict)
    state_content: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # user_id -> (membership, content)
    members: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # sorted user IDs currently joined, for cheap paging
    joined: list[str] = field(default_factory=list)


class MemoryBase:
    """The data.  Mixins that add a feature extend ``__init__`` cooperatively."""

    def __init__(self) -> None:
        self.accounts: dict[UserID, _AccountRow] = {}
        # access token -> (user, device ID)
        self.tokens: dict[str, tuple[UserID, str]] = {}
        self.profiles: dict[UserID, Profile] = {}
        # Accounts with any state set (erased, locked, suspended); absent = all false.
        self.account_state: dict[UserID, AccountState] = {}
        self.nonces: dict[str, int] = {}
        self.rooms: dict[str, _Room] = {}
        self.events: list[dict[str, Any]] = []
        self.account_data: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.notice_rooms: dict[str, str] = {}
        self.notice_txns: dict[NoticeTxnKey, tuple[str, int]] = {}
        self.audit: list[AuditEntry] = []
        self._audit_ids = 0
        self._session_seq = 0

