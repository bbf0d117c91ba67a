"""Unique constraints over several properties (``Entity(..., constraints=[UniqueConstraint([...
])])``), enforced by a unique index in the database on both backends: the violating write is
refused with an error naming the constraint and its fields and changes nothing; adding one to a
model whose stored rows violate it is planned and refused, naming the constraint's fields;
declarations naming unknown properties fail at construction naming entity and property."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from storage import SchemaError, UniqueViolationError
from tests.conftest import StorageFactory

from .conftest import MakeController


def seat_model(*constraints: r.UniqueConstraint) -> r.Entity:
    return r.Entity(
        "Seat",
        [r.Property("row"), r.Property("number", "integer"), r.Property("holder")],
        constraints=list(constraints),
    )


async def test_a_composite_unique_constraint_refuses_a_repeat_naming_itself(
    make: MakeController,
) -> None:
    seat = seat_model(r.UniqueConstraint(["row", "number"], name="one_per_seat"))
    c = await make([seat])
    await c.storage.create("Seat", {"row": "A", "number": 1, "holder": "ada"})
    await c.storage.create("Seat", {"row": "A", "number": 2, "holder": "bob"})
    await c.storage.create("Seat", {"row": "B", "number": 1, "holder": "cyd"})
    # None never collides (as in SQL)
    await c.storage.create("Seat", {"row": "A", "holder": "x"})
    await c.storage.create("Seat", {"row": "A", "holder": "y"})
    with pytest.raises(UniqueViolationError) as info:
        await c.storage.create("Seat", {"row": "A", "number": 1, "holder": "dan"})
    assert info.value.constraint == "one_per_seat"
    assert set(info.value.fields) == {"row", "number"}
    assert "one_per_seat" in str(info.value) and "Seat" in str(info.value)
    with pytest.raises(UniqueViolationError, match="one_per_seat"):
        await c.storage.update("Seat", {"holder": "bob"}, {"number": 1})
    rows = await c.storage.find("Seat", None, ["row", "number", "holder"], order_by={"id": "asc"})
    assert [(s["row"], s["number"], s["holder"]) for s in rows] == [
        ("A", 1, "ada"),
        ("A", 2, "bob"),
        ("B", 1, "cyd"),
        ("A", None, "x"),
        ("A", None, "y"),
    ]
    assert (await c.verify()).ok


async def test_an_unnamed_constraint_is_named_after_entity_and_fields(make: MakeController) -> None:
    c = await make([seat_model(r.UniqueConstraint(("row", "holder")))])
    await c.storage.create("Seat", {"row": "A", "holder": "ada"})
    with pytest.raises(UniqueViolationError) as info:
        await c.storage.create("Seat", {"row": "A", "holder": "ada", "number": 3})
    assert info.value.constraint == "Seat_row_holder_unique"
    assert await c.storage.count("Seat") == 1


async def test_adding_a_constraint_is_planned_applied_or_refused(
    make_storage: StorageFactory,
) -> None:
    first = r.Controller(make_storage("db"), [seat_model()])
    await first.setup()
    try:
        await first.storage.create("Seat", {"row": "A", "number": 1})
        await first.storage.create("Seat", {"row": "A", "number": 2})
        await first.storage.create("Seat", {"row": "A", "number": 2})
    finally:
        await first.close()
    # rows repeat (row, number): the plan says so up front, and setup refuses, changing nothing
    strict = r.Controller(make_storage("db"), [seat_model(r.UniqueConstraint(["row", "number"]))])
    try:
        plan = await strict.plan_migration()
        assert [(ch.kind, ch.target) for ch in plan.changes] == [("add_index", "Seat(row, number)")]
        with pytest.raises(SchemaError) as info:
            await strict.setup()
        assert "unique index Seat_row_number_unique on Seat(row, number)" in str(info.value)
        assert "fails on the stored rows" in str(info.value)
    finally:
        await strict.close()
    # a constraint the stored rows satisfy is applied, and holds from then on
    loose = r.Controller(
        make_storage("db"), [seat_model(r.UniqueConstraint(["row", "number", "holder"]))]
    )
    await loose.setup()
    try:
        await loose.storage.create("Seat", {"row": "B", "number": 1, "holder": "h"})
        with pytest.raises(UniqueViolationError, match="Seat_row_number_holder_unique"):
            await loose.storage.create("Seat", {"row": "B", "number": 1, "holder": "h"})
        assert await loose.storage.count("Seat") == 4
    finally:
        await loose.close()


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: seat_model(r.UniqueConstraint(["row", "seat"])), "Seat: unique constraint"),
        (lambda: seat_model(r.UniqueConstraint(["row", "seat"])), "'seat'"),
        (lambda: r.UniqueConstraint([]), "distinct property names"),
        (lambda: r.UniqueConstraint(["a", "a"]), "distinct property names"),
        (lambda: r.UniqueConstraint("row"), "a list of property names"),
        (lambda: r.UniqueConstraint(["a"], name="bad name"), "constraint name"),
        (lambda: r.Entity("S", [r.Property("a")], constraints=["a"]), "UniqueConstraint"),
    ],
)
def test_bad_constraint_declarations_fail_naming_what_is_wrong(build: Any, fragment: str) -> None:
    with pytest.raises(r.ModelError, match=fragment.replace("(", r"\(")):
        build()


async def test_a_partial_unique_constraint_binds_only_the_rows_it_selects(
    make: MakeController,
) -> None:
    """The original's soft-deletion pattern: a holder's name is unique among live seats."""
    seat = r.Entity(
        "Seat",
        [r.Property("holder"), r.Property("gone", "boolean"), r.Property("row")],
        constraints=[
            r.UniqueConstraint(["holder"], name="live_holder", where={"gone": False}),
            r.UniqueConstraint(["holder", "row"], name="row_o_holder", where={"row": "O'B"}),
        ],
    )
    c = await make([seat])
    first = await c.storage.create("Seat", {"holder": "ada", "gone": False})
    await c.storage.create("Seat", {"holder": "ada", "gone": True})
    await c.storage.create("Seat", {"holder": "ada", "gone": True})
    with pytest.raises(UniqueViolationError) as info:
        await c.storage.create("Seat", {"holder": "ada", "gone": False})
    assert info.value.constraint == "live_holder" and info.value.fields == ("holder",)
    # leaving the selected rows frees the value
    await c.storage.update("Seat", {"id": first["id"]}, {"gone": True})
    await c.storage.create("Seat", {"holder": "ada", "gone": False})
    # a string literal with a quote in it, and rows outside the partial constraint
    await c.storage.create("Seat", {"holder": "bob", "row": "O'B"})
    await c.storage.create("Seat", {"holder": "bob", "row": "A"})
    await c.storage.create("Seat", {"holder": "bob", "row": "A"})
    with pytest.raises(UniqueViolationError, match="row_o_holder"):
        await c.storage.create("Seat", {"holder": "bob", "row": "O'B"})
    assert await c.storage.count("Seat") == 7


async def test_a_changed_where_is_planned_as_a_new_index(make_storage: StorageFactory) -> None:
    def model(where: dict[str, Any]) -> r.Entity:
        return r.Entity(
            "Seat",
            [r.Property("holder"), r.Property("gone", "boolean")],
            constraints=[r.UniqueConstraint(["holder"], name="live", where=where)],
        )

    first = r.Controller(make_storage("db"), [model({"gone": False})])
    await first.setup()
    try:
        await first.storage.create("Seat", {"holder": "ada", "gone": True})
        await first.storage.create("Seat", {"holder": "ada", "gone": True})
    finally:
        await first.close()
    again = r.Controller(make_storage("db"), [model({"gone": False})])
    try:
        assert str(await again.plan_migration()) == "Migration plan: nothing to change."
    finally:
        await again.close()
    # constraining the gone rows instead: they repeat "ada", so it is refused, changing nothing
    flipped = r.Controller(make_storage("db"), [model({"gone": True})])
    try:
        plan = await flipped.plan_migration()
        assert sorted(ch.kind for ch in plan.changes) == ["add_index", "remove_index"]
        with pytest.raises(SchemaError, match="unique index live on Seat"):
            await flipped.setup()
    finally:
        await flipped.close()
    kept = r.Controller(make_storage("db"), [model({"gone": False})])
    await kept.setup()
    try:
        await kept.storage.create("Seat", {"holder": "ada", "gone": False})
        with pytest.raises(UniqueViolationError, match="live"):
            await kept.storage.create("Seat", {"holder": "ada", "gone": False})
    finally:
        await kept.close()


def test_a_where_naming_an_unknown_property_fails_at_construction() -> None:
    with pytest.raises(r.ModelError, match=r"Seat: unique constraint .* names 'deleted'"):
        seat_model(r.UniqueConstraint(["row"], where={"deleted": False}))
