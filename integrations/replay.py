"""An in-memory replay cache: keys seen recently, each kept until its expiry, bounded in size.

Used by the webhook verifiers (:mod:`integrations.webhooks`) to refuse a signed message that
arrives a second time while its timestamp is still within tolerance. Per process and not durable:
the durable guard against double processing is the dedup key of the integration event table.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from integrations.clock import Clock

TimeSource = Clock | Callable[[], float]
"""A clock: an :class:`integrations.Clock` (``now()`` gives a datetime) or a function giving unix
seconds (``time.time``)."""

DEFAULT_TTL = 600.0


def seconds_of(clock: TimeSource) -> float:
    """Unix seconds now, by ``clock``."""
    now = getattr(clock, "now", None)
    if now is not None:
        return float(now().timestamp())
    assert callable(clock)
    return float(clock())


class ReplayCache:
    """Keys seen recently, each kept until its expiry; at most ``max_size`` of them.

    ``add(key, expires_at)`` returns False when the key is already present and not expired
    (a replay), else stores it and returns True. When full, expired keys go first, then those
    that expire soonest. ``clock`` is injectable (unix seconds or an ``integrations.Clock``).
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_size: int = 100_000,
        clock: TimeSource = time.time,
    ):
        if ttl <= 0 or max_size <= 0:
            raise ValueError("ReplayCache needs a positive ttl and max_size")
        self.ttl = ttl
        self.max_size = max_size
        self.clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self._purge(seconds_of(self.clock))
        return len(self._expiry)

    def __contains__(self, key: object) -> bool:
        expires = self._expiry.get(key) if isinstance(key, str) else None
        return expires is not None and expires > seconds_of(self.clock)

    def add(self, key: str, expires_at: float | None = None) -> bool:
        """Remember ``key`` until ``max(now + ttl, expires_at)``; False if it is already known."""
        now = seconds_of(self.clock)
        self._purge(now)
        if key in self._expiry:
            return False
        expiry = max(now + self.ttl, expires_at or 0.0)
        while len(self._expiry) >= self.max_size:
            self._evict_one()
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        return True

    def discard(self, key: str) -> None:
        """Forget ``key`` (a delivery whose processing failed may be retried)."""
        self._expiry.pop(key, None)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            self._evict_one()

    def _evict_one(self) -> None:
        expiry, key = heapq.heappop(self._heap)
        if self._expiry.get(key) == expiry:
            del self._expiry[key]
