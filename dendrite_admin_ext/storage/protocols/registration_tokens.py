"""Registration tokens (SPEC 12; Matrix spec ``m.login.registration_token``, MSC3231).

The admin API creates, lists, changes and deletes tokens; the host's ``/register``
reserves a use of one for a registration session, then completes or releases it
(:mod:`dendrite_admin_ext.services.registration_tokens` wraps these for the host).

Counting rule (Synapse's): ``pending + completed`` counts against ``uses_allowed``, and
a token is *valid* when ``(uses_allowed is None or pending + completed < uses_allowed)
and (expiry_time is None or expiry_time > now)`` (:meth:`RegistrationToken.is_valid`) —
so ``uses_allowed == 0`` is used up (the documented meaning; Synapse's ``/register``
treats 0 as unlimited by accident).  With ``uses_allowed == k`` at most ``k`` sessions
ever hold or have used a reservation at once, however many callers and processes race:
the check and the increment are one atomic step.

A registration session holds at most one reservation, bound to the token it was made
with; the storage remembers the binding (it must be shared by every worker of the
host) until the session completes or is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..types import RegistrationToken, TokenReservation

__all__ = ["RegistrationTokenStore"]


class RegistrationTokenStore(Protocol):
    # -- administration ---------------------------------------------------------------
    async def create_registration_token(self, token: RegistrationToken) -> bool:
        """Store a new token with the given fields; False (and nothing changed) if a
        token with that name exists.  Atomic: of concurrent creations of one name
        exactly one returns True."""

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        """The token, or None.  Names compare exactly (case-sensitive)."""

    async def list_registration_tokens(self, valid: bool | None,
                                       now_ts: int) -> list[RegistrationToken]:
        """Every token (``valid`` None), only the valid ones at ``now_ts`` (True), or
        only the invalid ones (False), ordered by name (code point order)."""

    async def update_registration_token(
            self, token: str,
            changes: Mapping[str, int | None]) -> RegistrationToken | None:
        """Set the fields named in ``changes`` (only ``"uses_allowed"`` and
        ``"expiry_time"``; None = unlimited / never), leave the others, and return the
        token as it is now; None if there is no such token (nothing changed).  An
        empty ``changes`` returns the token unchanged.  ``pending`` and ``completed``
        are never reset."""

    async def delete_registration_token(self, token: str) -> bool:
        """Delete the token and forget which sessions hold a use of it (atomically);
        False if there was none.  Those sessions then complete or are released
        without effect (None), and a token created later under the same name starts
        from zero, whatever they do."""

    # -- the host's /register -------------------------------------------------------
    async def reserve_registration_token(self, token: str, session_id: str,
                                         now_ts: int) -> TokenReservation:
        """Reserve one use of ``token`` for the registration session ``session_id``,
        atomically:

        * the session holds a reservation of this token already →
          ``ALREADY_RESERVED`` (nothing changes: a session counts once);
        * the session holds a reservation of another token → ``TOKEN_CHANGED``;
        * the token is unknown or not valid at ``now_ts`` → ``INVALID``;
        * otherwise ``pending`` + 1, the session is bound to the token, and the
          session's start ``now_ts`` is remembered → ``RESERVED``.

        The validity check and the increment are one step: concurrent reservations
        (from any number of processes sharing the storage) never take more than the
        uses left."""

    async def complete_registration_token(self, session_id: str) -> str | None:
        """The session's registration completed: its token's ``pending`` - 1 and
        ``completed`` + 1, and the binding is forgotten.  Returns the token, or None
        if the session held no reservation (then nothing changes: completing twice
        counts once)."""

    async def release_registration_token(self, session_id: str) -> str | None:
        """The session ended without registering (expired, abandoned): its token's
        ``pending`` - 1 and the binding is forgotten.  Returns the token, or None if
        the session held no reservation (nothing changes)."""

    async def release_stale_registration_tokens(self, older_than_ts: int) -> int:
        """Release (as :meth:`release_registration_token`) every reservation made
        before ``older_than_ts``; return how many.  For hosts whose sessions can end
        without the release call (a crash): the use comes back."""
