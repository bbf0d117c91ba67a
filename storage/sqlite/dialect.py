"""SQLite's :class:`~storage.sql.dialect.Dialect` and value codecs.

Values: booleans as 0/1 integers, timestamps as integer microseconds since the epoch (exact and
ordered like the instants), JSON as canonical text (sorted keys, so equality matches compare
values), numbers in untyped columns (ints stay ints, floats floats). Ids come from the
cursor's ``lastrowid`` (no ``RETURNING``); a failed statement undoes only itself.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from storage.sql.codecs import Codecs
from storage.sql.dialect import Dialect, Violation
from storage.sql.driver import Cursor
from storage.sqlite.outbox import SQLITE_OUTBOX
from storage.types import DECODERS, ENCODERS, PLAIN

__all__ = ["SQLITE", "SQLiteDialect"]

_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")
# SQLite's own text, which the non-null triggers of ddl.py raise too.
_NON_NULL = re.compile(r"NOT NULL constraint failed: (?:(?P<table>[^.]+)\.)?(?P<field>\S+)")


class SQLiteDialect(Dialect):
    """SQLite 3.35+ through :mod:`sqlite3` (``?`` placeholders, as the neutral form)."""

    name = "sqlite"
    outbox = SQLITE_OUTBOX
    codecs = Codecs(ENCODERS, DECODERS, PLAIN, frozenset({"string", "number", "integer"}))
    true = "1"
    false = "0"
    no_limit = -1
    renders = False
    failed_statement_aborts = False
    serializes_writers = True
    integrity_errors = (sqlite3.IntegrityError,)

    def insert(self, table: str, columns: Sequence[str]) -> str:
        if not columns:
            return f"INSERT INTO {self.quote(table)} DEFAULT VALUES"
        names = ", ".join(self.quote(c) for c in columns)
        return f"INSERT INTO {self.quote(table)} ({names}) VALUES ({', '.join('?' * len(columns))})"

    # The cursor's lastrowid, read by a C-level getter: it is on every insert's path.
    inserted_id: Callable[[Cursor], Any] = attrgetter("lastrowid")  # type: ignore[assignment]

    def number_or_zero(self, expression: str) -> str:
        # A number field holds nothing but integers and reals; anything else counts as 0, as
        # in the engine's incremental sum.
        v = expression
        return f"CASE WHEN typeof({v}) IN ('integer', 'real') THEN {v} ELSE 0 END"

    def violation(self, error: BaseException) -> Violation:
        message = str(error)
        found = _UNIQUE.search(message)
        if found:
            fields = tuple(part.strip().split(".", 1)[-1] for part in found.group(1).split(","))
            return Violation("unique", fields, message)
        found = _NON_NULL.search(message)
        if found:
            return Violation("non-null", (found["field"],), message, found["table"])
        if "FOREIGN KEY" in message:
            return Violation("foreign key", (), message)
        return Violation("other", (), message)


SQLITE = SQLiteDialect()
"""The one SQLite dialect (it holds no state)."""
