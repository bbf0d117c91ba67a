"""The statements every write is made of: savepoints, running a statement with its constraint
failures turned into storage errors, and the read-back of written values (the INSERT and
UPDATE texts are the planner's, remembered per record and columns).

:class:`Statements` holds the state of one transaction's writes; :class:`~storage.sql.links.Links`
and :class:`~storage.sql.writer.Writer` build on it. Backend-neutral: the texts come from the
dialect and run on the driver interface.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from storage.errors import NonNullViolationError, StorageError, UniqueViolationError
from storage.events import MutationEvent, Record
from storage.sql.cache import StatementCache
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
        "_inserted_id",
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
        self.run(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException:
            self.run(f"ROLLBACK TO SAVEPOINT {name}", ())
            self.run(f"RELEASE SAVEPOINT {name}", ())
            del self.events[events_before:]
            raise
        finally:
            self._savepoints -= 1
        self.run(f"RELEASE SAVEPOINT {name}", ())

    def _execute(
        self, name: str, sql: str, params: Sequence[Any], values: Mapping[str, Any]
    ) -> Cursor:
        try:
            return self.run(sql, params)
        except self.dialect.integrity_errors as exc:
            raise self._integrity_error(name, exc, values) from None

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

    def _insert(self, name: str, values: Mapping[str, Any]) -> Any:
        sql = self.planner.insert_sql(name, tuple(values))
        return self._inserted_id(self._execute(name, sql, list(values.values()), values))

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
