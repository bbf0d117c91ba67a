"""A clock that only moves when the test says so.

>>> clock = FakeClock()
>>> integration = MyIntegration(model, clock=clock)
>>> ...                                   # something calls ``await clock.sleep(2.0)``
>>> await clock.wait_for_sleepers(1)      # it is asleep now
>>> clock.advance(2.0)                    # and wakes up

``sleep`` never waits for real time: a sleeper wakes when :meth:`advance` moves the clock past
its due time. Sleepers wake in the order of their due times (ties in the order they fell
asleep). Every requested duration is kept in :attr:`FakeClock.sleeps`, so tests can check
backoff delays and poll intervals without measuring anything.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import attrs


@attrs.define(eq=False)
class _Sleeper:
    due: datetime
    order: int
    seconds: float
    future: asyncio.Future[None]


class FakeClock:
    """Implements :class:`integrations.Clock`; time moves only through :meth:`advance`.

    ``start`` defaults to the current wall-clock time, because records stamp ``created_at``
    with the real time and the runner compares it with this clock's ``now()``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime (e.g. tzinfo=UTC)")
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []
        """Every duration passed to :meth:`sleep`, in call order."""

    def now(self) -> datetime:
        """The fake current time (aware, UTC unless ``start`` said otherwise)."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds`` (a non-positive duration only
        yields to the event loop)."""
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = _Sleeper(
            self._now + timedelta(seconds=seconds), next(self._order), seconds, future
        )
        self._sleepers.append(sleeper)
        try:
            await future
        finally:
            if sleeper in self._sleepers:  # cancelled before it was due
                self._sleepers.remove(sleeper)

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock right now."""
        return sum(1 for s in self._sleepers if not s.future.done())

    @property
    def pending_sleeps(self) -> list[float]:
        """The durations the current sleepers asked for, earliest due first."""
        return [s.seconds for s in sorted(self._sleepers, key=_key) if not s.future.done()]

    def next_due(self) -> float | None:
        """Seconds until the earliest sleeper is due (``None`` when nobody sleeps)."""
        due = [s.due for s in self._sleepers if not s.future.done()]
        return max(0.0, (min(due) - self._now).total_seconds()) if due else None

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds`` and wake every sleeper now due, in due order;
        returns how many woke.

        The woken tasks run at the event loop's next turns (await something, e.g.
        :meth:`wait_for_sleepers`, to let them) and then see ``now()`` at the new time. To
        step one wake-up at a time, use :meth:`advance_to_next`."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + timedelta(seconds=seconds)
        woken = 0
        for sleeper in sorted(self._sleepers, key=_key):
            if sleeper.due > target:
                break
            self._sleepers.remove(sleeper)
            if not sleeper.future.done():
                self._now = max(self._now, sleeper.due)
                sleeper.future.set_result(None)
                woken += 1
        self._now = target
        return woken

    def advance_to_next(self) -> float:
        """Advance exactly to the earliest sleeper's due time and wake it (and any due at the
        same instant); returns the seconds advanced. Raises ``LookupError`` if nobody sleeps."""
        step = self.next_due()
        if step is None:
            raise LookupError("no task is sleeping on this clock")
        self.advance(step)
        return step

    async def wait_for_sleepers(self, count: int, timeout: float = 5.0) -> None:
        """Let the event loop run until at least ``count`` tasks sleep on this clock.

        ``timeout`` is real seconds, a guard against a test that waits for something that
        never happens (raises ``TimeoutError``)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while self.sleepers < count:
            if loop.time() > give_up:
                raise TimeoutError(
                    f"expected {count} sleeper(s) on the fake clock, have {self.sleepers}"
                )
            await asyncio.sleep(0.001)


def _key(sleeper: _Sleeper) -> tuple[datetime, int]:
    return sleeper.due, sleeper.order
