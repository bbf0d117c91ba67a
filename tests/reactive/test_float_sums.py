"""Float totals on the two backends: the rule the README states ("Choosing a backend").

- A total the engine keeps on a record as you write (Summation, Average, WeightedSummation) is
  added by the database, atomically (``UPDATE ... SET total = total + ?``): SQLite adds doubles,
  PostgreSQL adds ``numeric`` exactly on the floats' shortest reprs and reads back the nearest
  float. So the same writes can leave totals that differ in the last digit (0.1 + 0.2 + 0.3 is
  0.6000000000000001 on SQLite and 0.6 on PostgreSQL), never more than ``verify()``'s relative
  and absolute 1e-9 for the sums below; counts and int totals are exact on both. A dictionary
  aggregate keeps its totals in its row's JSON state and adds in Python, as doubles, on both.
- A total the database computes (the backfill of a computation added by a migration,
  ``recompute()``, the expected values ``verify()`` compares with) is the database's own sum:
  SQLite adds doubles in row order (3.43 and later with compensated summation); PostgreSQL adds
  ``numeric`` exactly and rounds once. ``verify()`` calls numbers equal within a relative and
  absolute 1e-9, so it reports none of the last-digit differences.
- A stored ``-0.0`` reads back as ``0.0`` on PostgreSQL (``numeric`` has no negative zero).
- A float sum that cancels (``1e16 + 1.0 - 1e16``) differs from the exact sum (1.0) by more
  than that: ``verify()`` reports it wherever the kept and the database's sums disagree.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactive as r
from storage import Storage
from tests.conftest import scratch_storage

# SQLite's SUM is compensated (Kahan-Babuska-Neumaier) from 3.43 on.
SQLITE_COMPENSATED = sqlite3.sqlite_version_info >= (3, 43, 0)
KEPT = ["s", "a", "w", "_s_bound_total", "_s_bound_count", "_a_bound_total", "_w_bound_total"]


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    item = r.Entity("Item", [r.Property("val", "number")])
    host = r.Entity(
        "Host",
        [
            r.Property(
                "s", "number", computation=r.Summation(property="items", attribute_query=["val"])
            ),
            r.Property(
                "a", "number", computation=r.Average(property="items", attribute_query=["val"])
            ),
            r.Property(
                "w",
                "number",
                computation=r.WeightedSummation(
                    property="items",
                    callback=lambda i: (0.3, i["val"] or 0),
                    attribute_query=["val"],
                ),
            ),
        ],
    )
    total = r.Dictionary(
        "total", "number", computation=r.Summation(record=item, attribute_query=["val"])
    )
    return [host, item], [r.Relation(host, "items", item, "host", "1:n")], [total]


async def controller_on(storage: Storage) -> r.Controller:
    c = r.Controller(storage, *model())
    await c.setup()
    return c


async def kept(c: r.Controller) -> tuple[list[dict[str, Any]], Any]:
    hosts = await c.storage.find("Host", None, KEPT, order_by={"id": "asc"})
    return hosts, await c.storage.get_dict("total")


async def write_all(c: r.Controller, values: list[float]) -> None:
    host = await c.storage.create("Host", {})
    for value in values:
        await c.storage.create("Item", {"val": value, "host": {"id": host["id"]}})


# -- kept totals: each backend adds as its database does ---------------------------------------

floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.1, 0.2, 0.3, 1e-9, 1 / 3, 2.5]
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 1), floats),
        st.tuples(st.just("update"), st.integers(0, 20), floats),
        st.tuples(st.just("move"), st.integers(0, 20), st.integers(0, 1)),
        st.tuples(st.just("delete"), st.integers(0, 20), st.just(0.0)),
    ),
    min_size=1,
    max_size=12,
)


async def apply(c: r.Controller, history: list[tuple[str, int, Any]]) -> None:
    hosts = [(await c.storage.create("Host", {}))["id"] for _ in range(2)]
    for op, x, value in history:
        items = [i["id"] for i in await c.storage.find("Item", None, [], order_by={"id": "asc"})]
        if op == "create":
            await c.storage.create("Item", {"val": value, "host": {"id": hosts[x]}})
        elif items and op == "update":
            await c.storage.update("Item", {"id": items[x % len(items)]}, {"val": value})
        elif items and op == "move":
            await c.storage.update(
                "Item", {"id": items[x % len(items)]}, {"host": {"id": hosts[value]}}
            )
        elif items and op == "delete":
            await c.storage.delete("Item", {"id": items[x % len(items)]})


async def both(history: list[tuple[str, int, Any]]) -> None:
    results = []
    for backend in ("sqlite", "postgres"):
        async with scratch_storage(backend) as storage:
            c = await controller_on(storage)
            try:
                await apply(c, history)
                results.append(await kept(c))
                assert (await c.verify()).ok
            finally:
                await c.close()
    (hosts_sqlite, dict_sqlite), (hosts_postgres, dict_postgres) = results
    assert len(hosts_sqlite) == len(hosts_postgres)
    for on_sqlite, on_postgres in zip(hosts_sqlite, hosts_postgres, strict=True):
        assert on_sqlite.keys() == on_postgres.keys()
        for field, value in on_sqlite.items():
            other = on_postgres[field]
            if isinstance(value, float) or isinstance(other, float):
                assert math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-9), (field, value, other)
            else:  # ids, counts and int totals: exact, and the same type on both
                assert repr(value) == repr(other), (field, value, other)
    # the dictionary adds in Python on both backends: the same double, to the bit
    assert repr(dict_sqlite) == repr(dict_postgres)


@settings(
    max_examples=int(os.environ.get("FLOAT_SUM_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(history=ops)
def test_kept_float_totals_agree_across_backends_within_verify_tolerance(
    postgres_url: str, history: list[tuple[str, int, Any]]
) -> None:
    asyncio.run(both(history))


# -- totals the database computes --------------------------------------------------------------


async def test_recompute_takes_the_databases_sum(backend: str) -> None:
    """0.1 + 0.2 + 0.3 is kept as the database adds it (0.6000000000000001 on SQLite, 0.6 on
    PostgreSQL; the dictionary as the doubles add up on both); ``recompute()`` rewrites a
    related total with the database's sum, which is 0.6 on PostgreSQL (exact) and on SQLite
    3.43+ (compensated), 0.6000000000000001 before. The dictionary keeps its value: within
    ``verify()``'s tolerance, recompute leaves it."""
    async with scratch_storage(backend) as storage:
        c = await controller_on(storage)
        try:
            await write_all(c, [0.1, 0.2, 0.3])
            (host,), total = await kept(c)
            added = 0.6 if backend == "postgres" else 0.6000000000000001
            assert (host["s"], host["_s_bound_total"]) == (added, added)
            assert total == 0.6000000000000001
            assert (await c.verify()).ok
            await c.recompute()
            exact = backend == "postgres" or SQLITE_COMPENSATED
            (host,), total = await kept(c)
            assert host["s"] == (0.6 if exact else 0.6000000000000001)
            assert host["a"] == (0.2 if exact else 0.20000000000000004)
            assert total == 0.6000000000000001
            assert (await c.verify()).ok
        finally:
            await c.close()


async def test_a_cancelling_float_sum_is_reported_where_the_database_sums_exactly(
    backend: str,
) -> None:
    async with scratch_storage(backend) as storage:
        c = await controller_on(storage)
        try:
            await write_all(c, [1e16, 1.0, -1e16])
            (host,), total = await kept(c)
            assert total == 0.0  # the dictionary: the doubles, in order, on both
            if backend == "postgres":  # the atomic deltas add exactly
                assert (host["s"], host["a"]) == (1.0, 1 / 3)
            else:  # the doubles, in order
                assert (host["s"], host["a"]) == (0.0, 0.0)
            report = await c.verify()
            exact = backend == "postgres" or SQLITE_COMPENSATED
            found = {
                (d.record, d.field, d.stored, d.expected)
                for d in report.differences
                if d.field in ("s", "a")
            }
            assert found == (
                {("Host", "s", 0.0, 1.0), ("Host", "a", 0.0, 1 / 3)}
                if exact and backend == "sqlite"
                else set()
            )
            assert report.ok is not exact  # the dictionary's 0.0 against an exact 1.0
            await c.recompute()
            (host,), total = await kept(c)
            assert (host["s"], total) == ((1.0, 1.0) if exact else (0.0, 0.0))
            assert (await c.verify()).ok
        finally:
            await c.close()


async def test_negative_zero_reads_back_as_zero_on_postgresql(backend: str) -> None:
    async with scratch_storage(backend) as storage:
        c = await controller_on(storage)
        try:
            await write_all(c, [-0.0])
            (item,) = await c.storage.find("Item", None, ["val"])
            assert repr(item["val"]) == ("0.0" if backend == "postgres" else "-0.0")
            (host,), total = await kept(c)
            assert repr((host["s"], total)) == "(0.0, 0.0)"  # 0 + -0.0 is 0.0 on both
        finally:
            await c.close()


async def test_a_kept_total_is_the_databases_addition(backend: str) -> None:
    """0.1 + 0.2 + 0.3 added as the writes come: in doubles on SQLite, exactly on PostgreSQL;
    the dictionary (added in Python) is the double sum on both."""
    async with scratch_storage(backend) as storage:
        c = await controller_on(storage)
        try:
            await write_all(c, [0.1, 0.2, 0.3])
            hosts, total = await kept(c)
            assert hosts[0]["s"] == (0.6 if backend == "postgres" else 0.1 + 0.2 + 0.3)
            assert hosts[0]["_s_bound_count"] == 3
            assert total == 0.1 + 0.2 + 0.3
            assert (await c.verify()).ok
        finally:
            await c.close()
