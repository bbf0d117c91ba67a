"""One write, one transaction: a failure anywhere in the chain stores nothing; cycles end."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from tests.conftest import StorageFactory

from .conftest import MakeController
from .helpers import table_counts


def cycle_model() -> tuple[list[r.Entity], r.Interaction]:
    ping = r.Entity("Ping", [r.Property("n", "number")])
    pong = r.Entity(
        "Pong",
        [r.Property("n", "number")],
        computation=r.Transform(ping, lambda p: {"n": p["n"] + 1}),
    )
    ping.computation = r.Transform(pong, lambda p: {"n": p["n"] + 1})
    start = r.Interaction(
        "Start",
        r.Payload([r.PayloadItem("n", "number")]),
        resolve=lambda ev, ctx: ctx.storage.create("Ping", {"n": ev["payload"]["n"]}),
    )
    return [ping, pong], start


async def test_two_transforms_feeding_each_other_end_in_a_cycle_error(
    make: MakeController,
) -> None:
    entities, start = cycle_model()
    c = await make(entities, interactions=[start])

    with pytest.raises(r.CycleError) as caught:
        await c.storage.create("Ping", {"n": 0})

    assert "circular" in str(caught.value)
    assert any("Pong" in name for name in caught.value.trail)
    assert await table_counts(c, "Ping", "Pong") == {
        "Ping": 0,
        "Pong": 0,
        r.INTERACTION_EVENT: 0,
        DICTIONARY_RECORD: 0,
    }


async def test_a_cycle_in_a_dispatch_is_an_error_result_and_stores_nothing(
    make: MakeController,
) -> None:
    entities, start = cycle_model()
    c = await make(entities, interactions=[start])

    result = await c.dispatch(start, user={"id": 1}, payload={"n": 0})

    assert result.error is not None
    assert result.error.code == "computation_error"
    assert isinstance(result.error.cause, r.CycleError)
    assert result.effects == []
    assert await table_counts(c, "Ping", "Pong") == {
        "Ping": 0,
        "Pong": 0,
        r.INTERACTION_EVENT: 0,
        DICTIONARY_RECORD: 0,
    }


def shop() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    def price_ok(item: dict[str, Any]) -> bool:
        if item["price"] is not None and item["price"] < 0:
            raise ValueError("negative price")
        return True

    item = r.Entity(
        "Item",
        [r.Property("name"), r.Property("price", "number"), r.Property("stock", "number")],
    )
    order = r.Entity(
        "Order",
        [
            r.Property("code"),
            r.Property("lines", "number", computation=r.Count(property="items")),
            r.Property(
                "valid",
                "number",
                computation=r.Count(property="items", callback=price_ok, attribute_query=["price"]),
            ),
        ],
    )
    items = r.Relation(order, "items", item, "orders", "n:n")
    invoice = r.Entity(
        "Invoice",
        [r.Property("code"), r.Property("ratio", "number", computed=lambda i: 1 / i["stock"])],
        computation=r.Transform(item, lambda i: {"code": i["name"], "stock": i["stock"]}),
    )
    invoice.properties.append(r.Property("stock", "number"))
    dicts = [
        r.Dictionary("items", "number", computation=r.Count(record=item)),
        r.Dictionary("orders", "number", computation=r.Count(record=order)),
        r.Dictionary("links", "number", computation=r.Count(record=items)),
    ]
    return [item, order, invoice], [items], dicts


async def snapshot(c: r.Controller) -> dict[str, Any]:
    return {
        "counts": await table_counts(c, "Item", "Order", "Invoice", "Order_items_orders_Item"),
        "dicts": {d: await c.storage.get_dict(d) for d in ("items", "orders", "links")},
        "orders": await c.storage.find("Order", None, ["*"], order_by={"id": "asc"}),
        "items": await c.storage.find("Item", None, ["*"], order_by={"id": "asc"}),
        "invoices": await c.storage.find("Invoice", None, ["*"], order_by={"id": "asc"}),
    }


async def test_a_failing_callback_rolls_back_the_whole_create(make: MakeController) -> None:
    entities, relations, dicts = shop()
    c = await make(entities, relations, dicts)
    good = await c.storage.create("Item", {"name": "good", "price": 1, "stock": 1})
    await c.storage.create("Order", {"code": "o1", "items": [{"id": good["id"]}]})
    before = await snapshot(c)
    assert before["dicts"] == {"items": 1, "orders": 1, "links": 1}

    # a nested new item with a negative price: the Count callback raises half way through
    with pytest.raises(r.ComputationError) as caught:
        await c.storage.create(
            "Order",
            {"code": "o2", "items": [{"id": good["id"]}, {"name": "bad", "price": -1, "stock": 1}]},
        )
    assert isinstance(caught.value.cause, ValueError)
    assert "Order.valid" in caught.value.computation

    assert await snapshot(c) == before


async def test_a_failing_update_rolls_back_everything(make: MakeController) -> None:
    entities, relations, dicts = shop()
    c = await make(entities, relations, dicts)
    item = await c.storage.create("Item", {"name": "a", "price": 1, "stock": 2})
    await c.storage.create("Order", {"code": "o1", "items": [{"id": item["id"]}]})
    before = await snapshot(c)

    with pytest.raises(r.ComputationError):
        await c.storage.update("Item", {"id": item["id"]}, {"price": -5, "name": "renamed"})

    assert await snapshot(c) == before


async def test_a_failure_deep_in_a_transform_chain_rolls_back(make: MakeController) -> None:
    entities, relations, dicts = shop()
    c = await make(entities, relations, dicts)
    await c.storage.create("Item", {"name": "a", "price": 1, "stock": 2})
    before = await snapshot(c)

    # Item -> Transform -> Invoice whose computed ratio divides by zero
    with pytest.raises(r.ComputationError) as caught:
        await c.storage.create("Item", {"name": "b", "price": 1, "stock": 0})
    assert isinstance(caught.value.cause, ZeroDivisionError)

    assert await snapshot(c) == before


async def test_a_failing_delete_keeps_everything(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("name")])

    def refuse_last(last: Any, event: r.MutationEvent) -> Any:
        if last == 1:
            raise RuntimeError("the last item cannot go")
        return last - 1

    guard = r.Dictionary(
        "left",
        "number",
        computation=r.Custom(
            lambda last, ev: (last or 0) + 1 if ev.type == "create" else refuse_last(last, ev),
            triggers=[r.Trigger(item, "create"), r.Trigger(item, "delete")],
            initial=0,
        ),
    )
    count = r.Dictionary("count", "number", computation=r.Count(record=item))
    c = await make([item], dictionaries=[count, guard])
    await c.storage.create("Item", {"name": "a"})
    await c.storage.create("Item", {"name": "b"})

    with pytest.raises(r.ComputationError):
        await c.storage.delete("Item", {})

    assert await c.storage.count("Item") == 2
    assert await c.storage.get_dict("count") == 2
    assert await c.storage.get_dict("left") == 2


async def test_a_failure_in_a_dispatch_stores_nothing_and_later_writes_work(
    make: MakeController,
) -> None:
    entities, relations, dicts = shop()
    add = r.Interaction(
        "AddItem",
        r.Payload(
            [
                r.PayloadItem("name"),
                r.PayloadItem("price", "number"),
                r.PayloadItem("stock", "number"),
            ]
        ),
        resolve=lambda ev, ctx: ctx.storage.create("Item", ev["payload"]),
    )
    c = await make(entities, relations, dicts, [add])
    before = await snapshot(c)

    result = await c.dispatch(add, payload={"name": "x", "price": 1, "stock": 0})
    assert result.error is not None and result.error.code == "computation_error"
    assert isinstance(result.error.cause, r.ComputationError)
    assert result.error.details == {"computation": result.error.cause.computation}
    assert await snapshot(c) == before

    # the engine keeps working after a rolled-back write
    ok = await c.dispatch(add, payload={"name": "y", "price": 1, "stock": 4})
    assert ok.error is None
    assert ok.data["name"] == "y"
    after = await snapshot(c)
    assert after["dicts"] == {"items": 1, "orders": 0, "links": 0}
    assert [(i["code"], i["ratio"]) for i in after["invoices"]] == [("y", 0.25)]


async def test_a_rolled_back_savepoint_leaves_no_trace_in_later_computations(
    tmp_path: Path, make_storage: StorageFactory
) -> None:
    fan = r.Entity("Fan", [r.Property("weight", "number")])
    club = r.Entity(
        "Club",
        [
            r.Property(
                "total",
                "number",
                computation=r.Summation(property="fans", attribute_query=["weight"]),
            )
        ],
    )
    fans = r.Relation(club, "fans", fan, "clubs", "n:n")
    controller = r.Controller(make_storage("sp.db"), [fan, club], [fans])
    await controller.setup()

    def body(ctx: r.TransactionContext) -> None:
        club_id = ctx.storage.create("Club", {})["id"]
        fan_id = ctx.storage.create("Fan", {"weight": 1})["id"]
        with pytest.raises(RuntimeError), ctx.storage.savepoint():
            ctx.storage.update("Fan", {"id": fan_id}, {"weight": 100})
            raise RuntimeError("undo")
        ctx.storage.create(fans, {"source": {"id": club_id}, "target": {"id": fan_id}})

    try:
        await controller.transact(body)
        clubs = await controller.storage.find("Club", None, ["total"])
        assert [c["total"] for c in clubs] == [1]  # the undone weight of 100 is not counted
    finally:
        await controller.close()


def _likes_model() -> tuple[list[r.Entity], list[r.Relation]]:
    fan = r.Entity("Fan", [r.Property("name")])
    post = r.Entity(
        "Post", [r.Property("likes", "number", computation=r.Count(property="liked_by"))]
    )
    return [fan, post], [r.Relation(post, "liked_by", fan, "liked", "n:n")]


async def test_many_steps_on_one_host_in_one_transaction_each_see_the_last(
    tmp_path: Path, make_storage: StorageFactory
) -> None:
    """The host's snapshot is read once per transaction and kept current by its events:
    every like in the same transaction must build on the one before, and a rolled-back
    savepoint must not leave its like in what later steps read."""
    entities, relations = _likes_model()
    link = relations[0].relation_name
    controller = r.Controller(make_storage("one.db"), entities, relations)
    await controller.setup()

    def body(ctx: r.TransactionContext) -> list[int]:
        post = ctx.storage.create("Post", {})["id"]
        fan = ctx.storage.create("Fan", {"name": "f"})["id"]
        seen = []
        for _ in range(3):
            ctx.storage.create(link, {"source": {"id": post}, "target": {"id": fan}})
            found = ctx.storage.find_one("Post", {"id": post}, ["likes"])
            assert found is not None
            seen.append(found["likes"])
        with pytest.raises(RuntimeError), ctx.storage.savepoint():
            ctx.storage.create(link, {"source": {"id": post}, "target": {"id": fan}})
            raise RuntimeError("undo")
        ctx.storage.create(link, {"source": {"id": post}, "target": {"id": fan}})
        ctx.storage.delete(link, {"id": 1})
        found = ctx.storage.find_one("Post", {"id": post}, ["likes"])
        assert found is not None
        seen.append(found["likes"])
        return seen

    try:
        seen, _ = await controller.transact(body)
        assert seen == [1, 2, 3, 3]
        posts = await controller.storage.find("Post", None, ["likes"])
        assert [p["likes"] for p in posts] == [3]
        assert await controller.storage.count(link) == 3
    finally:
        await controller.close()


async def test_a_caught_computation_error_still_rolls_the_transaction_back(
    tmp_path: Path, make_storage: StorageFactory
) -> None:
    def fragile(item: dict[str, Any]) -> bool:
        if item["name"] == "boom":
            raise ValueError("no booms")
        return True

    fan = r.Entity("Fan", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property(
                "all_fine",
                "boolean",
                computation=r.Every(
                    property="liked_by", callback=fragile, attribute_query=["name"]
                ),
            )
        ],
    )
    likes = r.Relation(post, "liked_by", fan, "liked", "n:n")
    controller = r.Controller(make_storage("caught.db"), [fan, post], [likes])
    await controller.setup()

    def body(ctx: r.TransactionContext) -> None:
        post_id = ctx.storage.create("Post", {})["id"]
        boom = ctx.storage.create("Fan", {"name": "boom"})["id"]
        # Swallowed: the link is stored but Post.all_fine was never updated.
        with contextlib.suppress(r.ComputationError):
            ctx.storage.create(likes, {"source": {"id": post_id}, "target": {"id": boom}})

    try:
        with pytest.raises(r.ComputationError, match="no booms"):
            await controller.transact(body)
        assert await table_counts(controller, "Post", "Fan") == {
            "Post": 0,
            "Fan": 0,
            r.INTERACTION_EVENT: 0,
            DICTIONARY_RECORD: 0,
        }
        assert await controller.storage.count(likes) == 0
    finally:
        await controller.close()


async def test_a_dictionary_stepped_many_times_in_one_transaction_sees_each_step(
    tmp_path: Path, make_storage: StorageFactory
) -> None:
    """The dictionary's row is read once per transaction and kept current by its events."""
    post = r.Entity("Post", [r.Property("title")])
    posts = r.Dictionary("posts", "number", computation=r.Count(record=post))
    controller = r.Controller(make_storage("dict.db"), [post], dictionaries=[posts])
    await controller.setup()

    def body(ctx: r.TransactionContext) -> list[Any]:
        seen = []
        for title in ("a", "b"):
            ctx.storage.create("Post", {"title": title})
            seen.append(ctx.storage.get_dict("posts"))
        with pytest.raises(RuntimeError), ctx.storage.savepoint():
            ctx.storage.create("Post", {"title": "undone"})
            raise RuntimeError("undo")
        ctx.storage.create("Post", {"title": "c"})
        ctx.storage.delete("Post", {"title": "a"})
        seen.append(ctx.storage.get_dict("posts"))
        return seen

    try:
        seen, _ = await controller.transact(body)
        assert seen == [1, 2, 2]
        assert await controller.storage.get_dict("posts") == 2
        assert await controller.storage.count("Post") == 2
    finally:
        await controller.close()
