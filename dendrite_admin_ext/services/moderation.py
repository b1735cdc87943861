"""Account moderation rules (SPEC 10): who may lock or suspend whom, checked in the
Matrix spec's order (``data/api/client-server/admin.yaml``, MSC4323).

Authorisation always comes before any account lookup (the spec's anti-enumeration
rule): the caller is an admin (the admin pipeline checked it), then, for a change, the
target is not the caller; the target must be local (400); only then is the account
read: unknown or deactivated is 404 ``M_NOT_FOUND`` ("deactivated users are not
suspended nor locked"), another server admin is 403 ``M_FORBIDDEN``.
"""

from __future__ import annotations

from typing import Literal

from .. import messages
from ..auth import Requester
from ..errors import Forbidden, InvalidParam, NotFound
from ..identifiers import UserID, parse_user_id
from ..storage.protocols import AccountStore, ModerationStore
from ..storage.types import AccountType

__all__ = ["Action", "check_target", "find_target", "set_state"]

Action = Literal["lock", "suspend"]


def check_target(requester: Requester, raw_user_id: str, server_name: str, *,
                 action: Action, change: bool) -> UserID:
    """The checks that need no lookup, in the spec's order: for a change (PUT) the
    caller's own account is 403 ``M_FORBIDDEN``; a malformed or remote user ID is 400
    ``M_INVALID_PARAM``.  Returns the target."""
    if change and raw_user_id == requester.user_id:
        raise Forbidden(messages.cannot_moderate_self(action))
    user = parse_user_id(raw_user_id)
    if change and user == requester.user:
        raise Forbidden(messages.cannot_moderate_self(action))
    if user.server_name != server_name:
        raise InvalidParam(messages.NOT_LOCAL_USER)
    return user


async def find_target(storage: AccountStore, requester: Requester, user: UserID, *,
                      action: Action) -> None:
    """The checks that read the account: unknown or deactivated → 404 ``M_NOT_FOUND``;
    another server admin → 403 ``M_FORBIDDEN`` (GET and PUT alike, per the spec)."""
    account = await storage.get_account(user)
    if account is None or account.is_deactivated:
        raise NotFound(messages.unknown_user(user))
    if account.account_type == AccountType.ADMIN and user != requester.user:
        raise Forbidden(messages.cannot_moderate_admin(action))


async def set_state(storage: ModerationStore, user: UserID, action: Action,
                    value: bool) -> None:
    """Write one flag; setting it to what it already is succeeds too (MSC4323: a
    repeated PUT answers 200 as if it changed something)."""
    if action == "lock":
        await storage.set_locked(user, value)
    else:
        await storage.set_suspended(user, value)
