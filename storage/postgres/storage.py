"""``PostgresStorage``: the backend for applications that outgrow one SQLite file.

Execution model (measured in ``benchmarks/pg_driver.py``): asyncpg, and a transaction body that
is a synchronous function run on the event loop through a greenlet bridge (:mod:`.bridge`):
each statement switches to the loop, which awaits it; no thread hop, and other tasks run while
the server works. Several transactions run at once, one per pooled connection (``pool_size``);
a transaction waits for a free connection when all are in use.

Transactions: READ COMMITTED for writes, REPEATABLE READ READ ONLY for reads (every statement of
a read sees one snapshot, as on SQLite). ``Session.savepoint()`` is SAVEPOINT / ROLLBACK TO.
After a failed statement PostgreSQL refuses the rest of the transaction, so an expected failure
must run under a savepoint.

Retry. A body is run again whole, on a fresh transaction, when :meth:`PostgresStorage.retry_delay`
says so:

- a serialization failure or a deadlock (SQLSTATE 40001, 40P01), met by any statement of the
  body or by its COMMIT, whatever the body made of the error (a computation that wrapped or
  caught it included): up to ``attempts`` runs in all (default 8), with jittered exponential
  backoff between them (:data:`FIRST_BACKOFF` doubling up to :data:`MAX_BACKOFF`, each wait
  drawn uniformly below its cap, so conflicting processes do not retry in step). When the last
  run conflicts too the call raises :class:`~storage.errors.ConflictError` naming the attempts;
- a prepared statement made stale by DDL on another connection (once, the connection's
  statements forgotten).

Re-running is safe because a body is a synchronous function of the database alone that does
no I/O: each run gets a new session (and the engine a new transaction context, so no cache,
event or side-effect intent of a failed run survives it), and whatever the caller does with
the result (publishing events, starting side effects) happens once, after the run that
committed.

Isolation and several processes. Write transactions run READ COMMITTED (``isolation=
"serializable"`` makes them SERIALIZABLE). Under READ COMMITTED each statement reads what was
committed when it began, so a body that reads a row and writes what it derived from it must lock
the row first: :meth:`Session.snapshot` with ``lock=True`` is ``SELECT ... FOR UPDATE`` here (the
engine's StateMachine, Custom and Transform read their host that way; the aggregates apply their
deltas in one atomic UPDATE, which takes the row lock itself). An update or delete reads the
rows it writes that way too, so its events' old values are the rows as it changed them (a
filtered view's membership and the deltas are judged from them). After the lock, every later
statement of the body sees what earlier holders of the lock committed, which is why a computation
reading many rows (a Custom over a collection) stays right without SERIALIZABLE: its host is locked
before it reads. SERIALIZABLE would not help against READ COMMITTED writers anyway (PostgreSQL
checks serializability only among SERIALIZABLE transactions); choose it for all writes, with
``isolation="serializable"``, when application code (a ``resolve``, a body of ``transact``) reads
rows no host lock covers and writes what it derived: conflicts then come back as retries (measured
with 8 connections on one hot row: 307-341 commits/s, against 660-897 with a row lock and
1,191-1,561 with an atomic update under READ COMMITTED).

Faults. A write that fails because of the store itself (disk full, I/O, a read-only or
shutting-down server, a lost connection) is kept as :attr:`PostgresStorage.write_fault` until
a write commits again. Connection failures at ``setup`` (no server, refused credentials, no such
database) and a missing driver are one :class:`StorageError` naming host, port, database and
user, never the password.

Outbox (:class:`storage.abc.Outbox`, statements in :mod:`.outbox`): wake-ups between
processes are the storage's own LISTEN/NOTIFY (:meth:`PostgresStorage.listen`,
:meth:`PostgresStorage.notify`, :mod:`.signals`) on the channel ``outbox`` of the schema:
:meth:`PostgresStorage.outbox_listen` registers on the storage's one listening connection
(reopened with backoff when it drops, every listener then woken once), and
:meth:`~PostgresStorage.outbox_notify` has the notifier send ``pg_notify`` *after* the commit,
never inside the writing transaction (a ``pg_notify`` in every transaction cut commit
throughput by 35-43%: it takes a global lock at commit), coalesced. A notification is a hint;
readers poll slowly as well, so a lost one (or a lost connection) delays the stream by at most
the poll interval.

The driver is imported when the storage is set up, not when this module is: ``from storage
import PostgresStorage`` works without the ``postgres`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from storage.errors import (
    ConflictError,
    LockTimeoutError,
    NotSetUpError,
    StorageError,
    TransactionError,
)
from storage.lease import Leader, Listening
from storage.match import MatchExp
from storage.outbox import OutboxBatch, OutboxPosition
from storage.postgres import errors as pg_errors
from storage.postgres.address import Address
from storage.postgres.ddl import POSTGRES_DDL
from storage.postgres.dialect import POSTGRES
from storage.postgres.outbox import POSTGRES_OUTBOX
from storage.postgres.session import PostgresSession
from storage.schema import Schema
from storage.sql import outbox as sql_outbox
from storage.sql.cache import StatementCache
from storage.sql.storage import SQLStorage

if TYPE_CHECKING:
    from storage.postgres.connection import Connection, Pool
    from storage.postgres.signals import AdvisoryLeader, Listeners, Notifier

T = TypeVar("T")
log = logging.getLogger("storage.postgres")
_OUTBOX_CHANNEL = "outbox"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
Isolation = Literal["read committed", "serializable"]
_BEGIN_WRITE: dict[str, str] = {
    "read committed": "BEGIN ISOLATION LEVEL READ COMMITTED",
    "serializable": "BEGIN ISOLATION LEVEL SERIALIZABLE",
}
DEFAULT_ATTEMPTS = 8
"""Runs of a body that keeps meeting serialization failures or deadlocks, the first included."""
FIRST_BACKOFF = 0.002
"""Cap of the wait before the second run (seconds); doubled for each run after it."""
MAX_BACKOFF = 0.2
"""Largest cap of one wait between runs (seconds)."""
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_STALE_STATEMENT_RETRIES = 1
_DRIVER_MODULES = frozenset({"asyncpg", "greenlet"})
_NESTED = (
    "a transaction is already running in this body; use session.savepoint() inside it "
    "instead of starting another"
)


class PostgresStorage(SQLStorage["Connection", PostgresSession]):
    """Async entity-relation storage on one PostgreSQL database.

    >>> storage = PostgresStorage("postgresql://app@127.0.0.1:5432/app", pool_size=8)
    >>> await storage.setup(schema)

    Options: ``pool_size`` (connections, and so transactions at once), ``schema`` (the
    PostgreSQL schema holding the tables, created when missing; default: the server's
    ``search_path``), ``connect_timeout`` (seconds to open one connection),
    ``concurrent_writes``, ``isolation`` of write transactions (``"read committed"``, the
    default, or ``"serializable"``; see the module), ``attempts`` (runs of a body that
    keeps conflicting before :class:`~storage.errors.ConflictError`, at least 1) and
    ``lock_timeout`` (seconds a statement of the pool's connections waits for a lock another
    transaction holds, PostgreSQL's ``lock_timeout`` set on each connection as it opens; then
    the transaction is rolled back and the call raises
    :class:`~storage.errors.LockTimeoutError`; None, the default: wait as long as it takes,
    the server's own setting).

    Write transactions of one storage run one at a time, as on SQLite, unless
    ``concurrent_writes=True``. Reads always run at once, up to ``pool_size``. The lock is
    this process's only: what keeps several writers right, in one process or many, is the
    engine's locked host reads, atomic deltas and the retries of this storage (see the
    module). It stays the default because application bodies (a ``resolve`` reading a
    balance, then writing) may read and write without a lock, and under READ COMMITTED two
    of them at once lose one's update; one process's writes taking turns keeps single-process
    applications as strict as on SQLite. Several processes on one database are not covered by
    it: there, use ``isolation="serializable"`` for such bodies.
    """

    dialect = POSTGRES
    ddl = POSTGRES_DDL

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        schema: str | None = None,
        connect_timeout: float = 10.0,
        concurrent_writes: bool = False,
        isolation: Isolation = "read committed",
        attempts: int = DEFAULT_ATTEMPTS,
        lock_timeout: float | None = None,
    ) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(
                f"pool_size must be a positive number of connections, got {pool_size!r}"
            )
        if schema is not None and (not isinstance(schema, str) or not _SCHEMA_NAME.match(schema)):
            raise ValueError(
                f"schema must be a PostgreSQL schema name (letters, digits and '_', at most 63, "
                f"not starting with a digit), got {schema!r}"
            )
        if isolation not in _BEGIN_WRITE:
            raise ValueError(
                f"isolation must be 'read committed' or 'serializable', got {isolation!r}"
            )
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(
                f"attempts must be a positive number of runs (1: never run a body again), "
                f"got {attempts!r}"
            )
        if lock_timeout is not None and (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not 0.001 <= lock_timeout < 2_000_000
        ):
            raise ValueError(
                f"lock_timeout must be None (wait as long as it takes) or seconds from 0.001 "
                f"to 2,000,000, got {lock_timeout!r}"
            )
        super().__init__()
        self.address = Address(dsn)
        self.dsn = dsn
        self.pool_size = pool_size
        self.schema_name = schema
        self.connect_timeout = connect_timeout
        self.concurrent_writes = concurrent_writes
        self.isolation: Isolation = isolation
        self.attempts = attempts
        self.lock_timeout = lock_timeout
        self.conflicts = 0
        """Runs of a body that met a serialization failure or deadlock, since the storage was
        made (each was rolled back and run again, or given up as :class:`ConflictError`)."""
        self._writes = asyncio.Lock()
        self._pool: Pool | None = None
        self._write_fault: str | None = None
        self._notifier: Notifier | None = None
        self._listeners: Listeners | None = None
        self._leaders: list[AdvisoryLeader] = []

    def _lock_migrations(self, driver: Connection) -> None:
        """A transaction-scoped advisory lock per PostgreSQL schema: READ COMMITTED lets two
        migrations read the same old manifest, and the second would then fail on the first's
        DDL ("column already exists") instead of planning again."""
        driver.execute(
            "SELECT pg_advisory_xact_lock(hashtext('interaqt:migrate:' || current_schema()))"
        )

    def __repr__(self) -> str:
        return f"PostgresStorage({self.address}, pool_size={self.pool_size})"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def write_fault(self) -> str | None:
        """Why the store cannot write (PostgreSQL's words), or None; cleared by the next write
        that commits. Read without touching the database (``/health``)."""
        return self._write_fault

    async def _connect(self) -> None:
        """Open the pool's first connection (and create ``schema`` when given); further
        calls do nothing. Every failure is one :class:`StorageError` naming the server."""
        if self._pool is not None:
            return
        driver = _driver(self.address)
        pool: Pool = driver.Pool(
            self.dsn,
            self.address,
            self.pool_size,
            self.schema_name,
            self.connect_timeout,
            lock_timeout=self.lock_timeout,
        )
        first = await pool.open_one()
        try:
            if self.schema_name is not None:
                await first.raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"')
        except BaseException:
            await first.raw.close()
            raise
        pool.adopt(first)
        self._pool = pool

    async def close(self) -> None:
        """Close every connection (the pool's, and those of notifications, listeners,
        leaderships, which gives the leaderships up). Further use
        raises :class:`NotSetUpError`."""
        notifier, self._notifier = self._notifier, None
        listeners, self._listeners = self._listeners, None
        leaders, self._leaders = self._leaders, []
        if notifier is not None:
            await notifier.close()
        if listeners is not None:
            await listeners.close()
        for leader in leaders:
            await leader.resign()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- several processes on one database (see storage.lease, storage.postgres.signals) ----

    async def _open_dedicated(self) -> Any:
        """A new raw connection outside the pool (search_path set), for a notifier, the
        listeners or a leadership."""
        await self._connect()
        assert self._pool is not None
        return (await self._pool.open_one()).raw

    async def notify(self, channel: str) -> None:
        """Schedule a NOTIFY of ``channel`` for every process: sent from a dedicated
        connection after the caller's commit, coalesced (see :mod:`.signals`)."""
        from storage.postgres.signals import Notifier

        if self._pool is None:
            raise NotSetUpError("PostgresStorage is not set up: await storage.setup(schema) first")
        if self._notifier is None:
            self._notifier = Notifier(self._open_dedicated, self.schema_name)
        self._notifier.notify(channel)

    async def listen(self, channel: str, wake: Callable[[], None]) -> Listening:
        """LISTEN for ``channel`` on this storage's listening connection; ``wake()`` runs on
        this loop at each notification (and once after the connection was reopened)."""
        from storage.postgres.signals import Listeners

        if self._pool is None:
            raise NotSetUpError("PostgresStorage is not set up: await storage.setup(schema) first")
        if self._listeners is None:
            self._listeners = Listeners(self._open_dedicated, self.schema_name)
        return await self._listeners.add(channel, wake)

    def leader(self, name: str) -> Leader:
        """Leadership of ``name`` among every process on this database and schema: a
        session-level advisory lock on a dedicated connection (see :mod:`.signals`)."""
        from storage.postgres.signals import AdvisoryLeader

        leader = AdvisoryLeader(self._open_dedicated, self.schema_name, name)
        self._leaders.append(leader)
        return leader

    # -- transactions ------------------------------------------------------------------------

    def retry_delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before running a failed body again (``attempt`` runs so far), or
        None to give up: a conflict (serialization failure, deadlock) while fewer than
        ``attempts`` runs were made, after a jittered wait (uniform below a cap that starts
        at :data:`FIRST_BACKOFF` and doubles up to :data:`MAX_BACKOFF`); a stale prepared
        statement once, at once."""
        if isinstance(error, _Conflict):
            if attempt >= self.attempts:
                return None
            cap = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
            return random.uniform(cap / 10, cap)
        if isinstance(error, _StaleStatement) and attempt <= _STALE_STATEMENT_RETRIES:
            return 0.0
        return None

    async def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        """Delete every matching record without an event, in a transaction of its own: the
        one DELETE is sent alone, with no BEGIN and COMMIT around it (PostgreSQL runs a lone
        statement as a transaction by itself)."""
        schema, statements = self.schema, self._statements
        return await self._transaction(
            True,
            lambda d: self._session(schema, d, statements).delete_internal_where(name, match),
            alone=True,
        )

    async def _transaction(
        self, write: bool, work: Callable[[Connection], T], *, alone: bool = False
    ) -> T:
        """Run ``work(connection)`` synchronously (through the greenlet bridge) inside one
        transaction on a pooled connection: commit its result, or roll back and raise.
        ``alone``: ``work`` sends exactly one statement, which runs as its own transaction
        (no BEGIN/COMMIT sent)."""
        pool = self._pool
        if pool is None:
            raise NotSetUpError("PostgresStorage is not set up: await storage.setup(schema) first")
        driver = _driver(self.address)
        if driver.in_body():
            # Inside a body, this coroutine can only be driven by hand; waiting for a pooled
            # connection there would never end.
            raise TransactionError(_NESTED)
        if write and not self.concurrent_writes:
            async with self._writes:  # one write at a time (see the class)
                return await self._attempts(pool, driver, write, work, alone)
        return await self._attempts(pool, driver, write, work, alone)

    async def _attempts(
        self,
        pool: Pool,
        driver: ModuleType,
        write: bool,
        work: Callable[[Connection], T],
        alone: bool = False,
    ) -> T:
        """Run the transaction, and again while :meth:`retry_delay` says so."""
        attempt = 0
        while True:
            attempt += 1
            connection = await pool.acquire()
            try:
                result: T = await driver.run_sync(
                    self._in_transaction, connection, write, work, alone
                )
                return result
            except _Retry as retry:
                reason = retry.reason
                if isinstance(reason, _Conflict):
                    self.conflicts += 1
                delay = self.retry_delay(reason, attempt)
                if delay is None:
                    if isinstance(reason, _Conflict):
                        raise ConflictError(
                            f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}: "
                            f"{reason}",
                            attempts=attempt,
                            sqlstate=reason.sqlstate,
                        ) from retry.__cause__
                    raise reason from retry.__cause__
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                await pool.release(connection)

    def _in_transaction(
        self,
        connection: Connection,
        write: bool,
        work: Callable[[Connection], T],
        alone: bool = False,
    ) -> T:
        raw = connection.raw
        connection.conflict = None
        try:
            if alone:
                result = work(connection)  # one statement: a transaction by itself
            else:
                # Sent with the body's first statement, and not at all for a body that sends
                # none (Connection.begin).
                connection.begin(_BEGIN_WRITE[self.isolation] if write else _BEGIN_READ)
                result = work(connection)
                connection.commit()
        except BaseException as exc:
            _roll_back(connection, exc)
            if connection.conflict is not None and isinstance(exc, Exception):
                # A statement met a conflict: whatever the body made of it (a computation
                # wraps it, a savepoint caught it and the next statement failed), the run is
                # void and may be made again.
                raise _Retry(self._conflict(connection.conflict)) from exc
            error = _driver_error(exc)
            if error is None:
                raise
            state = pg_errors.sqlstate(error)
            if state == "0A000" and "cached plan must not change" in str(error):
                connection.forget_statements()
                raise _Retry(_StaleStatement(self._explain(error))) from exc
            if state in pg_errors.RETRY_STATES:  # the COMMIT's (a serialization failure)
                raise _Retry(self._conflict(error)) from exc
            if state == "55P03" and self.lock_timeout is not None:
                # lock_not_available: the lock_timeout ran out (or a NOWAIT lock was taken;
                # the engine takes none). The store's condition, not the body's, whatever a
                # computation wrapped it in.
                raise LockTimeoutError(str(self.address), self.lock_timeout) from exc
            # A closed connection is lost, unless the driver closed it after refusing this
            # body's own parameters (a first statement's, see storage.postgres.internals).
            lost = state is None and (
                isinstance(error, OSError)
                or (raw.is_closed() and not _driver(self.address).refused_input(error))
            )
            if pg_errors.is_store_fault(state) or lost:
                # The store's fault (or the connection's), not the body's: whatever a
                # computation wrapped it in, the caller gets the server's reason.
                if write:
                    self._write_fault = str(error)
                raise StorageError(self._explain(error)) from exc
            if exc is not error:
                # The body raised its own error (a storage error already translated, or a
                # computation's that wraps one): it says what went wrong, as on SQLite.
                raise
            raise StorageError(self._explain(error)) from exc
        if write:
            self._write_fault = None
        return result

    # -- outbox wake-ups (the storage's LISTEN/NOTIFY; see the module) ------------------------

    async def outbox_listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``wake()`` at every notification of this schema's outbox channel (and once
        after the listening connection was reopened); returns the coroutine function that
        stops. Registered on the storage's listening connection (:meth:`listen`)."""
        listening = await self.listen(_OUTBOX_CHANNEL, wake)
        return listening.close

    def outbox_notify(self) -> None:
        """Ask for a ``pg_notify`` on the outbox channel, sent after the caller's commit by the
        storage's notifier (:meth:`notify`: a dedicated connection, coalesced)."""
        from storage.postgres.signals import Notifier

        if self._pool is None:
            return  # closed: nobody is told, the readers' polling remains
        if self._notifier is None:
            self._notifier = Notifier(self._open_dedicated, self.schema_name)
        self._notifier.notify(_OUTBOX_CHANNEL)

    async def outbox_read(self, after: OutboxPosition, limit: int) -> OutboxBatch:
        """Up to ``limit`` final rows after ``after``: one statement on a pooled connection,
        with no BEGIN/COMMIT around it (a single statement sees one snapshot by itself), so
        a read costs one round trip."""
        pool = self._pool
        if pool is None:
            raise NotSetUpError("PostgresStorage is not set up: await storage.setup(schema) first")
        driver = _driver(self.address)
        connection = await pool.acquire()
        try:
            batch: OutboxBatch = await driver.run_sync(
                sql_outbox.read, connection.execute, POSTGRES_OUTBOX, after, limit
            )
            return batch
        except StorageError:
            raise
        except Exception as exc:
            if _driver_error(exc) is None:
                raise
            raise StorageError(self._explain(exc)) from exc
        finally:
            await pool.release(connection)

    def _session(
        self, schema: Schema, driver: Connection, statements: StatementCache
    ) -> PostgresSession:
        return PostgresSession(schema, driver, statements)

    def _conflict(self, error: BaseException) -> _Conflict:
        state = pg_errors.sqlstate(error)
        return _Conflict(
            f"the transaction conflicted with concurrent ones on {self.address} (PostgreSQL "
            f"{state}: {error}); nothing was written, try again",
            state,
        )

    def _explain(self, error: BaseException) -> str:
        return self.address.scrub(f"PostgreSQL error on {self.address}: {error}")


class _Retry(Exception):
    """A failed run whose body may be run again; ``reason`` says why."""

    def __init__(self, reason: StorageError):
        super().__init__(str(reason))
        self.reason = reason


class _StaleStatement(StorageError):
    """A prepared statement made stale by DDL elsewhere (the body may run again)."""


class _Conflict(StorageError):
    """A serialization failure or deadlock (SQLSTATE 40001/40P01): nothing was written."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


_loaded: ModuleType | None = None


def _driver(address: Address) -> ModuleType:
    """The driver half of the backend (asyncpg, greenlet), imported on first use (and kept:
    every transaction asks)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        module = importlib.import_module("storage.postgres.driver")
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _DRIVER_MODULES:
            raise  # a fault of this package, not a missing extra
        raise StorageError(
            f"PostgresStorage for {address} needs the PostgreSQL driver, and {missing!r} is not "
            "installed: pip install 'interaqt-py[postgres]' (asyncpg and greenlet)"
        ) from None
    _loaded = module
    return module


def _driver_error(exc: BaseException) -> BaseException | None:
    """The driver or connection error behind ``exc``: itself, or one it was raised from (a
    computation wraps the error of a read it made); None when the driver had no part in it."""
    current: BaseException | None = exc
    for _ in range(16):  # chains are short; a cycle must not loop forever
        if current is None:
            return None
        module = type(current).__module__
        if module.startswith("asyncpg") or isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _roll_back(connection: Connection, failure: BaseException) -> None:
    """End a failed transaction without hiding why it failed."""
    try:
        connection.roll_back()
    except Exception as exc:
        failure.add_note(f"the ROLLBACK after this error failed too: {exc}")
