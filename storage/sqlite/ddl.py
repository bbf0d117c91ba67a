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
from storage.sql_match import quote

# number columns carry no declared type: SQLite then keeps ints as ints and floats as floats.
COLUMN_TYPES = {
    "string": "TEXT",
    "number": "",
    "boolean": "INTEGER",
    "json": "TEXT",
    "timestamp": "INTEGER",
}


def install(conn: sqlite3.Connection, schema: Schema) -> None:
    """Create missing tables, columns and indexes (idempotent; never drops anything)."""
    for record in schema.records.values():
        if record.name.lower().startswith("sqlite_"):
            raise SchemaError(
                f"record type {record.name!r}: names starting with 'sqlite_' "
                "are reserved by SQLite",
                record=record.name,
            )
        _table(conn, schema, record)
    for record in schema.records.values():
        for index in _indexes(record):
            _index(conn, record.name, index)


def _table(conn: sqlite3.Connection, schema: Schema, record: AnyRecordType) -> None:
    columns = ['"id" INTEGER PRIMARY KEY AUTOINCREMENT']
    if isinstance(record, LinkType):
        columns.append(f'"source" INTEGER NOT NULL REFERENCES {quote(record.source)}("id")')
        columns.append(f'"target" INTEGER NOT NULL REFERENCES {quote(record.target)}("id")')
    wanted = {f.name: f"{quote(f.name)} {COLUMN_TYPES[f.type]}".rstrip() for f in record.fields}
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(record.name)})")}
    if not existing:
        conn.execute(
            f"CREATE TABLE {quote(record.name)} ({', '.join([*columns, *wanted.values()])})"
        )
        return
    # A model that grew a field: add the column; old rows read it as None.
    for name, definition in wanted.items():
        if name not in existing:
            conn.execute(f"ALTER TABLE {quote(record.name)} ADD COLUMN {definition}")


def _indexes(record: AnyRecordType) -> list[Index]:
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


def _index(conn: sqlite3.Connection, table: str, index: Index) -> None:
    name = index.name or f"{table}__{'__'.join(index.fields)}{'__u' if index.unique else ''}"
    unique = "UNIQUE " if index.unique else ""
    columns = ", ".join(quote(f) for f in index.fields)
    conn.execute(f"CREATE {unique}INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({columns})")
