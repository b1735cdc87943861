"""whois: who is connected as a user (Synapse's ``GET /_synapse/admin/v1/whois``; the
client-server API's ``GET /_matrix/client/v3/admin/whois``; SPEC 4.3)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import messages
from ..activity import ActivityTracker, merge_pending
from ..auth import Requester
from ..errors import Forbidden, InvalidParam, NotFound
from ..identifiers import UserID, parse_user_id
from ..storage.protocols import AccountStore
from ..storage.types import DeviceInfo

__all__ = ["Whois", "whois"]


@dataclass(frozen=True, slots=True)
class Whois:
    user: UserID
    # Every device with its connections, newest first, with the sightings not yet
    # written to storage.
    devices: list[DeviceInfo]


async def whois(store: AccountStore, activity: ActivityTracker, server_name: str,
                requester: Requester, target: str) -> Whois:
    """The devices and connections of ``target`` (a user ID as the client sent it).

    Errors: 403 ``M_FORBIDDEN`` unless the requester is an admin or asks about
    themselves — decided before ``target`` is parsed or looked up, so strangers learn
    nothing; 400 ``M_INVALID_PARAM`` for a malformed or non-local user ID; 404
    ``M_NOT_FOUND`` for an unknown user."""
    if not requester.is_admin and target != requester.user_id:
        raise Forbidden(messages.NOT_SELF_OR_ADMIN)
    user = parse_user_id(target)
    if user.server_name != server_name:
        raise InvalidParam(messages.NOT_LOCAL_USER_WHOIS)
    # Taken before the read: a flush that completes while we wait would otherwise
    # take its sightings out of "pending" after the read missed them.
    pending = activity.pending_for(user)
    stored = await store.get_devices(user)
    # Devices only exist for existing accounts: the account lookup (another database
    # round trip) is needed only to tell "no devices" from "no such user".
    if not stored and await store.get_account(user) is None:
        raise NotFound(messages.unknown_user(user))
    return Whois(user, merge_pending(stored, pending))
