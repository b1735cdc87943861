"""Request limits: per-IP rate limiting of the unauthenticated endpoints, and a time
limit on every admin request.

The body size limit lives in :func:`.validation.read_json_body` and the bound on bcrypt
work in :class:`.passwords.PasswordHasher`; nonce storage is bounded by the storage
backends (``max_nonces``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from .errors import LimitExceeded, MatrixError

__all__ = [
    "RateLimiter",
    "RequestTimeout",
    "rate_limit_middleware",
    "timeout_middleware",
]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by client address: ``burst`` requests at once, then
    ``per_second`` sustained.

    Memory is bounded: at most ``max_keys`` buckets are kept, the least recently used
    going first.  A forgotten bucket comes back full, which is what it would have been
    anyway once idle for ``burst / per_second`` seconds; an attacker with more addresses
    than ``max_keys`` gains nothing it would not gain from that many addresses anyway.
    ``per_second == 0`` switches the limiter off.
    """

    def __init__(self, per_second: float, burst: int, max_keys: int = 65_536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst),
                                bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second


def rate_limit_middleware(limiter: RateLimiter, limited: Container[AbstractRoute]
                          ) -> Middleware:
    """Apply ``limiter`` per client address (``request.remote``: behind a trusted proxy,
    the address from ``X-Forwarded-For``) to the routes in ``limited``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route in limited:
            wait = limiter.check(request.remote or "")
            if wait > 0:
                raise LimitExceeded(wait)
        return await handler(request)

    return middleware


class RequestTimeout(MatrixError):
    """The request ran longer than ``http.request_timeout``.

    504: the server gave up waiting for its own work.  No ``Retry-After``: the work may
    still complete (an evacuation always does, it runs shielded from the request), so
    an automatic retry is not what the client should do blindly."""

    status = 504
    errcode = "M_UNKNOWN"


def timeout_middleware(seconds: float) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # someone else's timeout: a bug or a storage error, not ours
            raise RequestTimeout(
                f"The request took longer than {_fmt(seconds)} s; the operation may "
                "still complete in the background") from None

    return middleware


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if math.isclose(seconds, round(seconds)) else f"{seconds:g}"
