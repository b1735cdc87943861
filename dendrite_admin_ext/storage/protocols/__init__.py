"""The storage protocols: what the admin API needs from its host, one small protocol per
feature.

A host implements only the protocols of the features it enables
(:mod:`dendrite_admin_ext.features` says which); ``setup_admin`` checks them at start-up.
The backends shipped with the package implement all of them (:class:`AdminStorage`).

Conventions for every method:

* Timestamps are integer milliseconds since the Unix epoch; a user is a
  :class:`~dendrite_admin_ext.identifiers.UserID`.
* A backend that cannot reach its database raises
  :class:`~dendrite_admin_ext.errors.StorageUnavailableError` (the API answers 503 with
  ``Retry-After`` and keeps serving); any other exception is a bug (500).
* Methods documented as atomic must either apply completely or not at all.
"""

from __future__ import annotations

import inspect
from typing import Protocol

from .accounts import AccountStore
from .audit import AuditStore
from .auth import TokenStore
from .broadcast import BroadcastStore
from .client_login import ClientLoginStore
from .jobs import JobStore
from .lifecycle import StorageLifecycle
from .moderation import ModerationStore
from .nonces import NonceStore
from .notices import ServerNoticeStore
from .registration_tokens import RegistrationTokenStore
from .room_directory import RoomDirectoryStore
from .rooms import RoomStore
from .users import UserAdminStore

__all__ = [
    "AccountStore",
    "AdminStorage",
    "AuditStore",
    "ClientLoginStore",
    "ModerationStore",
    "NonceStore",
    "RoomStore",
    "ServerNoticeStore",
    "StorageLifecycle",
    "TokenStore",
    "RegistrationTokenStore",
    "UserAdminStore",
    "missing_methods",
    "RoomDirectoryStore",
    "JobStore",
    "BroadcastStore",
    "protocol_methods",
]


class AdminStorage(StorageLifecycle, TokenStore, AccountStore, NonceStore, RoomStore,
                   ServerNoticeStore, AuditStore, ModerationStore, ClientLoginStore,
                   RegistrationTokenStore, UserAdminStore, RoomDirectoryStore, JobStore,
                   BroadcastStore, Protocol):
    """Every protocol at once: what the shipped backends (memory, SQLite, PostgreSQL)
    implement."""


def protocol_methods(protocol: type) -> list[str]:
    """The public methods a storage protocol declares (its own and its bases')."""
    names: list[str] = []
    for cls in reversed(protocol.__mro__):
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            if not name.startswith("_") and inspect.isfunction(value) and name not in names:
                names.append(name)
    return names


def missing_methods(storage: object, protocol: type) -> list[str]:
    """The methods of ``protocol`` that ``storage`` lacks (not callable attributes)."""
    return [name for name in protocol_methods(protocol)
            if not callable(getattr(storage, name, None))]
