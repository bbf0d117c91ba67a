"""Table layout for SQLite.

One table per record type and one per link type, each with an ``id INTEGER PRIMARY KEY
AUTOINCREMENT`` (ids are never reused, so an id seen in an event never names another record
later). Link tables hold ``source`` and ``target`` columns; the exclusive side of a link gets a
unique index, the other a plain one. Nothing above the backend depends on this layout.
"""

from __future__ import annotations

import sqlite3

from storage.errors import SchemaError
from storage.schema import AnyRecordType, Index, LinkType, Schema
from storage.sql.dialect import quote

# number columns carry no declared type: SQLite then keeps ints as ints and floats as floats.
COLUMN_TYPES = {
    "string": "TEXT",
    "number": "",
    "integer": "INTEGER",
    "boolean": "INTEGER",
    "json": "TEXT",
    "timestamp": "INTEGER",
}


def install(conn: sqlite3.Connection, schema: Schema) -> None:
    """Create missing tables, columns and indexes (idempotent; never drops anything)."""
    _check_names(schema)
    for record in schema.records.values():
        _table(conn, schema, record)
    for record in schema.records.values():
        for index in indexes_of(record):
            create_index(conn, record.name, index)


def _check_names(schema: Schema) -> None:
    """Refuse names SQLite cannot tell apart: it ignores case in identifiers, and tables and
    indexes share one namespace (two objects with one name would silently share a table or
    skip an index)."""
    objects: dict[str, str] = {}

    def claim(name: str, what: str, record: str) -> None:
        if name.lower().startswith("sqlite_"):
            raise SchemaError(
                f"{what}: names starting with 'sqlite_' are reserved by SQLite", record=record
            )
        other = objects.setdefault(name.lower(), what)
        if other != what:
            raise SchemaError(
                f"{what} and {other} have names that SQLite does not tell apart (it ignores case)",
                record=record,
            )

    for record in schema.records.values():
        claim(record.name, f"record type {record.name!r}", record.name)
        reserved = ("id", "source", "target") if isinstance(record, LinkType) else ("id",)
        columns = {c: c for c in reserved}
        for field in record.fields:
            other = columns.setdefault(field.name.lower(), field.name)
            if other != field.name:
                raise SchemaError(
                    f"{record.name}: field {field.name!r} and {other!r} differ only in case, "
                    "which SQLite ignores",
                    record=record.name,
                    field=field.name,
                )
    for record in schema.records.values():
        for index in indexes_of(record):
            name = index_name(record.name, index)
            claim(name, f"index {name!r} on {record.name}", record.name)


def create_table(conn: sqlite3.Connection, record: AnyRecordType) -> None:
    """Create the table of ``record`` (not its indexes)."""
    columns = ['"id" INTEGER PRIMARY KEY AUTOINCREMENT']
    if isinstance(record, LinkType):
        columns.append(f'"source" INTEGER NOT NULL REFERENCES {quote(record.source)}("id")')
        columns.append(f'"target" INTEGER NOT NULL REFERENCES {quote(record.target)}("id")')
    columns.extend(f"{quote(f.name)} {COLUMN_TYPES[f.type]}".rstrip() for f in record.fields)
    conn.execute(f"CREATE TABLE {quote(record.name)} ({', '.join(columns)})")


def _table(conn: sqlite3.Connection, schema: Schema, record: AnyRecordType) -> None:
    wanted = {f.name: f"{quote(f.name)} {COLUMN_TYPES[f.type]}".rstrip() for f in record.fields}
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(record.name)})")}
    if not existing:
        create_table(conn, record)
        return
    # A model that grew a field: add the column; old rows read it as None.
    for name, definition in wanted.items():
        if name not in existing:
            conn.execute(f"ALTER TABLE {quote(record.name)} ADD COLUMN {definition}")


def indexes_of(record: AnyRecordType) -> list[Index]:
    indexes = list(record.indexes)
    if isinstance(record, LinkType):
        # Each source has at most one target when the target side is "1", and vice versa.
        indexes.append(
            Index(("source",), unique=record.target_is_exclusive and not record.symmetric)
        )
        indexes.append(
            Index(("target",), unique=record.source_is_exclusive and not record.symmetric)
        )
    return indexes


def index_name(table: str, index: Index) -> str:
    return index.name or f"{table}__{'__'.join(index.fields)}{'__u' if index.unique else ''}"


def create_index(conn: sqlite3.Connection, table: str, index: Index) -> None:
    name = index_name(table, index)
    unique = "UNIQUE " if index.unique else ""
    columns = ", ".join(quote(f) for f in index.fields)
    conn.execute(f"CREATE {unique}INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({columns})")
