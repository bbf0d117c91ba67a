"""What a SQL backend renders its own way: the :class:`Dialect`.

The neutral layer (:mod:`storage.sql`) builds every statement in one form, close to standard
SQL: ``?`` placeholders, double-quoted identifiers, and the few pieces that differ between
databases asked of the dialect (boolean literals, "no limit", the id of an inserted row, the
numbers-only sum, how a constraint failure reads). A backend subclasses :class:`Dialect`, sets
its :class:`~storage.sql.codecs.Codecs` and overrides what differs. Rendering happens while a
statement text is built (and remembered), never per execution, except :meth:`render` for
drivers whose placeholders are not ``?`` (see :func:`storage.sql.driver.bind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from storage.sql.codecs import Codecs
from storage.sql.driver import Cursor
from storage.sql.outbox import OutboxSQL

__all__ = ["Dialect", "Violation", "quote"]


def quote(name: str) -> str:
    """Quote an identifier the standard way (names are validated against
    ``[A-Za-z_][A-Za-z0-9_]*`` by the schema, so no escaping is needed)."""
    return f'"{name}"'


@dataclass(frozen=True)
class Violation:
    """What a constraint failure of the database was about: ``kind`` ``"unique"`` (with the
    ``fields`` of the unique index when the message names them), ``"non-null"`` (the field,
    and in ``table`` the table the database names), ``"foreign key"``, or ``"other"``;
    ``message`` is the database's own text."""

    kind: Literal["unique", "non-null", "foreign key", "other"]
    fields: tuple[str, ...] = ()
    message: str = ""
    table: str | None = None


class Dialect:
    """A backend's rendering of the neutral statements. Subclasses set the class attributes and
    override the methods where their database differs from the standard form given here."""

    name: ClassVar[str] = "sql"
    codecs: Codecs
    """Value codecs (validation is shared; the column representation is the backend's)."""
    true: ClassVar[str] = "TRUE"
    """A condition that always holds (SQLite: ``1``)."""
    false: ClassVar[str] = "FALSE"
    """A condition that never holds (SQLite: ``0``)."""
    no_limit: ClassVar[Any] = None
    """The ``LIMIT ?`` parameter that means "no limit" (SQLite: -1; PostgreSQL: NULL)."""
    renders: ClassVar[bool] = False
    """Whether :meth:`render` must turn the neutral text into the driver's (``?`` -> ``$n``)."""
    failed_statement_aborts: ClassVar[bool] = True
    """Whether a failed statement aborts the whole transaction (PostgreSQL) rather than just
    itself (SQLite). When it does, the writer puts a savepoint around each statement whose
    failure it handles (a link to a missing record) instead of carrying on after it."""
    serializes_writers: ClassVar[bool] = False
    """Whether a write transaction excludes every other writer from its first read on, so a
    row it read stays as read until it ends (SQLite: one writer per database, and a write
    transaction whose read went stale cannot write). Atomic deltas then read the row and
    write the sums (see :mod:`storage.sql.deltas`)."""
    defers_updates: ClassVar[bool] = False
    """Whether the writer keeps UPDATEs by id pending and sends one per row (write-behind, see
    :mod:`storage.sql.statements`). It pays where every statement is a round trip to a server
    (PostgreSQL); an embedded database runs a statement for less than the bookkeeping costs."""
    chains_inserts: ClassVar[bool] = False
    """Whether one INSERT can feed another in a statement (a data-modifying ``WITH``,
    PostgreSQL): a nested create and its link to the new record are then one statement."""
    names_missing_reference: ClassVar[bool] = False
    """Whether :meth:`violation` of a failed link INSERT names the link column whose record
    is missing (``fields == ("source",)`` or ``("target",)``). Where it does and a failed
    statement aborts the transaction, the writer never runs a statement after a failure, so a
    write needs no savepoint of its own: any failure leaves the transaction to be rolled back
    whole (or to a savepoint its caller took), which undoes the write whole."""
    integrity_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """The driver's exception classes for constraint failures (see :meth:`violation`)."""
    row_lock: ClassVar[str] = ""
    """What ends a ``SELECT ... FROM <table> t`` to lock the rows it reads until the
    transaction ends (PostgreSQL: `` FOR UPDATE OF t``); empty where a write transaction
    holds the whole database already (SQLite's ``BEGIN IMMEDIATE``)."""
    share_lock: ClassVar[str] = ""
    """As :attr:`row_lock`, a shared lock: others may read and share-lock the rows, none may
    update or delete them until the transaction ends (PostgreSQL: `` FOR SHARE OF t``)."""
    clock: ClassVar[str | None] = None
    """SQL for the database's own clock in seconds since the epoch (lease times; see
    :mod:`storage.lease`), or None where the database has none and the caller's clock is bound
    as a parameter instead (SQLite)."""
    skip_locked: ClassVar[str] = ""
    """What a claim's row selection ends with so that concurrent claims pass over each other's
    rows (PostgreSQL: `` FOR UPDATE SKIP LOCKED``); empty where writes never run at once."""
    outbox: ClassVar[OutboxSQL | None] = None
    """The outbox's statements on this database (:mod:`storage.sql.outbox`); None: none."""

    def quote(self, name: str) -> str:
        """An identifier, quoted."""
        return quote(name)

    def render(self, sql: str) -> str:
        """The neutral text (``?`` placeholders) in the driver's placeholder style; called for
        every statement when :attr:`renders` is set, so a backend remembers its answers."""
        return sql

    def insert(self, table: str, columns: Sequence[str]) -> str:
        """``INSERT`` of one row whose new id :meth:`inserted_id` reads from the cursor."""
        if not columns:
            return f"INSERT INTO {self.quote(table)} DEFAULT VALUES RETURNING id"
        names = ", ".join(self.quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        return f"INSERT INTO {self.quote(table)} ({names}) VALUES ({marks}) RETURNING id"

    def inserted_id(self, cursor: Cursor) -> Any:
        """The id of the row the cursor of an :meth:`insert` statement inserted."""
        return cursor.fetchone()[0]

    def like(self, column: str) -> str:
        """``column`` matches the pattern parameter ``?``: case-sensitive, ``%`` and ``_`` the
        only wildcards, no escape character (a backslash is a plain character). SQLite's
        ``LIKE`` is that with ``case_sensitive_like`` on; PostgreSQL's needs ``ESCAPE ''``."""
        return f"{column} LIKE ?"

    def contains_text(self, column: str) -> str:
        """The string ``column`` holds the parameter ``?`` as a substring (case-sensitive)."""
        return f"instr({column}, ?) > 0"

    def json_array_has(self, column: str) -> str:
        """The JSON text ``column`` is an array with an element equal to the parameters: a JSON
        type class (``text``, ``number``, ``true``, ``false``, ``null``) and the value."""
        return (
            f"(json_type({column}) = 'array' AND EXISTS (SELECT 1 FROM json_each({column}) e "
            "WHERE (CASE WHEN e.type IN ('integer', 'real') THEN 'number' ELSE e.type END) = ? "
            "AND e.value IS ?))"
        )

    def json_array_param(self, value: Any) -> list[Any]:
        """The parameters of :meth:`json_array_has` for the element ``value``."""
        if value is None:
            return ["null", None]
        if value is True or value is False:
            return ["true" if value else "false", 1 if value else 0]
        if isinstance(value, str):
            return ["text", value]
        return ["number", value]

    def number_or_zero(self, expression: str) -> str:
        """``expression`` where it holds a number, else 0 (a sum counts only numbers)."""
        return expression

    def violation(self, error: BaseException) -> Violation:
        """What a constraint failure (one of :attr:`integrity_errors`) was about."""
        return Violation("other", (), str(error))
