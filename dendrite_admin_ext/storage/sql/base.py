"""What every SQL mixin builds on: a dialect and a way to run an operation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypeVar

from .ops import Op
from .schema import Dialect

__all__ = ["SqlBase"]

T = TypeVar("T")


class SqlBase(ABC):
    """A backend (SQLite, PostgreSQL) provides :meth:`_run`, :meth:`_connect` and
    :meth:`_disconnect`; the feature mixins (one module each in this package) write
    their operations with :mod:`.ops` and run them through :meth:`_run`."""

    dialect: Dialect

    @abstractmethod
    async def _run(self, op: Op[T], *, write: bool) -> T:
        """Drive ``op``; with ``write``, inside one transaction committed at the end
        (rolled back if the operation raises)."""

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...
