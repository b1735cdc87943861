"""In-memory registration tokens (the reference for :mod:`..protocols.registration_tokens`).
No method awaits, so each is atomic."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import replace

from ..types import RegistrationToken, TokenReservation
from .base import MemoryBase

__all__ = ["MemoryRegistrationTokens"]

_CHANGEABLE = ("uses_allowed", "expiry_time")


class MemoryRegistrationTokens(MemoryBase):
    def __init__(self) -> None:
        super().__init__()
        self.registration_tokens: dict[str, RegistrationToken] = {}
        # session ID -> (token, reserved at ms)
        self.token_sessions: dict[str, tuple[str, int]] = {}

    async def create_registration_token(self, token: RegistrationToken) -> bool:
        if token.token in self.registration_tokens:
            return False
        self.registration_tokens[token.token] = token
        return True

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        return self.registration_tokens.get(token)

    async def list_registration_tokens(self, valid: bool | None,
                                       now_ts: int) -> list[RegistrationToken]:
        return [t for _, t in sorted(self.registration_tokens.items())
                if valid is None or t.is_valid(now_ts) == valid]

    async def update_registration_token(
            self, token: str,
            changes: Mapping[str, int | None]) -> RegistrationToken | None:
        current = self.registration_tokens.get(token)
        if current is None:
            return None
        unknown = set(changes) - set(_CHANGEABLE)
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        updated = replace(
            current,
            uses_allowed=changes.get("uses_allowed", current.uses_allowed),
            expiry_time=changes.get("expiry_time", current.expiry_time))
        self.registration_tokens[token] = updated
        return updated

    async def delete_registration_token(self, token: str) -> bool:
        if self.registration_tokens.pop(token, None) is None:
            return False
        self.token_sessions = {s: held for s, held in self.token_sessions.items()
                               if held[0] != token}
        return True

    async def reserve_registration_token(self, token: str, session_id: str,
                                         now_ts: int) -> TokenReservation:
        held = self.token_sessions.get(session_id)
        if held is not None:
            same = hmac.compare_digest(held[0].encode(), token.encode())
            return TokenReservation.ALREADY_RESERVED if same else TokenReservation.TOKEN_CHANGED
        current = self.registration_tokens.get(token)
        if current is None or not current.is_valid(now_ts):
            return TokenReservation.INVALID
        self.registration_tokens[token] = replace(current, pending=current.pending + 1)
        self.token_sessions[session_id] = (token, now_ts)
        return TokenReservation.RESERVED

    def _end_session(self, session_id: str, completed: bool) -> str | None:
        held = self.token_sessions.pop(session_id, None)
        if held is None:
            return None
        token = held[0]
        current = self.registration_tokens.get(token)
        if current is not None:
            self.registration_tokens[token] = replace(
                current, pending=max(current.pending - 1, 0),
                completed=current.completed + (1 if completed else 0))
        return token

    async def complete_registration_token(self, session_id: str) -> str | None:
        return self._end_session(session_id, completed=True)

    async def release_registration_token(self, session_id: str) -> str | None:
        return self._end_session(session_id, completed=False)

    async def release_stale_registration_tokens(self, older_than_ts: int) -> int:
        stale = [s for s, (_, ts) in self.token_sessions.items() if ts < older_than_ts]
        for session_id in stale:
            self._end_session(session_id, completed=False)
        return len(stale)
