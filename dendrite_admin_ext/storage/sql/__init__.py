"""The SQL backends' shared part: every query written once, for SQLite and PostgreSQL.

:class:`SqlStorage` is every feature's mixin (one module each here) over :mod:`.base`;
:mod:`dendrite_admin_ext.storage.sqlite` and :mod:`dendrite_admin_ext.storage.postgres`
drive its operations.
"""

from __future__ import annotations

from .client_login import SqlClientLogin
from .core import SqlCore
from .jobs import SqlJobs
from .moderation import SqlModeration
from .ops import Op, Result, Stmt, drive_sync
from .registration_tokens import SqlRegistrationTokens
from .rooms_admin import SqlRoomDirectory
from .users import SqlUsers

__all__ = ["Op", "Result", "SqlStorage", "Stmt", "drive_sync"]


# The room directory comes before the core: it fills the core's room-summary hook.
class SqlStorage(SqlRoomDirectory, SqlJobs, SqlCore, SqlModeration, SqlClientLogin,
                 SqlRegistrationTokens, SqlUsers):
    """Every storage protocol over Dendrite's tables and ours (see :mod:`.schema`).

    ``open``/``close`` nest: the storage stays open until every opener has closed it,
    so a host (or a test) may hold it open around the admin app's own lifecycle."""
