"""Schema declarations (validation, every rule a SchemaError) and setup on a database file
(idempotent, install=False, a model that grows)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage import (
    Field,
    Index,
    LinkType,
    NotSetUpError,
    RecordType,
    Schema,
    SchemaError,
    SQLiteStorage,
    StorageError,
)

from .conftest import blog_schema
from .helpers import POSTS, TAGS, created_id, dump

# -- declarations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "1abc", "has space", "a-b", "a.b", "é", "&", "a;drop", 5, None]
)
def test_invalid_field_names(name: Any) -> None:
    with pytest.raises(SchemaError, match="field name"):
        Field(name)


@pytest.mark.parametrize("name", ["", "9Users", "User Account", "User-1", '"User"'])
def test_invalid_record_and_link_names(name: str) -> None:
    with pytest.raises(SchemaError, match="record type name"):
        RecordType(name)
    with pytest.raises(SchemaError, match="link type name"):
        LinkType(name, "A", "b", "B", "a")


@pytest.mark.parametrize("attr", ["", "1x", "has space", "a.b"])
def test_invalid_relation_attribute_names(attr: str) -> None:
    with pytest.raises(SchemaError, match="relation attribute name"):
        LinkType("L", "A", attr, "B", "a")
    with pytest.raises(SchemaError, match="relation attribute name"):
        LinkType("L", "A", "b", "B", attr)


def test_valid_names_are_accepted() -> None:
    schema = Schema(
        [RecordType("_private", [Field("a1"), Field("_b"), Field("CamelCase")]), RecordType("B")],
        [LinkType("L_1", "_private", "bs", "B", "owner_", "1:n")],
    )
    assert set(schema.records) == {"_private", "B", "L_1"}
    assert set(schema.fields("_private")) == {"a1", "_b", "CamelCase"}
    assert set(schema.attributes("_private")) == {"bs"}
    assert set(schema.attributes("B")) == {"owner_"}


def test_unknown_field_type() -> None:
    with pytest.raises(SchemaError, match="unknown type 'int'") as info:
        Field("n", "int")  # type: ignore[arg-type]
    assert info.value.field == "n"


def test_duplicate_fields() -> None:
    with pytest.raises(SchemaError, match="declares field 'a' twice") as info:
        RecordType("R", [Field("a"), Field("b"), Field("a", "number")])
    assert info.value.record == "R"
    with pytest.raises(SchemaError, match="declares field 'w' twice"):
        LinkType("L", "A", "b", "B", "a", fields=[Field("w"), Field("w")])


def test_fields_must_be_field_instances() -> None:
    with pytest.raises(SchemaError, match="Field instances"):
        RecordType("R", ["name"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "make",
    [
        lambda: RecordType("R", [Field("id")]),
        lambda: LinkType("L", "A", "b", "B", "a", fields=[Field("id")]),
        lambda: LinkType("L", "A", "b", "B", "a", fields=[Field("source")]),
        lambda: LinkType("L", "A", "b", "B", "a", fields=[Field("target", "number")]),
    ],
)
def test_reserved_field_names(make: Callable[[], Any]) -> None:
    with pytest.raises(SchemaError, match="reserved") as info:
        make()
    assert info.value.field in ("id", "source", "target")


def test_relation_attribute_may_not_be_called_id() -> None:
    with pytest.raises(SchemaError, match="reserved") as info:
        Schema([RecordType("A"), RecordType("B")], [LinkType("L", "A", "id", "B", "a")])
    assert info.value.record == "A"


def test_duplicate_record_types() -> None:
    with pytest.raises(SchemaError, match="'A' is declared twice"):
        Schema([RecordType("A"), RecordType("A", [Field("x")])])
    # a link is a record type too: its name may not repeat a record's
    with pytest.raises(SchemaError, match="'A' is declared twice"):
        Schema([RecordType("A"), RecordType("B")], [LinkType("A", "A", "bs", "B", "as_")])


def test_records_and_links_must_be_the_right_classes() -> None:
    with pytest.raises(SchemaError, match="RecordType instances"):
        Schema([LinkType("L", "A", "b", "B", "a")])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match="LinkType instances"):
        Schema([RecordType("A")], [RecordType("B")])  # type: ignore[list-item]


@pytest.mark.parametrize(("source", "target"), [("Nope", "B"), ("A", "Nope")])
def test_unknown_link_endpoint(source: str, target: str) -> None:
    with pytest.raises(SchemaError, match="unknown record type 'Nope'") as info:
        Schema([RecordType("A"), RecordType("B")], [LinkType("L", source, "x", target, "y")])
    assert info.value.record == "L"


def test_unknown_cardinality() -> None:
    with pytest.raises(SchemaError, match="unknown cardinality '1:2'"):
        LinkType("L", "A", "b", "B", "a", "1:2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "B"}, "same record type and attribute"),
        ({"target_attr": "other"}, "same record type and attribute"),
        ({"cardinality": "1:1"}, "must be n:n"),
        ({"cardinality": "1:n"}, "must be n:n"),
        ({"cardinality": "n:1"}, "must be n:n"),
    ],
)
def test_symmetric_link_rules(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "name": "L",
        "source": "A",
        "source_attr": "friends",
        "target": "A",
        "target_attr": "friends",
        "cardinality": "n:n",
        "symmetric": True,
    }
    args.update(kwargs)
    with pytest.raises(SchemaError, match=message) as info:
        LinkType(**args)
    assert info.value.record == "L"


def test_symmetric_link_is_one_attribute() -> None:
    schema = Schema(
        [RecordType("A")], [LinkType("L", "A", "friends", "A", "friends", "n:n", symmetric=True)]
    )
    assert list(schema.attributes("A")) == ["friends"]
    assert schema.attribute("A", "friends").to_many


@pytest.mark.parametrize("cardinality", ["n:1", "n:n"])
def test_cascade_needs_a_single_source(cardinality: Any) -> None:
    with pytest.raises(SchemaError, match="cascade") as info:
        LinkType("L", "A", "b", "B", "a", cardinality, cascade=True)
    assert info.value.record == "L"


@pytest.mark.parametrize("cardinality", ["1:1", "1:n"])
def test_cascade_allowed_with_a_single_source(cardinality: Any) -> None:
    assert LinkType("L", "A", "b", "B", "a", cardinality, cascade=True).cascade


def test_index_rules() -> None:
    with pytest.raises(SchemaError, match="at least one field"):
        Index([])
    with pytest.raises(SchemaError, match="repeats a field"):
        Index(["a", "a"])
    with pytest.raises(SchemaError, match="index name"):
        Index(["a"], name="bad name")
    assert Index("a").fields == ("a",)


def test_unknown_index_field() -> None:
    with pytest.raises(SchemaError, match="unknown field 'nope'") as info:
        Schema([RecordType("A", [Field("x")], [Index(["x", "nope"])])])
    assert (info.value.record, info.value.field) == ("A", "nope")
    # on a link: its own fields only (source/target are indexed by the backend)
    with pytest.raises(SchemaError, match="unknown field 'source'") as info:
        Schema(
            [RecordType("A"), RecordType("B")],
            [LinkType("L", "A", "bs", "B", "as_", indexes=[Index(["source"])])],
        )
    assert (info.value.record, info.value.field) == ("L", "source")
    # a relation attribute is not a field either
    with pytest.raises(SchemaError, match="unknown field 'bs'"):
        Schema(
            [RecordType("A", indexes=[Index(["bs"])]), RecordType("B")],
            [LinkType("L", "A", "bs", "B", "as_")],
        )


def test_relation_attribute_may_not_reuse_a_name() -> None:
    with pytest.raises(SchemaError, match="declared twice") as info:
        Schema(
            [RecordType("A", [Field("bs")]), RecordType("B")], [LinkType("L", "A", "bs", "B", "a")]
        )
    assert (info.value.record, info.value.field) == ("A", "bs")
    with pytest.raises(SchemaError, match="declared twice") as info:
        Schema(
            [RecordType("A"), RecordType("B")],
            [LinkType("L1", "A", "bs", "B", "a1"), LinkType("L2", "A", "bs", "B", "a2")],
        )
    assert (info.value.record, info.value.field) == ("A", "bs")
    # a link's own source/target attributes cannot be shadowed by a relation of relation
    with pytest.raises(SchemaError, match="declared twice"):
        Schema(
            [RecordType("A"), RecordType("B"), RecordType("C")],
            [LinkType("L", "A", "bs", "B", "as_"), LinkType("M", "L", "source", "C", "ls")],
        )


def test_schema_lookups() -> None:
    schema = blog_schema()
    assert schema.is_link(POSTS) and not schema.is_link("User")
    posts = schema.attribute("User", "posts")
    assert (posts.related, posts.side, posts.to_many, posts.link.name) == (
        "Post",
        "source",
        True,
        POSTS,
    )
    author = schema.attribute("Post", "author")
    assert (author.related, author.side, author.to_many) == ("User", "target", False)
    assert schema.attribute("Comment", "author").to_many is False
    assert schema.attribute("User", "comments").to_many is True
    assert schema.attribute("User", "profile").to_many is False
    assert schema.attribute("Profile", "owner").to_many is False
    assert schema.attribute("Post", "tags").to_many and schema.attribute("Tag", "posts").to_many
    assert set(schema.attributes(TAGS)) == {"source", "target"}
    assert list(schema.fields(TAGS)) == ["weight"]


# -- setup on a database -------------------------------------------------------------------------


async def test_setup_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    first = SQLiteStorage(path)
    await first.setup(blog_schema())
    ada = created_id(await first.create("User", {"name": "ada", "posts": [{"title": "p"}]}))
    await first.setup(blog_schema())  # again on the same open storage
    before = await dump(first)
    await first.close()

    second = SQLiteStorage(path)
    await second.setup(blog_schema())
    await second.setup(blog_schema())
    try:
        assert await dump(second) == before
        assert await second.find("User", {"id": ada}, ["name", ("posts", ["title"])]) == [
            {"id": ada, "name": "ada", "posts": [{"id": 1, "title": "p"}]}
        ]
        # the unique index still holds after re-setup, and ids continue
        bob = created_id(await second.create("User", {"name": "bob"}))
        assert bob == ada + 1
    finally:
        await second.close()


async def test_install_false_on_an_empty_database(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "empty.db"))
    try:
        with pytest.raises(NotSetUpError, match="tables missing") as info:
            await storage.setup(blog_schema(), install=False)
        assert "User" in str(info.value)
        # the failed setup did not bind the schema: the storage is still unusable
        with pytest.raises(NotSetUpError):
            await storage.create("User", {"name": "ada"})
        with pytest.raises(NotSetUpError):
            storage.schema  # noqa: B018
    finally:
        await storage.close()


async def test_install_false_names_the_fields_an_older_database_lacks(tmp_path: Path) -> None:
    path = str(tmp_path / "older.db")
    older = SQLiteStorage(path)
    await older.setup(Schema([RecordType("Note", [Field("text")])]))
    await older.create("Note", {"text": "kept"})
    await older.close()
    grown = Schema([RecordType("Note", [Field("text"), Field("pinned", "boolean")])])
    storage = SQLiteStorage(path)
    try:
        with pytest.raises(NotSetUpError, match=r"Note\.pinned") as info:
            await storage.setup(grown, install=False)
        assert "install=True" in str(info.value)
        with pytest.raises(NotSetUpError):
            await storage.count("Note")
        # installing adds the column; the old row reads it as None
        await storage.setup(grown)
        assert await storage.find("Note", None, ["text", "pinned"]) == [
            {"id": 1, "text": "kept", "pinned": None}
        ]
    finally:
        await storage.close()


async def test_install_false_on_an_installed_database(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    first = SQLiteStorage(path)
    await first.setup(blog_schema())
    await first.create("User", {"name": "ada"})
    await first.close()
    second = SQLiteStorage(path)
    await second.setup(blog_schema(), install=False)
    try:
        assert await second.find("User", None, ["name"]) == [{"id": 1, "name": "ada"}]
    finally:
        await second.close()


async def test_a_model_that_grows(tmp_path: Path) -> None:
    path = str(tmp_path / "grow.db")
    v1 = Schema([RecordType("Item", [Field("name")])])
    storage = SQLiteStorage(path)
    await storage.setup(v1)
    old = created_id(await storage.create("Item", {"name": "old"}))
    await storage.close()

    v2 = Schema(
        [
            RecordType(
                "Item",
                [Field("name"), Field("price", "number"), Field("extra", "json")],
                [Index(["name"], unique=True)],
            ),
            RecordType("Shop", [Field("name")]),
        ],
        [LinkType("Shop_items_shop_Item", "Shop", "items", "Item", "shop", "1:n")],
    )
    storage = SQLiteStorage(path)
    await storage.setup(v2)
    try:
        assert await storage.find("Item", None, ["*"]) == [
            {"id": old, "name": "old", "price": None, "extra": None}
        ]
        await storage.update("Item", {"id": old}, {"price": 2.5, "extra": [1]})
        shop = created_id(await storage.create("Shop", {"name": "s", "items": [{"id": old}]}))
        assert await storage.find("Item", None, ["*", ("shop", ["name"])]) == [
            {
                "id": old,
                "name": "old",
                "price": 2.5,
                "extra": [1],
                "shop": {"id": shop, "name": "s"},
            }
        ]
        # the new unique index is in force
        with pytest.raises(StorageError):
            await storage.create("Item", {"name": "old"})
    finally:
        await storage.close()


async def test_use_before_setup_and_after_close(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "x.db"))
    with pytest.raises(NotSetUpError):
        await storage.find("User")
    await storage.setup(blog_schema())
    await storage.close()
    with pytest.raises(NotSetUpError):
        await storage.create("User", {})
    with pytest.raises(NotSetUpError):
        await storage.count("User")
    await storage.close()  # closing twice is harmless


async def test_setup_needs_a_schema() -> None:
    storage = SQLiteStorage()
    with pytest.raises(TypeError, match=r"storage\.Schema"):
        await storage.setup([RecordType("A")])  # type: ignore[arg-type]
    await storage.close()


def test_executor_must_be_known() -> None:
    with pytest.raises(ValueError, match="executor"):
        SQLiteStorage(executor="process")  # type: ignore[arg-type]


@pytest.mark.parametrize("page_size", [0, 1000, 256, 131072, "4096"])
def test_page_size_must_be_a_power_of_two_sqlite_accepts(page_size: Any) -> None:
    with pytest.raises(ValueError, match="page_size"):
        SQLiteStorage(page_size=page_size)


async def _page_size_of(path: Path, **options: Any) -> int:
    storage = SQLiteStorage(str(path), **options)
    await storage.setup(Schema([RecordType("Note", [Field("text")])]))
    await storage.create("Note", {"text": "x"})
    size = await storage.run(lambda tx: tx.connection.execute("PRAGMA page_size").fetchone()[0])
    await storage.close()
    return int(size)


async def test_a_new_database_gets_the_page_size_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    assert await _page_size_of(tmp_path / "default.db") == 1024
    assert await _page_size_of(tmp_path / "big.db", page_size=4096) == 4096
    # The file exists now: a different setting cannot change it, and the data is intact.
    assert await _page_size_of(tmp_path / "big.db", page_size=1024) == 4096
    storage = SQLiteStorage(str(tmp_path / "big.db"))
    await storage.setup(Schema([RecordType("Note", [Field("text")])]))
    assert await storage.count("Note") == 2
    await storage.close()


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param(lambda: Schema([RecordType("sqlite_stuff")]), id="sqlite-prefix"),
        pytest.param(lambda: Schema([RecordType("User"), RecordType("user")]), id="tables-case"),
        pytest.param(
            lambda: Schema([RecordType("A", [Field("name"), Field("Name")])]), id="columns-case"
        ),
        pytest.param(lambda: Schema([RecordType("A", [Field("ID")])]), id="id-column-case"),
        pytest.param(
            lambda: Schema(
                [RecordType("A"), RecordType("B")],
                [LinkType("L", "A", "bs", "B", "as_", fields=[Field("Source")])],
            ),
            id="link-column-case",
        ),
        pytest.param(
            lambda: Schema(
                [
                    RecordType("A", [Field("x")], [Index(["x"], unique=True, name="ix")]),
                    RecordType("B", [Field("x")], [Index(["x"], unique=True, name="ix")]),
                ]
            ),
            id="index-name-twice",
        ),
        pytest.param(
            lambda: Schema([RecordType("A", [Field("x")], [Index(["x"], name="a")])]),
            id="index-named-like-a-table",
        ),
    ],
)
async def test_names_sqlite_cannot_tell_apart_are_refused(schema: Callable[[], Schema]) -> None:
    storage = SQLiteStorage()
    try:
        with pytest.raises(SchemaError):
            await storage.setup(schema())
    finally:
        await storage.close()
