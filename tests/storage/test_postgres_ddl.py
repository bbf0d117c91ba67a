"""PostgreSQL's table layout, value codecs and error translation, on a real server, checked
against what the SQLite backend does with the same schema, operations and values."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from storage import (
    Field,
    FieldTypeError,
    Index,
    LinkType,
    NotSetUpError,
    PostgresStorage,
    RecordType,
    Schema,
    SchemaError,
    SQLiteStorage,
    StorageError,
)
from storage import migration as m
from storage.postgres import errors as pg_errors
from storage.postgres.connection import Connection
from storage.postgres.ddl import MAX_NAME, POSTGRES_DDL
from storage.postgres.dialect import POSTGRES
from storage.sql.driver import bind

from ..conftest import PostgresFactory
from .conftest import blog_schema
from .helpers import POSTS, TAGS, created_id


async def _sqlite(tmp_path: Path, schema: Schema) -> SQLiteStorage:
    store = SQLiteStorage(str(tmp_path / "same.db"))
    await store.setup(schema)
    return store


@pytest.fixture
async def both(
    postgres_storage_factory: PostgresFactory, tmp_path: Path
) -> AsyncIterator[tuple[PostgresStorage, SQLiteStorage]]:
    """The blog schema set up on PostgreSQL and on an SQLite file."""
    pg = await postgres_storage_factory()
    await pg.setup(blog_schema())
    sqlite = await _sqlite(tmp_path, blog_schema())
    yield pg, sqlite
    await sqlite.close()


async def test_the_tables_are_the_sqlite_backends(
    both: tuple[PostgresStorage, SQLiteStorage],
) -> None:
    pg, sqlite = both
    assert await pg.inspect() == await sqlite.inspect()


async def test_column_types(postgres_storage_factory: PostgresFactory) -> None:
    pg = await postgres_storage_factory()
    await pg.setup(blog_schema())
    types = await pg._transaction(
        False,
        lambda c: {
            (r[0], r[1]): r[2]
            for r in c.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        },
    )
    assert types[("User", "id")] == "bigint"
    assert types[("User", "name")] == "text"
    assert types[("User", "age")] == "numeric"
    assert types[("User", "active")] == "boolean"
    assert types[("User", "meta")] == "text"
    assert types[("User", "joined")] == "timestamp with time zone"
    assert types[(TAGS, "source")] == "bigint"
    assert types[(TAGS, "weight")] == "numeric"


async def test_setup_is_idempotent_and_adds_new_fields(
    postgres_storage_factory: PostgresFactory,
) -> None:
    pg = await postgres_storage_factory()
    small = Schema([RecordType("Item", [Field("name")], [Index(["name"], unique=True)])])
    await pg.setup(small)
    await pg.setup(small)
    grown = Schema(
        [RecordType("Item", [Field("name"), Field("qty", "integer")], [Index(["name"])])]
    )
    await pg.setup(grown)
    assert (await pg.inspect())["Item"] == ["id", "name", "qty"]


async def test_setup_without_install_names_what_is_missing(
    postgres_storage_factory: PostgresFactory,
) -> None:
    pg = await postgres_storage_factory()
    with pytest.raises(NotSetUpError, match="tables missing for User"):
        await pg.setup(blog_schema(), install=False)
    await pg.setup(Schema([RecordType("Item", [Field("name")])]))
    with pytest.raises(NotSetUpError, match=r"columns missing: Item\.qty"):
        await pg.setup(
            Schema([RecordType("Item", [Field("name"), Field("qty", "number")])]), install=False
        )


async def test_names_postgresql_would_truncate_are_refused(
    postgres_storage_factory: PostgresFactory,
) -> None:
    pg = await postgres_storage_factory()
    with pytest.raises(SchemaError, match="at most 63 bytes"):
        await pg.setup(Schema([RecordType("R" + "x" * 63, [Field("name")])]))
    with pytest.raises(SchemaError, match=r"field R\.f+: PostgreSQL names are at most 63 bytes"):
        await pg.setup(Schema([RecordType("R", [Field("f" * 64)])]))
    assert await pg.inspect() == {}  # nothing created


async def test_long_index_names_work_unless_postgresql_would_cut_two_to_one(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """The engine makes index names longer than 63 bytes (of link names); PostgreSQL cuts them
    the same way wherever they are used, so they work, unless two would be cut to one."""
    link = "User_friends_friends_User"
    long_name = f"{link}___{link}_bound_source"  # 66 bytes, as the engine names one
    schema = Schema(
        [RecordType("User", [Field("name")])],
        [
            LinkType(
                link,
                "User",
                "friends",
                "User",
                "friends",
                "n:n",
                [Field("bound", "integer")],
                [Index(["bound"], name=long_name)],
                symmetric=True,
            )
        ],
    )
    pg = await postgres_storage_factory()
    await pg.setup(schema)
    await pg.setup(schema)  # again: the index is found under its cut name
    indexes = await pg._transaction(False, lambda c: POSTGRES_DDL.index_names(_run(c), link))
    assert long_name.encode()[:MAX_NAME].decode() in indexes
    assert len(indexes) == 3  # source, target, and the long one

    twins = Schema(
        [
            RecordType(
                "R",
                [Field("a"), Field("b")],
                [Index(["a"], name="x" * 63 + "_a"), Index(["b"], name="x" * 63 + "_b")],
            )
        ]
    )
    with pytest.raises(SchemaError, match=r"have one name once PostgreSQL cuts it to 63 bytes"):
        await pg.setup(twins)
    assert "R" not in await pg.inspect()


def _run(c: Connection) -> Any:
    return bind(c, POSTGRES)


async def test_holds_data_answers_as_on_sqlite(
    both: tuple[PostgresStorage, SQLiteStorage],
) -> None:
    pg, sqlite = both
    await sqlite.create("User", {"name": "ada"})
    await pg.create("User", {"name": "ada"})
    checks: list[tuple[str, str | None]] = [
        ("User", None),
        ("User", "name"),
        ("User", "age"),
        ("Post", None),
        ("Nope", None),
        ("User", "nope"),
    ]
    assert await pg.holds_data(checks) == await sqlite.holds_data(checks)
    assert await pg.holds_data(checks) == [True, True, False, False, False, False]


# -- the neutral operations ------------------------------------------------------------------

_OLD = Schema(
    [
        RecordType("Author", [Field("name"), Field("old_note")]),
        RecordType("Book", [Field("title"), Field("isbn")], [Index(["isbn"])]),
        RecordType("Gone", [Field("x")]),
    ],
    [LinkType("Author_books_author_Book", "Author", "books", "Book", "author", "n:n")],
)
_LINK_OLD = _OLD.records["Author_books_author_Book"]
_RENAMED = RecordType("Volume", [Field("title"), Field("isbn")], [Index(["isbn"], unique=True)])
_LINK_NEW = LinkType("Author_books_author_Volume", "Author", "books", "Volume", "author", "1:n")
_NEW = Schema(
    [RecordType("Author", [Field("full_name"), Field("born", "timestamp")]), _RENAMED],
    [_LINK_NEW],
)
_OPERATIONS: list[m.Operation] = [
    m.DropTable("Gone"),
    m.RenameColumn("Author", "name", "full_name"),
    m.DropColumn("Author", "old_note"),
    m.AddColumn("Author", Field("born", "timestamp")),
    m.DropIndex("Book", Index(["isbn"])),
    m.RenameTable(_OLD.records["Book"], _RENAMED),
    m.AddIndex("Volume", Index(["isbn"], unique=True)),
    m.RenameTable(_LINK_OLD, _LINK_NEW),
    m.AlterLink(_LINK_OLD, _LINK_NEW),  # type: ignore[arg-type]
]


async def _indexes(pg: Any, tables: list[str]) -> dict[str, list[str]]:
    def read(c: Connection) -> dict[str, list[str]]:
        return {t: POSTGRES_DDL.index_names(_run(c), t) for t in tables}

    result: dict[str, list[str]] = await pg._transaction(False, read)
    return result


async def test_migration_operations_give_the_tables_sqlite_gets(
    postgres_storage_factory: PostgresFactory, tmp_path: Path
) -> None:
    pg = await postgres_storage_factory()
    await pg.setup(_OLD)
    await pg._transaction(
        True,
        lambda c: c.execute('INSERT INTO "Author" (name, old_note) VALUES ($1, $2)', ["ada", "x"]),
    )
    backfilled = await pg.migrate(_NEW, _OPERATIONS, lambda session: session.count("Author"))
    assert backfilled == 1
    assert pg.schema is _NEW
    sqlite = await _sqlite(tmp_path, _OLD)
    try:
        await sqlite.migrate(_NEW, _OPERATIONS, lambda session: None)
        assert await pg.inspect() == await sqlite.inspect()
    finally:
        await sqlite.close()
    # the renamed column kept its value; the indexes follow the new names and cardinality
    rows = await pg._transaction(
        False,
        lambda c: [tuple(r) for r in c.execute('SELECT full_name, born FROM "Author"').fetchall()],
    )
    assert rows == [("ada", None)]
    indexes = await _indexes(pg, ["Volume", _LINK_NEW.name])
    assert indexes == {
        "Volume": ["Volume__isbn__u"],
        _LINK_NEW.name: sorted([f"{_LINK_NEW.name}__source", f"{_LINK_NEW.name}__target__u"]),
    }


async def test_an_operation_the_rows_violate_is_a_schema_error_and_changes_nothing(
    postgres_storage_factory: PostgresFactory,
) -> None:
    pg = await postgres_storage_factory()
    await pg.setup(_OLD)
    await pg._transaction(
        True,
        lambda c: c.executemany(
            'INSERT INTO "Book" (title, isbn) VALUES ($1, $2)', [("a", "1"), ("b", "1")]
        ),
    )
    before = await pg.inspect()
    operations: list[m.Operation] = [
        m.AddColumn("Book", Field("pages", "integer")),
        m.AddIndex("Book", Index(["isbn"], unique=True)),
    ]
    wanted = Schema(
        [
            RecordType("Author", [Field("name"), Field("old_note")]),
            RecordType(
                "Book",
                [Field("title"), Field("isbn"), Field("pages", "integer")],
                [Index(["isbn"], unique=True)],
            ),
            RecordType("Gone", [Field("x")]),
        ],
        [_LINK_OLD],  # type: ignore[list-item]
    )
    with pytest.raises(
        SchemaError, match=r"the unique index on Book\(isbn\) fails on the stored rows"
    ):
        await pg.migrate(wanted, operations, lambda session: None)
    assert await pg.inspect() == before  # the added column went with the rest
    assert pg.schema is _OLD


# -- codecs: the same values out as on SQLite ------------------------------------------------

_VALUES: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", "ünïcødé ☃ 日本"),
    ("name", "x" * 10_000),
    ("age", 0),
    ("age", -7),
    ("age", 2**53 + 1),
    ("age", 2**63 - 1),
    ("age", -(2**63)),
    ("age", 0.0),
    ("age", 2.0),
    ("age", 1.5),
    ("age", 1e300),
    ("age", 5e-324),
    ("age", 0.1 + 0.2),
    ("age", 1e20),
    ("age", -1.7976931348623157e308),
    ("active", True),
    ("active", False),
    ("meta", {"b": 1, "a": [1, None, {"d": 2.5, "c": True}], "aa": 2**100}),
    ("meta", [1e308, "\ud800 lone", "nul \x00 inside json"]),
    ("meta", {"int": 1, "float": 1.0}),
    ("joined", datetime(2024, 3, 1, 18, 0, 15, 123456, tzinfo=timezone(timedelta(hours=5)))),
    ("joined", datetime(1, 1, 2, tzinfo=UTC)),
    ("joined", datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-12)))),
    ("joined", "2024-03-01T12:00:00.5Z"),
]


def _shape(value: Any) -> Any:
    """``value`` with types and dict key order made visible."""
    if isinstance(value, dict):
        return ("dict", [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return (type(value).__name__, value)


async def test_values_read_back_as_sqlite_reads_them(
    both: tuple[PostgresStorage, SQLiteStorage],
) -> None:
    pg, sqlite = both
    types = {f.name: f.type for f in blog_schema().records["User"].fields}
    for field, value in _VALUES:
        on_sqlite = created_id(await sqlite.create("User", {field: value}))
        found = await sqlite.find_one("User", {"id": on_sqlite}, [field])
        assert found is not None
        encoded = POSTGRES.codecs.encode("User", field, types[field], value)

        def write_read(c: Connection, field: str = field, encoded: Any = encoded) -> Any:
            (row,) = c.execute(
                f'INSERT INTO "User" ("{field}") VALUES ($1) RETURNING "{field}"', [encoded]
            ).fetchall()
            return row[0]

        read = POSTGRES.codecs.decode(types[field], await pg._transaction(True, write_read))
        assert _shape(read) == _shape(found[field]), (field, value)


async def test_sums_keep_ints_and_floats_apart(postgres_storage_factory: PostgresFactory) -> None:
    pg = await postgres_storage_factory()
    await pg.setup(blog_schema())

    def sums(c: Connection, values: list[Any]) -> Any:
        c.script('DELETE FROM "User"')
        c.executemany(
            'INSERT INTO "User" (age) VALUES ($1)',
            [[POSTGRES.codecs.encode("User", "age", "number", v)] for v in values],
        )
        return POSTGRES.codecs.decode(
            "number", c.execute('SELECT sum(age) FROM "User"').fetchone()[0]
        )

    ints = await pg._transaction(True, lambda c: sums(c, [1, 2, 2**62]))
    assert ints == 3 + 2**62 and type(ints) is int
    mixed = await pg._transaction(True, lambda c: sums(c, [1, 2.5]))
    assert mixed == 3.5 and type(mixed) is float
    integral = await pg._transaction(True, lambda c: sums(c, [1.0, 2.0]))
    assert integral == 3.0 and type(integral) is float


@pytest.mark.parametrize(
    ("field", "type_name", "value", "detail"),
    [
        ("name", "string", "nul \x00 in", "NUL character"),
        ("age", "number", math.nan, "a finite number"),
        ("age", "number", 2**63, "integer outside 64 bits"),
        ("active", "boolean", 1, "a boolean"),
        ("joined", "timestamp", datetime(2024, 1, 1), "naive"),
        ("meta", "json", {1: "x"}, "not a string"),
    ],
)
def test_values_postgresql_cannot_hold_are_refused_naming_the_field(
    field: str, type_name: str, value: Any, detail: str
) -> None:
    with pytest.raises(FieldTypeError, match=detail) as caught:
        POSTGRES.codecs.encode("User", field, type_name, value)
    assert (caught.value.record, caught.value.field) == ("User", field)


# -- constraint failures and SQLSTATE --------------------------------------------------------


async def _refusal(pg: Any, sql: str, params: list[Any]) -> BaseException:
    def attempt(c: Connection) -> None:
        c.execute(sql, params)

    with pytest.raises(StorageError) as caught:
        await pg._transaction(True, attempt)
    cause = caught.value.__cause__
    assert cause is not None
    return cause


async def test_the_dialect_reads_constraint_failures_of_the_server(
    postgres_storage_factory: PostgresFactory,
) -> None:
    pg = await postgres_storage_factory()
    await pg.setup(blog_schema())
    ada = created_id(await pg.create("User", {"name": "ada"}))

    duplicate = await _refusal(pg, 'INSERT INTO "User" (name) VALUES ($1)', ["ada"])
    assert isinstance(duplicate, POSTGRES.integrity_errors)
    violation = POSTGRES.violation(duplicate)
    assert (violation.kind, violation.fields) == ("unique", ("name",))

    missing = await _refusal(pg, f'INSERT INTO "{POSTS}" (source, target) VALUES ($1, 99)', [ada])
    assert POSTGRES.violation(missing).kind == "foreign key"

    null = await _refusal(pg, f'INSERT INTO "{POSTS}" (source, target) VALUES (NULL, $1)', [ada])
    assert POSTGRES.violation(null).kind == "non-null"
    assert (POSTGRES.violation(null).fields, POSTGRES.violation(null).table) == (("source",), POSTS)


def test_placeholders_are_numbered_outside_quotes() -> None:
    assert POSTGRES.render("SELECT \"a?\" FROM t WHERE x = ? AND y IN (?, ?) AND z = '?'") == (
        "SELECT \"a?\" FROM t WHERE x = $1 AND y IN ($2, $3) AND z = '?'"
    )
    assert POSTGRES.render("SAVEPOINT w1") == "SAVEPOINT w1"


def test_store_faults_and_retryable_states() -> None:
    assert pg_errors.is_store_fault("53100")  # disk full
    assert pg_errors.is_store_fault("57P01")  # admin shutdown
    assert pg_errors.is_store_fault("08006")  # connection failure
    assert pg_errors.is_store_fault("25006")  # read-only transaction (a standby)
    assert not pg_errors.is_store_fault("23505")
    assert not pg_errors.is_store_fault("22012")
    assert not pg_errors.is_store_fault(None)
    assert {"40001", "40P01"} == pg_errors.RETRY_STATES
