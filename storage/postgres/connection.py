"""The PostgreSQL driver adapter: a synchronous face over asyncpg, and the connection pool.

:class:`Connection` is what a transaction body's statements go through, the synchronous driver
interface of the neutral SQL layer: ``execute`` (a :class:`Cursor`: rows, and ``rowcount`` from
the server's status), ``executemany``, ``script`` (DDL, no parameters) and ``savepoint()``.
Each statement is awaited through the greenlet bridge (:mod:`.bridge`), so it may only be used
inside a body that :class:`PostgresStorage` runs.

Prepared statements: each pooled connection keeps its own cache of asyncpg prepared statements,
keyed by SQL text (least recently used dropped past :data:`STATEMENT_CACHE_SIZE`), each under a
name of its own (an unnamed one would be parsed and planned again at every run). A statement is
parsed and planned by the server once per connection, then each run is a single round trip
(Bind/Execute/Sync) made by :mod:`.internals` (on asyncpg's protocol, one coroutine; through its
public API when the check at open finds the internals missing). A statement's row count is the
number of rows it returned, or else the one its command status gives.

A transaction's BEGIN is not sent on its own (:meth:`Connection.begin`): it travels with the
body's first statement, in the same round trip when that statement is prepared already (its
first run on the connection sends the BEGIN alone before it, see :meth:`Connection.execute`).
A body that sends nothing sends neither BEGIN nor COMMIT. The body's last pending update
(write-behind, :mod:`storage.sql.statements`) travels with the COMMIT the same way
(:meth:`Connection.hold`).

DDL run on a connection clears its cache at once and, once it commits, the caches of every
connection of the pool: asyncpg decodes a row with the types the statement was prepared with,
and the server does not always refuse a statement whose table changed (a column type changed
under a prepared statement came back as a decoding error in our trials). DDL run by another
process is the operator's to order: processes running the old model stop before a migration
and start after it. When the server does refuse a stale statement (``cached plan must not
change result type``) the storage clears the cache and runs the body once more.

:class:`Pool` holds up to ``size`` connections, opened on demand and kept; a connection that
broke (closed, or left inside a transaction after a failed ROLLBACK) is closed and replaced.
Opening a connection that fails raises one :class:`~storage.errors.StorageError` naming host,
port, database and user (never the password) and what to check.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement

from storage.postgres import internals
from storage.postgres.address import Address, connect_error
from storage.postgres.bridge import await_
from storage.postgres.dialect import POSTGRES
from storage.postgres.errors import RETRY_STATES, sqlstate

_render = POSTGRES.render
STATEMENT_CACHE_SIZE = 512
"""Prepared statements kept per connection (the engine's statements per model are far fewer)."""


class Connection:
    """One pooled asyncpg connection with its prepared statements, used synchronously."""

    def __init__(self, raw: asyncpg.Connection, runner: internals.Runner) -> None:
        self.raw = raw
        self.run_prepared = runner.run
        """How a prepared statement of ``raw`` runs once (see :mod:`.internals`)."""
        self.run_prepared_after = runner.run_after
        """The same, after a parameterless statement sent with it (see :mod:`.internals`)."""
        self.run_prepared_behind = runner.run_behind
        """Other messages, then a run, in one round trip (see :mod:`.internals`), or None."""
        self.held: bytes | None = None
        """The last update of the transaction, to go with its COMMIT (:meth:`hold`)."""
        self.unsent_begin: str | None = None
        """The BEGIN of the running transaction while no statement has been sent (see
        :meth:`begin`)."""
        self.began = False
        """Whether the running transaction's BEGIN went out (the driver's own flag lags when
        a statement sent with it was cancelled before the server answered)."""
        self.ran_ddl = False
        """Whether this transaction ran DDL (the pool then drops every connection's statements
        once it commits)."""
        self.epoch = 0
        self.conflict: BaseException | None = None
        """The serialization failure or deadlock (SQLSTATE 40001/40P01) a statement of the
        running transaction met, or None: the storage runs the body again when it is set,
        whatever the body made of the error (caught, wrapped). Cleared when a transaction
        begins."""
        self._statements: OrderedDict[str, PreparedStatement] = OrderedDict()
        self._named = 0
        self._savepoints = 0

    @property
    def pipelined(self) -> bool:
        """Whether a BEGIN travels with the first statement (else in a round trip before), and
        the last pending update with the COMMIT."""
        return self.run_prepared_behind is not None

    # -- the transaction ---------------------------------------------------------------------

    def begin(self, sql: str) -> None:
        """Begin a transaction with ``sql`` (a ``BEGIN ...``), sent with its first statement:
        in the same round trip as a prepared statement's run (:mod:`.internals`) when the
        statement is prepared already, in the same simple query as a savepoint or DDL; else
        (a statement to prepare, ``executemany``) alone, before it. PostgreSQL takes a
        transaction's snapshot at its first statement, not at BEGIN, so waiting changes
        nothing the body can see; a body that sends nothing costs no round trip
        (:meth:`commit` sends nothing either)."""
        self.unsent_begin = sql
        self.began = False
        self.held = None

    def hold(self, sql: str, params: Sequence[Any]) -> bool:
        """Keep ``sql`` with ``params``, the transaction's last statement, to be sent with its
        COMMIT in one round trip; False (the caller runs it) unless the connection pipelines,
        the statement ran on it before (it is prepared, under a name) and every parameter has
        a text form of the type the server gave it. For a statement no constraint can refuse
        (a pending update, see :mod:`storage.sql.statements`): its errors (a conflict, a lock
        timeout) are then the COMMIT's, which the storage treats alike."""
        if not self.pipelined or self.unsent_begin is not None:
            return False
        sql = _render(sql)
        statement = self._statements.get(sql)
        if statement is None:
            return False
        types = statement.get_parameters()
        if len(types) != len(params):
            return False
        try:
            texts = [_text_form(t.name, v) for t, v in zip(types, params, strict=True)]
        except ValueError:
            return False
        self._statements.move_to_end(sql)
        self.held = internals.bound(statement.get_name(), texts)
        return True

    def commit(self) -> None:
        """Commit the running transaction (nothing to send when no statement was), with the
        statement :meth:`hold` kept, in one round trip."""
        if self.unsent_begin is not None:
            self.unsent_begin = None
            return
        # A COMMIT that fails has ended the transaction already; one cancelled on its way
        # leaves the driver's flag set, which is what roll_back consults then.
        self.began = False
        held, self.held = self.held, None
        if held is None or self.run_prepared_behind is None:
            await_(self.raw.execute("COMMIT"))
            return
        commit = self._prepared("COMMIT")
        try:
            await_(self.run_prepared_behind(held, commit, ()))
        except asyncpg.PostgresError as exc:
            if sqlstate(exc) in RETRY_STATES:
                self.conflict = exc
            raise

    def roll_back(self) -> None:
        """End a failed transaction: ROLLBACK when its BEGIN went out (or the server says one
        is open), nothing otherwise; raises what the ROLLBACK raised."""
        self.unsent_begin = None
        self.held = None
        began, self.began = self.began, False
        if self.raw.is_closed() or not (began or self.raw.is_in_transaction()):
            return
        await_(self.raw.execute("ROLLBACK"))

    def _begin_now(self) -> None:
        begin, self.unsent_begin = self.unsent_begin, None
        if begin is not None:
            self.began = True
            await_(self.raw.execute(begin))

    def _prepared(self, sql: str) -> PreparedStatement:
        statement = self._statements.get(sql)
        if statement is None:
            # Named: asyncpg prepares an unnamed statement when its own cache is off (as here),
            # and an unnamed one is parsed and planned again at every run. A name is never
            # reused: a statement dropped below is closed on the server later, by asyncpg.
            self._named += 1
            statement = await_(self.raw.prepare(sql, name=f"__interaqt_{self._named}__"))
            self._statements[sql] = statement
            if len(self._statements) > STATEMENT_CACHE_SIZE:
                self._statements.popitem(last=False)
        else:
            self._statements.move_to_end(sql)
        return statement

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        """Run one statement (neutral ``?`` placeholders, rendered as ``$n`` by the dialect;
        ``$n`` texts pass unchanged); its rows and row count are the cursor's.
        Transaction control (``SAVEPOINT``, ``RELEASE``, ``ROLLBACK TO``) and DDL without
        parameters are sent as simple queries, never prepared (each savepoint name would be a
        statement of its own; DDL is :meth:`script`)."""
        sql = _render(sql)
        try:
            if not params and sql.startswith(_UNPREPARED):
                if sql.startswith(_DDL):
                    self.script(sql)
                else:
                    await_(self.raw.execute(self._with_begin(sql)))
                return Cursor([], -1)
            begin = self.unsent_begin
            if begin is not None and sql not in self._statements:
                # asyncpg ends a Parse with a Flush, not a Sync: the server keeps the implicit
                # transaction the Parse opened (with a snapshot) until the run's Sync, and a
                # BEGIN sent inside it could not set an isolation level. So a statement that
                # leads a transaction on its first run here sends the BEGIN alone before it.
                self._begin_now()
                begin = None
            statement = self._prepared(sql)
            if begin is None:
                rows, status, _ = await_(self.run_prepared(statement, params))
            else:
                self.unsent_begin = None
                self.began = True
                rows, status, _ = await_(self.run_prepared_after(begin, statement, params))
        except asyncpg.PostgresError as exc:
            if sqlstate(exc) in RETRY_STATES:
                self.conflict = exc
            raise
        # A statement that returned rows (SELECT, ... RETURNING) counts the rows it returned.
        return Cursor(rows, len(rows) if rows else _count(status))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor:
        """Run one statement once per parameter row (pipelined: about one round trip)."""
        try:
            self._begin_now()
            await_(self._prepared(_render(sql)).executemany(params))
        except asyncpg.PostgresError as exc:
            if sqlstate(exc) in RETRY_STATES:
                self.conflict = exc
            raise
        return Cursor([], -1)

    def script(self, sql: str) -> None:
        """Run DDL or other parameterless SQL (several statements allowed); clears the
        prepared statements of this connection, whose plans it may invalidate."""
        try:
            await_(self.raw.execute(self._with_begin(sql)))
        except asyncpg.PostgresError as exc:
            if sqlstate(exc) in RETRY_STATES:
                self.conflict = exc
            raise
        self.forget_statements()
        self.ran_ddl = True

    def _with_begin(self, sql: str) -> str:
        """``sql`` (parameterless, sent as a simple query), after the unsent BEGIN if any."""
        begin, self.unsent_begin = self.unsent_begin, None
        if begin is None:
            return sql
        self.began = True
        return f"{begin}; {sql}"

    def forget_statements(self) -> None:
        """Drop every cached prepared statement (after DDL, or a stale-plan refusal)."""
        self._statements.clear()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back to the savepoint and is
        re-raised; otherwise the savepoint is released."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        await_(self.raw.execute(self._with_begin(f"SAVEPOINT {name}")))
        try:
            yield
        except BaseException:
            await_(self.raw.execute(f"ROLLBACK TO SAVEPOINT {name}"))
            await_(self.raw.execute(f"RELEASE SAVEPOINT {name}"))
            raise
        else:
            await_(self.raw.execute(f"RELEASE SAVEPOINT {name}"))
        finally:
            self._savepoints -= 1


_DDL = ("CREATE ", "ALTER ", "DROP ")
_UNPREPARED = ("SAVEPOINT ", "RELEASE ", "ROLLBACK TO ", *_DDL)


class Cursor:
    """The result of one statement: its rows (``fetchone``, ``fetchall``) and ``rowcount``,
    the rows it inserted, updated, deleted or returned (-1 when the server did not say)."""

    __slots__ = ("_next", "_rows", "rowcount")

    def __init__(self, rows: list[asyncpg.Record], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[asyncpg.Record]:
        """Every remaining row."""
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows


def _count(status: bytes | None) -> int:
    """The row count of a command status: ``b"UPDATE 3"`` -> 3, ``b"INSERT 0 1"`` -> 1."""
    if not status:
        return -1
    last = status.rpartition(b" ")[2]
    return int(last) if last.isdigit() else -1


class Pool:
    """Up to ``size`` connections to one database, opened on demand and reused."""

    def __init__(
        self,
        dsn: str,
        address: Address,
        size: int,
        schema: str | None,
        timeout: float,
        *,
        lock_timeout: float | None = None,
    ) -> None:
        self._dsn = dsn
        self._lock_timeout = lock_timeout
        self._address = address
        self._size = size
        self._schema = schema
        self._timeout = timeout
        self._idle: list[Connection] = []
        self._opened = 0
        self._epoch = 0
        self._free = asyncio.Semaphore(size)
        self._closed = False

    async def open_one(self) -> Connection:
        """Open a connection (not pooled yet); a failure is a :class:`StorageError`."""
        settings = {"search_path": _quote(self._schema)} if self._schema else {}
        if self._lock_timeout is not None:  # PostgreSQL's unit here: milliseconds
            settings["lock_timeout"] = str(max(1, round(self._lock_timeout * 1000)))
        try:
            raw = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout,
                server_settings=settings,
                statement_cache_size=0,  # Connection keeps its own prepared statements
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise connect_error(self._address, exc) from None
        except asyncpg.InterfaceError as exc:
            raise connect_error(self._address, exc) from None
        try:
            await raw.set_type_codec(
                "int8", schema="pg_catalog", encoder=_encode_bigint, decoder=int, format="text"
            )
            runner = await internals.runner(raw)
        except BaseException:
            raw.terminate()
            raise
        if runner is None:  # the driver check closed it (internals.runner says why): again
            return await self.open_one()
        return Connection(raw, runner)

    async def acquire(self) -> Connection:
        """A connection for one transaction; waits while all ``size`` are in use."""
        await self._free.acquire()
        try:
            while self._idle:
                connection = self._idle.pop()
                if not connection.raw.is_closed():
                    if connection.epoch != self._epoch:
                        connection.forget_statements()  # DDL ran since it last served
                        connection.epoch = self._epoch
                    return connection
                self._opened -= 1
            connection = await self.open_one()
            connection.epoch = self._epoch
            self._opened += 1
            return connection
        except BaseException:
            self._free.release()
            raise

    def adopt(self, connection: Connection) -> None:
        """Keep ``connection`` (opened by :meth:`open_one`) as one of the pool's."""
        connection.epoch = self._epoch
        self._opened += 1
        self._idle.append(connection)

    def schema_changed(self) -> None:
        """DDL committed: every connection forgets its statements before it next serves."""
        self._epoch += 1

    async def release(self, connection: Connection) -> None:
        """Give a connection back; a broken one (closed, or still inside a transaction) is
        closed instead and replaced on demand."""
        if connection.ran_ddl:
            connection.ran_ddl = False
            self.schema_changed()
            connection.epoch = self._epoch
        try:
            if self._closed or connection.raw.is_closed() or connection.raw.is_in_transaction():
                self._opened -= 1
                await _close(connection)
            else:
                self._idle.append(connection)
        finally:
            self._free.release()

    async def close(self) -> None:
        """Close the idle connections; the ones in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for connection in idle:
            await _close(connection)


async def _close(connection: Connection) -> None:
    try:
        await asyncio.wait_for(connection.raw.close(), 5)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        connection.raw.terminate()


NO_RECORD = -(2**63)
"""The ``bigint`` a record id that cannot be one becomes: below every id a sequence gives."""
_DIGITS = re.compile(r"[+-]?[0-9]+")


def _encode_bigint(value: Any) -> str:
    """A ``bigint`` parameter (an id, a link end, an integer field, a limit) as text.

    Ids are opaque to callers and may arrive as strings (``{"id": "4"}``, from JSON or a URL):
    SQLite compares such a string with its integer id column as the integer it spells, and so
    does this. A string that spells no 64-bit integer names no record, as on SQLite: it
    becomes :data:`NO_RECORD`, which no row has. Everything else is validated before it gets
    here (integer fields hold ints only)."""
    if type(value) is int:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return str(number)
        return str(NO_RECORD)
    if isinstance(value, str):
        return str(NO_RECORD)
    return str(int(value))


def _text_form(type_name: str, value: Any) -> str | None:
    """``value`` (a parameter as the codecs made it) in the text form PostgreSQL reads for a
    parameter of type ``type_name``; None for NULL. ValueError where there is none here (the
    statement then goes on its own, in binary, through asyncpg)."""
    if value is None:
        return None
    if type_name == "int8":
        return _encode_bigint(value)
    if isinstance(value, bool):
        if type_name == "bool":
            return "true" if value else "false"
    elif isinstance(value, str):
        if type_name in ("text", "varchar", "json", "jsonb"):
            return value
    elif isinstance(value, int):
        if type_name in ("numeric", "int2", "int4"):
            return str(value)
    elif isinstance(value, Decimal):
        if type_name == "numeric" and value.is_finite():
            return str(value)
    elif isinstance(value, datetime) and type_name == "timestamptz" and value.tzinfo is not None:
        return value.isoformat()
    raise ValueError(f"no text form for {type_name} here: {type(value).__name__}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
