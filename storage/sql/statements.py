"""The statements every write is made of: savepoints, running a statement with its constraint
failures turned into storage errors, and the read-back of written values (the INSERT and
UPDATE texts are the planner's, remembered per record and columns).

:class:`Statements` holds the state of one transaction's writes; :class:`~storage.sql.links.Links`
and :class:`~storage.sql.writer.Writer` build on it. Backend-neutral: the texts come from the
dialect and run on the driver interface.

Write-behind of updates by id (:meth:`Statements.defer`), where the dialect says it pays
(``Dialect.defers_updates``: PostgreSQL, whose every statement is a round trip; not SQLite,
where a statement costs less than keeping it pending). An UPDATE of one row by its id whose
columns no constraint can refuse (none ``non_null``, none in a unique index, its fields or its
``where``) is kept pending instead of sent, merged with the row's earlier pending UPDATE (later
values win; columns in the order first written, so a sequence of writes repeats its statement
texts and their prepared plans), and sent as one UPDATE per row (:meth:`Statements.flush`)
before anything that could see or depend on it:

- every statement run through ``run`` (reads of any table, deletes, updates not deferred,
  ``UPDATE ... RETURNING`` of running totals, savepoints, the outbox): while updates are
  pending ``run`` is a flushing runner, swapped back to the driver's own when none are;
- the storage's COMMIT (``SQLStorage`` calls :meth:`~storage.sql.session.SQLSession.finish`
  after the body, inside the transaction: a failure there rolls it back as the body's would;
  where the driver can, the last one goes in the COMMIT's round trip, its failure the
  COMMIT's);
- a savepoint's RELEASE (flushed inside it, so a failure rolls the savepoint back); a
  savepoint's rollback *discards* what is pending: every pending update was made inside it, as
  its SAVEPOINT flushed what was there before.

The one statement that does not flush is an INSERT of a record's own row into a table with no
pending row (``Writer._insert_row``, ``insert_internal``): such a row has no foreign key (only
link tables do, and their INSERTs flush), and a unique or NOT NULL constraint of its table
sees only its own table's rows. Why only constraint-free columns: a deferred UPDATE then cannot
fail on its own (its values were validated and encoded when the write was made, and no
constraint covers its columns), so every error a write can raise is raised by the write itself,
where the caller's ``try`` or savepoint sees it; a conflict with a concurrent transaction
(PostgreSQL) voids the whole run wherever it is met. The order in which the transaction takes
row locks is unchanged: every statement that could lock a row sends the pending UPDATEs first
(an INSERT of a new row locks no existing one; the engine reads a row ``FOR UPDATE`` before it
writes it anyway). What is saved is statements: computations writing one row several times (a
StateMachine step, then a Custom) between reads send it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from storage.errors import NonNullViolationError, StorageError, UniqueViolationError
from storage.events import MutationEvent, Record
from storage.sql.cache import SHAPES_KEPT, StatementCache
from storage.sql.dialect import Dialect
from storage.sql.driver import Cursor, Execute
from storage.sql.plans import Planner
from storage.sql.reader import Reader

_NOTHING: AbstractContextManager[None] = nullcontext()  # reusable: enters and exits as nothing


class Statements:
    """Synchronous write statements over one connection; events go to ``events`` in order.

    Made once per transaction: ``__slots__`` keep that cheap (it is on every write's path)."""

    __slots__ = (
        "_cache",
        "_direct",
        "_inserted_id",
        "_pending",
        "_savepoints",
        "_whole",
        "dialect",
        "events",
        "planner",
        "reader",
        "run",
        "schema",
    )

    def __init__(self, reader: Reader, events: list[MutationEvent]) -> None:
        dialect = reader.dialect
        cache = reader._cache
        self.schema = reader.schema
        self.run: Execute = reader.run
        self.dialect: Dialect = dialect
        self.reader = reader
        self.events = events
        self._direct: Execute = reader.run  # the driver's own runner (never flushes)
        # Pending updates by (record, id): encoded values and values as given (for an error's
        # message), each by column in the order first written (see the module docstring).
        self._pending: dict[tuple[str, Any], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._savepoints = 0
        # Any failure aborts the transaction and none needs a statement after it (see
        # Dialect.names_missing_reference): a write is whole without a savepoint of its own.
        self._whole = dialect.failed_statement_aborts and dialect.names_missing_reference
        self._inserted_id = dialect.inserted_id
        self._cache: StatementCache = cache
        planner = cache.planner
        if planner is None:  # one per storage memory: it derives from schema and dialect alone
            planner = cache.planner = Planner(reader.schema, dialect, cache)
        self.planner: Planner = planner

    def atomic(self, needed: bool = True) -> AbstractContextManager[None]:
        """A savepoint around a multi-statement write: it happens whole or not at all (not
        ``needed``: nothing, and no generator made for it)."""
        return self._savepoint() if needed else _NOTHING

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"w{self._savepoints}"
        events_before = len(self.events)
        self.run(f"SAVEPOINT {name}", ())  # (flushes what is pending: none is inside it)
        try:
            yield
            self.flush()  # inside: an UPDATE that fails rolls the savepoint back
        except BaseException:
            self.discard()  # made inside the savepoint: undone with it
            self.run(f"ROLLBACK TO SAVEPOINT {name}", ())
            self.run(f"RELEASE SAVEPOINT {name}", ())
            del self.events[events_before:]
            raise
        finally:
            self._savepoints -= 1
        self.run(f"RELEASE SAVEPOINT {name}", ())

    def _execute(
        self,
        name: str,
        sql: str,
        params: Sequence[Any],
        values: Mapping[str, Any],
        direct: bool = False,
    ) -> Cursor:
        """Run a write statement, its constraint failures as storage errors; ``direct``: on
        the driver's own runner, flushing nothing (see the module docstring for when)."""
        try:
            return (self._direct if direct else self.run)(sql, params)
        except self.dialect.integrity_errors as exc:
            raise self._integrity_error(name, exc, values) from None

    # -- write-behind of updates by id (see the module docstring) ----------------------------

    def deferrable(self, name: str, columns: tuple[str, ...]) -> bool:
        """Whether an UPDATE of ``columns`` of a ``name`` row can be kept pending: the dialect
        defers updates (``Dialect.defers_updates``) and no column is ``non_null`` or named by a
        unique index (its fields or its ``where``). Remembered."""
        if not self.dialect.defers_updates:
            return False
        key = (name, columns)
        memory = self._cache.deferrable
        known = memory.get(key)
        if known is None:
            if len(memory) >= SHAPES_KEPT:  # column sets come from callers' payloads
                memory.clear()
            fields = self.schema.fields(name)
            constrained = {f for f, field in fields.items() if field.non_null}
            for index in self.schema.record(name).indexes:
                if index.unique:
                    constrained.update(index.fields)
                    constrained.update(field for field, _ in index.where)
            known = memory[key] = constrained.isdisjoint(columns)
        return known

    def defer(
        self,
        name: str,
        record_id: Any,
        columns: tuple[str, ...],
        params: Sequence[Any],
        values: Mapping[str, Any],
    ) -> None:
        """Keep ``UPDATE name SET columns = params WHERE id = record_id`` pending, merged into
        the row's pending update (``deferrable`` must have said yes)."""
        key = (name, record_id)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = ({}, {})
            if len(self._pending) == 1:
                self.run = self.reader.run = self._flushing  # every other statement flushes
        encoded, given = found
        for column, param in zip(columns, params, strict=True):
            encoded[column] = param
            given[column] = values[column]

    def pending_in(self, name: str) -> bool:
        """Whether a row of ``name`` has an update pending."""
        return any(key[0] == name for key in self._pending)

    def flush(self, hold: Callable[[str, Sequence[Any]], bool] | None = None) -> None:
        """Send every pending update, one UPDATE per row, in the order the rows were first
        written; nothing is pending afterwards (even when one fails). ``hold``: offered the
        last one, to go with the COMMIT that follows (see ``SQLSession.finish``); it says
        whether it kept it (else it is sent here)."""
        pending = self._pending
        if not pending:
            return
        self.discard()
        update_sql = self.planner.update_sql
        last = len(pending)
        for count, ((name, record_id), (encoded, given)) in enumerate(pending.items(), 1):
            sql = update_sql(name, tuple(encoded))
            params = [*encoded.values(), record_id]
            if count == last and hold is not None and hold(sql, params):
                return
            self._execute(name, sql, params, given, direct=True)

    def discard(self) -> None:
        """Forget every pending update (a savepoint or transaction rolling back)."""
        if self._pending:
            self._pending = {}
        self.run = self.reader.run = self._direct

    def _flushing(self, sql: str, params: Sequence[Any]) -> Cursor:
        """``run`` while updates are pending: send them, then the statement."""
        self.flush()
        return self._direct(sql, params)

    def _unique_name(self, name: str, fields: tuple[str, ...]) -> str | None:
        """The declared name of ``name``'s unique index over exactly ``fields``, if it has one."""
        try:
            record = self.schema.record(name)
        except StorageError:
            return None
        for index in record.indexes:
            if index.unique and index.name and set(index.fields) == set(fields):
                return index.name
        return None

    def _integrity_error(
        self, name: str, exc: BaseException, values: Mapping[str, Any]
    ) -> StorageError:
        """The storage error for a constraint failure of a write to ``name``."""
        violation = self.dialect.violation(exc)
        if violation.kind == "unique":
            shown = {f: values[f] for f in violation.fields if f in values}
            return UniqueViolationError(
                name, violation.fields, shown or None, self._unique_name(name, violation.fields)
            )
        if violation.kind == "non-null" and violation.fields:
            return NonNullViolationError(violation.table or name, violation.fields[0])
        return StorageError(
            f"{name}: the write violates a database constraint ({violation.message})",
            record=name,
        )

    def _plain(self, name: str, encoded: Mapping[str, Any]) -> Record:
        # Decode the encoded form, so that events and results agree exactly with what a read
        # returns (json normalised, timestamps in UTC).
        if not encoded:
            return {}
        columns = tuple(encoded)
        key = (name, columns)
        decoders = self._cache.plains.get(key)
        if decoders is None:
            found = self.reader._decoders(name, columns)
            # All-identity columns (strings, numbers) need no decoding at all.
            decoders = self._cache.plains[key] = found if any(found) else ()
        if not decoders:
            return dict(encoded)
        return {
            k: v if decoder is None else decoder(v)
            for (k, v), decoder in zip(encoded.items(), decoders, strict=True)
        }
