"""Field types: every value round-trips exactly (through the returned record, the event and a
read), and values that do not fit their field are refused without writing anything."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import FieldTypeError, MatchExp, PostgresStorage, SQLiteStorage, StorageError
from tests.conftest import dispose_postgres, open_postgres

from .conftest import blog_schema
from .helpers import counts, created_id


async def _round_trip(storage: SQLiteStorage, field: str, value: Any) -> tuple[Any, Any, Any]:
    """Write ``value`` to User.field; return it as the create result, the event and a read."""
    result = await storage.create("User", {field: value})
    record_id = created_id(result)
    found = await storage.find_one("User", {"id": record_id}, [field])
    assert found is not None and result.record is not None
    return result.record[field], result.events[0].record[field], found[field]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ada",
        "ünïcødé ☃ 日本",
        "with 'quotes' and \"doubles\"",
        "a\nb\tc",
        "x" * 10_000,
        "nul \x00 in",
    ],
)
async def test_string_round_trips(storage: SQLiteStorage, value: str) -> None:
    if "\x00" in value and isinstance(storage, PostgresStorage):
        # PostgreSQL text cannot hold NUL: refused naming the field, nothing written.
        with pytest.raises(FieldTypeError, match="NUL character") as caught:
            await storage.create("User", {"name": value})
        assert (caught.value.record, caught.value.field) == ("User", "name")
        assert await counts(storage) == dict.fromkeys(storage.schema.records, 0)
        return
    for got in await _round_trip(storage, "name", value):
        assert got == value
        assert type(got) is str


@pytest.mark.parametrize("value", [0, 1, -7, 2**53 + 1, 2**63 - 1, -(2**63)])
async def test_int_stays_int(storage: SQLiteStorage, value: int) -> None:
    for got in await _round_trip(storage, "age", value):
        assert got == value
        assert type(got) is int


@pytest.mark.parametrize("value", [0.0, 2.0, 1.5, -3.25, 1e300, 5e-324, 0.1 + 0.2])
async def test_float_stays_float(storage: SQLiteStorage, value: float) -> None:
    for got in await _round_trip(storage, "age", value):
        assert got == value
        assert type(got) is float


@pytest.mark.parametrize("value", [True, False])
async def test_boolean_round_trips(storage: SQLiteStorage, value: bool) -> None:
    for got in await _round_trip(storage, "active", value):
        assert got is value


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, None, {"b": 2.5, "c": [True, False, None]}], "s": "x", "n": None},
        [1, "two", 3.0, None, [], {}, [[[]]]],
        {"deep": {"deeper": {"deepest": [{"k": "v"}]}}},
        {},
        [],
        "just a string",
        "",
        42,
        2.5,
        True,
        False,
        {"int": 1, "float": 1.0, "big": 2**62},
        {"unicode ☃": "日本", "": "empty key"},
        [2**100, -(2**70), 1e308, "lone \ud800 surrogate is escaped in JSON"],
    ],
)
async def test_json_round_trips(storage: SQLiteStorage, value: Any) -> None:
    for got in await _round_trip(storage, "meta", value):
        assert got == value
        assert type(got) is type(value)
    # ints and floats keep their type inside json too
    if isinstance(value, dict) and "float" in value:
        _, _, read = await _round_trip(storage, "meta", value)
        assert type(read["int"]) is int and type(read["float"]) is float


class _Tagged(str):
    """A str subclass: JSON stores it as a plain string."""


def _exact(value: Any) -> Any:
    """``value`` with every container's type and every dict's key order made visible."""
    if isinstance(value, dict):
        return ("dict", [(type(k).__name__, k, _exact(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_exact(v) for v in value])
    return (type(value).__name__, value)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.text(max_size=4).map(_Tagged),
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=4),
        st.dictionaries(st.text(max_size=4), children, max_size=4).map(OrderedDict),
    ),
    max_leaves=20,
)


async def _json_write_and_read(storage: Any, wrapped: dict[str, Any]) -> None:
    """Create, update and rewrite ``wrapped`` as User.meta; every result and event must hold
    exactly what a read then returns."""
    await storage.setup(blog_schema())
    created = await storage.create("User", {"meta": wrapped})
    record_id = created_id(created)
    updated = await storage.update("User", {"id": record_id}, {"meta": wrapped})
    rewritten = await storage.run(
        lambda tx: tx.update_record("User", tx.snapshot("User", record_id) or {}, {"meta": wrapped})
    )
    found = await storage.find_one("User", {"id": record_id}, ["meta"])
    assert found is not None
    read = _exact(found["meta"])
    for result in (created, updated, rewritten):
        assert _exact(result.records[0]["meta"]) == read
        assert _exact(result.events[0].record["meta"]) == read


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json_values, padding=st.integers(min_value=0, max_value=600))
def test_a_json_write_reports_exactly_what_a_read_returns(value: Any, padding: int) -> None:
    """Results and events of creates and updates hold what a read returns, down to the types
    (lists for tuples, plain str and dict) and the key order (sorted, as stored); small values
    are copied, large ones parsed back, and both must agree."""
    wrapped = {"pad": "x" * padding, "value": value}

    async def scenario() -> None:
        storage = SQLiteStorage()
        try:
            await _json_write_and_read(storage, wrapped)
        finally:
            await storage.close()

    asyncio.run(scenario())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(value=_json_values, padding=st.integers(min_value=0, max_value=600))
def test_a_json_write_reports_exactly_what_a_read_returns_on_postgres(
    postgres_url: str, value: Any, padding: int
) -> None:
    """The same on PostgreSQL (json kept as canonical text: the same values, types and key
    order as on SQLite); fewer examples, as each makes a PostgreSQL schema."""
    wrapped = {"pad": "x" * padding, "value": value}

    async def scenario() -> None:
        storage = await open_postgres(postgres_url)
        try:
            await _json_write_and_read(storage, wrapped)
        finally:
            await dispose_postgres(storage)

    asyncio.run(scenario())


async def test_json_key_order_does_not_matter_for_equality(storage: SQLiteStorage) -> None:
    first = created_id(await storage.create("User", {"meta": {"a": 1, "b": [1, 2]}}))
    await storage.create("User", {"meta": {"a": 2}})
    found = await storage.find("User", {"meta": {"b": [1, 2], "a": 1}})
    assert found == [{"id": first}]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        datetime(2024, 3, 1, 18, 0, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone(timedelta(hours=-8))),
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-12))),
    ],
)
async def test_timestamp_comes_back_as_the_same_instant(
    storage: SQLiteStorage, value: datetime
) -> None:
    for got in await _round_trip(storage, "joined", value):
        assert isinstance(got, datetime)
        assert got.utcoffset() is not None  # aware
        assert got == value  # same instant
        assert got - value == timedelta(0)
        assert got.timestamp() == value.timestamp()


async def test_timestamps_in_different_offsets_match_and_order_as_instants(
    storage: SQLiteStorage,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    early = created_id(
        await storage.create(
            "User", {"name": "early", "joined": datetime(2024, 1, 1, 11, 0, tzinfo=plus_two)}
        )
    )  # 09:00 UTC
    late = created_id(
        await storage.create(
            "User", {"name": "late", "joined": datetime(2024, 1, 1, 10, 0, tzinfo=UTC)}
        )
    )
    same_instant = datetime(2024, 1, 1, 4, 0, tzinfo=timezone(timedelta(hours=-5)))  # 09:00 UTC
    assert await storage.find("User", {"joined": same_instant}) == [{"id": early}]
    ordered = await storage.find("User", None, ["name"], order_by={"joined": "desc"})
    assert [r["id"] for r in ordered] == [late, early]
    after = MatchExp.atom("joined", ">", datetime(2024, 1, 1, 9, 30, tzinfo=UTC))
    assert await storage.find("User", after) == [{"id": late}]


@pytest.mark.parametrize("field", ["name", "age", "active", "meta", "joined"])
async def test_every_type_accepts_none(storage: SQLiteStorage, field: str) -> None:
    for got in await _round_trip(storage, field, None):
        assert got is None


async def test_unwritten_fields_read_as_none(storage: SQLiteStorage) -> None:
    record_id = created_id(await storage.create("User", {}))
    found = await storage.find_one("User", {"id": record_id}, ["*"])
    assert found == {
        "id": record_id,
        "name": None,
        "age": None,
        "active": None,
        "meta": None,
        "joined": None,
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", 5, "a string"),
        ("name", b"bytes", "a string"),
        ("name", ["a"], "a string"),
        ("name", "lone \ud800 surrogate", "a string"),
        ("age", "5", "a number"),
        ("age", True, "a number"),
        ("age", False, "a number"),
        ("age", math.nan, "a finite number"),
        ("age", math.inf, "a finite number"),
        ("age", -math.inf, "a finite number"),
        ("age", 2**63, "a number"),
        ("age", -(2**63) - 1, "a number"),
        ("age", 1 + 2j, "a number"),
        ("active", 1, "a boolean"),
        ("active", 0, "a boolean"),
        ("active", "true", "a boolean"),
        ("meta", {"a": math.nan}, "a JSON value"),
        ("meta", {"a": object()}, "a JSON value"),
        ("meta", {1: "int key"}, "a JSON value"),
        ("meta", {"a": {(1, 2): "tuple key"}}, "a JSON value"),
        ("meta", {1, 2}, "a JSON value"),
        ("joined", datetime(2024, 1, 1), "a timezone-aware datetime"),  # naive
        ("joined", "2024-01-01T00:00:00", "a timezone-aware datetime"),  # naive ISO
        ("joined", "yesterday", "a timezone-aware datetime"),
        ("joined", 1_700_000_000, "a timezone-aware datetime"),
    ],
)
async def test_wrong_value_type_is_refused_and_writes_nothing(
    storage: SQLiteStorage, field: str, value: Any, expected: str
) -> None:
    await storage.create("User", {"name": "existing"})
    with pytest.raises(FieldTypeError) as info:
        await storage.create(
            "User", {"name": "new", field: value} if field != "name" else {field: value}
        )
    error = info.value
    assert isinstance(error, StorageError)
    assert (error.record, error.field) == ("User", field)
    assert error.expected == expected
    assert f"User.{field}" in str(error)
    assert expected in str(error)
    assert (await counts(storage))["User"] == 1
    # the same value is refused by update, which changes nothing either
    with pytest.raises(FieldTypeError) as info:
        await storage.update("User", {"name": "existing"}, {field: value})
    assert (info.value.record, info.value.field) == ("User", field)
    assert await storage.find("User", None, ["name"]) == [{"id": 1, "name": "existing"}]


async def test_naive_datetime_message_says_why(storage: SQLiteStorage) -> None:
    with pytest.raises(FieldTypeError, match="naive datetimes are ambiguous"):
        await storage.create("User", {"joined": datetime(2024, 1, 1, 12, 0)})
    assert await storage.count("User") == 0


async def test_link_fields_are_typed_too(storage: SQLiteStorage) -> None:
    with pytest.raises(FieldTypeError) as info:
        await storage.create(
            "Post", {"title": "p", "tags": [{"label": "t", "&": {"weight": "heavy"}}]}
        )
    assert (info.value.record, info.value.field) == ("Post_tags_posts_Tag", "weight")
    assert await storage.count("Post") == 0
    assert await storage.count("Tag") == 0


async def test_timestamps_accept_iso_8601_strings_with_an_offset(storage: SQLiteStorage) -> None:
    created = await storage.create("User", {"name": "iso", "joined": "2024-01-02T03:04:05Z"})
    assert created.record is not None
    found = await storage.find_one("User", {"id": created.record["id"]}, ["joined"])
    assert found is not None
    assert found["joined"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    matched = await storage.find("User", {"joined": "2024-01-02T05:04:05+02:00"})
    assert matched == [{"id": created.record["id"]}]
