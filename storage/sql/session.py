"""The synchronous face of a SQL backend: everything one transaction does (backend-neutral).

A :class:`SQLSession` is handed to the body of a SQL backend's ``run``; it offers the same reads
and writes as the async storage, synchronously, inside the running transaction (the
:class:`storage.abc.Session` interface). This is the face the engine's computations use, so a
whole write and everything it triggers costs one thread hop (or none).

It runs on a :class:`~storage.sql.driver.Driver` inside the transaction the backend began,
renders through the backend's :class:`~storage.sql.dialect.Dialect`, and remembers what it
derives in the backend's :class:`~storage.sql.cache.StatementCache` for the schema.

Expected failures. A caller that wants to carry on after a write fails on purpose (a
:class:`~storage.errors.UniqueViolationError` that means "already there") must make that write
inside :meth:`SQLSession.savepoint`: on PostgreSQL a failed statement aborts the whole
transaction, and only rolling back to a savepoint makes it usable again. Storage itself follows
the same rule (see :mod:`storage.sql.writer`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from storage.abc import Derived
from storage.errors import QueryError
from storage.events import MutationEvent, Record, WriteResult
from storage.lease import Lease
from storage.match import MatchExp
from storage.migration import RelatedTotals
from storage.outbox import OutboxEntry
from storage.schema import Schema
from storage.sql import leases, outbox, totals
from storage.sql.cache import StatementCache
from storage.sql.dialect import Dialect
from storage.sql.driver import Driver, bind
from storage.sql.reader import Reader
from storage.sql.writer import Writer


class SQLSession:
    """Reads and writes inside one transaction of a SQL database.

    ``events`` lists every mutation event of the transaction so far, in order; a rolled-back
    savepoint removes its events again. ``cache`` is the backend's memory for ``schema``
    (a fresh one when not given: correct, just slower).
    """

    __slots__ = ("_reader", "_writer", "events", "locks_rows", "schema")

    def __init__(
        self,
        schema: Schema,
        driver: Driver,
        dialect: Dialect,
        cache: StatementCache | None = None,
    ) -> None:
        self.schema = schema
        self.events: list[MutationEvent] = []
        self.locks_rows = bool(dialect.row_lock)
        """Whether ``lock=True`` reads lock rows (False: a write transaction holds the whole
        database, as on SQLite, and a locked read is a plain one)."""
        # The driver's own execute where the dialect renders nothing (SQLite): no call between.
        run = driver.execute if not dialect.renders else bind(driver, dialect)
        self._reader = reader = Reader(schema, run, dialect, cache or StatementCache())
        self._writer = Writer(reader, self.events)

    def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        """Create a record (and nested related records and links). ``result.record`` is it."""
        return self._writer.create(name, data)

    def update(
        self, name: str, match: MatchExp | Mapping[str, Any] | None, data: Mapping[str, Any]
    ) -> WriteResult:
        """Write ``data`` to every record matching ``match``; returns their new values."""
        return self._writer.update(name, match, data)

    def update_record(self, name: str, old: Record, data: Mapping[str, Any]) -> WriteResult:
        """Update the one record whose full snapshot ``old`` (from :meth:`snapshot`) the caller
        read in this transaction; the same as ``update(name, {"id": ...}, data)`` less a read."""
        return self._writer.update_record(name, old, data)

    def snapshot(self, name: str, record_id: Any, lock: bool = False) -> Record | None:
        """The full stored value snapshot of one record (links with source/target), or None.

        With ``lock`` the row is locked until the transaction ends (``SELECT ... FOR UPDATE``
        where the dialect has row locks; SQLite's write transaction holds the whole database
        already): read it so before writing what is derived from it."""
        self.schema.record(name)
        return self._reader.snapshot(name, record_id, lock)

    def snapshots(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None,
        limit: int | None = None,
        lock: bool = False,
        share: bool = False,
    ) -> list[Record]:
        """Full stored value snapshots of every record matching ``match`` (the first ``limit``
        of them), in id order: what :meth:`update_record` takes as ``old``; ``lock`` as for
        :meth:`snapshot`, ``share`` (with ``lock``): a shared lock (``FOR SHARE``: other
        transactions may read and share-lock the rows, none may change them)."""
        self.schema.record(name)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise QueryError(f"snapshots of {name}: limit must be an int >= 0, got {limit!r}")
        return self._reader.snapshots(name, match, limit, lock, share)

    def get(self, name: str, record_id: Any, fields: Sequence[str]) -> Record | None:
        """The named value fields of one record, or None: the cheapest read by id."""
        self.schema.record(name)
        return self._reader.get(name, record_id, fields)

    def delete(self, name: str, match: MatchExp | Mapping[str, Any] | None) -> WriteResult:
        """Delete every matching record with its links (and declared cascades)."""
        return self._writer.delete(name, match)

    def find(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Records matching ``match``; without ``attribute_query`` each is just ``{"id": ...}``."""
        return self._reader.find(name, match, attribute_query, order_by, limit, offset)

    def find_one(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        found = self._reader.find(name, match, attribute_query, order_by, 1, None)
        return found[0] if found else None

    def count(self, name: str, match: MatchExp | Mapping[str, Any] | None = None) -> int:
        """How many records match."""
        return self._reader.count(name, match)

    def apply_deltas(
        self,
        name: str,
        record_id: Any,
        deltas: Mapping[str, int | float],
        derived: Mapping[str, Derived],
    ) -> WriteResult:
        """Add ``deltas`` to number fields of one record and set the ``derived`` fields from
        the new totals, atomically in one ``UPDATE ... RETURNING`` (see
        :meth:`storage.abc.Session.apply_deltas` and :mod:`storage.sql.deltas`; an unknown
        record is refused there, on its first sight)."""
        return self._writer.apply_deltas(name, record_id, deltas, derived)

    def write_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        """Write fields of one record *without* a mutation event.

        For bookkeeping that is not data (a computation's running totals, a side effect's
        attempt count): it is validated and transactional like any write, but nothing observes it.
        """
        self._writer.write_internal(name, record_id, values)

    def insert_internal(self, name: str, values: Mapping[str, Any]) -> Any:
        """Create one record *without* a mutation event and return its id.

        For bookkeeping records (a side effect's intent): validated and transactional like
        any write, but nothing observes it. Link records are refused: create them with
        :meth:`create`."""
        self.schema.record(name)
        return self._writer.insert_internal(name, values)

    def delete_internal(self, name: str, record_id: Any) -> None:
        """Delete one record *without* a mutation event (bookkeeping records without links)."""
        self.schema.record(name)
        self._writer.delete_internal(name, record_id)

    def write_internal_where(
        self, name: str, match: MatchExp | Mapping[str, Any], values: Mapping[str, Any]
    ) -> int:
        """Write fields of every record matching ``match`` *without* a mutation event; returns
        how many records matched.

        One conditional UPDATE, so a condition on the record's own fields is checked and the
        write made atomically: the building block of a claim (``set owner where id = ? and
        owner is null``) whose caller learns from the count whether it won."""
        self.schema.record(name)
        return self._writer.write_internal_where(name, match, values)

    def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        """Delete every record matching ``match`` *without* a mutation event (bookkeeping
        records without links); returns how many were deleted."""
        self.schema.record(name)
        return self._writer.delete_internal_where(name, match)

    # -- leased rows (see storage.lease) -----------------------------------------------------

    def insert_leased(self, name: str, values: Mapping[str, Any], lease: Lease) -> Any:
        """Create one record *without* a mutation event, leased to ``lease.owner`` for
        ``lease.duration`` seconds on the database clock; returns its id."""
        self.schema.record(name)
        return leases.insert_leased(self._writer, name, values, lease)

    def write_leased(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any],
        values: Mapping[str, Any],
        lease: Lease,
    ) -> int:
        """Write ``values`` (maybe none) to every record matching ``match`` *without* an event
        and lease it to ``lease.owner`` from now on the database clock; returns how many
        matched (a renewal: ``match`` names the owner, and the count says who still holds)."""
        self.schema.record(name)
        return leases.write_leased(self._writer, name, match, values, lease)

    def claim(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None,
        lease: Lease,
        *,
        limit: int,
        fields: Sequence[str] = (),
        values: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """Lease up to ``limit`` records matching ``match`` whose lease is free (no owner, or
        expired on the database clock), lowest ids first, setting ``values`` on them too;
        returns them (``id`` and ``fields``) in id order. One statement; rows a concurrent
        claim holds are skipped, never waited for nor taken twice."""
        self.schema.record(name)
        return leases.claim(self._writer, name, match, lease, limit, fields, values or {})

    def any_free(self, name: str, match: MatchExp | Mapping[str, Any] | None, lease: Lease) -> bool:
        """Whether a record matching ``match`` has a free lease (a read; what a claim would
        find, without taking anything)."""
        self.schema.record(name)
        return leases.any_free(self._writer, name, match, lease)

    # -- whole-table aggregates (recomputation; see storage.migration.RelatedTotals) ---------

    def related_totals(
        self, spec: RelatedTotals, id_range: tuple[Any, Any] | None = None
    ) -> dict[Any, tuple[Any, int]]:
        """``{host id: (total, count)}`` of every host (ids in ``[lo, hi)`` with a range)."""
        self.schema.record(spec.host)
        return totals.read(self._reader.run, self._reader.dialect, spec, id_range)

    def write_related_totals(
        self,
        spec: RelatedTotals,
        outputs: Mapping[str, totals.Output],
        id_range: tuple[Any, Any] | None = None,
    ) -> int:
        """Set the fields of ``outputs`` (field -> ``"total"``, ``"count"`` or ``"mean"``, the
        total divided by the count, 0 for none) of every host in one statement, *without*
        mutation events (bookkeeping: recomputation); returns how many hosts it wrote."""
        for field in outputs:
            self.schema.field(spec.host, field)
        return totals.write(self._reader.run, self._reader.dialect, spec, outputs, id_range)

    def record_totals(self, record: str, field: str | None = None) -> tuple[Any, int]:
        """(total, count) over every record of ``record``: the sum of ``field`` (non-numbers
        count as 0) and the number of records."""
        if field is not None and field != "id":
            self.schema.field(record, field)
        else:
            self.schema.record(record)
        return totals.record_totals(self._reader.run, self._reader.dialect, record, field)

    def id_bounds(self, record: str) -> tuple[Any, Any] | None:
        """The smallest and largest id of ``record`` (None when empty): batches walk it."""
        self.schema.record(record)
        return totals.id_bounds(self._reader.run, record)

    # -- the outbox (storage.abc.OutboxSession) ------------------------------------------------

    def outbox_append(self, entries: Sequence[OutboxEntry]) -> None:
        """Append ``entries`` to the outbox in this transaction (see
        :meth:`storage.abc.OutboxSession.outbox_append`): one statement on PostgreSQL."""
        sql = self._reader.dialect.outbox
        if sql is None:
            raise NotImplementedError(f"{self._reader.dialect.name} has no outbox")
        outbox.append(self._reader.run, sql, entries)

    def finish(self) -> None:
        """The body is done: send the updates kept pending (see :mod:`storage.sql.statements`)
        before COMMIT (the storage calls it after the body, inside the transaction). Every
        statement of the session sends them first anyway, so no reader ever misses one. A
        backend whose driver can send the last one with its COMMIT, in one round trip, does
        so (``PostgresSession``)."""
        self._writer.flush()

    def discard(self) -> None:
        """Forget the updates kept pending: the storage calls it when the body fails, so a
        rolled-back session holds no flushing runner (a reference back to itself)."""
        self._writer.discard()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: on an exception everything inside it (writes and their
        events) is undone, then re-raised; the transaction goes on. The one way to survive an
        expected failure inside a transaction (see the module)."""
        with self._writer.atomic(True):
            yield
