"""Registration tokens (SPEC 12): the admin rules, and the host's ``/register`` hook.

Administration follows Synapse's admin API (``docs/admin_api/registration_tokens.md``)
for both Synapse's and Dendrite's paths: a token is 1-64 characters of
``[A-Za-z0-9._~-]`` (the Matrix spec's opaque identifier grammar), generated with
:mod:`secrets` when not given (``length`` 1-64, default 16); ``uses_allowed`` is an
integer ≥ 0 or null (unlimited) — 0 means used up — and ``expiry_time`` an integer
number of ms since the epoch in the future, or null (never).  Every bad value is 400
``M_INVALID_PARAM``; an existing name 400 ``M_INVALID_PARAM`` "Token already exists";
an unknown token 404 ``M_NOT_FOUND``.

The host's ``/register`` uses the ``m.login.registration_token`` UIA stage (Matrix spec,
MSC3231) through four functions, with Synapse's semantics and errors:

1. :func:`reserve_token_use` when the client submits the stage: the first submission
   in a UIA session reserves a use (``pending`` + 1) and binds the token to the
   session; a repeat with the same token is accepted without counting again; another
   token in that session is 400 ``M_INVALID_PARAM`` "Registration token has changed";
   an unknown, used-up or expired token is 401 ``M_UNAUTHORIZED``.
2. :func:`complete_token_use` once the account has been created: ``pending`` - 1,
   ``completed`` + 1.
3. :func:`release_token_use` when the session expires or is abandoned: ``pending`` - 1.
4. :func:`release_stale_token_uses`, periodically, for sessions that ended without (3).

With ``uses_allowed: k`` at most ``k`` registrations ever complete, however many run at
once on however many workers sharing the storage: reservation is atomic
(:meth:`~.storage.protocols.RegistrationTokenStore.reserve_registration_token`).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from typing import Any

from .. import messages
from ..context import AdminContext
from ..errors import InvalidParam, MissingParam, NotFound, Unauthorized
from ..storage.types import RegistrationToken, TokenReservation

__all__ = [
    "DEFAULT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MAX_USES_ALLOWED",
    "TOKEN_CHARS",
    "complete_token_use",
    "create_token",
    "delete_token",
    "generate_token",
    "get_token",
    "list_tokens",
    "parse_valid_filter",
    "registration_token_is_valid",
    "release_stale_token_uses",
    "release_token_use",
    "reserve_token_use",
    "token_to_json",
    "update_token",
]

# The Matrix spec's opaque identifier grammar, at most 64 characters (Synapse's limit).
TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
MAX_TOKEN_LENGTH = 64
DEFAULT_LENGTH = 16
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# Dendrite reads uses_allowed into an int32: a larger value would break its endpoints
# on a shared database.
MAX_USES_ALLOWED = 2**31 - 1
# A generated name that is taken is drawn again; with a short length the space may run
# out, which this bounds.
_GENERATE_ATTEMPTS = 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def token_to_json(token: RegistrationToken) -> dict[str, Any]:
    """Synapse's token object: ``token``, ``uses_allowed`` (null = unlimited),
    ``pending``, ``completed``, ``expiry_time`` (ms, null = never)."""
    return {"token": token.token, "uses_allowed": token.uses_allowed,
            "pending": token.pending, "completed": token.completed,
            "expiry_time": token.expiry_time}


def generate_token(length: int) -> str:
    """``length`` characters drawn from :data:`TOKEN_CHARS` with :mod:`secrets`."""
    return "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))


def _uses_allowed(body: Mapping[str, Any]) -> int | None:
    value = body.get("uses_allowed")
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_USES_ALLOWED:
        raise InvalidParam(messages.bad_uses_allowed(MAX_USES_ALLOWED))
    result: int = value
    return result


def _expiry_time(body: Mapping[str, Any], now: int) -> int | None:
    value = body.get("expiry_time")
    if value is None:
        return None
    if not _is_int(value):
        raise InvalidParam(messages.EXPIRY_TIME_NOT_INTEGER)
    if value <= now:
        raise InvalidParam(messages.EXPIRY_TIME_IN_PAST)
    result: int = value
    return result


def parse_valid_filter(raw: str | None) -> bool | None:
    """The list's ``valid`` query parameter, as Synapse parses booleans."""
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidParam(messages.not_a_boolean_param("valid"))
    return raw == "true"


async def list_tokens(ctx: AdminContext, valid: bool | None) -> list[RegistrationToken]:
    """Every token, or only the valid (True) / invalid (False) ones now."""
    return await ctx.storage.list_registration_tokens(valid, ctx.clock())


async def get_token(ctx: AdminContext, token: str) -> RegistrationToken:
    """The token; 404 ``M_NOT_FOUND`` if there is none."""
    found = await ctx.storage.get_registration_token(token)
    if found is None:
        raise NotFound(messages.unknown_registration_token(token))
    return found


async def create_token(ctx: AdminContext, body: Mapping[str, Any]) -> RegistrationToken:
    """Create a token from a ``POST …/new`` body (``token`` or ``length``,
    ``uses_allowed``, ``expiry_time``; all optional).  Everything is checked before
    anything is stored."""
    uses_allowed = _uses_allowed(body)
    expiry_time = _expiry_time(body, ctx.clock())
    if "token" in body:
        name = body["token"]
        if not isinstance(name, str) or _TOKEN_RE.fullmatch(name) is None:
            raise InvalidParam(messages.bad_token_name(MAX_TOKEN_LENGTH))
        if not await ctx.storage.create_registration_token(
                RegistrationToken(name, uses_allowed, 0, 0, expiry_time)):
            raise InvalidParam(messages.TOKEN_EXISTS)
        return RegistrationToken(name, uses_allowed, 0, 0, expiry_time)
    length = body.get("length", DEFAULT_LENGTH)
    if not _is_int(length) or not 0 < length <= MAX_TOKEN_LENGTH:
        raise InvalidParam(messages.bad_token_length(MAX_TOKEN_LENGTH))
    for _ in range(_GENERATE_ATTEMPTS):
        created = RegistrationToken(generate_token(length), uses_allowed, 0, 0, expiry_time)
        if await ctx.storage.create_registration_token(created):
            return created
    raise InvalidParam(messages.no_unused_token(length))


async def update_token(ctx: AdminContext, token: str,
                       body: Mapping[str, Any]) -> RegistrationToken:
    """Apply a ``PUT …/{token}`` body: ``uses_allowed`` and/or ``expiry_time`` (null =
    unlimited / never); omitted keys are left as they are."""
    changes: dict[str, int | None] = {}
    if "uses_allowed" in body:
        changes["uses_allowed"] = _uses_allowed(body)
    if "expiry_time" in body:
        changes["expiry_time"] = _expiry_time(body, ctx.clock())
    updated = await ctx.storage.update_registration_token(token, changes)
    if updated is None:
        raise NotFound(messages.unknown_registration_token(token))
    return updated


async def delete_token(ctx: AdminContext, token: str) -> None:
    """Delete the token; 404 ``M_NOT_FOUND`` if there is none (Dendrite answers 200)."""
    if not await ctx.storage.delete_registration_token(token):
        raise NotFound(messages.unknown_registration_token(token))


# -- the host's /register ---------------------------------------------------------------
async def registration_token_is_valid(ctx: AdminContext, token: str) -> bool:
    """Whether ``token`` could be used to register now (the spec's validity check):
    it exists, has uses left and has not expired.  False for an unknown token."""
    found = await ctx.storage.get_registration_token(token)
    return found is not None and found.is_valid(ctx.clock())


async def reserve_token_use(ctx: AdminContext, token: object, session_id: str) -> None:
    """The ``m.login.registration_token`` stage of the UIA session ``session_id``:
    ``token`` is the auth dict's ``"token"`` (None if absent).

    Returns when the stage is done (a use is reserved for the session, now or
    earlier).  Raises, as Synapse does: 400 ``M_MISSING_PARAM`` (no token), 400
    ``M_INVALID_PARAM`` (not a string; or another token than the one this session
    already used: "Registration token has changed"), 401 ``M_UNAUTHORIZED`` "Invalid
    registration token" (unknown, used up or expired).  On any error nothing changes.
    """
    if token is None:
        raise MissingParam(messages.MISSING_REGISTRATION_TOKEN)
    if not isinstance(token, str):
        raise InvalidParam(messages.REGISTRATION_TOKEN_NOT_STRING)
    if not session_id:
        raise MissingParam(messages.MISSING_UIA_SESSION)
    outcome = await ctx.storage.reserve_registration_token(token, session_id, ctx.clock())
    if outcome is TokenReservation.TOKEN_CHANGED:
        raise InvalidParam(messages.REGISTRATION_TOKEN_CHANGED)
    if outcome is TokenReservation.INVALID:
        raise Unauthorized(messages.INVALID_REGISTRATION_TOKEN)


async def complete_token_use(ctx: AdminContext, session_id: str) -> str | None:
    """The session's account was created: its reserved use counts as completed.
    Returns the token (for the host's records), or None if the session had reserved
    none (calling twice counts once)."""
    return await ctx.storage.complete_registration_token(session_id)


async def release_token_use(ctx: AdminContext, session_id: str) -> str | None:
    """The session ended without an account (expired, abandoned): its reserved use is
    given back.  Returns the token, or None if the session had reserved none."""
    return await ctx.storage.release_registration_token(session_id)


async def release_stale_token_uses(ctx: AdminContext, max_age_ms: int) -> int:
    """Give back the uses of every session that reserved one more than ``max_age_ms``
    ago (the host's UIA session lifetime) — for sessions that ended without
    :func:`release_token_use`, e.g. in a crash.  Returns how many."""
    return await ctx.storage.release_stale_registration_tokens(ctx.clock() - max_age_ms)
