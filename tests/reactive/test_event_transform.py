"""Transform over ``event_deps``: records created from mutation events (deletions, interaction
events of one interaction), history that nothing follows afterwards; modeled on the original
framework's Transform tests with ``eventDeps``. Both backends through ``make``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import strategies as st

import reactive as r
from storage import MatchExp, SQLiteStorage
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

from .conftest import MakeController


def order_model() -> tuple[r.Entity, r.Entity]:
    order = r.Entity("Order", [r.Property("code"), r.Property("total", "number")])
    archive = r.Entity(
        "OrderArchive",
        [r.Property("code"), r.Property("total", "number"), r.Property("order_id", "number")],
        computation=r.Transform(
            event_deps=[r.Trigger(order, "delete")],
            callback=lambda event: {
                "code": event.record["code"],
                "total": event.record["total"],
                "order_id": event.record["id"],
            },
        ),
    )
    return order, archive


async def archive_rows(c: r.Controller) -> list[tuple[Any, ...]]:
    rows = await c.storage.find(
        "OrderArchive", None, ["code", "total", "order_id"], order_by={"id": "asc"}
    )
    return [(x["code"], x["total"], x["order_id"]) for x in rows]


async def test_each_deleted_record_gives_an_archive_record(make: MakeController) -> None:
    c = await make(list(order_model()))
    a = await c.storage.create("Order", {"code": "a", "total": 5})
    b = await c.storage.create("Order", {"code": "b", "total": 7})
    assert await archive_rows(c) == []  # creates match no trigger

    await c.storage.update("Order", {"id": a["id"]}, {"total": 6})
    assert await archive_rows(c) == []
    await c.storage.delete("Order", {"id": a["id"]})
    assert await archive_rows(c) == [("a", 6, a["id"])]  # the record as it was when deleted

    # Archived records are history: tied to no source, nothing else changes them.
    await c.storage.update("Order", {"id": b["id"]}, {"total": 8})
    await c.storage.delete("Order", {"id": b["id"]})
    assert await archive_rows(c) == [("a", 6, a["id"]), ("b", 8, b["id"])]
    fields = set(c.engine.schema.fields("OrderArchive"))
    assert fields == {"code", "total", "order_id"}  # no bookkeeping field

    report = await c.verify()
    assert report.ok and "OrderArchive" in report.skipped
    assert await c.recompute("OrderArchive") == ["OrderArchive"]
    assert await archive_rows(c) == [("a", 6, a["id"]), ("b", 8, b["id"])]


async def test_interaction_events_of_one_interaction(make: MakeController) -> None:
    donate = r.Interaction("Donate", r.Payload([r.PayloadItem("amount", "number", required=True)]))
    ping = r.Interaction("Ping")
    donation = r.Entity(
        "Donation",
        [r.Property("amount", "number"), r.Property("donor")],
        computation=r.Transform(
            event_deps=[r.Trigger(donate)],
            callback=lambda event: {
                "amount": event.record["payload"]["amount"],
                "donor": event.record["user"]["name"],
            },
        ),
    )
    c = await make([donation], interactions=[donate, ping])
    assert (await c.dispatch("Ping", {"name": "ada"})).error is None
    assert await c.storage.find("Donation") == []

    first = await c.dispatch("Donate", {"name": "ada"}, {"amount": 3})
    assert first.error is None
    await c.dispatch(donate, {"name": "bob"}, {"amount": 4})
    refused = await c.dispatch("Donate", {"name": "eve"}, {"amount": "x"})
    assert refused.error is not None and refused.error.code == "payload_type"
    rows = await c.storage.find("Donation", None, ["amount", "donor"], order_by={"id": "asc"})
    assert [(x["amount"], x["donor"]) for x in rows] == [(3, "ada"), (4, "bob")]
    created = [e for e in first.effects if e.record_name == "Donation"]
    assert [e.type for e in created] == ["create"]


async def test_several_triggers_list_results_and_none(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("name"), r.Property("copies", "number")])

    def log(event: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        name = event.merged["name"]
        if event.type == "update":
            return None if name == "quiet" else {"line": f"renamed {name}"}
        return [{"line": f"{event.type} {name} #{i}"} for i in range(event.record["copies"])]

    journal = r.Entity(
        "Journal",
        [r.Property("line")],
        computation=r.Transform(
            event_deps=[
                r.Trigger(item, "create"),
                r.Trigger(item, "update", keys=["name"]),
                r.Trigger(item, "delete", fields={"name": "gone"}),
            ],
            callback=log,
        ),
    )
    c = await make([item, journal])
    x = await c.storage.create("Item", {"name": "x", "copies": 2})
    await c.storage.update("Item", {"id": x["id"]}, {"copies": 0})  # name not written
    await c.storage.update("Item", {"id": x["id"]}, {"name": "quiet"})  # returns None
    await c.storage.update("Item", {"id": x["id"]}, {"name": "gone"})
    y = await c.storage.create("Item", {"name": "y", "copies": 0})
    await c.storage.delete("Item", {"id": y["id"]})  # pattern does not match
    await c.storage.delete("Item", {"id": x["id"]})
    rows = await c.storage.find("Journal", None, ["line"], order_by={"id": "asc"})
    assert [x["line"] for x in rows] == [
        "create x #0",
        "create x #1",
        "renamed gone",
    ]  # x's deletion: copies is 0, so its list is empty


async def test_records_leaving_a_filtered_view(make: MakeController) -> None:
    """A view's delete event (a record leaving it) is an event like any other."""
    task = r.Entity("Task", [r.Property("title"), r.Property("done", "boolean")])
    open_task = r.Entity("OpenTask", base=task, match=MatchExp.atom("done", "=", False))
    closed = r.Entity(
        "Closed",
        [r.Property("title")],
        computation=r.Transform(
            event_deps=[r.Trigger(open_task, "delete")],
            callback=lambda event: {"title": event.record["title"]},
        ),
    )
    c = await make([task, open_task, closed])
    t = await c.storage.create("Task", {"title": "a", "done": False})
    await c.storage.create("Task", {"title": "b", "done": True})  # never in the view
    await c.storage.update("Task", {"id": t["id"]}, {"done": True})
    await c.storage.update("Task", {"id": t["id"]}, {"done": False})
    await c.storage.update("Task", {"id": t["id"]}, {"done": True})
    rows = await c.storage.find("Closed", None, ["title"], order_by={"id": "asc"})
    assert [x["title"] for x in rows] == ["a", "a"]


async def test_callback_error_rolls_the_write_back(make: MakeController) -> None:
    order = r.Entity("Order", [r.Property("code")])
    archive = r.Entity(
        "OrderArchive",
        [r.Property("code")],
        computation=r.Transform(
            event_deps=[r.Trigger(order, "delete")], callback=lambda event: "not a dict"
        ),
    )
    c = await make([order, archive])
    a = await c.storage.create("Order", {"code": "a"})
    with pytest.raises(r.ComputationError, match="OrderArchive"):
        await c.storage.delete("Order", {"id": a["id"]})
    assert await c.storage.find("Order", None, ["code"]) == [{"id": a["id"], "code": "a"}]
    assert await c.storage.find("OrderArchive") == []


def test_bad_declarations_fail_at_construction() -> None:
    order = r.Entity("Order", [r.Property("code")])
    with pytest.raises(r.ModelError, match=r"exactly one of record= .* or event_deps="):
        r.Transform(callback=lambda e: None)
    with pytest.raises(r.ModelError, match="exactly one of"):
        r.Transform(record=order, event_deps=[r.Trigger(order)], callback=lambda e: None)
    with pytest.raises(r.ModelError, match="list of Trigger"):
        r.Transform(event_deps=r.Trigger(order), callback=lambda e: None)  # type: ignore[arg-type]
    with pytest.raises(r.ModelError, match="at least one"):
        r.Transform(event_deps=[], callback=lambda e: None)
    with pytest.raises(r.ModelError, match="Trigger objects"):
        r.Transform(event_deps=[{"record": "Order"}], callback=lambda e: None)  # type: ignore[list-item]
    with pytest.raises(r.ModelError, match="no attribute_query"):
        r.Transform(event_deps=[r.Trigger(order)], callback=lambda e: None, attribute_query=[])
    with pytest.raises(r.ModelError, match="callable"):
        r.Transform(event_deps=[r.Trigger(order)])
    with pytest.raises(r.ModelError, match=r"interaction Donate.*'create'"):
        r.Trigger(r.Interaction("Donate"), "delete")


async def test_bad_trigger_fails_at_setup_naming_the_entity(make: MakeController) -> None:
    order = r.Entity("Order", [r.Property("code")])
    archive = r.Entity(
        "OrderArchive",
        [r.Property("code")],
        computation=r.Transform(
            event_deps=[r.Trigger(order, "delete", fields={"colour": "red"})],
            callback=lambda event: None,
        ),
    )
    with pytest.raises(r.SetupError, match=r"OrderArchive .*Order.*'colour'"):
        await make([order, archive])


async def test_trigger_on_an_unknown_record_fails_at_setup(make: MakeController) -> None:
    ghost = r.Entity(
        "Log",
        [r.Property("code")],
        computation=r.Transform(
            event_deps=[r.Trigger("Ghost", "delete")], callback=lambda event: None
        ),
    )
    with pytest.raises(r.SetupError, match=r"Log .*'Ghost'"):
        await make([ghost])


def test_a_trigger_on_an_undeclared_interaction_is_refused() -> None:
    donate = r.Interaction("Donate")
    donation = r.Entity(
        "Donation",
        [r.Property("amount", "number")],
        computation=r.Transform(event_deps=[r.Trigger(donate)], callback=lambda event: None),
    )
    with pytest.raises(r.ModelError, match=r"Donation \(Transform of events\): .*'Donate'"):
        r.Controller(SQLiteStorage(":memory:"), [donation], interactions=[r.Interaction("Ping")])


def test_interaction_trigger_is_a_pattern_on_interaction_events() -> None:
    trigger = r.Trigger(r.Interaction("Donate"), fields={"user": {"name": "ada"}})
    assert trigger.record == r.INTERACTION_EVENT
    assert trigger.fields == {"interaction_name": "Donate", "user": {"name": "ada"}}


# -- sequences of writes against a plain-Python model -------------------------------------------

EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "40"))
Step = tuple[str, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 9)),
        st.tuples(st.just("update"), st.integers(0, 20)),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("donate"), st.integers(1, 5)),
        st.tuples(st.just("ping"), st.just(0)),
    ),
    max_size=16,
)


async def follow(sequence: list[Step], backend: str) -> None:
    """Random order creates/deletes and dispatches: the archive holds one record per deleted
    order (as it was), the donations one per Donate dispatch, in order; verify() agrees."""
    order, archive = order_model()
    donate = r.Interaction("Donate", r.Payload([r.PayloadItem("amount", "number")]))
    ping = r.Interaction("Ping")
    donation = r.Entity(
        "Donation",
        [r.Property("amount", "number")],
        computation=r.Transform(
            event_deps=[r.Trigger(donate)],
            callback=lambda event: {"amount": event.record["payload"]["amount"]},
        ),
    )
    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, [order, archive, donation], [], [], [donate, ping])
        await c.setup()
        try:
            await run_steps(c, sequence)
        finally:
            await c.close()


test_random_writes_match_a_plain_model, test_random_writes_match_a_plain_model_on_postgresql = (
    on_both_backends(
        "test_random_writes_match_a_plain_model",
        follow,
        examples=EXAMPLES,
        pg_examples=max(5, EXAMPLES // 4),
        sequence=STEPS,
    )
)


async def run_steps(c: r.Controller, sequence: list[Step]) -> None:
    live: list[dict[str, Any]] = []
    archived: list[tuple[Any, ...]] = []
    donations: list[int] = []
    for kind, value in sequence:
        if kind == "create":
            live.append(await c.storage.create("Order", {"code": f"c{value}", "total": value}))
        elif kind == "update" and live:
            target = live[value % len(live)]
            target["total"] = value
            await c.storage.update("Order", {"id": target["id"]}, {"total": value})
        elif kind == "delete" and live:
            gone = live.pop(value % len(live))
            await c.storage.delete("Order", {"id": gone["id"]})
            archived.append((gone["code"], gone["total"], gone["id"]))
        elif kind == "donate":
            assert (await c.dispatch("Donate", {"name": "u"}, {"amount": value})).error is None
            donations.append(value)
        elif kind == "ping":
            assert (await c.dispatch("Ping", {"name": "u"})).error is None
    assert await archive_rows(c) == archived
    rows = await c.storage.find("Donation", None, ["amount"], order_by={"id": "asc"})
    assert [x["amount"] for x in rows] == donations
    report = await c.verify()
    assert report.ok and {"OrderArchive", "Donation"} <= set(report.skipped)
