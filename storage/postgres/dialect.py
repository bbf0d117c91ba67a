"""PostgreSQL's :class:`~storage.sql.dialect.Dialect`: ``$n`` placeholders, ``TRUE``/``FALSE``,
NULLs sorted as on SQLite (first ascending, last descending),
``LIMIT NULL`` for no limit, ids from ``INSERT ... RETURNING id``, a failed statement aborts the
transaction, constraint failures read from SQLSTATE and the server's detail (a foreign-key
failure names its link column, from the constraint's name, so the writer needs no look-up after
it and no savepoint before it), and the value codecs of :mod:`storage.postgres.codecs`.

Rendering (``?`` -> ``$n``) is done by the driver adapter
(:class:`storage.postgres.connection.Connection`) on every text it gets, so ``renders`` is off:
the shared :class:`~storage.sql.storage.SQLStorage` and the session hand it neutral text.
Imports no driver: :mod:`storage.postgres.driver`, imported when a storage first connects,
sets :attr:`PostgresDialect.integrity_errors` to asyncpg's constraint-failure class (before it,
nothing has run that could raise one).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from storage.postgres import codecs
from storage.postgres.errors import sqlstate
from storage.postgres.outbox import POSTGRES_OUTBOX
from storage.sql.codecs import Codecs
from storage.sql.dialect import Dialect, Violation

__all__ = ["POSTGRES", "PostgresDialect"]

_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=")
# The neutral text's pieces: quoted identifiers and string literals pass through untouched.
_PIECES = re.compile(r"(\"[^\"]*\"|'[^']*'|\?)")
# Sort keys: SQLite puts NULL first ascending and last descending; PostgreSQL the other way.
_ORDER = re.compile(r"(\"[^\"]*\"|'[^']*')|\b(ASC|DESC)\b(?! NULLS)")


def _nulls(found: re.Match[str]) -> str:
    if found.group(1):
        return found.group(1)
    return "ASC NULLS FIRST" if found.group(2) == "ASC" else "DESC NULLS LAST"


class PostgresDialect(Dialect):
    """PostgreSQL 13+ through asyncpg (``$n`` placeholders)."""

    name = "postgresql"
    outbox = POSTGRES_OUTBOX
    codecs = Codecs(
        codecs.ENCODERS,
        codecs.DECODERS,
        codecs.PLAIN,
        # string is not: its encoder refuses NUL, which PostgreSQL text cannot hold
        frozenset({"integer"}),
    )
    true = "TRUE"
    false = "FALSE"
    no_limit = None
    renders = False  # the driver adapter renders (see the module)
    failed_statement_aborts = True
    names_missing_reference = True
    chains_inserts = True
    defers_updates = True
    # Writers of several connections and processes take turns on the rows they read to write.
    row_lock = " FOR UPDATE OF t"
    share_lock = " FOR SHARE OF t"
    # asyncpg's class 23 errors, set when the driver is imported
    integrity_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    # lease times on the server's clock, read inside the statement (see storage.lease)
    clock = "extract(epoch from clock_timestamp())"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self) -> None:
        self._rendered: dict[str, str] = {}

    def render(self, sql: str) -> str:
        """``?`` -> ``$1``, ``$2``, ... (outside quotes), and ``ASC``/``DESC`` with SQLite's
        place for NULLs; remembered per text."""
        done = self._rendered.get(sql)
        if done is None:
            counter = 0

            def number(found: re.Match[str]) -> str:
                nonlocal counter
                if found.group(0) != "?":
                    return found.group(0)
                counter += 1
                return f"${counter}"

            done = _PIECES.sub(number, sql)
            if " ORDER BY " in done:
                done = _ORDER.sub(_nulls, done)
            if len(self._rendered) < 65536:  # texts are the schema's: bounded in practice
                self._rendered[sql] = done
        return done

    def like(self, column: str) -> str:
        # PostgreSQL's LIKE escapes with a backslash unless told otherwise; SQLite's has none.
        return f"{column} LIKE ? ESCAPE ''"

    def contains_text(self, column: str) -> str:
        return f"strpos({column}, ?) > 0"

    def json_array_has(self, column: str) -> str:
        # json is stored as text (see ddl.py); jsonb equality compares 1 and 1.0 as equal and
        # keeps true, 1 and "1" apart, as json_array_param's type classes do on SQLite.
        return (
            f"(jsonb_typeof({column}::jsonb) = 'array' AND EXISTS (SELECT 1 FROM "
            f"jsonb_array_elements({column}::jsonb) e WHERE e = ?::jsonb))"
        )

    def json_array_param(self, value: Any) -> list[Any]:
        return [json.dumps(value)]

    def violation(self, error: BaseException) -> Violation:
        state = sqlstate(error)
        message = str(error)
        if state == "23505":
            detail = getattr(error, "detail", None) or ""
            found = _KEY.search(detail)
            columns = found["columns"].split(",") if found else []
            return Violation("unique", tuple(c.strip().strip('"') for c in columns), message)
        if state == "23503":
            return Violation("foreign key", _reference_column(error), message)
        if state == "23502":  # not_null_violation: the driver names the column and table
            column = getattr(error, "column_name", None)
            table = getattr(error, "table_name", None)
            return Violation("non-null", (column,) if column else (), message, table)
        return Violation("other", (), message)


POSTGRES = PostgresDialect()
"""The one PostgreSQL dialect (its only state is the memory of rendered texts)."""


def _reference_column(error: BaseException) -> tuple[str, ...]:
    """The link column (``source`` or ``target``) a foreign-key failure is about: from the
    constraint's name, which PostgreSQL makes ``<table>_<column>_fkey`` for the inline
    ``REFERENCES`` of :mod:`storage.postgres.ddl` (it shortens the table part, never the
    column's), else from the detail's ``Key (<column>)=``; () when neither says."""
    constraint = getattr(error, "constraint_name", None) or ""
    for column in ("source", "target"):
        if constraint.endswith(f"_{column}_fkey"):
            return (column,)
    found = _KEY.search(getattr(error, "detail", None) or "")
    if found and found["columns"].strip().strip('"') in ("source", "target"):
        return (found["columns"].strip().strip('"'),)
    return ()
