"""In-memory storage: the reference implementation of every protocol, used by tests.

It keeps no data across restarts.  Every other backend must behave exactly like this
one; the contract suite in ``tests/test_storage_contract.py`` checks that they do.
"""

from __future__ import annotations

from .core import MemoryCore
from .jobs import MemoryJobs
from .rooms_admin import MemoryRoomDirectory

__all__ = ["MemoryStorage"]


class MemoryStorage(MemoryRoomDirectory, MemoryJobs, MemoryCore):
    """Every storage protocol in memory: one mixin per feature over :class:`MemoryBase`."""
