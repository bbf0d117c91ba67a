"""StateMachine on properties and dictionaries."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from storage import SQLiteStorage

from .conftest import MakeController
from .helpers import table_counts

EV = r.INTERACTION_EVENT


def on(name: str) -> r.Trigger:
    return r.Trigger(EV, "create", fields={"interaction_name": name})


def payload_order(event: r.MutationEvent) -> Any:
    return event.record["payload"].get("order")


def payload_orders(event: r.MutationEvent) -> Any:
    return event.record["payload"].get("orders")


ORDER_REF = r.PayloadItem("order", "json")
ORDERS_REF = r.PayloadItem("orders", "json")


def interactions(*names: str) -> list[r.Interaction]:
    return [r.Interaction(n, r.Payload([ORDER_REF, ORDERS_REF])) for n in names]


def order_entity(machine: r.StateMachine, *extra: r.Property) -> r.Entity:
    return r.Entity(
        "Order", [r.Property("code"), r.Property("status", computation=machine), *extra]
    )


async def statuses(c: r.Controller) -> dict[str, Any]:
    rows = await c.storage.find("Order", None, ["code", "status"])
    return {row["code"]: row["status"] for row in rows}


def order_flow(
    cancel_target: Any = payload_orders,
) -> tuple[r.StateMachine, dict[str, r.StateNode]]:
    pending = r.StateNode("pending")
    paid = r.StateNode("paid")
    shipped = r.StateNode("shipped")
    cancelled = r.StateNode("cancelled")
    machine = r.StateMachine(
        states=[pending, paid, shipped, cancelled],
        transfers=[
            r.StateTransfer(pending, paid, on("Pay"), payload_order),
            r.StateTransfer(paid, shipped, on("Ship"), payload_order),
            r.StateTransfer(pending, cancelled, on("Cancel"), cancel_target),
            r.StateTransfer(paid, cancelled, on("Cancel"), cancel_target),
        ],
        initial_state=pending,
    )
    nodes = {"pending": pending, "paid": paid, "shipped": shipped, "cancelled": cancelled}
    return machine, nodes


async def test_initial_state_and_transitions_by_interaction(make: MakeController) -> None:
    machine, _ = order_flow()
    c = await make([order_entity(machine)], interactions=interactions("Pay", "Ship", "Cancel"))
    a = await c.storage.create("Order", {"code": "a"})
    await c.storage.create("Order", {"code": "b"})
    assert a["status"] == "pending"
    assert await statuses(c) == {"a": "pending", "b": "pending"}

    result = await c.dispatch("Pay", user={"id": 1}, payload={"order": {"id": a["id"]}})
    assert result.error is None
    assert await statuses(c) == {"a": "paid", "b": "pending"}
    updates = [e for e in result.effects if e.record_name == "Order"]
    changes = []
    for e in updates:
        assert e.old_record is not None
        changes.append((e.type, e.record["status"], e.old_record["status"]))
    assert changes == [("update", "paid", "pending")]

    # Ship only moves records in "paid"
    await c.dispatch("Ship", payload={"order": {"id": a["id"]}})
    assert await statuses(c) == {"a": "shipped", "b": "pending"}
    # no transfer from shipped: unchanged, and no write at all
    again = await c.dispatch("Pay", payload={"order": {"id": a["id"]}})
    assert again.error is None
    assert [e.record_name for e in again.effects] == [EV]
    assert await statuses(c) == {"a": "shipped", "b": "pending"}


async def test_state_is_hidden_but_readable_by_name(make: MakeController) -> None:
    machine, _ = order_flow()
    c = await make([order_entity(machine)], interactions=interactions("Pay", "Ship", "Cancel"))
    a = await c.storage.create("Order", {"code": "a"})
    await c.dispatch("Pay", payload={"order": {"id": a["id"]}})

    assert await c.storage.find("Order", None, ["*"]) == [
        {"id": a["id"], "code": "a", "status": "paid"}
    ]
    row = await c.storage.find_one("Order", {"id": a["id"]}, ["_status_bound_state"])
    assert row == {"id": a["id"], "_status_bound_state": "paid"}


async def test_compute_target_many_none_and_records_in_other_states(
    make: MakeController,
) -> None:
    machine, _ = order_flow()
    c = await make([order_entity(machine)], interactions=interactions("Pay", "Ship", "Cancel"))
    ids = {code: (await c.storage.create("Order", {"code": code}))["id"] for code in "abcd"}
    await c.dispatch("Pay", payload={"order": {"id": ids["b"]}})
    await c.dispatch("Pay", payload={"order": {"id": ids["c"]}})
    await c.dispatch("Ship", payload={"order": {"id": ids["c"]}})
    assert await statuses(c) == {"a": "pending", "b": "paid", "c": "shipped", "d": "pending"}

    # None and [] target nothing
    none = await c.dispatch("Cancel", payload={})
    empty = await c.dispatch("Cancel", payload={"orders": []})
    assert none.error is None and empty.error is None
    assert await statuses(c) == {"a": "pending", "b": "paid", "c": "shipped", "d": "pending"}

    # many targets, duplicates collapse; the shipped one has no transfer and stays
    targets = [{"id": ids[k]} for k in ("a", "b", "c", "a")]
    result = await c.dispatch("Cancel", payload={"orders": targets})
    assert result.error is None
    assert await statuses(c) == {
        "a": "cancelled",
        "b": "cancelled",
        "c": "shipped",
        "d": "pending",
    }
    assert len([e for e in result.effects if e.record_name == "Order"]) == 2


async def test_compute_target_may_read_through_ctx(make: MakeController) -> None:
    def by_code(event: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.find("Order", {"code": event.record["payload"]["code"]})

    pending, done = r.StateNode("pending"), r.StateNode("done")
    machine = r.StateMachine(
        [pending, done], [r.StateTransfer(pending, done, on("Finish"), by_code)], pending
    )
    finish = r.Interaction("Finish", r.Payload([r.PayloadItem("code")]))
    c = await make([order_entity(machine)], interactions=[finish])
    for code in ("x", "x", "y"):
        await c.storage.create("Order", {"code": code})

    await c.dispatch(finish, payload={"code": "x"})

    rows = await c.storage.find("Order", None, ["code", "status"], order_by={"id": "asc"})
    assert [(o["code"], o["status"]) for o in rows] == [
        ("x", "done"),
        ("x", "done"),
        ("y", "pending"),
    ]


async def test_at_most_one_transition_per_record_per_event(make: MakeController) -> None:
    a, b, c_ = r.StateNode("a"), r.StateNode("b"), r.StateNode("c")
    machine = r.StateMachine(
        [a, b, c_],
        [
            r.StateTransfer(a, b, on("Step"), payload_order),
            r.StateTransfer(b, c_, on("Step"), payload_order),
        ],
        a,
    )
    c = await make([order_entity(machine)], interactions=interactions("Step"))
    o = await c.storage.create("Order", {"code": "o"})

    await c.dispatch("Step", payload={"order": {"id": o["id"]}})
    assert await statuses(c) == {"o": "b"}
    await c.dispatch("Step", payload={"order": {"id": o["id"]}})
    assert await statuses(c) == {"o": "c"}


async def test_compute_value_gets_the_previous_value_and_the_event(make: MakeController) -> None:
    seen: list[tuple[Any, Any]] = []

    def bump(last: Any, event: r.MutationEvent | None) -> Any:
        seen.append((last, event.record["payload"] if event else None))
        return (last or 0) + (event.record["payload"].get("by", 0) if event else 0)

    def freeze(last: Any, event: r.MutationEvent | None) -> Any:
        return r.UNCHANGED

    active = r.StateNode("active", compute_value=bump)
    frozen = r.StateNode("frozen", compute_value=freeze)
    machine = r.StateMachine(
        [active, frozen],
        [
            r.StateTransfer(active, active, on("Bump"), payload_order),
            r.StateTransfer(active, frozen, on("Freeze"), payload_order),
            r.StateTransfer(frozen, active, on("Thaw"), payload_order),
        ],
        active,
    )
    counter = r.Entity("Order", [r.Property("code"), r.Property("n", "json", computation=machine)])
    items = [r.PayloadItem("order", "json"), r.PayloadItem("by", "number")]
    c = await make(
        [counter],
        interactions=[r.Interaction(n, r.Payload(items)) for n in ("Bump", "Freeze", "Thaw")],
    )

    o = await c.storage.create("Order", {"code": "o"})
    assert o["n"] == 0  # compute_value(None, None) on create
    assert seen == [(None, None)]
    # a create may give the value when the initial state has compute_value
    given = await c.storage.create("Order", {"code": "g", "n": 40})
    assert given["n"] == 40

    ref = {"id": o["id"]}
    await c.dispatch("Bump", payload={"order": ref, "by": 2})
    await c.dispatch("Bump", payload={"order": ref, "by": 3})
    assert seen[-2:] == [(0, {"order": ref, "by": 2}), (2, {"order": ref, "by": 3})]

    await c.dispatch("Freeze", payload={"order": ref})
    row = await c.storage.find_one("Order", {"id": o["id"]}, ["n", "_n_bound_state"])
    assert row == {"id": o["id"], "n": 5, "_n_bound_state": "frozen"}

    await c.dispatch("Bump", payload={"order": ref, "by": 100})  # no transfer from frozen
    thawed = await c.dispatch(
        "Thaw", payload={"order": ref}
    )  # re-enters active: compute_value(5, ..)
    assert thawed.error is None
    row = await c.storage.find_one("Order", {"id": o["id"]}, ["n", "_n_bound_state"])
    assert row == {"id": o["id"], "n": 5, "_n_bound_state": "active"}
    assert seen[-1] == (5, {"order": ref})


async def test_state_property_cannot_be_given_without_initial_compute_value(
    make: MakeController,
) -> None:
    machine, _ = order_flow()
    c = await make([order_entity(machine)], interactions=interactions("Pay", "Ship", "Cancel"))
    o = await c.storage.create("Order", {"code": "a"})

    with pytest.raises((r.ComputationError, r.ModelError)):
        await c.storage.create("Order", {"code": "b", "status": "paid"})
    with pytest.raises(r.ModelError):
        await c.storage.update("Order", {"id": o["id"]}, {"status": "paid"})
    with pytest.raises(r.ModelError):
        await c.storage.update("Order", {"id": o["id"]}, {"_status_bound_state": "paid"})

    assert await statuses(c) == {"a": "pending"}


# -- triggers on record updates --------------------------------------------------------------


def payment_model(trigger: r.Trigger) -> list[r.Entity]:
    pending, paid = r.StateNode("pending"), r.StateNode("paid")
    payment = r.Entity(
        "Payment",
        [
            r.Property("order_id", "number"),
            r.Property("state"),
            r.Property("kind"),
            r.Property("amount", "number"),
            r.Property("memo"),
        ],
    )
    machine = r.StateMachine(
        [pending, paid],
        [r.StateTransfer(pending, paid, trigger, lambda ev: {"id": ev.merged["order_id"]})],
        pending,
    )
    return [payment, order_entity(machine)]


async def test_update_trigger_fields_match_the_merged_record(make: MakeController) -> None:
    entities = payment_model(
        r.Trigger("Payment", "update", fields={"state": "settled", "kind": "card"})
    )
    c = await make(entities)
    o1 = await c.storage.create("Order", {"code": "o1"})
    o2 = await c.storage.create("Order", {"code": "o2"})
    p1 = await c.storage.create("Payment", {"order_id": o1["id"], "state": "new", "kind": "card"})
    p2 = await c.storage.create("Payment", {"order_id": o2["id"], "state": "new", "kind": "cash"})

    # the update writes only "state"; "kind" and "order_id" come from the old record
    await c.storage.update("Payment", {"id": p2["id"]}, {"state": "settled"})
    assert await statuses(c) == {"o1": "pending", "o2": "pending"}
    await c.storage.update("Payment", {"id": p1["id"]}, {"memo": "x"})
    assert await statuses(c) == {"o1": "pending", "o2": "pending"}
    await c.storage.update("Payment", {"id": p1["id"]}, {"state": "settled"})
    assert await statuses(c) == {"o1": "paid", "o2": "pending"}


async def test_create_trigger_fields(make: MakeController) -> None:
    entities = payment_model(r.Trigger("Payment", "create", fields={"state": "settled"}))
    c = await make(entities)
    o1 = await c.storage.create("Order", {"code": "o1"})
    o2 = await c.storage.create("Order", {"code": "o2"})

    await c.storage.create("Payment", {"order_id": o1["id"], "state": "new"})
    assert await statuses(c) == {"o1": "pending", "o2": "pending"}
    await c.storage.create("Payment", {"order_id": o2["id"], "state": "settled"})
    assert await statuses(c) == {"o1": "pending", "o2": "paid"}


async def test_update_trigger_keys_must_be_written(make: MakeController) -> None:
    entities = payment_model(r.Trigger("Payment", "update", keys=["amount"]))
    c = await make(entities)
    o = await c.storage.create("Order", {"code": "o"})
    p = await c.storage.create("Payment", {"order_id": o["id"], "amount": 5})

    await c.storage.update("Payment", {"id": p["id"]}, {"memo": "no"})
    assert await statuses(c) == {"o": "pending"}
    # written with the same value still counts as written
    await c.storage.update("Payment", {"id": p["id"]}, {"amount": 5})
    assert await statuses(c) == {"o": "paid"}


async def test_delete_trigger(make: MakeController) -> None:
    entities = payment_model(r.Trigger("Payment", "delete", fields={"kind": "refund"}))
    c = await make(entities)
    o1 = await c.storage.create("Order", {"code": "o1"})
    o2 = await c.storage.create("Order", {"code": "o2"})
    p1 = await c.storage.create("Payment", {"order_id": o1["id"], "kind": "card"})
    p2 = await c.storage.create("Payment", {"order_id": o2["id"], "kind": "refund"})

    await c.storage.delete("Payment", {"id": p1["id"]})
    await c.storage.delete("Payment", {"id": p2["id"]})
    assert await statuses(c) == {"o1": "pending", "o2": "paid"}


# -- ambiguity -------------------------------------------------------------------------------


def ambiguous_model() -> tuple[list[r.Entity], list[r.Interaction]]:
    pending, left, right = r.StateNode("pending"), r.StateNode("left"), r.StateNode("right")
    payment = r.Entity("Payment", [r.Property("order_id", "number")])
    target = lambda ev: {"id": ev.record["order_id"]}  # noqa: E731
    machine = r.StateMachine(
        [pending, left, right],
        [
            r.StateTransfer(pending, left, on("Go"), payload_order),
            r.StateTransfer(pending, right, on("Go"), payload_order),
            r.StateTransfer(pending, left, r.Trigger(payment, "create"), target),
            r.StateTransfer(pending, right, r.Trigger(payment, "create"), target),
        ],
        pending,
    )
    return [payment, order_entity(machine)], interactions("Go")


async def test_ambiguous_transition_fails_the_dispatch_and_rolls_back(
    make: MakeController,
) -> None:
    entities, actions = ambiguous_model()
    c = await make(entities, interactions=actions)
    o = await c.storage.create("Order", {"code": "o"})
    before = await table_counts(c, "Order", "Payment")

    result = await c.dispatch("Go", payload={"order": {"id": o["id"]}})

    assert result.error is not None
    assert result.error.code == "computation_error"
    assert isinstance(result.error.cause, r.ComputationError)
    assert "ambiguous" in result.error.message
    assert result.effects == []
    assert await table_counts(c, "Order", "Payment") == before
    assert await statuses(c) == {"o": "pending"}


async def test_ambiguous_transition_raises_on_a_direct_write(make: MakeController) -> None:
    entities, actions = ambiguous_model()
    c = await make(entities, interactions=actions)
    o = await c.storage.create("Order", {"code": "o"})

    with pytest.raises(r.ComputationError, match="ambiguous"):
        await c.storage.create("Payment", {"order_id": o["id"]})

    assert await c.storage.count("Payment") == 0
    assert await statuses(c) == {"o": "pending"}


async def test_two_transfers_to_the_same_state_are_not_ambiguous(make: MakeController) -> None:
    pending, done = r.StateNode("pending"), r.StateNode("done")
    machine = r.StateMachine(
        [pending, done],
        [
            r.StateTransfer(pending, done, on("Go"), payload_order),
            r.StateTransfer(pending, done, r.Trigger(EV, "create"), payload_order),
        ],
        pending,
    )
    c = await make([order_entity(machine)], interactions=interactions("Go"))
    o = await c.storage.create("Order", {"code": "o"})

    result = await c.dispatch("Go", payload={"order": {"id": o["id"]}})
    assert result.error is None
    assert await statuses(c) == {"o": "done"}


# -- on a dictionary -------------------------------------------------------------------------


async def test_state_machine_on_a_dictionary(make: MakeController) -> None:
    closed = r.StateNode("closed")
    opened = r.StateNode("open", compute_value=lambda last, ev: f"open since {ev.record['id']}")
    machine = r.StateMachine(
        [closed, opened],
        [r.StateTransfer(closed, opened, on("Open")), r.StateTransfer(opened, closed, on("Close"))],
        closed,
    )
    shop = r.Dictionary("shop", "string", computation=machine)
    c = await make(dictionaries=[shop], interactions=interactions("Open", "Close"))
    assert await c.storage.get_dict("shop") == "closed"

    first = await c.dispatch("Open")
    assert await c.storage.get_dict("shop") == f"open since {first.data['id']}"
    await c.dispatch("Open")  # no transfer from open on Open
    assert await c.storage.get_dict("shop") == f"open since {first.data['id']}"
    await c.dispatch("Close")
    assert await c.storage.get_dict("shop") == "closed"
    with pytest.raises(r.ModelError):
        await c.storage.set_dict("shop", "open")


async def test_state_machine_dictionary_ambiguity_rolls_back(make: MakeController) -> None:
    a, b, x = r.StateNode("a"), r.StateNode("b"), r.StateNode("x")
    machine = r.StateMachine(
        [a, b, x], [r.StateTransfer(a, b, on("Go")), r.StateTransfer(a, x, on("Go"))], a
    )
    c = await make(
        dictionaries=[r.Dictionary("d", computation=machine)], interactions=interactions("Go")
    )

    result = await c.dispatch("Go")

    assert result.error is not None and result.error.code == "computation_error"
    assert await c.storage.get_dict("d") == "a"
    assert await c.storage.count(EV) == 0


# -- declaration errors ----------------------------------------------------------------------


def test_trigger_declaration_errors() -> None:
    with pytest.raises(r.ModelError):
        r.Trigger("X", "upsert")  # type: ignore[arg-type]
    with pytest.raises(r.ModelError):
        r.Trigger("X", "create", keys=["a"])
    with pytest.raises(r.ModelError):
        r.Trigger("X", "update", keys=[])
    with pytest.raises(r.ModelError):
        r.Trigger("X", "update", keys="a")
    with pytest.raises(r.ModelError):
        r.Trigger("X", "update", fields=["a"])  # type: ignore[arg-type]


def test_state_machine_declaration_errors() -> None:
    a, b = r.StateNode("a"), r.StateNode("b")
    with pytest.raises(r.ModelError):
        r.StateMachine([], [], a)
    with pytest.raises(r.ModelError):
        r.StateMachine([a, r.StateNode("a")], [], a)
    with pytest.raises(r.ModelError):
        r.StateMachine([a], [], b)
    with pytest.raises(r.ModelError):
        r.StateMachine([a], [r.StateTransfer(a, b, on("X"))], a)


@pytest.mark.parametrize(
    "trigger",
    [
        r.Trigger("Nope", "create"),
        r.Trigger("Order", "create", fields={"nope": 1}),
        r.Trigger("Order", "update", keys=["nope"]),
        r.Trigger(EV, "create", fields={"interaction": "x"}),
    ],
)
def test_trigger_on_unknown_record_or_field_fails_at_construction(trigger: r.Trigger) -> None:
    a, b = r.StateNode("a"), r.StateNode("b")
    machine = r.StateMachine([a, b], [r.StateTransfer(a, b, trigger, payload_order)], a)
    with pytest.raises(r.SetupError):
        r.Controller(SQLiteStorage(":memory:"), [order_entity(machine)])


def test_property_state_machine_needs_compute_target() -> None:
    a, b = r.StateNode("a"), r.StateNode("b")
    machine = r.StateMachine([a, b], [r.StateTransfer(a, b, on("Go"))], a)
    with pytest.raises(r.SetupError, match="compute_target"):
        r.Controller(SQLiteStorage(":memory:"), [order_entity(machine)])


async def test_bad_compute_target_result_fails_the_write(make: MakeController) -> None:
    a, b = r.StateNode("a"), r.StateNode("b")
    machine = r.StateMachine(
        [a, b], [r.StateTransfer(a, b, on("Go"), lambda ev: ev.record["payload"]["order"])], a
    )
    c = await make([order_entity(machine)], interactions=interactions("Go"))
    await c.storage.create("Order", {"code": "o"})

    result = await c.dispatch("Go", payload={"order": 42})

    assert result.error is not None
    assert result.error.code == "computation_error"
    assert await c.storage.count(EV) == 0
    assert await statuses(c) == {"o": "a"}


def membership_model() -> tuple[list[r.Entity], list[r.Relation], list[r.Interaction]]:
    active, ended = r.StateNode("active"), r.StateNode("ended")
    user = r.Entity("User", [r.Property("name")])
    team = r.Entity("Team", [r.Property("name")])
    machine = r.StateMachine(
        [active, ended],
        [
            r.StateTransfer(
                active,
                ended,
                on("Leave"),
                lambda ev, ctx: ctx.storage.find(
                    "Team_members_teams_User", {"target": {"id": ev.record["user"]["id"]}}
                ),
            )
        ],
        active,
    )
    members = r.Relation(
        team,
        "members",
        user,
        "teams",
        "n:n",
        properties=[r.Property("status", computation=machine)],
    )
    return [user, team], [members], [r.Interaction("Leave")]


async def test_state_machine_on_a_relation_property(make: MakeController) -> None:
    entities, relations, actions = membership_model()
    c = await make(entities, relations, interactions=actions)
    ada = await c.storage.create("User", {"name": "ada"})
    bob = await c.storage.create("User", {"name": "bob"})
    await c.storage.create("Team", {"name": "t", "members": [{"id": ada["id"]}, {"id": bob["id"]}]})

    async def states() -> dict[Any, Any]:
        rows = await c.storage.find(relations[0], None, ["status", "target"])
        return {row["target"]["id"]: row["status"] for row in rows}

    assert await states() == {ada["id"]: "active", bob["id"]: "active"}
    result = await c.dispatch("Leave", user={"id": ada["id"]})
    assert result.error is None
    assert await states() == {ada["id"]: "ended", bob["id"]: "active"}


async def test_state_machine_on_a_link_created_by_an_update(make: MakeController) -> None:
    entities, relations, actions = membership_model()
    c = await make(entities, relations, interactions=actions)
    ada = await c.storage.create("User", {"name": "ada"})
    team = await c.storage.create("Team", {"name": "t"})

    await c.storage.update("Team", {"id": team["id"]}, {"members": [{"id": ada["id"]}]})

    rows = await c.storage.find(relations[0], None, ["status"])
    assert [row["status"] for row in rows] == ["active"]
