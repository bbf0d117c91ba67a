"""The backend interface: what every storage backend offers, and all that the engine may use.

Two faces, in the spirit of :mod:`aiohttp.abc`:

- :class:`Storage`, the async outside face: set up, close, and run a transaction. A transaction
  is a *synchronous* body ``body(session)`` run as one unit (one thread hop or greenlet switch
  per transaction at most, never one per statement); the convenience methods each run one.
- :class:`Session`, the synchronous face handed to that body: every read and write of one
  transaction. Writes return a :class:`~storage.events.WriteResult` with the mutation events
  they caused; ``events`` lists the transaction's events so far, and a rolled-back savepoint
  removes its own again.

Both are :class:`typing.Protocol`\\ s: a backend conforms by shape, and code above ``storage/``
names these, never a backend class. Conformance is checked by the shared test suites, which run
against every backend.

A third, optional face: :class:`Outbox` (with :class:`OutboxSession` on its sessions), the
storage primitives of one committed stream for all processes (see :mod:`storage.outbox`). A
caller checks ``isinstance(backend, Outbox)``; both SQL backends have it.

The ``*_internal`` writes are bookkeeping: validated and transactional like any write, but they
emit no mutation event (a computation's running state, a side effect's intent and lease).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

import attrs

from storage.events import MutationEvent, Record, WriteResult
from storage.lease import Leader, Lease, Listening
from storage.match import MatchExp
from storage.migration import Operation, RelatedTotals, TotalOutput
from storage.outbox import OutboxBatch, OutboxEntry, OutboxPosition, OutboxStart
from storage.schema import RecordType, Schema

__all__ = ["Derived", "DerivedKind", "Match", "Outbox", "OutboxSession", "Session", "Storage"]

T = TypeVar("T")
Match = MatchExp | Mapping[str, Any] | None
"""A match: a :class:`MatchExp`, a dict of equalities (their AND), or None for every record."""


DerivedKind: TypeAlias = Literal["total", "mean", "any", "every", "every_nonempty"]
"""A function of a running total and count: the total itself, the total divided by the count
(0 for none), whether the total is above 0, whether it equals the count (and, for
``every_nonempty``, the count is above 0)."""


@attrs.frozen(cache_hash=True)
class Derived:
    """A field set from two running totals of the same record (see
    :meth:`Session.apply_deltas`): ``kind`` of the fields ``total`` and ``count``."""

    kind: DerivedKind
    total: str
    count: str

    def value(self, total: Any, count: Any) -> Any:
        """The field's value for these totals, computed in Python (None counts as 0)."""
        total = 0 if total is None else total  # (not "or 0": a float 0.0 stays a float)
        count = 0 if count is None else count
        if self.kind == "total":
            return total
        if self.kind == "mean":
            return total / count if count else 0
        if self.kind == "any":
            return total > 0
        if self.kind == "every":
            return total == count
        return total == count and count > 0


class Session(Protocol):
    """Reads and writes inside one running transaction (synchronous).

    A backend may hold back an update of one record by id and send it later, merged with the
    record's next ones (the SQL backends do: see :mod:`storage.sql.statements`), as long as
    nothing can tell: every read and every other statement of the session sees it, it is sent
    before COMMIT, undone with a savepoint it was made in, and the errors a write can raise
    are raised by the write itself."""

    schema: Schema
    events: list[MutationEvent]
    locks_rows: bool
    """Whether ``lock=True`` reads lock rows; False where a write transaction holds the whole
    database (SQLite), so a locked read is a plain one and a reader may reuse an unlocked one."""

    def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        """Create a record (with nested related records and links)."""
        ...

    def update(self, name: str, match: Match, data: Mapping[str, Any]) -> WriteResult:
        """Write ``data`` to every matching record; the result lists their new values."""
        ...

    def update_record(self, name: str, old: Record, data: Mapping[str, Any]) -> WriteResult:
        """Update the one record whose full snapshot ``old`` this transaction read."""
        ...

    def delete(self, name: str, match: Match) -> WriteResult:
        """Delete every matching record with its links and declared cascades."""
        ...

    def snapshot(self, name: str, record_id: Any, lock: bool = False) -> Record | None:
        """The full stored value snapshot of one record, or None. ``lock=True``: the row is
        locked against other writers until the transaction ends (``SELECT ... FOR UPDATE``;
        a no-op where write transactions are exclusive): read a record so before writing what
        is derived from it, and no concurrent transaction can change it in between."""
        ...

    def snapshots(
        self,
        name: str,
        match: Match,
        limit: int | None = None,
        lock: bool = False,
        share: bool = False,
    ) -> list[Record]:
        """Full snapshots of every matching record (the first ``limit``), in id order
        (``lock``: as for :meth:`snapshot`; ``share`` with it: a shared lock, ``SELECT ... FOR
        SHARE``, that lets other transactions read and share-lock the rows but not change
        them)."""
        ...

    def get(self, name: str, record_id: Any, fields: Sequence[str]) -> Record | None:
        """The named value fields of one record, or None."""
        ...

    def find(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Matching records; without ``attribute_query`` each is just ``{"id": ...}``."""
        ...

    def find_one(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        ...

    def count(self, name: str, match: Match = None) -> int:
        """How many records match."""
        ...

    def write_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        """Write fields of one record without a mutation event."""
        ...

    def write_internal_where(
        self, name: str, match: MatchExp | Mapping[str, Any], values: Mapping[str, Any]
    ) -> int:
        """Write fields of every matching record without an event; returns how many matched
        (one conditional statement: the building block of a claim)."""
        ...

    def insert_internal(self, name: str, values: Mapping[str, Any]) -> Any:
        """Create one record without a mutation event; returns its id."""
        ...

    def delete_internal(self, name: str, record_id: Any) -> None:
        """Delete one record without a mutation event."""
        ...

    def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        """Delete every matching record without an event; returns how many."""
        ...

    def apply_deltas(
        self,
        name: str,
        record_id: Any,
        deltas: Mapping[str, int | float],
        derived: Mapping[str, Derived],
    ) -> WriteResult:
        """Add each of ``deltas`` (field -> number) to its ``number``/``integer`` field of one
        record, and set each field of ``derived`` to its function of the new totals, atomically
        in the database (never a read in Python followed by a write: concurrent transactions
        adding to one record lose nothing). Every total ``derived`` reads needs a delta.

        The result: the record's new full values and one ``update`` event whose ``record``
        holds the written fields, ``old_record`` the record before (a total's old value is the
        new one minus its delta, a derived field's the function of the old totals). All deltas
        0: nothing is written, an empty result; no such record: an empty result. A total its
        field cannot hold (an int beyond 64 bits, a non-finite float) raises
        :class:`~storage.errors.TotalRangeError` with nothing written; a float delta for a
        field (or a total derived field) of type ``integer`` raises
        :class:`~storage.errors.FieldTypeError`. Costs one statement (two when a derived field
        is of a type the database cannot compute it in, such as ``json``)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an exception inside rolls back its writes and events only.

        The one way to go on after an expected failure (a unique violation that means
        "already there"): make the write inside a savepoint and catch outside it. A failure
        caught without one leaves the transaction unusable on backends where a failed
        statement aborts the transaction (PostgreSQL); storage itself never relies on
        catching a failed statement without one."""
        ...

    # -- leased rows (see storage.lease) -----------------------------------------------------

    def insert_leased(self, name: str, values: Mapping[str, Any], lease: Lease) -> Any:
        """Create one record without an event, leased to ``lease.owner`` for
        ``lease.duration`` seconds on the database clock; returns its id."""
        ...

    def write_leased(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any],
        values: Mapping[str, Any],
        lease: Lease,
    ) -> int:
        """Write ``values`` to every matching record without an event and lease it to
        ``lease.owner`` from now; returns how many matched."""
        ...

    def claim(
        self,
        name: str,
        match: Match,
        lease: Lease,
        *,
        limit: int,
        fields: Sequence[str] = (),
        values: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """Lease up to ``limit`` matching records whose lease is free, lowest ids first (and
        set ``values``); returns them (``id`` and ``fields``) in id order. Rows a concurrent
        claim holds are skipped, never waited for nor taken twice."""
        ...

    # -- whole-table aggregates (recomputation; see storage.migration.RelatedTotals) ---------

    def related_totals(
        self, spec: RelatedTotals, id_range: tuple[Any, Any] | None = None
    ) -> dict[Any, tuple[Any, int]]:
        """``{host id: (total, count)}`` of every host (ids in ``[lo, hi)`` with a range)."""
        ...

    def write_related_totals(
        self,
        spec: RelatedTotals,
        outputs: Mapping[str, TotalOutput],
        id_range: tuple[Any, Any] | None = None,
    ) -> int:
        """Set ``outputs`` (field -> total, count or mean) of every host in one statement,
        without events; returns how many hosts it wrote."""
        ...

    def record_totals(self, record: str, field: str | None = None) -> tuple[Any, int]:
        """(sum of ``field``, non-numbers as 0; number of records) over every record."""
        ...

    def id_bounds(self, record: str) -> tuple[Any, Any] | None:
        """The smallest and largest id of ``record``, or None when it has none."""
        ...


class Storage(Protocol):
    """An async storage backend: one database, transactions as synchronous bodies."""

    @property
    def schema(self) -> Schema:
        """The schema bound by :meth:`setup`."""
        ...

    @property
    def write_fault(self) -> str | None:
        """Why the store cannot write (the database's own words), or None; set when a write
        fails because of the store itself and cleared by the next write that commits. Read
        without touching the database (health checks)."""
        ...

    async def setup(self, schema: Schema, install: bool = True) -> None:
        """Open the database and bind ``schema``; with ``install``, create what is missing."""
        ...

    async def close(self) -> None:
        """Close the database; further use raises ``NotSetUpError``."""
        ...

    async def inspect(self) -> dict[str, list[str]]:
        """Every table of the database (the backend's own left out) with its column names;
        opens the connection and needs no schema (a migration planner compares with it)."""
        ...

    async def peek(self, record: RecordType) -> list[Record]:
        """Every row of ``record`` read with it as the only schema ([] without a table)."""
        ...

    async def holds_data(self, checks: Sequence[tuple[str, str | None]]) -> list[bool]:
        """For each ``(table, column)``: whether a row has the column not NULL (None: any
        row). A missing table or column holds nothing."""
        ...

    async def migrate(
        self,
        schema: Schema,
        operations: Sequence[Operation],
        body: Callable[[Session], T],
        guard: Callable[[Callable[[RecordType], list[Record]]], None] | None = None,
    ) -> T:
        """One write transaction: ``guard(peek)``, the schema ``operations``, then
        ``body(session)`` on ``schema``, then the new non-null fields; all of it commits or
        none, and ``schema`` is bound."""
        ...

    async def run(self, body: Callable[[Session], T], *, write: bool = True) -> T:
        """Run ``body(session)`` as one transaction and return its result; roll back on error."""
        ...

    async def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        """Create a record in a transaction of its own."""
        ...

    async def update(self, name: str, match: Match, data: Mapping[str, Any]) -> WriteResult:
        """Update matching records in a transaction of their own."""
        ...

    async def delete(self, name: str, match: Match) -> WriteResult:
        """Delete matching records in a transaction of their own."""
        ...

    async def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        """Delete every matching record without an event, in a transaction of its own: one
        statement, sent alone where the database runs a lone statement as a transaction
        (PostgreSQL: no BEGIN/COMMIT); returns how many were deleted."""
        ...

    async def find(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Matching records, read in a transaction of their own."""
        ...

    async def find_one(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        ...

    async def count(self, name: str, match: Match = None) -> int:
        """How many records match."""
        ...

    # -- several processes on one database (see storage.lease) -------------------------------

    async def claim(
        self,
        name: str,
        match: Match,
        lease: Lease,
        *,
        limit: int,
        fields: Sequence[str] = (),
        values: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """:meth:`Session.claim` in a transaction of its own (a round with nothing to claim
        may take no write lock)."""
        ...

    async def notify(self, channel: str) -> None:
        """Wake the listeners of ``channel`` (every process on PostgreSQL; this process on
        SQLite). Call it after the commit it announces; sends are coalesced."""
        ...

    async def listen(self, channel: str, wake: Callable[[], None]) -> Listening:
        """Call ``wake()`` (on this loop) whenever ``channel`` is notified; a hint only."""
        ...

    def leader(self, name: str) -> Leader:
        """The leadership of ``name`` on this database (see :class:`storage.lease.Leader`)."""


@runtime_checkable
class OutboxSession(Protocol):
    """The outbox's write, inside a running transaction."""

    def outbox_append(self, entries: Sequence[OutboxEntry]) -> None:
        """Append ``entries`` (in order) to the outbox in this transaction, giving each the
        next version of its record. One statement on PostgreSQL whatever the number of
        entries; nothing when ``entries`` is empty. Call it once per transaction, outside any
        savepoint (after the body's writes), so a retried body appends them once."""
        ...


@runtime_checkable
class Outbox(Protocol):
    """The outbox's reads and bookkeeping: readers, their stored cursors, pruning, wake-ups.

    A *reader* is a name with a stored cursor (a position). A durable reader keeps its
    cursor until :meth:`outbox_unregister`; a live one (``durable=False``, a process's own
    stream) also lapses when it has not stored its cursor for ``lease`` seconds (its process
    died). :meth:`outbox_prune` deletes only rows every registered reader is past."""

    async def outbox_install(self) -> None:
        """Create the outbox's tables when missing (the backend's own: ``inspect()`` leaves
        them out)."""
        ...

    async def outbox_register(
        self, name: str, *, durable: bool, lease: float = 60.0
    ) -> OutboxStart:
        """Register reader ``name`` and return where it starts: for a new reader the position
        of the last final row, with the transactions after it that had committed already
        (``skip``, found with the start in one snapshot, and stored with the reader); for a
        registered one its stored cursor, with the stored ``skip`` still after it. A reader
        that reads after the position and passes over those transactions gets exactly what
        commits from its first registration on (on PostgreSQL the horizon is the server's:
        rows committed before may lie after the last final row)."""
        ...

    async def outbox_store(self, name: str, position: OutboxPosition) -> None:
        """Store reader ``name``'s cursor (and renew a live reader's lease). Raises
        :class:`~storage.outbox.OutboxError` when the reader is not registered (dropped, or a
        live reader whose lease lapsed: rows it had not read may be pruned)."""
        ...

    async def outbox_unregister(self, name: str) -> bool:
        """Forget reader ``name`` (its rows become prunable); whether it was registered."""
        ...

    async def outbox_read(self, after: OutboxPosition, limit: int) -> OutboxBatch:
        """Up to ``limit`` final rows after ``after``, in order (one read transaction)."""
        ...

    async def outbox_prune(self) -> int:
        """Forget lapsed live readers, then delete every row that all registered readers are
        past (every final row when none is registered); returns how many rows it deleted."""
        ...

    async def outbox_listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``wake()`` (on the loop) whenever another process says it appended rows;
        returns the coroutine function that stops listening. Where the backend has no such
        signal, ``wake`` is never called and readers rely on polling."""
        ...

    def outbox_notify(self) -> None:
        """Say, after a commit that appended rows, that there is something to read: a hint
        sent outside the transaction (coalesced, never awaited by the writer)."""
        ...
