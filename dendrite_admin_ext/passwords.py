"""Password policy and bcrypt hashing off the event loop.

bcrypt at cost 12 takes ~250 ms of CPU: run on the loop it would stall every other
request of the homeserver.  Hashes run in a small dedicated thread pool (bcrypt releases
the GIL), behind a semaphore so that a burst queues instead of spawning threads; the
queue itself is bounded (``max_queued``), beyond it a request gets 503 with Retry-After
at once instead of holding a connection and memory for minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

from . import messages
from .config import PasswordConfig
from .errors import BadJson, MissingParam, ServiceUnavailable, WeakPassword

__all__ = ["PasswordHasher", "check_password_policy"]

# bcrypt only uses the first 72 bytes; newer bcrypt releases refuse longer input instead
# of truncating.  Truncating keeps the classic behaviour (and Dendrite's, whose hashes
# share the table), so long passphrases up to the configured maximum keep working.
_BCRYPT_MAX_BYTES = 72

T = TypeVar("T")


def check_password_policy(password: object, policy: PasswordConfig) -> str:
    if not isinstance(password, str) or password == "":
        raise MissingParam(messages.missing_param("password"))
    if len(password) < policy.min_length:
        raise WeakPassword(messages.password_too_short(policy.min_length))
    if len(password) > policy.max_length:
        raise BadJson(messages.password_too_long(policy.max_length))
    return password


class PasswordHasher:
    def __init__(self, cost: int = 12, max_concurrent: int = 2, max_queued: int = 64) -> None:
        self.cost = cost
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self._in_flight = 0  # hashing now, or waiting for the semaphore
        self._executor: ThreadPoolExecutor | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.max_concurrent,
                                            thread_name_prefix="dendrite-admin-bcrypt")
        self._semaphore = asyncio.Semaphore(self.max_concurrent)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def hash_sync(self, password: str) -> str:
        secret = password.encode("utf-8")[:_BCRYPT_MAX_BYTES]
        return bcrypt.hashpw(secret, bcrypt.gensalt(self.cost)).decode("ascii")

    @staticmethod
    def verify_sync(password: str, hashed: str) -> bool:
        secret = password.encode("utf-8")[:_BCRYPT_MAX_BYTES]
        try:
            return bcrypt.checkpw(secret, hashed.encode("ascii"))
        except ValueError:
            return False

    async def hash(self, password: str) -> str:
        return await self._off_loop(self.hash_sync, password)

    async def verify(self, password: str, hashed: str) -> bool:
        """True if ``password`` matches the bcrypt hash ``hashed`` (a malformed hash
        matches nothing).  Runs off the event loop on the same bounded threads and queue
        as :meth:`hash` (503 with Retry-After when the queue is full): all bcrypt work of
        the process, logins included, stays within that one bound."""
        return await self._off_loop(self.verify_sync, password, hashed)

    async def _off_loop(self, fn: Callable[..., T], *args: str) -> T:
        if self._executor is None or self._semaphore is None:
            self.start()
        assert self._executor is not None and self._semaphore is not None
        self._admit()
        try:
            await self._semaphore.acquire()
        except BaseException:
            self._in_flight -= 1
            raise
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        # The slot is freed when bcrypt is done, not when the caller stops waiting: a
        # client that goes away does not stop bcrypt, and a freed slot would let more
        # hashes pile up behind it than the bound allows.
        future.add_done_callback(self._free_slot)
        return await asyncio.shield(future)

    def _free_slot(self, _: object) -> None:
        assert self._semaphore is not None
        self._semaphore.release()
        self._in_flight -= 1

    def _admit(self) -> None:
        if self._in_flight >= self.max_concurrent + self.max_queued:
            raise ServiceUnavailable(messages.HASHER_BUSY,
                                     retry_after_s=1)
        self._in_flight += 1
