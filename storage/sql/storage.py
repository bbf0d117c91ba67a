"""``SQLStorage``: the async face every SQL backend shares.

Setup (install or check the tables), the model-evolution methods (``inspect``, ``peek``,
``holds_data``, ``migrate``), ``run`` and the one-transaction conveniences (``create``,
``update``, ``delete``, ``find``, ``find_one``, ``count``) are the same on every SQL database:
they run neutral work (:mod:`storage.sql.migrate`, :class:`~storage.sql.session.SQLSession`)
through the backend's transaction. A backend subclasses :class:`SQLStorage`, sets
:attr:`~SQLStorage.dialect` and :attr:`~SQLStorage.ddl`, and supplies what only it knows:

- ``async _connect()``: open the database once (later calls do nothing);
- ``async _transaction(write, work)``: run the synchronous ``work(driver)`` as one transaction
  (``BEGIN``/``COMMIT``, rollback on error, retries, error translation), one hop at most;
- ``async close()`` and the ``write_fault`` property;
- optionally ``_session(schema, driver, statements)`` for a session class of its own;
- optionally ``outbox_listen`` and ``outbox_notify`` (wake-ups between processes; by default
  there are none and readers poll).

The outbox (:class:`storage.abc.Outbox`; :mod:`storage.sql.outbox`) is shared too: each
operation is one transaction of the backend's, on the statements its dialect carries.

The statement cache (:class:`~storage.sql.cache.StatementCache`) belongs to the storage: one
per bound schema, made anew when :meth:`SQLStorage.migrate` binds another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from storage.errors import NotSetUpError
from storage.events import Record, WriteResult
from storage.lease import Lease
from storage.match import MatchExp
from storage.migration import Operation
from storage.outbox import OutboxBatch, OutboxPosition, OutboxStart
from storage.schema import RecordType, Schema
from storage.sql import migrate
from storage.sql import outbox as sql_outbox
from storage.sql.cache import StatementCache
from storage.sql.dialect import Dialect
from storage.sql.driver import Driver
from storage.sql.migrate import DDL
from storage.sql.outbox import OWN_TABLES, OutboxSQL
from storage.sql.session import SQLSession

__all__ = ["SQLStorage"]

T = TypeVar("T")
D = TypeVar("D", bound=Driver)
S = TypeVar("S", bound=SQLSession)
Match = MatchExp | Mapping[str, Any] | None


class SQLStorage(Generic[D, S]):
    """What SQL backends share; ``D`` is the backend's driver, ``S`` its session class."""

    dialect: ClassVar[Dialect]
    ddl: ClassVar[DDL]

    def __init__(self) -> None:
        self._schema: Schema | None = None
        # What sessions derive from the bound schema (SQL texts, parsed queries, decoders):
        # this storage's, made anew whenever another schema is bound.
        self._statements = StatementCache()

    # -- what the backend supplies -----------------------------------------------------------

    async def _connect(self) -> None:
        """Open the database once; later calls do nothing."""
        raise NotImplementedError

    async def _transaction(self, write: bool, work: Callable[[D], T]) -> T:
        """Run ``work(driver)`` as one transaction (a write transaction with ``write``)."""
        raise NotImplementedError

    def _session(self, schema: Schema, driver: D, statements: StatementCache) -> S:
        """The session of one transaction on ``driver``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the database. Further use raises :class:`NotSetUpError`."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def schema(self) -> Schema:
        """The schema given to :meth:`setup`."""
        if self._schema is None:
            raise NotSetUpError(
                f"{type(self).__name__} is not set up: await storage.setup(schema) first"
            )
        return self._schema

    async def setup(self, schema: Schema, install: bool = True) -> None:
        """Open the database and bind ``schema``; with ``install``, create what is missing."""
        if not isinstance(schema, Schema):
            raise TypeError(f"setup() needs a storage.Schema, got {type(schema).__name__}")
        await self._connect()
        ddl = self.ddl
        if install:
            await self._transaction(True, lambda d: migrate.install(d.execute, ddl, schema))
        else:
            missing = await self._transaction(
                False, lambda d: migrate.missing_tables(d.execute, ddl, schema)
            )
            if missing:
                raise NotSetUpError(
                    f"tables missing for {', '.join(missing)}: call setup(schema, install=True)"
                )
            columns = await self._transaction(
                False, lambda d: migrate.missing_columns(d.execute, ddl, schema)
            )
            if columns:
                raise NotSetUpError(
                    f"columns missing: {', '.join(columns)} (the model has fields the database "
                    "does not): call setup(schema, install=True) to add them"
                )
        # Bound only once its tables are there: a failed setup leaves the storage unusable.
        self._bind(schema)

    def _bind(self, schema: Schema) -> None:
        if schema is not self._schema:
            self._statements = StatementCache()
        self._schema = schema

    # -- model evolution (see storage.migration) ---------------------------------------------

    async def inspect(self) -> dict[str, list[str]]:
        """Every table of the database with its column names (opens the connection; needs no
        schema): what a migration planner compares a model with."""
        await self._connect()
        tables = await self._transaction(False, lambda d: self.ddl.tables(d.execute))
        return {name: columns for name, columns in tables.items() if name not in OWN_TABLES}

    async def peek(self, record: RecordType) -> list[Record]:
        """Every row of ``record`` (all fields), read with ``record`` as the only schema: for
        the bookkeeping a planner reads before the full schema is bound. [] without a table."""
        await self._connect()
        return await self._transaction(False, lambda d: self._peek(d, record))

    def _peek(self, driver: D, record: RecordType) -> list[Record]:
        if not self.ddl.columns(driver.execute, record.name):
            return []
        alone = Schema([record])
        session = self._session(alone, driver, StatementCache())
        return session.find(record.name, None, ["*"], {"id": "asc"})

    async def holds_data(self, checks: Sequence[tuple[str, str | None]]) -> list[bool]:
        """For each ``(table, column)``: whether the table has a row where the column is not
        NULL (column None: any row). A missing table or column holds nothing."""
        await self._connect()

        def check(driver: D) -> list[bool]:
            present = self.ddl.tables(driver.execute)
            return [
                table in present
                and (column is None or column in present[table])
                and migrate.holds_data(driver.execute, table, column)
                for table, column in checks
            ]

        return await self._transaction(False, check)

    async def migrate(
        self,
        schema: Schema,
        operations: Sequence[Operation],
        body: Callable[[S], T],
        guard: Callable[[Callable[[RecordType], list[Record]]], None] | None = None,
    ) -> T:
        """One write transaction: ``guard(peek)`` first (``peek(record_type)`` reads that
        record type's rows as :meth:`peek` does; raise to stop before anything changed), then
        ``operations`` (and whatever else ``schema`` lacks), then ``body(session)`` on
        ``schema`` (a backfill), then the new non-null fields (refused, with a
        :class:`SchemaError`, where a row still holds no value). All of it commits, or none
        of it: the tables and rows stay as they were and the old schema stays bound."""
        if not isinstance(schema, Schema):
            raise TypeError(f"migrate() needs a storage.Schema, got {type(schema).__name__}")
        await self._connect()
        statements = self._statements if schema is self._schema else StatementCache()

        def work(driver: D) -> T:
            self._lock_migrations(driver)
            if guard is not None:
                guard(lambda record: self._peek(driver, record))
            migrate.apply(driver.execute, self.dialect, self.ddl, schema, list(operations))
            result = _body(self._session(schema, driver, statements), body)
            # New non-null fields last: the body gave the existing rows their values.
            migrate.enforce_non_null(driver.execute, self.ddl, schema)
            return result

        result = await self._transaction(True, work)
        self._schema, self._statements = schema, statements
        return result

    def _lock_migrations(self, driver: D) -> None:
        """Hold the database's migration lock until the transaction ends, before the guard
        reads: two processes migrating at once take turns, and the second's guard sees what
        the first committed. SQLite's write transaction already excludes every other writer."""

    # -- transactions ------------------------------------------------------------------------

    async def run(self, body: Callable[[S], T], *, write: bool = True) -> T:
        """Run ``body(session)`` as one transaction and return its result.

        The body is synchronous: it runs whole, with one hop at most. If it raises, the
        transaction is rolled back and the exception re-raised. ``write=False`` starts a read
        transaction (a consistent snapshot) instead of taking the write lock.
        """
        schema, statements = self.schema, self._statements

        def work(driver: D) -> T:
            return _body(self._session(schema, driver, statements), body)

        return await self._transaction(write, work)

    # -- the async face: one transaction each ------------------------------------------------

    async def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        """Create a record; ``result.record`` is it, ``result.events`` what the write caused."""
        return await self.run(lambda tx: tx.create(name, data))

    async def update(self, name: str, match: Match, data: Mapping[str, Any]) -> WriteResult:
        """Write ``data`` to every record matching ``match``."""
        return await self.run(lambda tx: tx.update(name, match, data))

    async def delete(self, name: str, match: Match) -> WriteResult:
        """Delete every matching record with its links."""
        return await self.run(lambda tx: tx.delete(name, match))

    async def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        """Delete every matching record without an event, in a transaction of its own (one
        statement); returns how many were deleted."""
        return await self.run(lambda tx: tx.delete_internal_where(name, match))

    async def find(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Matching records; without ``attribute_query`` each is just ``{"id": ...}``."""
        return await self.run(
            lambda tx: tx.find(name, match, attribute_query, order_by, limit, offset), write=False
        )

    async def find_one(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        return await self.run(
            lambda tx: tx.find_one(name, match, attribute_query, order_by), write=False
        )

    async def count(self, name: str, match: Match = None) -> int:
        """How many records match."""
        return await self.run(lambda tx: tx.count(name, match), write=False)

    # -- several processes on one database (see storage.lease) -------------------------------

    claim_reads_first: ClassVar[bool] = False
    """Whether :meth:`claim` looks (in a read transaction) before it claims: where a write
    transaction takes a database-wide lock (SQLite), a round with nothing to claim, the usual
    case, then takes none."""

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
        """Lease up to ``limit`` records matching ``match`` whose lease is free, lowest ids
        first (see :meth:`SQLSession.claim`), in a transaction of its own."""
        if self.claim_reads_first and not await self.run(
            lambda tx: tx.any_free(name, match, lease), write=False
        ):
            return []
        return await self.run(
            lambda tx: tx.claim(name, match, lease, limit=limit, fields=fields, values=values)
        )

    # -- the outbox (storage.abc.Outbox; storage.sql.outbox) ---------------------------------

    def _outbox_sql(self) -> OutboxSQL:
        sql = self.dialect.outbox
        if sql is None:
            raise NotImplementedError(f"{type(self).__name__} has no outbox")
        return sql

    async def outbox_install(self) -> None:
        """Create the outbox's tables when missing (one write transaction)."""
        sql = self._outbox_sql()
        await self._connect()
        await self._transaction(True, lambda d: sql_outbox.install(d.execute, sql))

    async def outbox_register(
        self, name: str, *, durable: bool, lease: float = 60.0
    ) -> OutboxStart:
        """Register reader ``name`` (see :class:`storage.abc.Outbox`); where it starts."""
        sql = self._outbox_sql()
        return await self._transaction(
            True, lambda d: sql_outbox.register(d.execute, sql, name, durable, lease)
        )

    async def outbox_store(self, name: str, position: OutboxPosition) -> None:
        """Store reader ``name``'s cursor; :class:`OutboxError` when it is not registered."""
        sql = self._outbox_sql()
        await self._transaction(True, lambda d: sql_outbox.store(d.execute, sql, name, position))

    async def outbox_unregister(self, name: str) -> bool:
        """Forget reader ``name``; whether it was registered."""
        self._outbox_sql()
        return await self._transaction(True, lambda d: sql_outbox.unregister(d.execute, name))

    async def outbox_read(self, after: OutboxPosition, limit: int) -> OutboxBatch:
        """Up to ``limit`` final rows after ``after`` (one read transaction, one statement)."""
        sql = self._outbox_sql()
        return await self._transaction(
            False, lambda d: sql_outbox.read(d.execute, sql, after, limit)
        )

    async def outbox_prune(self) -> int:
        """Delete the rows every registered reader is past; how many."""
        sql = self._outbox_sql()
        return await self._transaction(True, lambda d: sql_outbox.prune(d.execute, sql))

    async def outbox_listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """No signal between processes here: ``wake`` is never called (readers poll)."""

        async def stop() -> None:
            return None

        return stop

    def outbox_notify(self) -> None:
        """No signal between processes here: nothing to send."""


def _body(session: S, body: Callable[[S], T]) -> T:
    """``body(session)``, then the updates it kept pending sent, inside the transaction (before
    COMMIT); when either fails they are dropped (the transaction rolls back), so a failed
    session holds no flushing runner (a reference back to itself)."""
    try:
        result = body(session)
        session.finish()
    except BaseException:
        session.discard()
        raise
    return result
