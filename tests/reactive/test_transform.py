"""Transform: records derived from the records of another entity (or from interactions)."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from storage import SQLiteStorage

from .conftest import MakeController
from .helpers import Calls


def order_model(callback: Any, attribute_query: list[str] | None = None) -> list[r.Entity]:
    order = r.Entity("Order", [r.Property("code"), r.Property("qty", "number"), r.Property("memo")])
    shipment = r.Entity(
        "Shipment",
        [r.Property("code"), r.Property("box", "number")],
        computation=r.Transform(order, callback, attribute_query=attribute_query),
    )
    return [order, shipment]


async def shipments(c: r.Controller) -> list[dict[str, Any]]:
    return await c.storage.find("Shipment", None, ["*"], order_by={"id": "asc"})


async def test_transform_creates_updates_in_place_and_deletes(make: MakeController) -> None:
    c = await make(order_model(lambda o: {"code": o["code"], "box": o["qty"]}))

    first = await c.storage.create("Order", {"code": "A", "qty": 1})
    second = await c.storage.create("Order", {"code": "B", "qty": 2})
    rows = await shipments(c)
    assert [(s["code"], s["box"]) for s in rows] == [("A", 1), ("B", 2)]
    ids = [s["id"] for s in rows]

    await c.storage.update("Order", {"id": first["id"]}, {"qty": 5, "code": "A2"})
    rows = await shipments(c)
    assert rows == [
        {"id": ids[0], "code": "A2", "box": 5},
        {"id": ids[1], "code": "B", "box": 2},
    ]

    await c.storage.delete("Order", {"id": second["id"]})
    assert await shipments(c) == [{"id": ids[0], "code": "A2", "box": 5}]
    await c.storage.delete("Order", {"id": first["id"]})
    assert await shipments(c) == []


async def test_transform_none_creates_nothing_and_an_update_can_create_or_remove(
    make: MakeController,
) -> None:
    def ship(order: dict[str, Any]) -> dict[str, Any] | None:
        return {"code": order["code"], "box": order["qty"]} if order["qty"] else None

    c = await make(order_model(ship))
    o = await c.storage.create("Order", {"code": "A", "qty": 0})
    assert await shipments(c) == []

    await c.storage.update("Order", {"id": o["id"]}, {"qty": 3})
    rows = await shipments(c)
    assert [(s["code"], s["box"]) for s in rows] == [("A", 3)]

    await c.storage.update("Order", {"id": o["id"]}, {"qty": 0})
    assert await shipments(c) == []


async def test_transform_list_results_keep_ids_by_position(make: MakeController) -> None:
    def ship(order: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [{"code": f"{order['code']}-{i}", "box": i} for i in range(order["qty"])] + [None]

    c = await make(order_model(ship))
    o = await c.storage.create("Order", {"code": "A", "qty": 3})
    rows = await shipments(c)
    assert [(s["code"], s["box"]) for s in rows] == [("A-0", 0), ("A-1", 1), ("A-2", 2)]
    ids = [s["id"] for s in rows]

    await c.storage.update("Order", {"id": o["id"]}, {"qty": 2, "code": "B"})
    rows = await shipments(c)
    assert rows == [
        {"id": ids[0], "code": "B-0", "box": 0},
        {"id": ids[1], "code": "B-1", "box": 1},
    ]

    await c.storage.update("Order", {"id": o["id"]}, {"qty": 4})
    rows = await shipments(c)
    assert [s["code"] for s in rows] == ["B-0", "B-1", "B-2", "B-3"]
    assert [s["id"] for s in rows[:2]] == ids[:2]
    assert rows[2]["id"] not in ids


async def test_transform_reruns_only_for_queried_fields(make: MakeController) -> None:
    ship = Calls(lambda o: {"code": o["code"], "box": o["qty"]})
    c = await make(order_model(ship, attribute_query=["code", "qty"]))
    o = await c.storage.create("Order", {"code": "A", "qty": 1, "memo": "m"})
    assert ship.count == 1
    assert ship.args[0] == {"id": o["id"], "code": "A", "qty": 1}

    await c.storage.update("Order", {"id": o["id"]}, {"memo": "changed"})
    await c.storage.update("Order", {"id": o["id"]}, {"qty": 1})  # same value
    assert ship.count == 1

    await c.storage.update("Order", {"id": o["id"]}, {"qty": 2})
    assert ship.count == 2
    assert [(s["code"], s["box"]) for s in await shipments(c)] == [("A", 2)]


async def test_transform_output_can_link_to_existing_records(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    signup = r.Entity("Signup", [r.Property("user_id", "number"), r.Property("greeting")])
    note = r.Entity(
        "Note",
        [r.Property("text")],
        computation=r.Transform(
            signup,
            lambda s: {"text": s["greeting"], "owner": {"id": s["user_id"]}},
        ),
    )
    owns = r.Relation(user, "notes", note, "owner", "1:n")
    c = await make([user, signup, note], [owns])
    ada = await c.storage.create("User", {"name": "ada"})

    await c.storage.create("Signup", {"user_id": ada["id"], "greeting": "hi"})

    found = await c.storage.find_one("User", {"id": ada["id"]}, [("notes", ["text"])])
    assert found is not None and [n["text"] for n in found["notes"]] == ["hi"]


async def test_transform_producing_relation_records(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    request = r.Entity("FriendRequest", [r.Property("a", "number"), r.Property("b", "number")])
    friends = r.Relation(
        user,
        "friends",
        user,
        "friends",
        "n:n",
        computation=r.Transform(
            request, lambda q: {"source": {"id": q["a"]}, "target": {"id": q["b"]}}
        ),
    )
    c = await make([user, request], [friends])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})

    q = await c.storage.create("FriendRequest", {"a": a["id"], "b": b["id"]})
    found = await c.storage.find_one("User", {"id": b["id"]}, [("friends", ["name"])])
    assert found == {"id": b["id"], "friends": [{"id": a["id"], "name": "a"}]}

    await c.storage.delete("FriendRequest", {"id": q["id"]})
    assert await c.storage.count(friends) == 0


async def test_transform_state_is_hidden_from_star_queries(make: MakeController) -> None:
    c = await make(order_model(lambda o: {"code": o["code"]}))
    await c.storage.create("Order", {"code": "A"})
    rows = await shipments(c)
    assert set(rows[0]) == {"id", "code", "box"}


async def test_transform_with_a_bad_result_fails_the_write(make: MakeController) -> None:
    c = await make(order_model(lambda o: "not a dict" if o["code"] == "bad" else {"code": "ok"}))
    await c.storage.create("Order", {"code": "fine"})

    with pytest.raises(r.ComputationError):
        await c.storage.create("Order", {"code": "bad"})

    assert await c.storage.count("Order") == 1
    assert await c.storage.count("Shipment") == 1


def test_transform_declaration_errors() -> None:
    order = r.Entity("Order", [r.Property("code")])
    with pytest.raises(r.ModelError):
        r.Transform(order, "not callable")  # type: ignore[arg-type]
    with pytest.raises(r.ModelError):
        r.Transform(order, lambda o: None, attribute_query="code")
    bad_field = r.Entity(
        "Out", [r.Property("x")], computation=r.Transform(order, lambda o: None, ["missing"])
    )
    with pytest.raises(r.SetupError):
        r.Controller(SQLiteStorage(":memory:"), [order, bad_field])
    not_transform = r.Entity(
        "Out2",
        [r.Property("x")],
        computation=r.Count(record=order),
    )
    with pytest.raises(r.ModelError):
        r.Controller(SQLiteStorage(":memory:"), [order, not_transform])


# -- from interactions -----------------------------------------------------------------------


def draft_model() -> tuple[r.Entity, r.Interaction, r.Interaction]:
    def draft(event: dict[str, Any]) -> Any:
        if event["interaction_name"] == "CreateDraft":
            return {"title": event["payload"]["title"], "author_id": event["user"]["id"]}
        if event["interaction_name"] == "CreateMany":
            return [
                {"title": t, "author_id": event["user"]["id"]} for t in event["payload"]["titles"]
            ]
        return None

    entity = r.Entity(
        "Draft",
        [r.Property("title"), r.Property("author_id", "number")],
        computation=r.Transform(r.INTERACTION_EVENT, draft),
    )
    create = r.Interaction("CreateDraft", r.Payload([r.PayloadItem("title", required=True)]))
    many = r.Interaction("CreateMany", r.Payload([r.PayloadItem("titles", is_collection=True)]))
    return entity, create, many


async def test_transform_from_interactions_creates_records_per_dispatch(
    make: MakeController,
) -> None:
    draft, create, many = draft_model()
    ping = r.Interaction("Ping")
    c = await make([draft], interactions=[create, many, ping])

    first = await c.dispatch(create, user={"id": 7}, payload={"title": "one"})
    second = await c.dispatch("CreateDraft", user={"id": 8}, payload={"title": "two"})
    nothing = await c.dispatch(ping, user={"id": 7})
    assert first.error is None and second.error is None and nothing.error is None

    rows = await c.storage.find("Draft", None, ["title", "author_id"], order_by={"id": "asc"})
    assert [(d["title"], d["author_id"]) for d in rows] == [("one", 7), ("two", 8)]
    assert await c.storage.count(r.INTERACTION_EVENT) == 3
    # the Ping dispatch produced only its interaction event
    assert [(e.record_name, e.type) for e in nothing.effects] == [(r.INTERACTION_EVENT, "create")]
    assert sorted((e.record_name, e.type) for e in first.effects) == [
        ("Draft", "create"),
        (r.INTERACTION_EVENT, "create"),
    ]


async def test_transform_from_interactions_with_list_results(make: MakeController) -> None:
    draft, create, many = draft_model()
    c = await make([draft], interactions=[create, many])

    result = await c.dispatch(many, user={"id": 1}, payload={"titles": ["a", "b", "c"]})
    empty = await c.dispatch(many, user={"id": 1}, payload={"titles": []})

    assert result.error is None and empty.error is None
    rows = await c.storage.find("Draft", None, ["title"], order_by={"id": "asc"})
    assert [d["title"] for d in rows] == ["a", "b", "c"]
    assert [e.type for e in result.effects if e.record_name == "Draft"] == ["create"] * 3
