"""``Field(..., non_null=True)`` at the storage layer, on both backends: the database refuses a
NULL there (inserts, updates, a link's own fields, nested writes) with a
``NonNullViolationError`` naming the record type and field, and the write leaves nothing;
``setup()`` makes the database keep exactly the schema's non-null fields, refusing one whose
stored rows hold NULLs (naming it and how many) and changing nothing then."""

from __future__ import annotations

import pytest

from storage import (
    Field,
    LinkType,
    NonNullViolationError,
    RecordType,
    Schema,
    SchemaError,
)
from tests.conftest import StorageFactory


def schema(strict: bool) -> Schema:
    return Schema(
        [
            RecordType("Book", [Field("title", non_null=strict), Field("note")]),
            RecordType("Shelf", [Field("label")]),
        ],
        [
            LinkType(
                "Shelf_books_shelf_Book",
                "Shelf",
                "books",
                "Book",
                "shelf",
                "1:n",
                fields=[Field("slot", "integer", non_null=strict)],
            )
        ],
    )


async def test_the_database_refuses_a_null_in_a_non_null_field(
    make_storage: StorageFactory,
) -> None:
    store = make_storage("db")
    await store.setup(schema(True))
    try:
        book = (await store.create("Book", {"title": "t"})).record
        assert book is not None
        for payload in ({"note": "n"}, {"title": None}):
            with pytest.raises(NonNullViolationError) as info:
                await store.create("Book", payload)
            assert (info.value.record, info.value.field) == ("Book", "title")
        with pytest.raises(NonNullViolationError, match=r"Book\.title is non-null"):
            await store.update("Book", {"id": book["id"]}, {"title": None, "note": "x"})
        # a link's own field, and a nested create whose link misses it: nothing of it stays
        with pytest.raises(NonNullViolationError) as info:
            await store.create("Shelf", {"label": "s", "books": [{"title": "u"}]})
        assert (info.value.record, info.value.field) == ("Shelf_books_shelf_Book", "slot")
        shelf = await store.create(
            "Shelf", {"label": "s", "books": [{"title": "u", "&": {"slot": 1}}]}
        )
        assert shelf.record is not None
        assert await store.count("Shelf") == 1
        assert await store.count("Book") == 2
        rows = await store.find("Book", None, ["title", "note"], order_by={"id": "asc"})
        assert [(b["title"], b["note"]) for b in rows] == [("t", None), ("u", None)]
    finally:
        await store.close()


async def test_setup_keeps_exactly_the_schemas_non_null_fields(
    make_storage: StorageFactory,
) -> None:
    loose = make_storage("db")
    await loose.setup(schema(False))
    try:
        await loose.create("Book", {"note": "no title"})
    finally:
        await loose.close()
    strict = make_storage("db")
    with pytest.raises(SchemaError) as info:
        await strict.setup(schema(True))
    assert (info.value.record, info.value.field) == ("Book", "title")
    assert "1 stored row(s) hold no value" in str(info.value)
    await strict.close()
    again = make_storage("db")
    await again.setup(schema(False))
    try:
        await again.update("Book", {"title": None}, {"title": "filled"})
        await again.create("Book", {})  # still loose: the refused setup changed nothing
        await again.delete("Book", {"title": None})
    finally:
        await again.close()
    strict = make_storage("db")
    await strict.setup(schema(True))
    try:
        with pytest.raises(NonNullViolationError):
            await strict.create("Book", {"note": "n"})
    finally:
        await strict.close()
    relaxed = make_storage("db")
    await relaxed.setup(schema(False))
    try:
        await relaxed.create("Book", {"note": "n"})
        assert await relaxed.count("Book", {"title": None}) == 1
    finally:
        await relaxed.close()
