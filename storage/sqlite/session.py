"""``SQLiteSession``: the neutral :class:`~storage.sql.session.SQLSession` on an SQLite
connection (the ``sqlite3`` handle is the driver as it is; no adapter, no cost)."""

from __future__ import annotations

import sqlite3

from storage.schema import Schema
from storage.sql.cache import StatementCache
from storage.sql.session import SQLSession
from storage.sqlite.dialect import SQLITE

__all__ = ["SQLiteSession"]


class SQLiteSession(SQLSession):
    """Reads and writes inside one SQLite transaction (see :class:`SQLSession`)."""

    __slots__ = ("connection",)

    def __init__(
        self, schema: Schema, conn: sqlite3.Connection, cache: StatementCache | None = None
    ) -> None:
        SQLSession.__init__(self, schema, conn, SQLITE, cache)
        self.connection = conn
        """The transaction's ``sqlite3`` handle (diagnostics: a trace callback, a pragma)."""
