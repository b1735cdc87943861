"""Registration tokens in SQL: Dendrite's ``userapi_registration_tokens`` (same columns,
same meaning, so a Dendrite sharing the database sees the same tokens) and our
``dendrite_admin_registration_token_sessions``.

Reserving a use is one conditional ``UPDATE … SET pending = pending + 1 WHERE <still
valid>``: PostgreSQL re-checks the condition on the newest row version after waiting for
a concurrent writer's row lock, and SQLite serialises writers (``BEGIN IMMEDIATE``), so
the uses can never be exceeded, whatever the number of workers.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..types import RegistrationToken, TokenReservation
from .base import SqlBase
from .ops import Op, Stmt, exec_, one, select

__all__ = ["SqlRegistrationTokens"]

_COLUMNS = ("SELECT token, uses_allowed, COALESCE(pending, 0), COALESCE(completed, 0),"
            " expiry_time FROM userapi_registration_tokens")
# Synapse's and Dendrite's definition of a valid token; the parameter is now (ms).
_VALID = ("(uses_allowed IS NULL OR COALESCE(pending, 0) + COALESCE(completed, 0)"
          " < uses_allowed) AND (expiry_time IS NULL OR expiry_time > %s)")
_RESERVE = ("UPDATE userapi_registration_tokens SET pending = COALESCE(pending, 0) + 1"
            " WHERE token = %s"
            " AND (uses_allowed IS NULL OR COALESCE(pending, 0) + COALESCE(completed, 0)"
            " < uses_allowed) AND (expiry_time IS NULL OR expiry_time > %s)")
_CHANGEABLE = ("uses_allowed", "expiry_time")


def _token(row: tuple[Any, ...]) -> RegistrationToken:
    return RegistrationToken(
        token=str(row[0]),
        uses_allowed=None if row[1] is None else int(row[1]),
        pending=int(row[2]),
        completed=int(row[3]),
        expiry_time=None if row[4] is None else int(row[4]),
    )


class _Invalid(Exception):
    """Raised inside a reservation to roll back the session row it inserted."""


class SqlRegistrationTokens(SqlBase):
    async def create_registration_token(self, token: RegistrationToken) -> bool:
        # ON CONFLICT: concurrent creations of one name are decided by the primary key.
        count = await self._run(exec_(
            "INSERT INTO userapi_registration_tokens (token, uses_allowed, expiry_time,"
            " pending, completed) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (token) DO NOTHING",
            (token.token, token.uses_allowed, token.expiry_time, token.pending,
             token.completed)), write=True)
        return count == 1

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        row = await self._run(one(_COLUMNS + " WHERE token = %s", (token,)), write=False)
        return None if row is None else _token(row)

    async def list_registration_tokens(self, valid: bool | None,
                                       now_ts: int) -> list[RegistrationToken]:
        order = " ORDER BY token {binary}"
        if valid is None:
            rows = await self._run(select(_COLUMNS + order, ()), write=False)
        elif valid:
            rows = await self._run(select(_COLUMNS + " WHERE " + _VALID + order,
                                          (now_ts,)), write=False)
        else:
            rows = await self._run(select(_COLUMNS + " WHERE NOT (" + _VALID + ")" + order,
                                          (now_ts,)), write=False)
        return [_token(r) for r in rows]

    async def update_registration_token(
            self, token: str,
            changes: Mapping[str, int | None]) -> RegistrationToken | None:
        unknown = set(changes) - set(_CHANGEABLE)
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        return await self._run(self._update(token, changes), write=True)

    @staticmethod
    def _update(token: str, changes: Mapping[str, int | None]) -> Op[RegistrationToken | None]:
        # One statement per column: the texts are fixed, the values parameters.
        if "uses_allowed" in changes:
            yield Stmt("UPDATE userapi_registration_tokens SET uses_allowed = %s"
                       " WHERE token = %s", (changes["uses_allowed"], token))
        if "expiry_time" in changes:
            yield Stmt("UPDATE userapi_registration_tokens SET expiry_time = %s"
                       " WHERE token = %s", (changes["expiry_time"], token))
        row = yield from one(_COLUMNS + " WHERE token = %s", (token,))
        return None if row is None else _token(row)

    async def delete_registration_token(self, token: str) -> bool:
        return await self._run(self._delete(token), write=True)

    @staticmethod
    def _delete(token: str) -> Op[bool]:
        res = yield Stmt("DELETE FROM userapi_registration_tokens WHERE token = %s", (token,))
        if res.rowcount == 0:
            return False
        yield Stmt("DELETE FROM dendrite_admin_registration_token_sessions WHERE token = %s",
                   (token,))
        return True

    async def reserve_registration_token(self, token: str, session_id: str,
                                         now_ts: int) -> TokenReservation:
        try:
            return await self._run(self._reserve(token, session_id, now_ts), write=True)
        except _Invalid:
            return TokenReservation.INVALID

    @staticmethod
    def _reserve(token: str, session_id: str, now_ts: int) -> Op[TokenReservation]:
        # The session row first: a concurrent reservation for the same session waits on
        # its primary key, then finds it.
        res = yield Stmt(
            "INSERT INTO dendrite_admin_registration_token_sessions (session_id, token,"
            " created_ts) VALUES (%s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
            (session_id, token, now_ts))
        if res.rowcount == 0:
            row = yield from one("SELECT token FROM dendrite_admin_registration_token_sessions"
                                 " WHERE session_id = %s", (session_id,))
            held = "" if row is None else str(row[0])
            if hmac.compare_digest(held.encode(), token.encode()):
                return TokenReservation.ALREADY_RESERVED
            return TokenReservation.TOKEN_CHANGED
        res = yield Stmt(_RESERVE, (token, now_ts))
        if res.rowcount == 0:
            raise _Invalid  # rolls the session row back
        return TokenReservation.RESERVED

    async def complete_registration_token(self, session_id: str) -> str | None:
        ended = await self._run(self._end([session_id], completed=True), write=True)
        return next(iter(ended), None)

    async def release_registration_token(self, session_id: str) -> str | None:
        ended = await self._run(self._end([session_id], completed=False), write=True)
        return next(iter(ended), None)

    @staticmethod
    def _end(session_ids: list[str], completed: bool) -> Op[Counter[str]]:
        """Forget the sessions' bindings; give their uses back (or count them as
        completed).  Returns how many sessions ended per token."""
        ended: Counter[str] = Counter()
        for session_id in session_ids:
            row = yield from one("DELETE FROM dendrite_admin_registration_token_sessions"
                                 " WHERE session_id = %s RETURNING token", (session_id,))
            if row is not None:
                ended[str(row[0])] += 1
        for token, n in sorted(ended.items()):
            yield Stmt("UPDATE userapi_registration_tokens SET"
                       " pending = {greatest}(COALESCE(pending, 0) - %s, 0),"
                       " completed = COALESCE(completed, 0) + %s WHERE token = %s",
                       (n, n if completed else 0, token))
        return ended

    async def release_stale_registration_tokens(self, older_than_ts: int) -> int:
        return await self._run(self._release_stale(older_than_ts), write=True)

    def _release_stale(self, older_than_ts: int) -> Op[int]:
        rows = yield from select(
            "SELECT session_id FROM dendrite_admin_registration_token_sessions"
            " WHERE created_ts < %s {skip_locked}", (older_than_ts,))
        ended = yield from self._end([str(r[0]) for r in rows], completed=False)
        return sum(ended.values())
