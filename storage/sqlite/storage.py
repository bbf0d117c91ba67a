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

Locks held by others. Another process (or connection) may hold the database's write lock. In
WAL mode reads never wait for it; ``BEGIN IMMEDIATE`` does (and, outside WAL, a ``COMMIT`` or
a read can). Waiting never blocks the event loop, nor the connection's thread: SQLite's own
busy wait is off (``busy_timeout=0`` on the connection once it is set up), and a transaction
that meets ``SQLITE_BUSY`` anywhere (begin, body or commit) is rolled back and run again whole
after an ``asyncio.sleep`` with jittered exponential backoff (2 ms doubling to 100 ms); other
transactions (reads, in WAL mode) go through meanwhile. Once ``busy_timeout`` seconds have
passed the call raises :class:`StorageBusyError`. Re-running is safe because a body is a
synchronous function of the database alone (the engine builds a new transaction context for
each run); a body must not keep state of its own across runs.

Several processes on one file. Every write transaction begins with the write lock (``BEGIN
IMMEDIATE``), so the write transactions of all processes take turns and each reads what the
previous ones committed: a read-then-write in a body loses nothing, and ``lock=True`` reads
need no lock of their own (``Session.locks_rows`` is False). A process that waits longer than
its ``busy_timeout`` gets :class:`StorageBusyError`, nothing written (``busy_timeout=0``: at
once). Tested with two processes liking one post through the engine (``tests/cluster``).

Faults. Every failure reaches the caller as a :class:`StorageError` with SQLite's real cause:
when SQLite has rolled back by itself (a full disk, an I/O error) no ``ROLLBACK`` is sent, and a
``ROLLBACK`` that fails is noted on the original error, never raised instead of it. A write
that fails because the store cannot write (full, read-only, I/O error, corrupt) is kept as
:attr:`SQLiteStorage.write_fault` until a write commits again. ``setup`` refuses a path that is
a directory, lies in a missing directory, is not an SQLite database, or cannot be written,
with an error naming the path and the fix.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar

import aiosqlite

from storage.errors import NotSetUpError, StorageBusyError, StorageError, TransactionError
from storage.lease import Leader, Listening
from storage.schema import Schema
from storage.sql.cache import StatementCache
from storage.sql.storage import SQLStorage
from storage.sqlite import aio, signals
from storage.sqlite.ddl import SQLITE_DDL
from storage.sqlite.dialect import SQLITE
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
_MEMORY = frozenset({":memory:", ""})
_FIRST_BACKOFF = 0.002
_MAX_BACKOFF = 0.1
# SQLite's primary result codes that say the store itself cannot write, whatever the data.
_WRITE_FAULTS = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)


class SQLiteStorage(SQLStorage[sqlite3.Connection, SQLiteSession]):
    """Async entity-relation storage on one SQLite file (or ``":memory:"``).

    >>> storage = SQLiteStorage("app.db")
    >>> await storage.setup(schema)
    >>> user = (await storage.create("User", {"name": "ada"})).record
    >>> await storage.run(lambda tx: tx.update("User", {"id": user["id"]}, {"name": "Ada"}))

    Options: ``executor`` (see the module), ``busy_timeout`` (seconds a transaction waits for
    another process's write lock before :class:`StorageBusyError`; the event loop keeps
    running meanwhile), ``page_size`` (bytes per page of a *new* database file;
    :data:`DEFAULT_PAGE_SIZE` suits many small transactions, 4096 suits large rows),
    ``max_size`` (bytes the database may grow to; a write beyond it fails as on a full disk,
    ``"database or disk is full"``; None: no limit but the disk's).
    """

    dialect = SQLITE
    ddl = SQLITE_DDL

    def __init__(
        self,
        path: str = ":memory:",
        *,
        executor: Executor = "loop",
        busy_timeout: float = 5.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_size: int | None = None,
    ) -> None:
        if executor not in ("loop", "thread"):
            raise ValueError(f"executor must be 'loop' or 'thread', got {executor!r}")
        if page_size not in _PAGE_SIZES:
            raise ValueError(
                f"page_size must be a power of two from 512 to 65536, got {page_size!r}"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise ValueError(f"busy_timeout must be a number of seconds, got {busy_timeout!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be 0 or more seconds, got {busy_timeout!r}")
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
        ):
            raise ValueError(
                f"max_size must be a positive number of bytes or None, got {max_size!r}"
            )
        super().__init__()
        self.path = path
        self.executor: Executor = executor
        self.busy_timeout = busy_timeout
        self.page_size = page_size
        self.max_size = max_size
        self._write_fault: str | None = None
        self._connection: aiosqlite.Connection | None = None
        self._handle: sqlite3.Connection | None = None  # its sqlite3 handle (storage.sqlite.aio)
        self._active = False
        self._active_thread: int | None = None
        self._leaders: list[signals.FileLeader] = []

    # -- several processes on one file (see storage.lease and storage.sqlite.signals) --------

    claim_reads_first = True  # a write takes the file's lock: look before claiming

    def _database_key(self) -> str | None:
        """The file this storage is on (None: in memory, this storage's alone)."""
        if self.path in _MEMORY or self.path.startswith("file::memory:"):
            return None
        return os.path.realpath(self.path)

    async def notify(self, channel: str) -> None:
        """Wake the listeners of ``channel`` on this database file in this process (other
        processes on the file are not told: their polling finds the work)."""
        signals.notify(self._database_key() or f"memory:{id(self)}", channel)

    async def listen(self, channel: str, wake: Callable[[], None]) -> Listening:
        """Call ``wake()`` on this loop when ``channel`` is notified in this process."""
        return signals.Listener(self._database_key() or f"memory:{id(self)}", channel, wake)

    def leader(self, name: str) -> Leader:
        """Leadership of ``name`` among the processes on this file: an ``flock`` on
        ``<path>.lead-<name>`` (an in-memory database always leads)."""
        leader = signals.FileLeader(self._database_key(), name)
        self._leaders.append(leader)
        return leader

    # -- lifecycle ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the connection once (path checks and pragmas included) and find out whether
        the file can be written (a read-only file opens and reads fine: better now than at the
        first write); further calls do nothing. A failure closes the connection again."""
        if self._connection is not None:
            return
        self._connection = await self._open()
        self._handle = aio.handle(self._connection)
        try:
            await self._transaction(True, _write_header)
        except BaseException:
            await self.close()
            raise

    async def _open(self) -> aiosqlite.Connection:
        """Connect and set the connection up; a bad path is a :class:`StorageError` naming it."""
        self._check_path()
        try:
            # A daemon worker thread: a storage that was never closed must not keep the process
            # alive at exit (its committed work is durable either way; WAL recovers the rest).
            connection = await aio.connect(
                self.path,
                isolation_level=None,  # transactions are explicit: BEGIN ... COMMIT
                check_same_thread=False,  # the "loop" executor uses the handle on this thread
                cached_statements=1024,
            )
        except sqlite3.Error as exc:
            raise StorageError(self._explain(exc)) from exc
        try:
            # These run in the connection's thread: SQLite may wait there for a lock.
            await connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # Only a new database takes the page size (before WAL mode writes its header).
            await connection.execute(f"PRAGMA page_size = {self.page_size}")
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = NORMAL")
            await connection.execute("PRAGMA foreign_keys = ON")
            # LIKE is case-sensitive, as in PostgreSQL, so matches mean the same everywhere.
            await connection.execute("PRAGMA case_sensitive_like = ON")
            if self.max_size is not None:
                async with connection.execute("PRAGMA page_size") as cursor:
                    row = await cursor.fetchone()
                page = int(row[0]) if row else self.page_size
                await connection.execute(f"PRAGMA max_page_count = {max(1, self.max_size // page)}")
            # From here a transaction that meets a lock sleeps on the loop and runs again
            # (_transaction): SQLite must not wait on the loop, nor hold the connection's thread.
            await connection.execute("PRAGMA busy_timeout = 0")
        except BaseException as exc:
            await connection.close()
            if isinstance(exc, sqlite3.Error):
                if _code(exc) == sqlite3.SQLITE_BUSY:
                    raise StorageBusyError(self.path, self.busy_timeout, self.busy_timeout) from exc
                raise StorageError(self._explain(exc)) from exc
            raise
        return connection

    def _check_path(self) -> None:
        if self.path in _MEMORY:
            return
        if os.path.isdir(self.path):
            raise StorageError(
                f"{self.path} is a directory, not a database file: give the path of a database "
                "file (a missing file is created)"
            )
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise StorageError(
                f"cannot create the database {self.path}: its directory {parent} does not exist "
                "(create it first, or choose another path)"
            )

    def _explain(self, error: sqlite3.Error) -> str:
        """The message of the :class:`StorageError` raised for ``error``: what SQLite said,
        and for the faults of the store itself what to do about them."""
        code = _code(error)
        if code == sqlite3.SQLITE_NOTADB:
            return (
                f"{self.path} is not an SQLite database (SQLite: {error}): point SQLiteStorage "
                "at a database file, or at a path that does not exist yet to create one"
            )
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            name = os.path.basename(self.path)
            return (
                f"{self.path} cannot be written by this process (SQLite: {error}): give the "
                f"process write access to the file and to its directory (SQLite writes "
                f"{name}-wal and {name}-shm beside it)"
            )
        if code == sqlite3.SQLITE_FULL:
            return (
                f"cannot write to {self.path}: {error} (the disk, or the storage's max_size, "
                "is full); free space and try again: nothing of this transaction was written"
            )
        if code == sqlite3.SQLITE_CANTOPEN:
            return f"cannot open the database {self.path} (SQLite: {error})"
        return f"SQLite error on {self.path}: {error}"

    @property
    def write_fault(self) -> str | None:
        """Why the store cannot write, or None.

        Set when a write fails because of the store itself (SQLite's words: ``"database or disk
        is full"``, ``"attempt to write a readonly database"``, ``"disk I/O error"``, ...),
        cleared by the next write that commits. The server's ``/health`` reports it."""
        return self._write_fault

    async def close(self) -> None:
        """Close the connection and give up this storage's leaderships. Further use raises
        :class:`NotSetUpError`."""
        leaders, self._leaders = self._leaders, []
        for leader in leaders:
            await leader.resign()
        connection, self._connection, self._handle = self._connection, None, None
        if connection is not None:
            await connection.close()

    # -- transactions (the rest of the async face is SQLStorage's) ----------------------------

    def _session(
        self, schema: Schema, conn: sqlite3.Connection, statements: StatementCache
    ) -> SQLiteSession:
        """The session of one transaction on ``conn``. A subclass may make another (the
        conformance tests run the neutral layer with standard-SQL rendering on SQLite)."""
        return SQLiteSession(schema, conn, statements)

    async def _transaction(self, write: bool, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` as one transaction; run it again whole while the database is busy, for
        up to ``busy_timeout`` seconds, sleeping on the loop between runs."""
        started = time.monotonic()
        backoff = _FIRST_BACKOFF
        while True:
            try:
                return await self._submit(lambda conn: self._in_transaction(conn, write, work))
            except _Busy as busy:
                waited = time.monotonic() - started
                left = self.busy_timeout - waited
                if left <= 0:
                    raise StorageBusyError(self.path, waited, self.busy_timeout) from busy.error
                # Jitter: writers of several processes that met the same lock do not retry in
                # step.
                await asyncio.sleep(min(left, random.uniform(backoff / 2, backoff)))
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection, raw = self._connection, self._handle
        if connection is None or raw is None:
            raise NotSetUpError("SQLiteStorage is closed or not set up: await storage.setup()")
        if self._active and self._active_thread == threading.get_ident():
            # A body calling back into the storage: with the "thread" executor this would
            # queue behind the running transaction and wait for it forever.
            raise TransactionError(_NESTED)
        if self.executor == "loop":
            return work(raw)
        # One hop into the connection's own thread for the whole unit of work.
        return await aio.call(connection, work, raw)

    def _in_transaction(
        self, conn: sqlite3.Connection, write: bool, work: Callable[[sqlite3.Connection], T]
    ) -> T:
        if self._active:
            raise TransactionError(_NESTED)
        self._active = True
        self._active_thread = threading.get_ident()
        try:
            try:
                if conn.in_transaction:
                    # A rollback that failed earlier left a transaction open: end it first.
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                _roll_back(conn, exc)
                error = _sqlite_error(exc)
                if error is None:
                    raise
                code = _code(error)
                if code == sqlite3.SQLITE_BUSY:
                    raise _Busy(error) from exc
                if code in _WRITE_FAULTS:
                    # The store's fault, not the body's: whatever the body (a computation)
                    # wrapped it in, the caller gets SQLite's reason as a StorageError.
                    if write:
                        self._write_fault = str(error)
                    raise StorageError(self._explain(error)) from exc
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(self._explain(exc)) from exc
                raise
            if write:
                self._write_fault = None
            return result
        finally:
            self._active = False


class _Busy(Exception):
    """SQLite answered SQLITE_BUSY inside a transaction, which was rolled back: run it again."""

    def __init__(self, error: sqlite3.Error):
        super().__init__(str(error))
        self.error = error


def _code(error: sqlite3.Error) -> int:
    """SQLite's primary result code of ``error`` (0 when it did not come from SQLite)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else 0


def _sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    """The SQLite error behind ``exc``: itself, or one it was raised from (a computation wraps
    the error of a read it made). None when SQLite had no part in it."""
    current: BaseException | None = exc
    for _ in range(16):  # chains are short; a cycle must not loop forever
        if current is None:
            return None
        if isinstance(current, sqlite3.Error):
            return current
        current = current.__cause__ or current.__context__
    return None


def _roll_back(conn: sqlite3.Connection, failure: BaseException) -> None:
    """End a failed transaction without hiding why it failed."""
    if not conn.in_transaction:
        return  # SQLite rolled back by itself (a full disk, an I/O error): nothing to end
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        failure.add_note(f"the ROLLBACK after this error failed too: {exc}")


def _write_header(conn: sqlite3.Connection) -> None:
    """Write the header's ``user_version`` back unchanged: a real write, which SQLite refuses
    on a file this process cannot write."""
    row = conn.execute("PRAGMA user_version").fetchone()
    conn.execute(f"PRAGMA user_version = {int(row[0])}")
