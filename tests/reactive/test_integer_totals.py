"""Totals over ``integer`` fields stay exact ints; a total the storage cannot hold (beyond 64 bits,
an infinite float, a float for an integer target) is refused with a ComputationError naming the
computation and its target, and the whole write rolls back.

The property test sums random int sequences (creates, updates and deletes of the items) and
compares every total with Python's own arithmetic after each write: a write that would take a
total outside 64 bits must be refused and leave every record and total as it was.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import strategies as st

import reactive as r
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

from .conftest import MakeController

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _model(total_type: Any = "integer") -> tuple[list[r.Entity], list[r.Relation], list[Any]]:
    gift = r.Entity("Gift", [r.Property("cents", "integer"), r.Property("weight", "integer")])
    donor = r.Entity(
        "Donor",
        [
            r.Property(
                "given",
                total_type,
                computation=r.Summation(property="gifts", attribute_query=["cents"]),
            ),
            r.Property("gift_count", "integer", computation=r.Count(property="gifts")),
            r.Property(
                "weighted",
                "integer",
                computation=r.WeightedSummation(
                    property="gifts",
                    attribute_query=["cents", "weight"],
                    callback=lambda g: (g["weight"] or 0, g["cents"] or 0),
                ),
            ),
        ],
    )
    gifts = r.Relation(donor, "gifts", gift, "donor", "1:n")
    total = r.Dictionary(
        "total",
        total_type,
        computation=r.Summation(record=gift, attribute_query=["cents"]),
    )
    return [donor, gift], [gifts], [total]


async def _state(controller: r.Controller) -> dict[str, Any]:
    donors = await controller.storage.find(
        "Donor", None, ["given", "gift_count", "weighted"], order_by={"id": "asc"}
    )
    gifts = await controller.storage.find("Gift", None, ["cents", "weight"], order_by={"id": "asc"})
    return {
        "donors": donors,
        "gifts": gifts,
        "total": await controller.storage.get_dict("total"),
    }


# Values near the 64-bit limits make sums (and the doubled weighted sums) overflow often.
BIG = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(2**61, INT64_MAX),
    st.integers(INT64_MIN, -(2**61)),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 2), BIG),
        st.tuples(st.just("create"), st.integers(0, 2), st.integers(-1000, 1000)),
        st.tuples(st.just("update"), st.integers(0, 50), BIG),
        st.tuples(st.just("delete"), st.integers(0, 50), st.just(0)),
    ),
    max_size=12,
)


async def scenario(backend: str, ops: list[tuple[str, int, int]]) -> None:
    entities, relations, dictionaries = _model()
    async with scratch_storage(backend) as storage:
        controller = r.Controller(storage, entities, relations, dictionaries)
        await controller.setup()
        await check(controller, ops)


(
    test_integer_totals_equal_python_sums_and_overflow_changes_nothing,
    test_integer_totals_on_postgresql,
) = on_both_backends(
    "test_integer_totals_equal_python_sums_and_overflow_changes_nothing",
    scenario,
    examples=60,
    pg_examples=12,
    ops=OPS,
    pg_name="test_integer_totals_on_postgresql",
    sqlite_param=True,
)


async def check(controller: r.Controller, ops: list[tuple[str, int, int]]) -> None:
    """Run ``ops`` on ``controller`` against Python's sums (closes the controller)."""
    try:
        donors = [(await controller.storage.create("Donor", {}))["id"] for _ in range(3)]
        gifts: dict[int, tuple[int, int]] = {}  # gift id -> (donor index, cents)
        for op, x, value in ops:
            before = await _state(controller)
            proposed = dict(gifts)
            call: Coroutine[Any, Any, Any]  # create answers the record, update and delete lists
            if op == "create":
                call = controller.storage.create(
                    "Gift", {"cents": value, "weight": 2, "donor": {"id": donors[x]}}
                )
                target = None
            elif gifts:
                target = sorted(gifts)[x % len(gifts)]
                if op == "update":
                    proposed[target] = (gifts[target][0], value)
                    call = controller.storage.update("Gift", {"id": target}, {"cents": value})
                else:
                    del proposed[target]
                    call = controller.storage.delete("Gift", {"id": target})
            else:
                continue
            sums = [sum(c for d, c in proposed.values() if d == i) for i in range(3)]
            if op == "create":
                sums[x] += value
            expected_total = sum(sums)
            weighted = [2 * s for s in sums]
            fits = all(INT64_MIN <= v <= INT64_MAX for v in (*sums, *weighted, expected_total))
            if fits:
                result = await call
                if op == "create":
                    assert isinstance(result, dict)
                    proposed[result["id"]] = (x, value)
                gifts = proposed
            else:
                with pytest.raises(r.ComputationError) as info:
                    await call
                assert "outside the 64-bit integer range" in str(info.value)
                assert info.value.computation.startswith(("Donor.", "total ("))
                assert await _state(controller) == before  # nothing of it was stored
                continue
            state = await _state(controller)
            assert state["total"] == expected_total
            assert type(state["total"]) is int
            for i, donor in enumerate(state["donors"]):
                assert donor["given"] == sums[i]
                assert donor["weighted"] == weighted[i]
                assert donor["gift_count"] == sum(1 for d, _ in gifts.values() if d == i)
                assert all(type(donor[k]) is int for k in ("given", "weighted", "gift_count"))
    finally:
        await controller.close()


async def test_an_overflow_names_the_property_and_rolls_the_write_back(
    make: MakeController,
) -> None:
    entities, relations, dictionaries = _model()
    controller = await make(entities, relations, dictionaries)
    donor = await controller.storage.create("Donor", {})
    await controller.storage.create("Gift", {"cents": INT64_MAX, "donor": {"id": donor["id"]}})
    with pytest.raises(r.ComputationError) as info:
        await controller.storage.create("Gift", {"cents": 1, "donor": {"id": donor["id"]}})
    message = str(info.value)
    assert "Donor.given" in message or "dictionary total" in message
    assert "outside the 64-bit integer range" in message
    assert "Error" not in message  # no class names in the words
    assert await controller.storage.count("Gift") == 1
    assert await controller.storage.get_dict("total") == INT64_MAX


async def _prices_summed_into(make: MakeController, total_type: Any) -> r.Controller:
    """Items with a ``number`` price, summed into the dictionary ``total`` of ``total_type``."""
    item = r.Entity("Item", [r.Property("price", "number")])
    total = r.Dictionary(
        "total", total_type, computation=r.Summation(record=item, attribute_query=["price"])
    )
    return await make([item], [], [total])


async def test_a_float_into_an_integer_total_is_refused(make: MakeController) -> None:
    controller = await _prices_summed_into(make, "integer")
    await controller.storage.create("Item", {"price": 2})
    with pytest.raises(r.ComputationError, match=r"dictionary total is an integer.*2\.5"):
        await controller.storage.create("Item", {"price": 0.5})
    assert await controller.storage.get_dict("total") == 2
    assert await controller.storage.count("Item") == 1


async def test_a_number_total_never_becomes_infinite(make: MakeController) -> None:
    controller = await _prices_summed_into(make, "number")
    await controller.storage.create("Item", {"price": 1e308})
    with pytest.raises(r.ComputationError, match="beyond the largest finite number"):
        await controller.storage.create("Item", {"price": 1e308})
    assert await controller.storage.get_dict("total") == 1e308
    assert math.isfinite(await controller.storage.get_dict("total"))
    assert await controller.storage.count("Item") == 1


async def test_a_dispatch_reports_an_overflow_without_class_names(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("cents", "integer")], computation=None)
    total = r.Dictionary(
        "total", "integer", computation=r.Summation(record=item, attribute_query=["cents"])
    )

    def add(event: dict[str, Any], ctx: r.TransactionContext) -> Any:
        return ctx.storage.create("Item", {"cents": event["payload"]["cents"]})

    give = r.Interaction(
        "Give", r.Payload([r.PayloadItem("cents", "integer", required=True)]), resolve=add
    )
    controller = await make([item], [], [total], [give])
    assert (await controller.dispatch("Give", payload={"cents": INT64_MAX})).error is None
    result = await controller.dispatch("Give", payload={"cents": INT64_MAX})
    assert result.error is not None
    assert result.error.code == "computation_error"
    assert "dictionary total" in result.error.message
    assert "outside the 64-bit integer range" in result.error.message
    assert "Error" not in result.error.message
    assert await controller.storage.count("Item") == 1
    assert await controller.storage.count(r.INTERACTION_EVENT) == 1
