"""The features of the admin API: each one's config switch and the storage it needs.

A feature switched off in the config is not mounted (its paths answer 404
``M_UNRECOGNIZED``).  A feature switched on must find every method of its storage
protocols on the host's storage, or :func:`check_storage` stops start-up with one
message naming the feature, its switch and the missing methods (SPEC 7): never a
feature half-served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import Config
from .storage.protocols import (
    AccountStore,
    AuditStore,
    BroadcastStore,
    ClientLoginStore,
    JobStore,
    ModerationStore,
    NonceStore,
    RegistrationTokenStore,
    RoomDirectoryStore,
    RoomStore,
    ServerNoticeStore,
    StorageLifecycle,
    TokenStore,
    UserAdminStore,
    missing_methods,
)

__all__ = ["ALWAYS", "FEATURES", "Feature", "MissingStorageError", "check_storage",
           "rooms_changeable"]


@dataclass(frozen=True)
class Feature:
    name: str
    # The config key that switches it, as an operator writes it.
    switch: str
    enabled: Callable[[Config], bool]
    stores: tuple[type, ...]


class MissingStorageError(TypeError):
    """The host's storage lacks methods an enabled feature needs."""


def rooms_changeable(config: Config) -> bool:
    """Whether this deployment can change rooms.  Beside Dendrite
    (``database.shared_with``) rooms are Dendrite's and change only through its admin
    API (``homeserver.url``); without it, room-changing routes (evacuations, notices,
    room deletion, broadcasts) are not mounted and the proxy sends them to Dendrite
    (SPEC 8)."""
    return config.database.shared_with is None or config.homeserver.url is not None


# What every deployment needs: start-up and health, authentication, the audit trail of
# every state-changing action.
ALWAYS: tuple[type, ...] = (StorageLifecycle, TokenStore, AuditStore)

FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("whois", "endpoints.whois", lambda c: c.endpoints.whois, (AccountStore,)),
    Feature("reset_password", "endpoints.reset_password",
            lambda c: c.endpoints.reset_password, (AccountStore,)),
    Feature("register", "registration_shared_secret", lambda c: c.registration.enabled,
            (AccountStore, NonceStore)),
    Feature("evacuate", "endpoints.evacuate",
            lambda c: c.endpoints.evacuate and rooms_changeable(c), (AccountStore, RoomStore)),
    Feature("server_notices", "server_notices.enabled",
            lambda c: c.server_notices.enabled and rooms_changeable(c),
            (AccountStore, RoomStore, ServerNoticeStore)),
    Feature("audit", "endpoints.audit", lambda c: c.endpoints.audit, ()),
    Feature("openapi", "endpoints.openapi", lambda c: c.endpoints.openapi, ()),
    Feature("health", "endpoints.health", lambda c: c.endpoints.health, ()),
    # Off when the database is shared with a running Dendrite: Dendrite would neither
    # refuse a locked account nor a suspended one, so the API would promise what the
    # homeserver does not do (SPEC 10).
    Feature("moderation", "endpoints.moderation",
            lambda c: c.endpoints.moderation
            and c.database.shared_with is None,
            (AccountStore, ModerationStore)),
    Feature("client_login", "client_login.enabled", lambda c: c.client_login.enabled,
            (AccountStore, ClientLoginStore)),
    Feature("registration_tokens", "endpoints.registration_tokens",
            lambda c: c.endpoints.registration_tokens, (RegistrationTokenStore,)),
    Feature("users", "endpoints.users", lambda c: c.endpoints.users,
            (AccountStore, RoomStore, UserAdminStore)),
    # Room administration with deletion as a durable job, and the jobs endpoints.
    # Beside Dendrite the rooms are Dendrite's (SPEC 8): not served from this package's
    # tables, which Dendrite never reads.
    Feature("rooms", "endpoints.rooms",
            lambda c: c.endpoints.rooms and c.database.shared_with is None,
            (AccountStore, RoomStore, RoomDirectoryStore, JobStore)),
    # What changes rooms among them, as durable jobs, and the jobs endpoints: room
    # deletion, delete status, purgeRoom.  Beside Dendrite they are made by Dendrite's
    # own admin API (homeserver.url; services/room_admin.py).
    Feature("room_changes", "endpoints.rooms",
            lambda c: c.endpoints.rooms and rooms_changeable(c),
            (AccountStore, RoomStore, RoomDirectoryStore, JobStore)),
    # The room list, a room's details and members: beside Dendrite read from its
    # roomserver tables, read-only (SPEC 8; services/dendrite_rooms.py).
    Feature("room_reads", "endpoints.rooms", lambda c: c.endpoints.rooms,
            (AccountStore, RoomStore, RoomDirectoryStore)),
    # A server notice to every local user, as a durable job.  Beside Dendrite each
    # notice is sent by Dendrite's own send_server_notice (homeserver.url).
    Feature("broadcast", "server_notices.enabled",
            lambda c: c.server_notices.enabled and rooms_changeable(c),
            (AccountStore, RoomStore, ServerNoticeStore, JobStore, BroadcastStore)),
)}


def enabled_features(config: Config) -> list[Feature]:
    return [f for f in FEATURES.values() if f.enabled(config)]


def check_storage(storage: object, features: Iterable[Feature]) -> None:
    """Raise :class:`MissingStorageError` naming the first enabled feature whose storage
    protocols ``storage`` does not implement, its switch and the missing methods."""
    kind = type(storage).__name__
    always = sorted({m for p in ALWAYS for m in missing_methods(storage, p)})
    if always:
        raise MissingStorageError(
            f"{kind} cannot serve the admin API: it lacks {', '.join(always)}")
    for feature in features:
        missing = sorted({m for p in feature.stores for m in missing_methods(storage, p)})
        if missing:
            raise MissingStorageError(
                f"{kind} cannot serve the feature {feature.name!r} (switched on by "
                f"{feature.switch}): it lacks {', '.join(missing)}; implement them or "
                f"switch the feature off")
