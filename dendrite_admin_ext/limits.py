"""Request limits: per-IP rate limiting of the unauthenticated endpoints, and the error
of the time limit on every admin request (the ``deadline`` step of :mod:`.pipeline`).

The body size limit lives in :func:`.validation.read_json_body` and the bound on bcrypt
work in :class:`.passwords.PasswordHasher`; nonce storage is bounded by the storage
backends (``max_nonces``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import MatrixError

__all__ = [
    "RateLimiter",
    "RequestTimeout",
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

    def refund(self, key: str) -> None:
        """Give back the token a :meth:`check` took for ``key`` (the attempt turned out
        not to count, e.g. a login that succeeded: only failures are limited)."""
        bucket = self._buckets.get(key)
        if bucket is not None and self.enabled:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)


class RequestTimeout(MatrixError):
    """The request ran longer than ``http.request_timeout``.

    504: the server gave up waiting for its own work.  No ``Retry-After``: the work may
    still complete (an evacuation always does, it runs shielded from the request), so
    an automatic retry is not what the client should do blindly."""

    status = 504
    errcode = "M_UNKNOWN"

