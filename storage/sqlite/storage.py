"""``SQLiteStorage``: the embedded default backend, on aiosqlite.

The cost that shapes it: an awaited hop to another thread costs far more than a small SQLite
statement. So a transaction is a *synchronous function* run as one unit; the async methods are
thin wrappers that run one such function each. Where that function runs is the ``executor``:

- ``"loop"`` (default): on the event loop's thread, directly on the aiosqlite connection's
  sqlite3 handle. No hop at all; the loop is blocked for the duration of the transaction, which
  for SQLite is typically tens of microseconds.
- ``"thread"``: submitted to the aiosqlite connection's own worker thread, one hop per
  transaction however many statements it runs. Choose it when single transactions are long
  enough that blocking the loop for them would hurt latency elsewhere.

Both keep a single writer: transactions never interleave.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiosqlite

from storage.errors import NotSetUpError, StorageError, TransactionError
from storage.events import Record, WriteResult
from storage.match import MatchExp
from storage.migration import Operation
from storage.schema import RecordType, Schema
from storage.sql_match import quote
from storage.sqlite import ddl, migrate
from storage.sqlite.session import SQLiteSession

T = TypeVar("T")
_NESTED = (
    "a transaction is already running on this storage; use session.savepoint() inside it "
    "instead of starting another"
)
Executor = Literal["loop", "thread"]
_PAGE_SIZES = frozenset(2**n for n in range(9, 17))
DEFAULT_PAGE_SIZE = 1024
"""Page size of a new database file. Smaller than SQLite's 4096 because this engine's
transactions are many and small (a record, a link, a derived value): each commit appends every
page it touched to the WAL, so 1 KiB pages write a quarter of the bytes. Measured on the
summation workload: about 25% less time per transaction; point reads and scans unchanged."""
Match = MatchExp | Mapping[str, Any] | None


class SQLiteStorage:
    """Async entity-relation storage on one SQLite file (or ``":memory:"``).

    >>> storage = SQLiteStorage("app.db")
    >>> await storage.setup(schema)
    >>> user = (await storage.create("User", {"name": "ada"})).record
    >>> await storage.run(lambda tx: tx.update("User", {"id": user["id"]}, {"name": "Ada"}))

    Options: ``executor`` (see the module), ``busy_timeout`` (seconds a transaction waits for
    another process's write lock), ``page_size`` (bytes per page of a *new* database file;
    :data:`DEFAULT_PAGE_SIZE` suits many small transactions, 4096 suits large rows).
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        executor: Executor = "loop",
        busy_timeout: float = 5.0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if executor not in ("loop", "thread"):
            raise ValueError(f"executor must be 'loop' or 'thread', got {executor!r}")
        if page_size not in _PAGE_SIZES:
            raise ValueError(
                f"page_size must be a power of two from 512 to 65536, got {page_size!r}"
            )
        self.path = path
        self.executor: Executor = executor
        self.busy_timeout = busy_timeout
        self.page_size = page_size
        self._connection: aiosqlite.Connection | None = None
        self._schema: Schema | None = None
        self._active = False
        self._active_thread: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        """The schema given to :meth:`setup`."""
        if self._schema is None:
            raise NotSetUpError("SQLiteStorage is not set up: await storage.setup(schema) first")
        return self._schema

    async def setup(self, schema: Schema, install: bool = True) -> None:
        """Open the database and bind ``schema``; with ``install``, create what is missing."""
        if not isinstance(schema, Schema):
            raise TypeError(f"setup() needs a storage.Schema, got {type(schema).__name__}")
        await self._connect()
        if install:
            await self._submit(
                lambda conn: self._in_transaction(conn, True, lambda _: ddl.install(conn, schema))
            )
        else:
            missing = await self._submit(lambda conn: _missing_tables(conn, schema))
            if missing:
                raise NotSetUpError(
                    f"tables missing for {', '.join(missing)}: call setup(schema, install=True)"
                )
            columns = await self._submit(lambda conn: _missing_columns(conn, schema))
            if columns:
                raise NotSetUpError(
                    f"columns missing: {', '.join(columns)} (the model has fields the database "
                    "does not): call setup(schema, install=True) to add them"
                )
        # Bound only once its tables are there: a failed setup leaves the storage unusable.
        self._schema = schema

    async def _connect(self) -> None:
        """Open the connection once (pragmas included); further calls do nothing."""
        if self._connection is None:
            connecting = aiosqlite.connect(
                self.path,
                isolation_level=None,  # transactions are explicit: BEGIN ... COMMIT
                check_same_thread=False,  # the "loop" executor uses the handle on this thread
                cached_statements=1024,
            )
            # A storage that was never closed must not keep the process alive at exit (its
            # committed work is durable either way; WAL recovers the rest).
            worker = getattr(connecting, "_thread", None)
            if worker is not None and not worker.is_alive():
                worker.daemon = True
            self._connection = await connecting
            await self._connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # Only a new database takes the page size (before WAL mode writes its header).
            await self._connection.execute(f"PRAGMA page_size = {self.page_size}")
            await self._connection.execute("PRAGMA journal_mode = WAL")
            await self._connection.execute("PRAGMA synchronous = NORMAL")
            await self._connection.execute("PRAGMA foreign_keys = ON")
            # LIKE is case-sensitive, as in PostgreSQL, so matches mean the same everywhere.
            await self._connection.execute("PRAGMA case_sensitive_like = ON")

    async def close(self) -> None:
        """Close the connection. Further use raises :class:`NotSetUpError`."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> SQLiteStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- model evolution (see storage.migration) ---------------------------------------------

    async def inspect(self) -> dict[str, list[str]]:
        """Every table of the database with its column names (opens the connection; needs no
        schema): what a migration planner compares a model with."""
        await self._connect()
        return await self._submit(
            lambda conn: self._in_transaction(conn, False, lambda c: migrate.tables(c))
        )

    async def peek(self, record: RecordType) -> list[Record]:
        """Every row of ``record`` (all fields), read with ``record`` as the only schema: for
        the bookkeeping a planner reads before the full schema is bound. [] without a table."""
        await self._connect()
        return await self._submit(
            lambda conn: self._in_transaction(conn, False, lambda c: _peek(c, record))
        )

    async def holds_data(self, checks: Sequence[tuple[str, str | None]]) -> list[bool]:
        """For each ``(table, column)``: whether the table has a row where the column is not
        NULL (column None: any row). A missing table or column holds nothing."""
        await self._connect()

        def check(conn: sqlite3.Connection) -> list[bool]:
            present = migrate.tables(conn)
            return [
                table in present
                and (column is None or column in present[table])
                and migrate.holds_data(conn, table, column)
                for table, column in checks
            ]

        return await self._submit(lambda conn: self._in_transaction(conn, False, check))

    async def migrate(
        self,
        schema: Schema,
        operations: Sequence[Operation],
        body: Callable[[SQLiteSession], T],
        guard: Callable[[Callable[[RecordType], list[Record]]], None] | None = None,
    ) -> T:
        """One write transaction: ``guard(peek)`` first (``peek(record_type)`` reads that
        record type's rows as :meth:`peek` does; raise to stop before anything changed), then
        ``operations`` (and whatever else ``schema`` lacks), then ``body(session)`` on
        ``schema`` (a backfill). All of it commits, or none of it: the tables and rows stay as
        they were and the old schema stays bound."""
        if not isinstance(schema, Schema):
            raise TypeError(f"migrate() needs a storage.Schema, got {type(schema).__name__}")
        await self._connect()

        def work(conn: sqlite3.Connection) -> T:
            if guard is not None:
                guard(lambda record: _peek(conn, record))
            migrate.apply(conn, schema, list(operations))
            return body(SQLiteSession(schema, conn))

        result = await self._submit(lambda conn: self._in_transaction(conn, True, work))
        self._schema = schema
        return result

    # -- transactions ------------------------------------------------------------------------

    async def run(self, body: Callable[[SQLiteSession], T], *, write: bool = True) -> T:
        """Run ``body(session)`` as one transaction and return its result.

        The body is synchronous: it runs whole, on one thread, with one hop at most. If it
        raises, the transaction is rolled back and the exception re-raised. ``write=False``
        starts a read transaction (a consistent snapshot) instead of taking the write lock.
        """
        schema = self.schema
        return await self._submit(
            lambda conn: self._in_transaction(conn, write, lambda c: body(SQLiteSession(schema, c)))
        )

    async def _submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            raise NotSetUpError("SQLiteStorage is closed or not set up: await storage.setup()")
        if self._active and self._active_thread == threading.get_ident():
            # A body calling back into the storage: with the "thread" executor this would
            # queue behind the running transaction and wait for it forever.
            raise TransactionError(_NESTED)
        raw: sqlite3.Connection = connection._conn
        if self.executor == "loop":
            return work(raw)
        # One hop into the connection's own thread for the whole unit of work.
        result: T = await connection._execute(work, raw)  # type: ignore[no-untyped-call]
        return result

    def _in_transaction(
        self, conn: sqlite3.Connection, write: bool, work: Callable[[sqlite3.Connection], T]
    ) -> T:
        if self._active:
            raise TransactionError(_NESTED)
        self._active = True
        self._active_thread = threading.get_ident()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StorageError(f"could not begin a transaction on {self.path}: {exc}") from exc
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"SQLite error on {self.path}: {exc}") from exc
                raise
            return result
        finally:
            self._active = False

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


def _peek(conn: sqlite3.Connection, record: RecordType) -> list[Record]:
    if record.name not in migrate.tables(conn):
        return []
    alone = Schema([record])
    return SQLiteSession(alone, conn).find(record.name, None, ["*"], {"id": "asc"})


def _missing_tables(conn: sqlite3.Connection, schema: Schema) -> list[str]:
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return [name for name in schema.records if name not in present]


def _missing_columns(conn: sqlite3.Connection, schema: Schema) -> list[str]:
    """``Record.field`` for every field of the schema its table lacks."""
    missing: list[str] = []
    for name, record in schema.records.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(name)})")}
        wanted = [f.name for f in record.fields]
        if name in schema.links:
            wanted = ["source", "target", *wanted]
        missing.extend(f"{name}.{field}" for field in wanted if field not in present)
    return missing
