"""Custom: a user function of the events named by its triggers."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from storage import SQLiteStorage

from .conftest import MakeController


def note_model(**custom: r.Custom) -> list[r.Entity]:
    note = r.Entity("Note", [r.Property("order_id", "number"), r.Property("text")])
    order = r.Entity(
        "Order",
        [r.Property("code")]
        + [r.Property(name, "json", computation=comp) for name, comp in custom.items()],
    )
    return [note, order]


async def test_custom_property(make: MakeController) -> None:
    calls: list[tuple[Any, str]] = []

    def last_note(last: Any, event: r.MutationEvent) -> Any:
        calls.append((last, event.type))
        if event.type == "delete":
            return None
        return event.merged["text"]

    custom = r.Custom(
        last_note,
        triggers=[
            r.Trigger("Note", "create"),
            r.Trigger("Note", "update", keys=["text"]),
            r.Trigger("Note", "delete"),
        ],
        compute_target=lambda ev: {"id": ev.merged["order_id"]},
        initial="none yet",
    )
    c = await make(note_model(last=custom))
    o = await c.storage.create("Order", {"code": "o"})
    other = await c.storage.create("Order", {"code": "other"})
    assert o["last"] == "none yet"

    n = await c.storage.create("Note", {"order_id": o["id"], "text": "hello"})
    await c.storage.update("Note", {"id": n["id"]}, {"text": "edited"})
    rows = await c.storage.find("Order", None, ["code", "last"], order_by={"id": "asc"})
    assert [(x["code"], x["last"]) for x in rows] == [("o", "edited"), ("other", "none yet")]
    assert calls == [("none yet", "create"), ("hello", "update")]

    await c.storage.update("Note", {"id": n["id"]}, {"order_id": other["id"]})  # no "text" key
    assert len(calls) == 2
    await c.storage.delete("Note", {"id": n["id"]})
    rows = await c.storage.find("Order", None, ["code", "last"], order_by={"id": "asc"})
    assert [(x["code"], x["last"]) for x in rows] == [("o", "edited"), ("other", None)]


async def test_custom_property_unchanged_writes_nothing(make: MakeController) -> None:
    def longest(last: Any, event: r.MutationEvent) -> Any:
        text = event.record["text"]
        return text if len(text) > len(last) else r.UNCHANGED

    custom = r.Custom(
        longest,
        triggers=[r.Trigger("Note", "create")],
        compute_target=lambda ev: {"id": ev.record["order_id"]},
        initial=lambda: "",
    )
    c = await make(note_model(longest=custom))
    o = await c.storage.create("Order", {"code": "o"})
    events: list[r.MutationEvent] = []
    c.mutations.subscribe(events.append)

    await c.storage.create("Note", {"order_id": o["id"], "text": "abc"})
    await c.storage.create("Note", {"order_id": o["id"], "text": "x"})
    await c.storage.create("Note", {"order_id": o["id"], "text": "abcdef"})

    row = await c.storage.find_one("Order", {"id": o["id"]}, ["longest"])
    assert row == {"id": o["id"], "longest": "abcdef"}
    order_updates = [e.record["longest"] for e in events if e.record_name == "Order"]
    assert order_updates == ["abc", "abcdef"]


async def test_custom_compute_with_ctx_and_many_targets(make: MakeController) -> None:
    def notes_of(last: Any, event: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.count("Note")

    custom = r.Custom(
        notes_of,
        triggers=[r.Trigger("Note", "create")],
        compute_target=lambda ev, ctx: ctx.storage.find("Order"),
        initial=0,
    )
    c = await make(note_model(seen=custom))
    await c.storage.create("Order", {"code": "a"})
    await c.storage.create("Order", {"code": "b"})

    await c.storage.create("Note", {"text": "1"})
    await c.storage.create("Note", {"text": "2"})

    rows = await c.storage.find("Order", None, ["seen"])
    assert [x["seen"] for x in rows] == [2, 2]


async def test_custom_dictionary(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("price", "number")])

    def highest(last: Any, event: r.MutationEvent) -> Any:
        price = event.merged["price"]
        return price if price > last else r.UNCHANGED

    top = r.Dictionary(
        "top",
        "number",
        computation=r.Custom(
            highest,
            triggers=[r.Trigger(item, "create"), r.Trigger(item, "update", keys=["price"])],
            initial=0,
        ),
    )
    c = await make([item], dictionaries=[top])
    assert await c.storage.get_dict("top") == 0
    events: list[r.MutationEvent] = []
    c.stream(DICTIONARY_RECORD).subscribe(events.append)

    a = await c.storage.create("Item", {"price": 5})
    await c.storage.create("Item", {"price": 3})
    assert await c.storage.get_dict("top") == 5
    await c.storage.update("Item", {"id": a["id"]}, {"price": 9})
    assert await c.storage.get_dict("top") == 9
    assert [e.record["value"] for e in events] == [5, 9]
    with pytest.raises(r.ModelError):
        await c.storage.set_dict("top", 100)


async def test_custom_value_cannot_be_written(make: MakeController) -> None:
    custom = r.Custom(
        lambda last, ev: 1,
        triggers=[r.Trigger("Note", "create")],
        compute_target=lambda ev: None,
    )
    c = await make(note_model(v=custom))
    o = await c.storage.create("Order", {"code": "o"})
    with pytest.raises((r.ComputationError, r.ModelError)):
        await c.storage.create("Order", {"code": "p", "v": 3})
    with pytest.raises(r.ModelError):
        await c.storage.update("Order", {"id": o["id"]}, {"v": 3})
    assert await c.storage.find("Order", None, ["code", "v"]) == [
        {"id": o["id"], "code": "o", "v": None}
    ]


def test_custom_declaration_errors() -> None:
    with pytest.raises(r.ModelError):
        r.Custom("nope", triggers=[r.Trigger("Note")])  # type: ignore[arg-type]
    with pytest.raises(r.ModelError):
        r.Custom(lambda last, ev: 1)
    with pytest.raises(r.ModelError):
        r.Custom(lambda last, ev: 1, triggers=["Note"])  # type: ignore[list-item]
    no_target = r.Custom(lambda last, ev: 1, triggers=[r.Trigger("Note")])
    with pytest.raises(r.SetupError, match="compute_target"):
        r.Controller(SQLiteStorage(":memory:"), note_model(v=no_target))
    unknown = r.Custom(lambda last, ev: 1, triggers=[r.Trigger("Nope")], compute_target=list)
    with pytest.raises(r.SetupError):
        r.Controller(SQLiteStorage(":memory:"), note_model(v=unknown))
    with pytest.raises(r.ModelError):  # compute takes (last, event) or (last, event, ctx)
        r.Controller(
            SQLiteStorage(":memory:"),
            note_model(
                v=r.Custom(lambda a, b, c, d: 1, triggers=[r.Trigger("Note")], compute_target=list)
            ),
        )


def test_custom_compute_must_be_synchronous() -> None:
    async def compute(last: Any, event: r.MutationEvent) -> Any:
        return 1

    custom = r.Custom(compute, triggers=[r.Trigger("Note")], compute_target=list)
    with pytest.raises(r.ModelError, match="synchronous"):
        r.Controller(SQLiteStorage(":memory:"), note_model(v=custom))
