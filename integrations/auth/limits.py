"""What keeps password hashing from being used to flood the server.

A password hash costs about 0.2 s of CPU by design (:mod:`integrations.auth.passwords`); 400
concurrent logins used to queue for a minute. Two guards, both per process and in memory:

- :class:`AttemptLimiter`: at most ``limit`` attempts per key (a client address, a username) in
  a window of ``window`` seconds that starts at the key's first attempt; beyond it the caller
  is told how many seconds remain (the ``Retry-After`` of a 429). The clock is injectable.
  Memory is bounded: at most ``max_keys`` keys, expired ones dropped first, then the oldest.
- :class:`HashGate`: at most ``slots`` hashes run at once (each in a worker thread, off the event
  loop) and at most ``max_waiting`` wait for a slot; a request beyond that is refused at once
  (:class:`GateFull`, a 503 with ``Retry-After``) instead of queueing without bound. A slot is
  freed when its thread finishes, even if the request that started it was cancelled, so the
  CPU in use never exceeds ``slots`` hashes.

Costs: O(1) per attempt (an occasional sweep of expired keys is amortised over the window).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TypeVar

from integrations.replay import TimeSource, seconds_of

T = TypeVar("T")


class AttemptLimiter:
    """At most ``limit`` attempts per key per ``window`` seconds (see the module docs)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: TimeSource = time.monotonic,
        max_keys: int = 100_000,
    ):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive number of attempts, got {limit!r}")
        if not 0 < window < math.inf:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be positive, got {max_keys!r}")
        self.limit = limit
        self.window = float(window)
        self.clock = clock
        self.max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (attempts, window start)
        self._next_sweep = -math.inf

    def hit(self, key: str) -> float | None:
        """Count one attempt for ``key``: None when it is allowed, else the seconds until the
        key's window ends (the attempt is then not counted)."""
        now = seconds_of(self.clock)
        self._sweep(now)
        attempts, start = self._counts.get(key, (0, now))
        if now >= start + self.window:
            attempts, start = 0, now
        if attempts >= self.limit:
            # Never more than one window (float sums of clock readings can overshoot by an ulp).
            return min(self.window, start + self.window - now)
        if key not in self._counts and len(self._counts) >= self.max_keys:
            del self._counts[next(iter(self._counts))]  # the oldest key goes
        self._counts[key] = (attempts + 1, start)
        return None

    def reset(self, key: str) -> None:
        """Forget ``key``'s attempts (a login that succeeded)."""
        self._counts.pop(key, None)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        expired = [k for k, (_, start) in self._counts.items() if now >= start + self.window]
        for key in expired:
            del self._counts[key]


class GateFull(Exception):
    """Every hash slot is taken and the waiting line is full; ``retry_after`` in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy hashing passwords; retry in {retry_after} s")
        self.retry_after = retry_after


class HashGate:
    """At most ``slots`` hashes at once, at most ``max_waiting`` waiting (see the module docs)."""

    def __init__(self, slots: int, max_waiting: int):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive number of hashes, got {slots!r}")
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int) or max_waiting < 0:
            raise ValueError(f"max_waiting must be zero or more, got {max_waiting!r}")
        self.slots = slots
        self.max_waiting = max_waiting
        self._semaphore = asyncio.Semaphore(slots)
        self._waiting = 0
        self._seconds_per_hash = 0.2  # a first guess, then measured (moving average)

    @property
    def busy(self) -> bool:
        """Whether every slot is taken now."""
        return self._semaphore.locked()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a worker thread once a slot is free; :class:`GateFull` when
        the waiting line is full."""
        if self._semaphore.locked() and self._waiting >= self.max_waiting:
            wait = (self._waiting + 1) * self._seconds_per_hash / self.slots
            raise GateFull(max(1, math.ceil(wait)))
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        started = time.perf_counter()
        work = asyncio.get_running_loop().run_in_executor(None, function, *args)

        def done(_: object) -> None:
            self._semaphore.release()
            elapsed = time.perf_counter() - started
            self._seconds_per_hash = 0.8 * self._seconds_per_hash + 0.2 * elapsed

        work.add_done_callback(done)  # the slot is the thread's until it ends
        return await asyncio.shield(work)


__all__ = ["AttemptLimiter", "GateFull", "HashGate"]
