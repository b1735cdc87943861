"""Authentication and authorisation for the admin routes.

:func:`authenticate` runs in the admin pipeline (:mod:`.pipeline`) of each admin
sub-application only, so the host's own routes never see it.  It resolves the access
token, reads the account fresh (an admin demoted in the database loses access at once),
enforces the route's access level, and notes the device's activity.  It runs before
any body is read or any target is looked up.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from aiohttp import web

from . import messages
from .addresses import client_ip
from .context import AdminContext
from .errors import Forbidden, GuestAccessForbidden, MissingToken, UnknownToken, UserLocked
from .identifiers import UserID
from .storage.types import AccountType

__all__ = [
    "REQUESTER_KEY",
    "Access",
    "Requester",
    "authenticate",
    "extract_access_token",
    "get_requester",
]


class Access(enum.Enum):
    PUBLIC = "public"  # no token needed (registration, health, OPTIONS)
    USER = "user"  # any non-guest user (whois: then self-or-admin in the handler)
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Requester:
    user: UserID
    device_id: str
    account_type: AccountType

    @property
    def user_id(self) -> str:
        return str(self.user)

    @property
    def is_admin(self) -> bool:
        return self.account_type == AccountType.ADMIN


REQUESTER_KEY = web.RequestKey("dendrite_admin_ext.requester", Requester)


def get_requester(request: web.Request) -> Requester:
    return request[REQUESTER_KEY]


def _raw(token: str) -> bytes:
    # Bytes that were not UTF-8 may arrive as lone surrogates: keep them comparable.
    return token.encode("utf-8", "surrogatepass")


def extract_access_token(request: web.Request, allow_query: bool) -> str:
    header = request.headers.get("Authorization")
    header_token: str | None = None
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MissingToken(messages.BAD_AUTHORIZATION_HEADER)
        header_token = value.strip()
    query_token = request.query.get("access_token") if allow_query else None
    if (header_token is not None and query_token is not None
            and not hmac.compare_digest(_raw(header_token), _raw(query_token))):
        raise MissingToken(messages.MIXED_TOKENS)
    token = header_token or query_token
    if not token:
        raise MissingToken(messages.MISSING_TOKEN)
    if not token.isprintable():
        # NUL, control characters or bytes that are not UTF-8: no token has them, and
        # database drivers refuse them outright.
        raise UnknownToken()
    return token


async def authenticate(ctx: AdminContext, request: web.Request, access: Access, *,
                       allow_locked: bool = False) -> None:
    """Resolve the token and enforce ``access`` (not PUBLIC); put the Requester on the
    request and note the device's activity.  Raises the Matrix error of SPEC 3, or
    401 ``M_USER_LOCKED`` with ``"soft_logout": true`` for a locked account (SPEC 10)
    unless the route ``allow_locked`` (logout)."""
    token = extract_access_token(request, ctx.config.http.access_token_query_param)
    session = await ctx.storage.get_token_owner(token)
    if session is None or session.is_deactivated:
        raise UnknownToken()
    requester = Requester(session.user, session.device_id, session.account_type)
    # Set before the access checks so the audit trail names who was refused.
    request[REQUESTER_KEY] = requester
    if session.locked and not allow_locked:
        # Matrix spec "Account locking": every authenticated API answers so (logout is
        # the host's); the token is kept, so unlocking lets the client straight back in.
        raise UserLocked()
    if session.account_type == AccountType.GUEST:
        raise GuestAccessForbidden(messages.GUEST_ACCESS)
    if access is Access.ADMIN and session.account_type != AccountType.ADMIN:
        raise Forbidden(messages.NOT_ADMIN)
    ctx.activity.note(
        requester.user, requester.device_id,
        client_ip(request) if ctx.config.http.record_client_ip else "",
        request.headers.get("User-Agent", ""), ctx.clock(),
    )
