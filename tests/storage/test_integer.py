"""The ``integer`` field type: exact 64-bit ints in, the same ints out; floats (even 2.0), bools,
strings and ints beyond 64 bits are refused with a FieldTypeError naming the field, and nothing
is written. Matches on an integer field compare with any finite number."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Field, FieldTypeError, MatchExp, RecordType, Schema, SchemaError, SQLiteStorage

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _schema() -> Schema:
    return Schema([RecordType("Gift", [Field("label"), Field("cents", "integer")])])


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(str(tmp_path / "integer.db"))
    await store.setup(_schema())
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("value", [0, 1, -1, 2**53 + 1, INT64_MAX, INT64_MIN])
async def test_an_integer_comes_back_as_the_same_int(storage: SQLiteStorage, value: int) -> None:
    result = await storage.create("Gift", {"cents": value})
    assert result.record is not None
    found = await storage.find_one("Gift", {"id": result.record["id"]}, ["cents"])
    assert found is not None
    for got in (result.record["cents"], result.events[0].record["cents"], found["cents"]):
        assert got == value
        assert type(got) is int


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (1.5, ""),
        (2.0, ""),  # a float is never taken for an int, even a whole one
        (1e308, ""),
        (math.inf, ""),
        (math.nan, ""),
        (True, ""),
        (False, ""),
        ("5", ""),
        ([5], ""),
        (INT64_MAX + 1, "outside the 64-bit range"),
        (INT64_MIN - 1, "outside the 64-bit range"),
        (10**30, "outside the 64-bit range"),
    ],
)
async def test_anything_but_a_64_bit_int_is_refused(
    storage: SQLiteStorage, value: Any, detail: str
) -> None:
    await storage.create("Gift", {"label": "kept", "cents": 7})
    with pytest.raises(FieldTypeError) as info:
        await storage.create("Gift", {"label": "new", "cents": value})
    assert (info.value.record, info.value.field, info.value.expected) == (
        "Gift",
        "cents",
        "an integer",
    )
    assert "Gift.cents expects an integer" in str(info.value)
    assert detail in str(info.value)
    with pytest.raises(FieldTypeError):
        await storage.update("Gift", {"label": "kept"}, {"cents": value})
    assert await storage.find("Gift", None, ["label", "cents"]) == [
        {"id": 1, "label": "kept", "cents": 7}
    ]


async def test_the_reason_names_the_field_but_not_the_value(storage: SQLiteStorage) -> None:
    with pytest.raises(FieldTypeError) as info:
        await storage.create("Gift", {"cents": 10**30})
    assert info.value.reason == (
        "Gift.cents expects an integer: outside the 64-bit range -2**63 .. 2**63-1"
    )
    assert str(10**30) not in info.value.reason


async def test_the_column_is_declared_integer(tmp_path: Path) -> None:
    path = tmp_path / "declared.db"
    store = SQLiteStorage(str(path))
    await store.setup(_schema())
    await store.close()
    with sqlite3.connect(path) as conn:
        columns = {row[1]: row[2] for row in conn.execute('PRAGMA table_info("Gift")')}
    assert columns["cents"] == "INTEGER"


async def test_matches_on_an_integer_field_compare_with_any_number(
    storage: SQLiteStorage,
) -> None:
    for cents in (1, 2, 3):
        await storage.create("Gift", {"cents": cents})
    assert await storage.find("Gift", MatchExp.atom("cents", ">", 1.5)) == [{"id": 2}, {"id": 3}]
    assert await storage.find("Gift", {"cents": 2}) == [{"id": 2}]
    assert await storage.find("Gift", {"cents": 2.0}) == [{"id": 2}]
    assert await storage.find("Gift", MatchExp.atom("cents", "in", [1, 3])) == [
        {"id": 1},
        {"id": 3},
    ]


def test_an_unknown_type_lists_integer_among_the_known_ones() -> None:
    with pytest.raises(SchemaError, match="integer"):
        Field("cents", "int")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.integers(INT64_MIN, INT64_MAX),
            st.integers().filter(lambda v: not INT64_MIN <= v <= INT64_MAX),
            st.floats(allow_nan=True, allow_infinity=True),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_what_is_stored_is_exactly_the_64_bit_ints_written(values: list[Any]) -> None:
    async def scenario() -> None:
        store = SQLiteStorage(":memory:")
        await store.setup(_schema())
        try:
            stored: list[int] = []
            for value in values:
                if type(value) is int and INT64_MIN <= value <= INT64_MAX:
                    await store.create("Gift", {"cents": value})
                    stored.append(value)
                else:
                    with pytest.raises(FieldTypeError):
                        await store.create("Gift", {"cents": value})
            found = await store.find("Gift", None, ["cents"], order_by={"id": "asc"})
            assert [r["cents"] for r in found] == stored
            assert all(type(r["cents"]) is int for r in found)
        finally:
            await store.close()

    asyncio.run(scenario())
