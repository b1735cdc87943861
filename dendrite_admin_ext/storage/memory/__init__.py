"""In-memory storage: the reference implementation of every protocol, used by tests.

It keeps no data across restarts.  Every other backend must behave exactly like this
one; the contract suite in ``tests/contract/`` checks that they do.
"""

from __future__ import annotations

from .client_login import MemoryClientLogin
from .core import MemoryCore
from .jobs import MemoryJobs
from .moderation import MemoryModeration
from .registration_tokens import MemoryRegistrationTokens
from .rooms_admin import MemoryRoomDirectory
from .users import MemoryUsers

__all__ = ["MemoryStorage"]


# The room directory comes before the core: it extends the core's event append with
# the room summaries (as SqlRoomDirectory does for SqlCore).
class MemoryStorage(MemoryRoomDirectory, MemoryJobs, MemoryCore, MemoryModeration,
                    MemoryClientLogin, MemoryRegistrationTokens, MemoryUsers):
    """Every storage protocol in memory: one mixin per feature over :class:`MemoryBase`."""
