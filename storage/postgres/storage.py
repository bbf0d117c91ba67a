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

Outbox (:class:`storage.abc.Outbox`, statements in :mod:`.outbox`): wake-ups between
processes are LISTEN/NOTIFY on a channel of the schema. :meth:`PostgresStorage.outbox_listen`
opens one dedicated connection (outside the pool) that listens; :meth:`~PostgresStorage.
outbox_notify` sends ``pg_notify`` on that connection *after* a commit, never inside the writing
transaction (a ``pg_notify`` in every transaction cut commit throughput by 35-43%: it takes a
global lock at commit), coalesced: while one is on its way, further calls only ask for one
more. A notification is a hint; readers poll slowly as well, so a lost one (or a lost
connection) delays the stream by at most the poll interval.

The driver is imported when the storage is set up, not when this module is: ``from storage
import PostgresStorage`` works without the ``postgres`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from storage.errors import NotSetUpError, StorageError, TransactionError
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

T = TypeVar("T")
log = logging.getLogger("storage.postgres")
_CHANNEL = "SELECT 'interaqt_outbox_' || md5(current_schema())"
_NOTIFY_GAP = 0.005
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
        self._outbox_listener: Connection | None = None
        self._outbox_channel = ""
        self._outbox_notify_again = False
        self._outbox_notifying: asyncio.Task[None] | None = None

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
        listener, self._outbox_listener = self._outbox_listener, None
        if listener is not None and not listener.raw.is_closed():
            listener.raw.terminate()
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

    # -- outbox wake-ups (LISTEN/NOTIFY; see the module) --------------------------------------

    async def outbox_listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Listen on this schema's outbox channel on a dedicated connection and call
        ``wake()`` on every notification; returns the coroutine function that stops."""
        pool = self._pool
        if pool is None:
            raise NotSetUpError("PostgresStorage is not set up: await storage.setup(schema) first")
        connection = await pool.open_one()
        try:
            channel = str(await connection.raw.fetchval(_CHANNEL))
            await connection.raw.add_listener(channel, lambda *_: wake())
        except BaseException:
            connection.raw.terminate()
            raise
        self._outbox_listener, self._outbox_channel = connection, channel

        async def stop() -> None:
            if self._outbox_listener is connection:
                self._outbox_listener = None
            task, self._outbox_notifying = self._outbox_notifying, None
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            if not connection.raw.is_closed():
                try:
                    await asyncio.wait_for(connection.raw.close(), 5)
                except (TimeoutError, OSError, StorageError):
                    connection.raw.terminate()
                except Exception:  # the driver's own errors: the connection goes either way
                    connection.raw.terminate()

        return stop

    def outbox_notify(self) -> None:
        """Ask for a ``pg_notify`` on the outbox channel, sent after the caller's commit from
        the listening connection; coalesced (see the module). Without a listener, nothing."""
        if self._outbox_listener is None:
            return
        self._outbox_notify_again = True
        if self._outbox_notifying is None or self._outbox_notifying.done():
            loop = asyncio.get_running_loop()
            self._outbox_notifying = loop.create_task(self._send_outbox_notifies())

    async def _send_outbox_notifies(self) -> None:
        while self._outbox_notify_again:
            self._outbox_notify_again = False
            listener = self._outbox_listener
            if listener is None or listener.raw.is_closed():
                return
            try:
                await listener.raw.execute(f'NOTIFY "{self._outbox_channel}"')
            except Exception as exc:  # a hint only: readers poll as well
                log.warning("outbox NOTIFY failed (readers fall back to polling): %s", exc)
                return
            # At most one NOTIFY per gap: each is a commit that takes the server's notify
            # lock; the commits meanwhile are told by the next one.
            await asyncio.sleep(_NOTIFY_GAP)

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
