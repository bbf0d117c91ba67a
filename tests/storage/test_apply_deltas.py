"""``Session.apply_deltas``: running totals added in the database, atomically, on every backend.

Checked here: the new values and the derived fields (computed in SQL, or in Python for a type
SQL cannot give, such as json), the one update event with its old and new values, the refusals
(a total beyond 64 bits, a non-finite float, a float for an integer field, unknown fields, a
derived field whose total has no delta) with nothing changed and the transaction still usable,
a record that does not exist or was deleted in the same transaction, all-zero deltas, and a
hypothesis sequence against Python's own arithmetic with each event's old value equal to the
previous new one. The concurrency half (no lost update across connections) is in
tests/reactive/test_concurrent_aggregates.py.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from storage import (
    Derived,
    Field,
    FieldTypeError,
    RecordType,
    Schema,
    Session,
    SQLiteStorage,
    Storage,
    StorageError,
    TotalRangeError,
    UnknownFieldError,
    WriteResult,
)
from tests._backends import on_both_backends
from tests.conftest import dispose_postgres, open_postgres, scratch_storage
from tests.storage.standard import StandardStorage

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


def host_schema() -> Schema:
    return Schema(
        records=[
            RecordType(
                "Host",
                [
                    Field("name"),
                    Field("total", "number"),
                    Field("count", "number"),
                    Field("value", "number"),
                    Field("mean", "number"),
                    Field("some", "boolean"),
                    Field("all", "boolean"),
                    Field("all_ne", "boolean"),
                    Field("shown", "json"),
                    Field("units", "integer"),
                    Field("units_total", "integer"),
                ],
            )
        ]
    )


DERIVED = {
    "value": Derived("total", "total", "count"),
    "mean": Derived("mean", "total", "count"),
    "some": Derived("any", "total", "count"),
    "all": Derived("every", "total", "count"),
    "all_ne": Derived("every_nonempty", "total", "count"),
    "shown": Derived("total", "total", "count"),  # json: computed in Python, second statement
}


@pytest.fixture(params=["sqlite", "standard", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The host schema on SQLite, on the standard rendering with PostgreSQL's failure rule,
    and on PostgreSQL in a schema of its own."""
    if request.param == "postgres":
        pg = await open_postgres(request.getfixturevalue("postgres_url"))
        try:
            await pg.setup(host_schema())
            yield pg
        finally:
            await dispose_postgres(pg)
        return
    path = str(tmp_path / "deltas.db")
    sqlite = StandardStorage(path) if request.param == "standard" else SQLiteStorage(path)
    await sqlite.setup(host_schema())
    yield sqlite
    await sqlite.close()


async def _host(store: Storage, **values: Any) -> Any:
    result = await store.create("Host", {"name": "h", **values})
    assert result.record is not None
    return result.record["id"]


async def _row(store: Storage, host_id: Any) -> dict[str, Any]:
    fields = [f for f in host_schema().fields("Host")]
    row = await store.find_one("Host", {"id": host_id}, fields)
    assert row is not None
    return row


async def test_adds_and_derives_with_one_event(store: Storage) -> None:
    host_id = await _host(store, total=4, count=2, value=4, mean=2.0, some=True, all=False)

    def body(s: Session) -> Any:
        before = len(s.events)
        result = s.apply_deltas("Host", host_id, {"total": 3, "count": 1}, DERIVED)
        return result, s.events[before:]

    result, events = await store.run(body)
    row = await _row(store, host_id)
    assert row["total"] == 7 and type(row["total"]) is int
    assert row["count"] == 3
    assert row["value"] == 7
    assert row["mean"] == pytest.approx(7 / 3)
    assert row["some"] is True and row["all"] is False and row["all_ne"] is False
    assert row["shown"] == 7
    assert row["name"] == "h"  # untouched fields stay
    (record,) = result.records
    assert {k: v for k, v in record.items() if k != "mean"} == {
        k: v for k, v in row.items() if k != "mean"
    }
    assert [e.type for e in events] == ["update"]
    event = events[0]
    assert event.keys == ("total", "count", "value", "mean", "some", "all", "all_ne", "shown")
    assert event.record == {
        "id": host_id,
        "total": 7,
        "count": 3,
        "value": 7,
        "mean": pytest.approx(7 / 3),
        "some": True,
        "all": False,
        "all_ne": False,
        "shown": 7,
    }
    old = event.old_record
    assert old is not None
    assert old["name"] == "h"
    assert (old["total"], old["count"], old["value"], old["shown"]) == (4, 2, 4, 4)
    assert old["mean"] == 2.0 and old["some"] is True and old["all"] is False


async def test_every_and_any_follow_their_totals(store: Storage) -> None:
    host_id = await _host(store)  # NULL totals count as 0
    derived = {k: DERIVED[k] for k in ("some", "all", "all_ne")}
    seen = []
    for total, count in [(1, 1), (0, 1), (-1, 0), (0, -1)]:

        def bump(s: Session, t: int = total, c: int = count) -> WriteResult:
            return s.apply_deltas("Host", host_id, {"total": t, "count": c}, derived)

        result = await store.run(bump)
        record = result.records[0]
        seen.append((record["total"], record["count"], record["some"], record["all"]))
        assert record["all_ne"] == (record["total"] == record["count"] > 0)
    assert seen == [
        (1, 1, True, True),
        (1, 2, True, False),
        (0, 2, False, False),
        (0, 1, False, False),
    ]


async def test_a_missing_or_deleted_record_changes_nothing(store: Storage) -> None:
    host_id = await _host(store, total=1, count=1)
    other = await _host(store, total=5, count=5)

    def body(s: Session) -> Any:
        missing = s.apply_deltas("Host", 10**9, {"total": 1, "count": 1}, {})
        s.delete("Host", {"id": host_id})
        before = len(s.events)
        deleted = s.apply_deltas("Host", host_id, {"total": 1, "count": 1}, DERIVED)
        return missing, deleted, s.events[before:]

    missing, deleted, events = await store.run(body)
    assert missing.records == [] and missing.events == []
    assert deleted.records == [] and deleted.events == [] and events == []
    assert await store.find_one("Host", {"id": host_id}) is None
    assert (await _row(store, other))["total"] == 5


async def test_zero_deltas_write_nothing(store: Storage) -> None:
    host_id = await _host(store, total=2, count=1, value=99)  # value off on purpose
    result = await store.run(
        lambda s: (s.apply_deltas("Host", host_id, {"total": 0, "count": 0}, DERIVED), s.events)
    )
    write, events = result
    assert write.records == [] and write.events == [] and events == []
    assert (await _row(store, host_id))["value"] == 99  # not even recomputed


@pytest.mark.parametrize(
    ("start", "delta", "total"),
    [
        (INT64_MAX, 1, INT64_MAX + 1),
        (INT64_MAX - 5, 10, INT64_MAX + 5),
        (INT64_MIN, -1, INT64_MIN - 1),
        (1.5e308, 1.5e308, math.inf),
        (-1.5e308, -1.5e308, -math.inf),
    ],
)
async def test_a_total_beyond_its_field_is_refused_and_nothing_changes(
    store: Storage, start: Any, delta: Any, total: Any
) -> None:
    host_id = await _host(store, total=start, count=1)

    def body(s: Session) -> Any:
        before = len(s.events)
        with pytest.raises(TotalRangeError) as refused:
            s.apply_deltas("Host", host_id, {"total": delta, "count": 1}, DERIVED)
        assert s.events[before:] == []
        # No failed statement: the transaction goes on (PostgreSQL would refuse otherwise).
        s.apply_deltas("Host", host_id, {"count": 1}, {})
        return refused.value

    error = await store.run(body)
    assert error.record == "Host" and error.field == "total"
    assert error.total == total
    row = await _row(store, host_id)
    assert row["total"] == start and row["count"] == 2  # the refused delta left no trace


async def test_a_float_total_beyond_the_int_range_takes_int_deltas(store: Storage) -> None:
    host_id = await _host(store, total=1e19, count=0)
    result = await store.run(lambda s: s.apply_deltas("Host", host_id, {"total": 1}, {}))
    assert result.records[0]["total"] == 1e19 + 1
    assert type(result.records[0]["total"]) is float


async def test_bad_input_is_refused_before_anything_is_written(store: Storage) -> None:
    host_id = await _host(store, total=1, count=1, units=3)
    cases: list[tuple[type[BaseException], dict[str, Any], dict[str, Derived]]] = [
        (UnknownFieldError, {"nope": 1}, {}),
        (UnknownFieldError, {"total": 1, "count": 1}, {"nope": DERIVED["value"]}),
        (FieldTypeError, {"name": 1}, {}),  # not a number field
        (FieldTypeError, {"units": 1.5}, {}),  # a float for an integer field
        (FieldTypeError, {"total": True}, {}),  # a bool is not a number here
        (FieldTypeError, {"total": math.nan}, {}),
        # an integer field derived from a float total
        (FieldTypeError, {"total": 0.5, "count": 1}, {"units_total": DERIVED["value"]}),
        (StorageError, {"total": 1}, {"value": DERIVED["value"]}),  # count has no delta
    ]
    for error, deltas, derived in cases:
        with pytest.raises(error):

            def apply(
                s: Session, d: dict[str, Any] = deltas, v: dict[str, Derived] = derived
            ) -> WriteResult:
                return s.apply_deltas("Host", host_id, d, v)

            await store.run(apply)
    row = await _row(store, host_id)
    assert (row["total"], row["count"], row["units"]) == (1, 1, 3)


async def test_integer_fields_add_as_integers(store: Storage) -> None:
    host_id = await _host(store, units=2)
    result = await store.run(
        lambda s: s.apply_deltas(
            "Host",
            host_id,
            {"units": 5, "total": 5, "count": 1},
            {"units_total": DERIVED["value"]},
        )
    )
    record = result.records[0]
    assert record["units"] == 7 and type(record["units"]) is int
    assert record["units_total"] == 5 and type(record["units_total"]) is int


_DELTAS = st.lists(
    st.tuples(
        st.one_of(
            st.integers(-(10**12), 10**12),
            st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)),
        ),
        st.integers(-3, 3),
    ),
    min_size=1,
    max_size=12,
)


async def _sequence(backend: str, steps: list[tuple[Any, int]]) -> None:
    async with scratch_storage(backend) as store:
        await store.setup(host_schema())
        host_id = await _host(store)
        total: Any = 0
        count = 0
        # The oracle: the exact sum of the deltas as given, and how far a backend adding
        # doubles (SQLite) may be from it: half an ulp of each partial sum, doubled for the
        # read-back. PostgreSQL's numeric adds exactly and reads back the nearest double.
        exact = Fraction(0)
        slack = 0.0
        previous: dict[str, Any] | None = None
        for delta, count_delta in steps:

            def step(s: Session, d: Any = delta, c: int = count_delta) -> WriteResult:
                return s.apply_deltas("Host", host_id, {"total": d, "count": c}, DERIVED)

            result = await store.run(step)
            if delta == 0 and count_delta == 0:
                assert result.events == []
                continue
            total, count = total + delta, count + count_delta
            exact += Fraction(delta)
            if type(total) is float:
                slack += 2 * math.ulp(total) + 2 * math.ulp(float(exact))
            (event,) = result.events
            new, old = event.record, event.old_record
            assert old is not None
            assert type(new["total"]) is type(total)  # ints stay ints, a float makes a float
            assert abs(Fraction(new["total"]) - exact) <= Fraction(slack)
            assert new["count"] == count
            assert new["value"] == new["total"] and new["shown"] == new["total"]
            assert new["some"] == (new["total"] > 0)
            assert new["all"] == (new["total"] == count)
            expected_mean = new["total"] / count if count else 0
            assert math.isclose(new["mean"], expected_mean, rel_tol=1e-9, abs_tol=1e-9)
            if previous is not None:
                # The old values are the previous new ones: exactly for ints (and on
                # PostgreSQL, whose numeric subtracts exactly); for SQLite floats within a
                # rounding of the new total (old = new - delta, see storage.sql.deltas).
                for key in ("total", "count", "value", "some", "all", "all_ne"):
                    if type(old[key]) is float or type(previous[key]) is float:
                        ulp = math.ulp(max(abs(new[key]), abs(previous[key])))
                        assert abs(old[key] - previous[key]) <= 2 * ulp
                    else:
                        assert old[key] == previous[key]
            previous = dict(new)
        row = await _row(store, host_id)
        assert (row["count"] or 0) == count  # never written when every delta was 0
        assert abs(Fraction(row["total"] or 0) - exact) <= Fraction(slack)


(
    test_a_sequence_of_deltas_agrees_with_python,
    test_a_sequence_of_deltas_agrees_with_python_on_postgresql,
) = on_both_backends(
    "test_a_sequence_of_deltas_agrees_with_python",
    _sequence,
    examples=40,
    pg_examples=12,
    steps=_DELTAS,
)


async def test_large_cancelling_deltas_agree_within_the_rounding_of_doubles(
    backend: str,
) -> None:
    # Found by the property above: Python's doubles lose 1e-4 of 1.82 next to 1e12, so the
    # oracle is the exact sum, and PostgreSQL's numeric (exact) must meet it within a rounding.
    await _sequence(backend, [(-999491561368, 1), (1.82, 1), (999437860371, 1)])
