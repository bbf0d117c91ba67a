"""The engine side of the storage seam: the compiled model is a frozen value, computations read
through the transaction context (so its memory answers them), and an expected storage failure
inside a transaction is never followed by more statements (PostgreSQL's rule)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import reactive as r
from reactive.interaction import validate_payload
from storage import SQLiteStorage
from tests.aborting_storage import AbortingStorage
from tests.conftest import StorageFactory, sqlite_only


def _shop() -> tuple[list[r.Entity], list[r.Relation]]:
    item = r.Entity("Item", [r.Property("price", "number"), r.Property("code", index=True)])
    order = r.Entity(
        "Order",
        [
            r.Property(
                "total",
                "number",
                computation=r.Summation(property="items", attribute_query=["price"]),
            )
        ],
    )
    return [item, order], [r.Relation(order, "items", item, "orders", "n:n")]


def _trace(ctx: r.TransactionContext, statements: list[str]) -> sqlite3.Connection:
    """Record every statement of the transaction's SQLite connection from now on."""
    session: Any = ctx.session
    conn: sqlite3.Connection = getattr(session, "connection", None) or session._reader.conn
    conn.set_trace_callback(statements.append)
    return conn


async def test_the_compiled_model_is_a_frozen_value(make_storage: StorageFactory) -> None:
    entities, relations = _shop()
    controller = r.Controller(make_storage("memory.db"), entities, relations)
    await controller.setup()
    try:

        def lookups(ctx: r.TransactionContext) -> None:
            ctx.storage.find_one("Item", {"price": 1})  # unindexed: warned, remembered

        await controller.transact(lookups)
        engine = controller.engine
        with pytest.raises(AttributeError, match="frozen"):
            engine.schema = engine.schema
        with pytest.raises(AttributeError, match="frozen"):
            engine.fresh_state = {}
        with pytest.raises(TypeError):
            engine.records["Ghost"] = engine.records["Item"]  # type: ignore[index]
        with pytest.raises(TypeError):
            engine.routes[("Item", "create")] = engine.routes[("Order_items_orders_Item", "create")]  # type: ignore[index]
        with pytest.raises(TypeError):
            engine.records["Order"].owned["total"] = None  # type: ignore[index]
        assert isinstance(engine.handles, tuple) and isinstance(engine.entities, tuple)
        # What the model knows about lookups is a question, not a memory.
        assert engine.unindexed_lookup("Item", ["price"]) == "price"
        assert engine.unindexed_lookup("Item", ["code", "price"]) is None
        assert not [name for name in vars(engine) if "lookup" in name]
    finally:
        await controller.close()


@sqlite_only("counts statements through sqlite3's trace callback")
async def test_a_payload_reference_check_and_a_later_lookup_ask_the_database_once(
    make_storage: StorageFactory,
) -> None:
    entities, relations = _shop()
    publish = r.Interaction(
        "Buy", r.Payload([r.PayloadItem("item", base=entities[0], is_ref=True, required=True)])
    )
    controller = r.Controller(
        make_storage("memory.db"), entities, relations, interactions=[publish]
    )
    await controller.setup()
    try:
        item = await controller.storage.create("Item", {"price": 3})
        statements: list[str] = []

        def body(ctx: r.TransactionContext) -> Any:
            conn = _trace(ctx, statements)
            try:
                validate_payload(publish, {"item": {"id": item["id"]}}, ctx)
                return ctx.storage.find_one("Item", {"id": item["id"]})
            finally:
                conn.set_trace_callback(None)

        found, _ = await controller.transact(body)
        assert found == {"id": item["id"]}
        reads = [s for s in statements if 'FROM "Item"' in s]
        assert len(reads) == 1, reads
    finally:
        await controller.close()


@sqlite_only("counts statements through sqlite3's trace callback")
async def test_an_aggregate_reads_an_item_whose_snapshot_the_transaction_holds_from_memory(
    make_storage: StorageFactory,
) -> None:
    entities, relations = _shop()
    controller = r.Controller(make_storage("memory.db"), entities, relations)
    await controller.setup()
    try:
        item = await controller.storage.create("Item", {"price": 4})
        order = await controller.storage.create("Order", {})
        statements: list[str] = []

        def body(ctx: r.TransactionContext) -> None:
            assert ctx.snapshot("Item", item["id"]) is not None  # as a computation reads it
            conn = _trace(ctx, statements)
            try:
                ctx.storage.create(
                    relations[0], {"source": {"id": order["id"]}, "target": {"id": item["id"]}}
                )
            finally:
                conn.set_trace_callback(None)

        await controller.transact(body)
        assert not [s for s in statements if 'FROM "Item"' in s], statements
        found = await controller.storage.find_one("Order", {"id": order["id"]}, ["total"])
        assert found == {"id": order["id"], "total": 4}
    finally:
        await controller.close()


async def test_a_computed_field_whose_read_fails_is_reported_before_any_further_statement() -> None:
    """Under PostgreSQL's rule (a failed statement aborts the transaction) the update reports
    the computation and its cause, not a refused later statement; nothing is stored."""

    def shout(record: dict[str, Any], ctx: r.TransactionContext) -> Any:
        if record["code"] == "boom":
            ctx.storage.find("Ghost")  # an unknown record: the storage refuses the read
        return (record["code"] or "").upper()

    item = r.Entity("Item", [r.Property("code"), r.Property("shout", computed=shout)])
    backend = AbortingStorage(SQLiteStorage(":memory:"))
    controller = r.Controller(backend, [item])
    await controller.setup()
    try:
        created = await controller.storage.create("Item", {"code": "a"})
        with pytest.raises(r.ComputationError, match=r"Item\.shout \(computed\)"):
            await controller.storage.update("Item", {"id": created["id"]}, {"code": "boom"})
        found = await controller.storage.find_one("Item", {"id": created["id"]}, ["code", "shout"])
        assert found == {"id": created["id"], "code": "a", "shout": "A"}
    finally:
        await controller.close()
