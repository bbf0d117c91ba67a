"""The neutral SQL layer on SQLite with *standard* rendering and PostgreSQL's failure rule.

:class:`StandardStorage` is an :class:`SQLiteStorage` whose sessions run the neutral layer with
a dialect that renders what SQLite would not need: numbered placeholders (``?1``, ``?2``, so
every statement goes through ``Dialect.render``), ``TRUE``/``FALSE`` literals, ``INSERT ...
RETURNING id`` read from the cursor, and ``failed_statement_aborts``. Its driver enforces
PostgreSQL's rule on top of the real sqlite3 connection: after a failed statement every further
statement fails until the transaction rolls back to a savepoint. Storage tests run on it too, so
the neutral layer is shown to rely on the dialect alone, and never to carry on after a failed
statement without a savepoint.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from storage.schema import Schema
from storage.sql import Dialect, SQLSession, StatementCache, Violation
from storage.sqlite import SQLiteSession, SQLiteStorage
from storage.sqlite.dialect import SQLITE

_MARK = re.compile(r"\?")


class StandardDialect(Dialect):
    """Standard SQL rendering, SQLite's codecs and constraint messages."""

    name = "standard-on-sqlite"
    codecs = SQLITE.codecs
    no_limit = -1  # SQLite refuses LIMIT NULL
    renders = True
    failed_statement_aborts = True
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self) -> None:
        self.rendered: dict[str, str] = {}

    def render(self, sql: str) -> str:
        done = self.rendered.get(sql)
        if done is None:
            count = iter(range(1, 1_000_000))
            done = self.rendered[sql] = _MARK.sub(lambda _: f"?{next(count)}", sql)
        return done

    def violation(self, error: BaseException) -> Violation:
        return SQLITE.violation(error)


class AbortedTransactionError(sqlite3.OperationalError):
    """A statement after a failed one, with no rollback to a savepoint in between."""


class AbortingDriver:
    """The sqlite3 connection with PostgreSQL's rule for failed statements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.failed: str | None = None

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        rollback = sql.startswith("ROLLBACK TO SAVEPOINT")
        if self.failed is not None and not rollback:
            raise AbortedTransactionError(
                f"current transaction is aborted (after: {self.failed}); ran: {sql}"
            )
        try:
            cursor = self.conn.execute(sql, parameters)
        except sqlite3.Error as exc:
            self.failed = str(exc)
            raise
        if rollback:
            self.failed = None
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:
        return self.conn.executemany(sql, parameters)


class StandardSession(SQLiteSession):
    def __init__(
        self, schema: Schema, conn: sqlite3.Connection, cache: StatementCache | None = None
    ) -> None:
        SQLSession.__init__(self, schema, AbortingDriver(conn), STANDARD, cache)
        self.connection = conn


class StandardStorage(SQLiteStorage):
    """SQLite storage whose sessions are :class:`StandardSession`\\ s."""

    def _session(
        self, schema: Schema, conn: sqlite3.Connection, statements: StatementCache
    ) -> SQLiteSession:
        return StandardSession(schema, conn, statements)


STANDARD = StandardDialect()
