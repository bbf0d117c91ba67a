"""Tables, columns and indexes for a schema, and the neutral schema operations
(``storage.migration``), on any SQL backend.

What is the same everywhere lives here: which indexes a record type gets and their names, the
standard statements of each operation (``ALTER TABLE ... ADD/DROP/RENAME COLUMN``, ``RENAME
TO``, ``CREATE [UNIQUE] INDEX IF NOT EXISTS``, ``DROP ... IF EXISTS``), creating what a schema
lacks, and whether a table holds data. What differs comes from the backend's :class:`DDL`
renderer: column types and the id column, name rules, and what the database holds (its
catalogue). Every statement runs inside the caller's transaction; on a backend with
transactional DDL (SQLite, PostgreSQL) a migration that fails leaves the tables as they were.
"""

from __future__ import annotations

from typing import Protocol

from storage import migration as m
from storage.errors import SchemaError
from storage.schema import AnyRecordType, Index, LinkType, Schema
from storage.sql.dialect import Dialect, quote
from storage.sql.driver import Execute

__all__ = [
    "DDL",
    "apply",
    "create_index",
    "enforce_non_null",
    "holds_data",
    "index_name",
    "indexes_of",
    "install",
    "missing_columns",
    "missing_tables",
]


class DDL(Protocol):
    """What a backend renders of its own for the table layout."""

    def check_names(self, schema: Schema) -> None:
        """Refuse names the database cannot keep apart (raise :class:`SchemaError`)."""
        ...

    def column(self, name: str, type_name: str) -> str:
        """The definition of a value column of a field type (``"qty" DOUBLE PRECISION``)."""
        ...

    def create_table(self, record: AnyRecordType) -> str:
        """``CREATE TABLE`` of a record type: its id column (never reused), a link's
        ``source``/``target`` referencing their records, and a column per field."""
        ...

    def tables(self, run: Execute) -> dict[str, list[str]]:
        """Every table of the database (the backend's own left out) with its column names."""
        ...

    def columns(self, run: Execute, table: str) -> list[str]:
        """The column names of ``table`` ([] when there is no such table)."""
        ...

    def index_names(self, run: Execute, table: str) -> list[str]:
        """The names of the indexes on ``table`` (the backend's own left out)."""
        ...

    def non_null_fields(self, run: Execute) -> dict[str, set[str]]:
        """Per table, the columns the database keeps non-null (``id`` left out)."""
        ...

    def set_non_null(self, run: Execute, table: str, field: str, on: bool) -> None:
        """Make the database refuse (``on``) or accept again a NULL in ``table.field``; a
        NULL already stored is the caller's to rule out first."""
        ...

    def release_non_null(self, run: Execute, table: str, field: str | None) -> None:
        """Drop what keeps ``table.field`` (every field when None) non-null where it would
        block or outlive a rename or drop of that column or table; :func:`enforce_non_null`
        puts it back under the new names. (SQLite's triggers; PostgreSQL's NOT NULL moves
        with its column.)"""
        ...


def indexes_of(record: AnyRecordType) -> list[Index]:
    """The declared indexes of a record type, and a link's on ``source`` and ``target`` (unique
    on the side that holds one link at most)."""
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
    """The index's own name, or one made of its table, fields and uniqueness."""
    return index.name or f"{table}__{'__'.join(index.fields)}{'__u' if index.unique else ''}"


def create_index(run: Execute, table: str, index: Index) -> None:
    """Create ``index`` on ``table`` unless it exists."""
    name = index_name(table, index)
    unique = "UNIQUE " if index.unique else ""
    columns = ", ".join(quote(f) for f in index.fields)
    where = ""
    if index.where:
        where = " WHERE " + " AND ".join(_equals(f, v) for f, v in index.where)
    run(
        f"CREATE {unique}INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({columns}){where}",
        (),
    )


def _equals(field: str, value: object) -> str:
    """``field = value`` with the value as a literal (an index's WHERE takes no parameters);
    values are checked by :class:`Index` (strings, finite numbers, booleans, None)."""
    if value is None:
        return f"{quote(field)} IS NULL"
    if isinstance(value, bool):
        literal = "TRUE" if value else "FALSE"
    elif isinstance(value, int | float):
        literal = repr(value)
    else:
        literal = "'" + str(value).replace("'", "''") + "'"
    return f"{quote(field)} = {literal}"


def install(run: Execute, ddl: DDL, schema: Schema, non_null: bool = True) -> None:
    """Create missing tables, columns and indexes (idempotent; never drops anything), and
    with ``non_null`` make the non-null fields so (:func:`enforce_non_null`)."""
    ddl.check_names(schema)
    for record in schema.records.values():
        columns = ddl.columns(run, record.name)
        if not columns:
            run(ddl.create_table(record), ())
            continue
        # A model that grew a field: add the column; old rows read it as None.
        for field in record.fields:
            if field.name not in columns:
                definition = ddl.column(field.name, field.type)
                run(f"ALTER TABLE {quote(record.name)} ADD COLUMN {definition}", ())
    for record in schema.records.values():
        for index in indexes_of(record):
            create_index(run, record.name, index)
    enforce_non_null(run, ddl, schema, add=non_null)


def enforce_non_null(run: Execute, ddl: DDL, schema: Schema, add: bool = True) -> None:
    """Make the database keep exactly the ``non_null`` fields of ``schema`` non-null: release
    the others, and (with ``add``) enforce the new ones, each after checking that no stored
    row holds a NULL there (a :class:`SchemaError` naming the field and the count otherwise;
    the caller's transaction then rolls back whole). One catalogue read; a full scan of a
    table only for a field that becomes non-null."""
    present = ddl.non_null_fields(run)
    for name, record in schema.records.items():
        held = present.get(name, set())
        for field in record.fields:
            if not field.non_null and field.name in held:
                ddl.set_non_null(run, name, field.name, False)
            elif add and field.non_null and field.name not in held:
                nulls = run(
                    f"SELECT count(*) FROM {quote(name)} WHERE {quote(field.name)} IS NULL", ()
                ).fetchone()[0]
                if nulls:
                    raise SchemaError(
                        f"{name}.{field.name} is declared non-null, but {nulls} stored row(s) "
                        "hold no value there: give the property a default (the rows that gain "
                        "the field get it) or fill them first; nothing was changed",
                        record=name,
                        field=field.name,
                    )
                ddl.set_non_null(run, name, field.name, True)


def apply(
    run: Execute, dialect: Dialect, ddl: DDL, schema: Schema, operations: list[m.Operation]
) -> None:
    """Run ``operations`` in order, then create whatever else ``schema`` needs (idempotent).
    An operation the stored rows refuse (a unique index over duplicates) raises
    :class:`SchemaError` naming it; the caller's transaction is then rolled back whole.
    Fields stop being non-null here; new non-null ones are the caller's to enforce once the
    rows are filled (:func:`enforce_non_null`, after a migration's defaults and backfill)."""
    for operation in operations:
        try:
            _apply(run, ddl, operation)
        except dialect.integrity_errors as exc:
            raise SchemaError(
                f"{_describe(operation)} fails on the stored rows: {exc} (change or delete "
                "the rows that violate it first)",
                record=_record_of(operation),
            ) from exc
    install(run, ddl, schema, non_null=False)


def _apply(run: Execute, ddl: DDL, op: m.Operation) -> None:
    if isinstance(op, m.AddTable):
        run(ddl.create_table(op.record), ())
    elif isinstance(op, m.DropTable):
        run(f"DROP TABLE IF EXISTS {quote(op.name)}", ())
    elif isinstance(op, m.RenameTable):
        ddl.release_non_null(run, op.old.name, None)
        for name in ddl.index_names(run, op.old.name):
            run(f"DROP INDEX {quote(name)}", ())
        # Index names carry the table's name: the new ones are created with the rest of the
        # schema's indexes once every column is in place (install, at the end).
        run(f"ALTER TABLE {quote(op.old.name)} RENAME TO {quote(op.new.name)}", ())
    elif isinstance(op, m.AddColumn):
        definition = ddl.column(op.field.name, op.field.type)
        run(f"ALTER TABLE {quote(op.record)} ADD COLUMN {definition}", ())
    elif isinstance(op, m.DropColumn):
        ddl.release_non_null(run, op.record, op.field)
        run(f"ALTER TABLE {quote(op.record)} DROP COLUMN {quote(op.field)}", ())
    elif isinstance(op, m.RenameColumn):
        ddl.release_non_null(run, op.record, op.old)
        run(f"ALTER TABLE {quote(op.record)} RENAME COLUMN {quote(op.old)} TO {quote(op.new)}", ())
    elif isinstance(op, m.AddIndex):
        create_index(run, op.record, op.index)
    elif isinstance(op, m.DropIndex):
        run(f"DROP INDEX IF EXISTS {quote(index_name(op.record, op.index))}", ())
    elif isinstance(op, m.AlterLink):
        for index in _link_indexes(op.old):
            run(f"DROP INDEX IF EXISTS {quote(index_name(op.old.name, index))}", ())
        for index in _link_indexes(op.new):
            create_index(run, op.new.name, index)
    else:  # pragma: no cover - the Operation union is closed
        raise SchemaError(f"unknown schema operation {op!r}")


def _link_indexes(link: LinkType) -> list[Index]:
    return [i for i in indexes_of(link) if i.fields in (("source",), ("target",))]


def _describe(op: m.Operation) -> str:
    if isinstance(op, m.AddIndex):
        kind = "unique index" if op.index.unique else "index"
        named = f" {op.index.name}" if op.index.name else ""
        return f"the {kind}{named} on {op.record}({', '.join(op.index.fields)})"
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


def holds_data(run: Execute, table: str, column: str | None) -> bool:
    """Whether ``table`` has a row (with ``column``: a row where it is not NULL)."""
    where = "" if column is None else f" WHERE {quote(column)} IS NOT NULL"
    return run(f"SELECT 1 FROM {quote(table)}{where} LIMIT 1", ()).fetchone() is not None


def missing_tables(run: Execute, ddl: DDL, schema: Schema) -> list[str]:
    """The record types of ``schema`` that have no table."""
    present = ddl.tables(run)
    return [name for name in schema.records if name not in present]


def missing_columns(run: Execute, ddl: DDL, schema: Schema) -> list[str]:
    """``Record.field`` for every field of the schema its table lacks."""
    missing: list[str] = []
    for name, record in schema.records.items():
        present = set(ddl.columns(run, name))
        wanted = [f.name for f in record.fields]
        if name in schema.links:
            wanted = ["source", "target", *wanted]
        missing.extend(f"{name}.{field}" for field in wanted if field not in present)
    return missing
