"""Leases, wake-ups and leadership: what several processes on one database coordinate with.

Three primitives, each behind the backend interface (:mod:`storage.abc`) so that code above
storage never names a backend:

- **Leases on rows.** A record type that has the fields ``lease_owner`` (string) and
  ``lease_until`` (number: seconds since the epoch) can be leased: :meth:`Session.insert_leased`
  writes a row already leased, :meth:`Session.write_leased` sets fields and (re)news the lease
  of matching rows, and :meth:`Storage.claim` takes the lease of up to ``limit`` rows whose
  lease is free (no owner, or ``lease_until`` past). All lease times are on ONE clock per
  database: the database server's (PostgreSQL: ``clock_timestamp()``, evaluated inside the
  statement, so clocks of the processes never matter), or, where the database has no clock
  of its own (SQLite, whose processes share one host), the caller's :attr:`Lease.now`.
  A claim never waits for and never double-takes a row another transaction is claiming at the
  same moment (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time).
- **Wake-ups.** :meth:`Storage.notify` tells every listener of a channel that there may be
  work; :meth:`Storage.listen` registers a callback. A hint only: a listener must also look
  by itself now and then (a notification is lost when no one listens, or when a listening
  connection drops). PostgreSQL: ``pg_notify`` sent *after* the caller's commit from a
  dedicated connection, coalesced per channel (a NOTIFY inside every write transaction cut
  commit throughput 35-43%, measured), and ``LISTEN`` on a dedicated connection per storage.
  SQLite: an in-process wake-up of the listeners of the same database file (processes on one
  SQLite file rely on their own polling).
- **Leadership.** :meth:`Storage.leader` gives a :class:`Leader`: at most one holder of a
  name per database at a time, given up when the holding process dies. PostgreSQL: a
  session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated connection (the
  server releases it when that connection closes, e.g. at SIGKILL). SQLite: an exclusive
  ``flock`` on a lock file beside the database (``<db>.lead-<name>``), released by the
  operating system when the process dies; an in-memory database always leads (one process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LEASE_OWNER", "LEASE_UNTIL", "Leader", "Lease", "Listening"]

LEASE_OWNER = "lease_owner"
"""The field that names a row's lease holder (NULL: nobody)."""
LEASE_UNTIL = "lease_until"
"""The field holding the end of a row's lease, seconds since the epoch on the database clock."""
_NUMBERS = (int, float)  # a tuple: an int | float union is built anew on every isinstance call


@dataclass(frozen=True)
class Lease:
    """Who takes a lease, and for how long.

    ``owner``: the holder's id (unique per holder). ``duration``: seconds the lease lasts from
    the moment of the write. ``now``: the caller's clock reading, seconds since the epoch,
    used ONLY by backends whose database has no clock (SQLite); PostgreSQL ignores it and
    uses its own.
    """

    owner: str
    duration: float
    now: float

    def __post_init__(self) -> None:
        if not isinstance(self.owner, str) or not self.owner:
            raise ValueError(f"Lease.owner must be a non-empty string, got {self.owner!r}")
        for name, value in (("duration", self.duration), ("now", self.now)):
            kind = type(value)
            # (A float or an int, the common cases, is checked first and is a number.)
            if (kind is not float and kind is not int) and (
                isinstance(value, bool) or not isinstance(value, _NUMBERS)
            ):
                raise ValueError(f"Lease.{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"Lease.{name} must be finite, got {value!r}")
        if self.duration <= 0:
            raise ValueError(f"Lease.duration must be above 0 seconds, got {self.duration!r}")


class Listening(Protocol):
    """A registered listener (from :meth:`Storage.listen`); ``close()`` removes it."""

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        ...


class Leader(Protocol):
    """The leadership of one name on one database (from :meth:`Storage.leader`).

    ``await try_lead()`` returns whether this holder leads now: it takes the leadership when
    nobody holds it, and, when it already held it, checks that it still does (a PostgreSQL
    connection that broke has lost its lock). Call it every few seconds: a holder that died
    gives the leadership up at once (its connection or file closes) and the next caller
    takes it. ``await resign()`` gives it up (idempotent)."""

    @property
    def held(self) -> bool:
        """Whether the last :meth:`try_lead` found this holder leading."""
        ...

    async def try_lead(self) -> bool:
        """Take or keep the leadership; True while this holder leads."""
        ...

    async def resign(self) -> None:
        """Give the leadership up (and close what held it)."""
        ...
