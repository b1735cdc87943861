"""A storage wrapper that coalesces the reads every request makes.

Every authenticated request reads its token's owner (SPEC 3: fresh, for each request)
and whois reads its target's devices.  Under load many requests wait for such a read at
once; a database round trip per key then costs far more than the rows (on PostgreSQL a
network round trip and a wake-up of the loop per statement, on SQLite a hand-over to
the worker thread and back).  :class:`CoalescingStorage` sends the keys waiting at the
same moment to the wrapped storage as one many-key read (:class:`BatchReads`), with the
freshness rules of :class:`~.batching.ReadBatcher`: each caller's read is made after the
caller asked.

Any storage offering :class:`BatchReads` can be wrapped; every other method (and
attribute) is the wrapped storage's own, so the wrapper implements exactly the storage
protocols its inner storage does.  :func:`~dendrite_admin_ext.storage.storage_from_config`
wraps the SQL backends (where it pays: see ``tests/benchmarks/RESULTS.md``), not the
memory backend (whose reads cost less than a batch's bookkeeping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..identifiers import UserID
from .batching import ReadBatcher
from .protocols import AdminStorage
from .types import DeviceInfo, TokenOwner

__all__ = ["BatchReads", "CoalescingStorage"]


class BatchReads(Protocol):
    """Many-key forms of :meth:`~.protocols.auth.TokenStore.get_token_owner` and
    :meth:`~.protocols.accounts.AccountStore.get_devices`, each read as fresh as the
    single-key form."""

    async def get_token_owners(self, tokens: Sequence[str]) -> Mapping[str, TokenOwner]:
        """The owner of each known token; unknown tokens are left out."""

    async def get_devices_of(self, users: Sequence[UserID]
                             ) -> Mapping[UserID, list[DeviceInfo]]:
        """Each user's devices as ``get_devices`` gives them; users may be left out
        when they have none."""


class CoalescableStorage(AdminStorage, BatchReads, Protocol):
    """A storage :class:`CoalescingStorage` can wrap."""


class CoalescingStorage:
    """``inner`` with ``get_token_owner`` and ``get_devices`` coalesced.

    At most ``max_running`` batches of one kind are in flight at once (see
    :class:`~.batching.ReadBatcher` for what happens when they stall).  ``close``
    first waits for the reads already asked for, then closes ``inner``.
    """

    def __init__(self, inner: CoalescableStorage, *, max_running: int = 1) -> None:
        self.inner = inner
        self._token_owners: ReadBatcher[str, TokenOwner | None] = ReadBatcher(
            inner.get_token_owners, lambda: None, max_running=max_running)
        self._devices: ReadBatcher[UserID, list[DeviceInfo]] = ReadBatcher(
            inner.get_devices_of, list, max_running=max_running)

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class does not define: the inner storage's own.
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"CoalescingStorage({self.inner!r})"

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        # Reads already asked for are answered before the connection goes; reads asked
        # for meanwhile are not waited for (an open() meanwhile only nests).
        await self._token_owners.drain()
        await self._devices.drain()
        await self.inner.close()

    async def get_token_owner(self, access_token: str) -> TokenOwner | None:
        return await self._token_owners.get(access_token)

    async def get_devices(self, user: UserID) -> list[DeviceInfo]:
        # Callers asking for the same user at once share a read, not a list.
        return list(await self._devices.get(user))
