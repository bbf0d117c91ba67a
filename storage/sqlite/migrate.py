"""SQLite rendering of the neutral schema operations (``storage.migration``).

Every operation runs inside the caller's transaction: SQLite's DDL is transactional, so a
migration that fails (or a process killed half way) leaves the tables as they were.
Needs SQLite 3.35+ (``ALTER TABLE ... DROP COLUMN``).
"""

from __future__ import annotations

import sqlite3

from storage import migration as m
from storage.errors import SchemaError
from storage.schema import Index, LinkType, Schema
from storage.sql.dialect import quote
from storage.sqlite import ddl


def apply(conn: sqlite3.Connection, schema: Schema, operations: list[m.Operation]) -> None:
    """Run ``operations`` in order, then create whatever else ``schema`` needs (idempotent)."""
    for operation in operations:
        try:
            _apply(conn, operation)
        except sqlite3.IntegrityError as exc:
            raise SchemaError(
                f"{_describe(operation)} fails on the stored rows: {exc} (change or delete "
                "the rows that violate it first)",
                record=_record_of(operation),
            ) from exc
    ddl.install(conn, schema)


def _apply(conn: sqlite3.Connection, op: m.Operation) -> None:
    if isinstance(op, m.AddTable):
        ddl.create_table(conn, op.record)
    elif isinstance(op, m.DropTable):
        conn.execute(f"DROP TABLE IF EXISTS {quote(op.name)}")
    elif isinstance(op, m.RenameTable):
        for name in _index_names(conn, op.old.name):
            conn.execute(f"DROP INDEX {quote(name)}")
        # Index names carry the table's name: the new ones are created with the rest of the
        # schema's indexes once every column is in place (ddl.install, at the end).
        conn.execute(f"ALTER TABLE {quote(op.old.name)} RENAME TO {quote(op.new.name)}")
    elif isinstance(op, m.AddColumn):
        definition = f"{quote(op.field.name)} {ddl.COLUMN_TYPES[op.field.type]}".rstrip()
        conn.execute(f"ALTER TABLE {quote(op.record)} ADD COLUMN {definition}")
    elif isinstance(op, m.DropColumn):
        conn.execute(f"ALTER TABLE {quote(op.record)} DROP COLUMN {quote(op.field)}")
    elif isinstance(op, m.RenameColumn):
        conn.execute(
            f"ALTER TABLE {quote(op.record)} RENAME COLUMN {quote(op.old)} TO {quote(op.new)}"
        )
    elif isinstance(op, m.AddIndex):
        ddl.create_index(conn, op.record, op.index)
    elif isinstance(op, m.DropIndex):
        conn.execute(f"DROP INDEX IF EXISTS {quote(ddl.index_name(op.record, op.index))}")
    elif isinstance(op, m.AlterLink):
        for index in _link_indexes(op.old):
            conn.execute(f"DROP INDEX IF EXISTS {quote(ddl.index_name(op.old.name, index))}")
        for index in _link_indexes(op.new):
            ddl.create_index(conn, op.new.name, index)
    else:  # pragma: no cover - the Operation union is closed
        raise SchemaError(f"unknown schema operation {op!r}")


def _link_indexes(link: LinkType) -> list[Index]:
    return [i for i in ddl.indexes_of(link) if i.fields in (("source",), ("target",))]


def _index_names(conn: sqlite3.Connection, table: str) -> list[str]:
    return [
        row[1]
        for row in conn.execute(f"PRAGMA index_list({quote(table)})")
        if not row[1].startswith("sqlite_")
    ]


def _describe(op: m.Operation) -> str:
    if isinstance(op, m.AddIndex):
        kind = "unique index" if op.index.unique else "index"
        return f"the {kind} on {op.record}({', '.join(op.index.fields)})"
    if isinstance(op, m.AlterLink):
        return f"the cardinality {op.new.cardinality} of {op.new.name}"
    return type(op).__name__


def _record_of(op: m.Operation) -> str | None:
    for attribute in ("record", "name"):
        value = getattr(op, attribute, None)
        if isinstance(value, str):
            return value
    new = getattr(op, "new", None)
    return getattr(new, "name", None)


def tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table of the database (SQLite's own left out) with its column names."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' "
            "ESCAPE '^' ORDER BY name"
        )
    ]
    return {n: [row[1] for row in conn.execute(f"PRAGMA table_info({quote(n)})")] for n in names}


def holds_data(conn: sqlite3.Connection, table: str, column: str | None) -> bool:
    """Whether ``table`` has a row (with ``column``: a row where it is not NULL)."""
    where = "" if column is None else f" WHERE {quote(column)} IS NOT NULL"
    return conn.execute(f"SELECT 1 FROM {quote(table)}{where} LIMIT 1").fetchone() is not None
