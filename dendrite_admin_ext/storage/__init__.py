"""Storage: the protocol the host implements, and the backends shipped with the package."""

from __future__ import annotations

from ..config import DatabaseConfig
from .base import AdminStorage
from .memory import MemoryStorage

__all__ = ["AdminStorage", "MemoryStorage", "storage_from_config"]


def storage_from_config(db: DatabaseConfig) -> AdminStorage:
    """The backend named by ``database.backend``."""
    if db.backend == "memory":
        return MemoryStorage()
    raise ValueError(f"unknown database backend {db.backend!r}")
