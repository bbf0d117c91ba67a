"""SQLite's table layout: the :class:`~storage.sql.migrate.DDL` renderer of the SQLite backend.

One table per record type and one per link type, each with an ``id INTEGER PRIMARY KEY
AUTOINCREMENT`` (ids are never reused, so an id seen in an event never names another record
later). Link tables hold ``source`` and ``target`` columns referencing their records. Number
columns carry no declared type, so SQLite keeps ints as ints and floats as floats. Needs SQLite
3.35+ (``ALTER TABLE ... DROP COLUMN``). Nothing above the backend depends on this layout.
"""

from __future__ import annotations

from storage.errors import SchemaError
from storage.schema import AnyRecordType, LinkType, Schema
from storage.sql.dialect import quote
from storage.sql.driver import Execute
from storage.sql.migrate import index_name, indexes_of

__all__ = ["COLUMN_TYPES", "SQLITE_DDL", "SQLiteDDL"]

_INSERT = "__non_null_insert"
_UPDATE = "__non_null_update"

COLUMN_TYPES = {
    "string": "TEXT",
    "number": "",
    "integer": "INTEGER",
    "boolean": "INTEGER",
    "json": "TEXT",
    "timestamp": "INTEGER",
}


class SQLiteDDL:
    """Column types, the id column, name rules and the catalogue, SQLite's way."""

    def column(self, name: str, type_name: str) -> str:
        return f"{quote(name)} {COLUMN_TYPES[type_name]}".rstrip()

    def create_table(self, record: AnyRecordType) -> str:
        columns = ['"id" INTEGER PRIMARY KEY AUTOINCREMENT']
        if isinstance(record, LinkType):
            columns.append(f'"source" INTEGER NOT NULL REFERENCES {quote(record.source)}("id")')
            columns.append(f'"target" INTEGER NOT NULL REFERENCES {quote(record.target)}("id")')
        columns.extend(self.column(f.name, f.type) for f in record.fields)
        return f"CREATE TABLE {quote(record.name)} ({', '.join(columns)})"

    def tables(self, run: Execute) -> dict[str, list[str]]:
        names = [
            row[0]
            for row in run(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'sqlite^_%' ESCAPE '^' ORDER BY name",
                (),
            ).fetchall()
        ]
        return {n: self.columns(run, n) for n in names}

    def columns(self, run: Execute, table: str) -> list[str]:
        """The column names of ``table`` ([] without one)."""
        return [row[1] for row in run(f"PRAGMA table_info({quote(table)})", ()).fetchall()]

    def index_names(self, run: Execute, table: str) -> list[str]:
        return [
            row[1]
            for row in run(f"PRAGMA index_list({quote(table)})", ()).fetchall()
            if not row[1].startswith("sqlite_")
        ]

    # Non-null fields: SQLite cannot add or drop a column's NOT NULL in place (only by
    # rebuilding the table, which its foreign keys make unsafe inside a transaction), so a
    # pair of triggers refuses the NULL instead, with SQLite's own NOT NULL message.

    def non_null_fields(self, run: Execute) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        rows = run("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'", ())
        for table, name in rows.fetchall():
            prefix = f"{table}__"
            if name.startswith(prefix) and name.endswith(_INSERT):
                found.setdefault(table, set()).add(name[len(prefix) : -len(_INSERT)])
        return found

    def set_non_null(self, run: Execute, table: str, field: str, on: bool) -> None:
        if not on:
            self.release_non_null(run, table, field)
            return
        refuse = (
            f"FOR EACH ROW WHEN NEW.{quote(field)} IS NULL BEGIN SELECT RAISE(ABORT, "
            f"'NOT NULL constraint failed: {table}.{field}'); END"
        )
        run(
            f"CREATE TRIGGER {quote(table + '__' + field + _INSERT)} BEFORE INSERT ON "
            f"{quote(table)} {refuse}",
            (),
        )
        run(
            f"CREATE TRIGGER {quote(table + '__' + field + _UPDATE)} BEFORE UPDATE OF "
            f"{quote(field)} ON {quote(table)} {refuse}",
            (),
        )

    def release_non_null(self, run: Execute, table: str, field: str | None) -> None:
        fields = [field] if field is not None else self.non_null_fields(run).get(table, set())
        for name in fields:
            for suffix in (_INSERT, _UPDATE):
                run(f"DROP TRIGGER IF EXISTS {quote(table + '__' + name + suffix)}", ())

    def check_names(self, schema: Schema) -> None:
        """Refuse names SQLite cannot tell apart: it ignores case in identifiers, and tables
        and indexes share one namespace (two objects with one name would silently share a
        table or skip an index)."""
        objects: dict[str, str] = {}

        def claim(name: str, what: str, record: str) -> None:
            if name.lower().startswith("sqlite_"):
                raise SchemaError(
                    f"{what}: names starting with 'sqlite_' are reserved by SQLite", record=record
                )
            other = objects.setdefault(name.lower(), what)
            if other != what:
                raise SchemaError(
                    f"{what} and {other} have names that SQLite does not tell apart "
                    "(it ignores case)",
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
                        f"{record.name}: field {field.name!r} and {other!r} differ only in "
                        "case, which SQLite ignores",
                        record=record.name,
                        field=field.name,
                    )
        for record in schema.records.values():
            for index in indexes_of(record):
                name = index_name(record.name, index)
                claim(name, f"index {name!r} on {record.name}", record.name)


SQLITE_DDL = SQLiteDDL()
"""The one SQLite DDL renderer (it holds no state)."""
