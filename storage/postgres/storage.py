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
says so: today only when the server refused a prepared statement made stale by DDL on another
connection (once, the connection's statements forgotten). Serialization failures and deadlocks
(SQLSTATE 40001, 40P01) are the seam for several processes: they reach the caller as a
:class:`StorageError` saying nothing was written, until ``retry_delay`` grows a policy for them.
Re-running is safe for the same reason as on SQLite: a body is a function of the database alone.

Faults. A write that fails because of the store itself (disk full, I/O, a read-only or
shutting-down server, a lost connection) is kept as :attr:`PostgresStorage.write_fault` until
a write commits again. Connection failures at ``setup`` (no server, refused credentials, no such
database) and a missing driver are one :class:`StorageError` naming host, port, database and
user, never the password.

The driver is imported when the storage is set up, not when this module is: ``from storage
import PostgresStorage`` works without the ``postgres`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from storage.errors import NotSetUpError, StorageError, TransactionError
from storage.postgres import errors as pg_errors
from storage.postgres.address import Address
from storage.postgres.ddl import POSTGRES_DDL
from storage.postgres.dialect import POSTGRES
from storage.postgres.session import PostgresSession
from storage.schema import Schema
from storage.sql.cache import StatementCache
from storage.sql.storage import SQLStorage

if TYPE_CHECKING:
    from storage.postgres.connection import Connection, Pool

T = TypeVar("T")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
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
    ``concurrent_writes``.

    Write transactions of one storage run one at a time, as on SQLite, unless
    ``concurrent_writes=True``: the engine's computations read a value and write what they
    derived from it, and two such READ COMMITTED transactions at once lose one's update
    (measured: 20 concurrent dispatches of a count kept 5). Reads always run at once, up to
    ``pool_size``. The lock is this process's: several processes on one database need the
    engine's atomic updates and whole-body retries (the next issue), not this.
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
        super().__init__()
        self.address = Address(dsn)
        self.dsn = dsn
        self.pool_size = pool_size
        self.schema_name = schema
        self.connect_timeout = connect_timeout
        self.concurrent_writes = concurrent_writes
        self._writes = asyncio.Lock()
        self._pool: Pool | None = None
        self._write_fault: str | None = None

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
            self.dsn, self.address, self.pool_size, self.schema_name, self.connect_timeout
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
        """Close every connection. Further use raises :class:`NotSetUpError`."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- transactions ------------------------------------------------------------------------

    def retry_delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before running a failed body again (``attempt`` runs so far), or
        None to give up. The hook where serialization failures and deadlocks (SQLSTATE
        40001/40P01) will be retried; today only a stale prepared statement is."""
        if isinstance(error, _StaleStatement) and attempt <= _STALE_STATEMENT_RETRIES:
            return 0.0
        return None

    async def _transaction(self, write: bool, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` synchronously (through the greenlet bridge) inside one
        transaction on a pooled connection: commit its result, or roll back and raise."""
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
                return await self._attempts(pool, driver, write, work)
        return await self._attempts(pool, driver, write, work)

    async def _attempts(
        self, pool: Pool, driver: ModuleType, write: bool, work: Callable[[Connection], T]
    ) -> T:
        """Run the transaction, and again while :meth:`retry_delay` says so."""
        attempt = 0
        while True:
            attempt += 1
            connection = await pool.acquire()
            try:
                result: T = await driver.run_sync(self._in_transaction, connection, write, work)
                return result
            except _Retry as retry:
                delay = self.retry_delay(retry.reason, attempt)
                if delay is None:
                    raise retry.reason from retry.__cause__
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                await pool.release(connection)

    def _in_transaction(
        self, connection: Connection, write: bool, work: Callable[[Connection], T]
    ) -> T:
        from storage.postgres.bridge import await_

        raw = connection.raw
        try:
            await_(raw.execute(_BEGIN_WRITE if write else _BEGIN_READ))
            result = work(connection)
            await_(raw.execute("COMMIT"))
        except BaseException as exc:
            _roll_back(raw, exc)
            error = _driver_error(exc)
            if error is None:
                raise
            state = pg_errors.sqlstate(error)
            if state == "0A000" and "cached plan must not change" in str(error):
                connection.forget_statements()
                raise _Retry(_StaleStatement(self._explain(error))) from exc
            if state in pg_errors.RETRY_STATES:
                raise _Retry(
                    _Conflict(
                        f"the transaction conflicted with another one on {self.address} "
                        f"(PostgreSQL {state}: {error}); nothing was written, try again"
                    )
                ) from exc
            lost = state is None and (raw.is_closed() or isinstance(error, OSError))
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

    def _session(
        self, schema: Schema, driver: Connection, statements: StatementCache
    ) -> PostgresSession:
        return PostgresSession(schema, driver, statements)

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


def _driver(address: Address) -> ModuleType:
    """The driver half of the backend (asyncpg, greenlet), imported on first use."""
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


def _roll_back(raw: Any, failure: BaseException) -> None:
    """End a failed transaction without hiding why it failed."""
    from storage.postgres.bridge import await_

    if raw.is_closed() or not raw.is_in_transaction():
        return
    try:
        await_(raw.execute("ROLLBACK"))
    except Exception as exc:
        failure.add_note(f"the ROLLBACK after this error failed too: {exc}")
