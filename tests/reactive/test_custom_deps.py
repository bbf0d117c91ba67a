"""Custom with declared data dependencies (``data_deps``) and its own ``state``, modeled on the
original framework's Custom tests (dataDeps of records, of a global value, of the host's own
properties; createState with a bound state). Both backends through ``make``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import strategies as st

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from storage import MatchExp, SQLiteStorage
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

from .conftest import MakeController


def product_total() -> tuple[r.Entity, r.Dictionary]:
    product = r.Entity("Product", [r.Property("name"), r.Property("price", "number")])
    total = r.Dictionary(
        "total_value",
        "number",
        computation=r.Custom(
            lambda deps: sum(p["price"] or 0 for p in deps["products"]),
            data_deps={"products": r.RecordsDep(product, ["price"])},
            initial=0,
        ),
    )
    return product, total


async def test_dictionary_from_all_records(make: MakeController) -> None:
    product, total = product_total()
    c = await make([product], dictionaries=[total])
    assert await c.storage.get_dict("total_value") == 0
    a = await c.storage.create("Product", {"name": "a", "price": 100})
    assert await c.storage.get_dict("total_value") == 100
    await c.storage.create("Product", {"name": "b", "price": 50})
    assert await c.storage.get_dict("total_value") == 150
    await c.storage.update("Product", {"id": a["id"]}, {"price": 10})
    assert await c.storage.get_dict("total_value") == 60
    events: list[r.MutationEvent] = []
    c.stream(DICTIONARY_RECORD).subscribe(events.append)
    await c.storage.update("Product", {"id": a["id"]}, {"name": "renamed"})  # not a dep field
    await c.storage.update("Product", {"id": a["id"]}, {"price": 10})  # same value
    assert events == []
    await c.storage.delete("Product", {"id": a["id"]})
    assert await c.storage.get_dict("total_value") == 50
    assert (await c.verify()).ok


async def test_dictionary_from_existing_records_at_install(make: MakeController) -> None:
    product = r.Entity("Product", [r.Property("name"), r.Property("price", "number")])
    c = await make([product])
    await c.storage.create("Product", {"name": "a", "price": 7})
    await c.close()
    product, total = product_total()
    c = await make([product], dictionaries=[total])
    assert await c.storage.get_dict("total_value") == 7


async def test_dictionary_from_another_dictionary_and_records(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("price", "number")])
    threshold = r.Dictionary("threshold", "number", default=10)

    def expensive(deps: dict[str, Any], ctx: r.TransactionContext) -> list[int]:
        return [i["id"] for i in deps["items"] if (i["price"] or 0) > deps["threshold"]]

    names = r.Dictionary(
        "expensive",
        "json",
        computation=r.Custom(
            expensive,
            data_deps={
                "items": r.RecordsDep("Item", ["price"]),
                "threshold": r.DictionaryDep(threshold),
            },
            initial=list,
        ),
    )
    c = await make([item], dictionaries=[threshold, names])
    a = await c.storage.create("Item", {"price": 5})
    b = await c.storage.create("Item", {"price": 15})
    assert await c.storage.get_dict("expensive") == [b["id"]]
    await c.storage.set_dict("threshold", 1)
    assert await c.storage.get_dict("expensive") == [a["id"], b["id"]]
    await c.storage.set_dict("threshold", 100)
    assert await c.storage.get_dict("expensive") == []
    assert (await c.verify()).ok


async def test_property_from_own_fields(make: MakeController) -> None:
    def final_price(deps: dict[str, Any], record: dict[str, Any]) -> float:
        own = deps["own"]
        value = (own["base"] or 0) * (1 + (own["tax"] or 0)) * (1 - (own["discount"] or 0))
        return round(value, 2)

    product = r.Entity(
        "Product",
        [
            r.Property("name"),
            r.Property("base", "number"),
            r.Property("tax", "number", default=0.1),
            r.Property("discount", "number", default=0),
            r.Property(
                "final",
                "number",
                computation=r.Custom(
                    final_price,
                    data_deps={"own": r.OwnFieldsDep(["base", "tax", "discount"])},
                    initial=0,
                ),
            ),
            r.Property(
                "label",
                computation=r.Custom(
                    lambda deps, record: f"{record['name']}: {deps['own']['final']:g}",
                    data_deps={"own": r.OwnFieldsDep(["name", "final"])},
                ),
            ),
        ],
    )
    c = await make([product])
    p = await c.storage.create("Product", {"name": "Laptop", "base": 1000, "tax": 0.08})
    row = await c.storage.find_one("Product", {"id": p["id"]}, ["final", "label"])
    assert row == {"id": p["id"], "final": 1080, "label": "Laptop: 1080"}
    await c.storage.update("Product", {"id": p["id"]}, {"discount": 0.25})
    row = await c.storage.find_one("Product", {"id": p["id"]}, ["final", "label"])
    assert row == {"id": p["id"], "final": 810, "label": "Laptop: 810"}
    q = await c.storage.create("Product", {"name": "Mouse", "base": 25, "tax": 0.05})
    mouse = await c.storage.find_one("Product", {"id": q["id"]}, ["final"])
    assert mouse is not None and mouse["final"] == 26.25
    with pytest.raises(r.ModelError, match=r"computed by Product\.final"):
        await c.storage.update("Product", {"id": p["id"]}, {"final": 1})
    assert (await c.verify()).ok


async def test_property_from_every_record_and_a_dictionary(make: MakeController) -> None:
    """A global dependency of a property: every host follows it."""
    rate = r.Dictionary("rate", "number", default=2)
    account = r.Entity(
        "Account",
        [
            r.Property("balance", "number"),
            r.Property(
                "share",
                "number",
                computation=r.Custom(
                    lambda deps, record: round(
                        deps["rate"]
                        * (record["balance"] or 0)
                        / max(1, sum(a["balance"] or 0 for a in deps["all"])),
                        6,
                    ),
                    data_deps={
                        "all": r.RecordsDep("Account", ["balance"]),
                        "rate": r.DictionaryDep("rate"),
                    },
                    initial=0,
                ),
            ),
        ],
    )
    c = await make([account], dictionaries=[rate])
    a = await c.storage.create("Account", {"balance": 30})
    b = await c.storage.create("Account", {"balance": 10})
    rows = await c.storage.find("Account", None, ["share"], order_by={"id": "asc"})
    assert [x["share"] for x in rows] == [1.5, 0.5]
    await c.storage.set_dict("rate", 4)
    rows = await c.storage.find("Account", None, ["share"], order_by={"id": "asc"})
    assert [x["share"] for x in rows] == [3, 1]
    await c.storage.delete("Account", {"id": a["id"]})
    left = await c.storage.find_one("Account", {"id": b["id"]}, ["share"])
    assert left is not None and left["share"] == 4
    assert (await c.verify()).ok


async def test_property_from_related_records(make: MakeController) -> None:
    """The original's 'property dataDeps with relations': an employee's text from its own
    fields and its department's; and a to-many list of related titles."""

    def info(deps: dict[str, Any], record: dict[str, Any]) -> str:
        dept = deps["dept"]
        where = f"{dept['name']} ({dept['budget']:g})" if dept else "no department"
        return f"{deps['own']['name']} - {deps['own']['position']} in {where}"

    department = r.Entity(
        "Department",
        [
            r.Property("name"),
            r.Property("budget", "number"),
            r.Property(
                "staff",
                "json",
                computation=r.Custom(
                    lambda deps, rec: [e["name"] for e in deps["people"]],
                    data_deps={"people": r.RelatedDep("employees", ["name"])},
                    initial=list,
                ),
            ),
        ],
    )
    employee = r.Entity(
        "Employee",
        [
            r.Property("name"),
            r.Property("position"),
            r.Property(
                "info",
                computation=r.Custom(
                    info,
                    data_deps={
                        "own": r.OwnFieldsDep(["name", "position"]),
                        "dept": r.RelatedDep("department", ["name", "budget"]),
                    },
                ),
            ),
        ],
    )
    works = r.Relation(employee, "department", department, "employees", "n:1")
    c = await make([department, employee], [works])
    eng = await c.storage.create("Department", {"name": "Eng", "budget": 100})
    ops = await c.storage.create("Department", {"name": "Ops", "budget": 5})
    ada = await c.storage.create(
        "Employee", {"name": "Ada", "position": "lead", "department": {"id": eng["id"]}}
    )
    bob = await c.storage.create("Employee", {"name": "Bob", "position": "dev"})

    async def infos() -> list[str]:
        rows = await c.storage.find("Employee", None, ["info"], order_by={"id": "asc"})
        return [x["info"] for x in rows]

    async def staff() -> list[list[str]]:
        rows = await c.storage.find("Department", None, ["staff"], order_by={"id": "asc"})
        return [x["staff"] for x in rows]

    assert await infos() == ["Ada - lead in Eng (100)", "Bob - dev in no department"]
    assert await staff() == [["Ada"], []]
    await c.storage.update("Department", {"id": eng["id"]}, {"budget": 120})
    await c.storage.update("Employee", {"id": bob["id"]}, {"department": {"id": eng["id"]}})
    assert await infos() == ["Ada - lead in Eng (120)", "Bob - dev in Eng (120)"]
    assert await staff() == [["Ada", "Bob"], []]
    await c.storage.update("Employee", {"id": ada["id"]}, {"department": {"id": ops["id"]}})
    await c.storage.update("Employee", {"id": ada["id"]}, {"name": "Ada L."})
    assert await infos() == ["Ada L. - lead in Ops (5)", "Bob - dev in Eng (120)"]
    assert await staff() == [["Bob"], ["Ada L."]]
    await c.storage.delete("Department", {"id": ops["id"]})
    assert await infos() == ["Ada L. - lead in no department", "Bob - dev in Eng (120)"]
    await c.storage.delete("Employee", {"id": bob["id"]})
    assert await staff() == [[]]
    assert (await c.verify()).ok


async def test_dictionary_over_a_merged_and_a_filtered_entity(make: MakeController) -> None:
    """The original's 'merged entity in custom computation': records of a view as a
    dependency, entering and leaving it."""
    local = r.Entity("LocalEvent", [r.Property("title"), r.Property("attendees", "number")])
    online = r.Entity("OnlineEvent", [r.Property("title"), r.Property("attendees", "number")])
    event = r.Entity("Event", inputs=[local, online])
    big = r.Entity("BigLocal", base=local, match=MatchExp.atom("attendees", ">", 50))

    def stats(deps: dict[str, Any]) -> dict[str, Any]:
        events = deps["events"]
        return {
            "total": len(events),
            "attendees": sum(e["attendees"] or 0 for e in events),
            "big": sorted(e["title"] for e in deps["big"]),
        }

    summary = r.Dictionary(
        "stats",
        "json",
        computation=r.Custom(
            stats,
            data_deps={
                "events": r.RecordsDep(event, ["attendees"]),
                "big": r.RecordsDep(big, ["title"]),
            },
        ),
    )
    c = await make([local, online, event, big], dictionaries=[summary])
    assert await c.storage.get_dict("stats") == {"total": 0, "attendees": 0, "big": []}
    meetup = await c.storage.create("LocalEvent", {"title": "meetup", "attendees": 30})
    await c.storage.create("OnlineEvent", {"title": "conf", "attendees": 150})
    assert await c.storage.get_dict("stats") == {"total": 2, "attendees": 180, "big": []}
    await c.storage.update("LocalEvent", {"id": meetup["id"]}, {"attendees": 80})
    assert await c.storage.get_dict("stats") == {"total": 2, "attendees": 230, "big": ["meetup"]}
    await c.storage.delete("LocalEvent", {"id": meetup["id"]})
    assert await c.storage.get_dict("stats") == {"total": 1, "attendees": 150, "big": []}
    assert (await c.verify()).ok


async def test_dictionary_state_accumulates(make: MakeController) -> None:
    """The original's 'custom state management': a bound state the compute reads and writes."""
    trigger = r.Dictionary("trigger", "number", default=0)

    def manage(deps: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["count"] += deps["trigger"] or 0
        return {"value": state["count"], "trigger": deps["trigger"]}

    manager = r.Dictionary(
        "manager",
        "json",
        computation=r.Custom(
            manage,
            data_deps={"trigger": r.DictionaryDep(trigger)},
            state={"count": 0},
        ),
    )
    c = await make(dictionaries=[trigger, manager])
    await c.storage.set_dict("trigger", 2)
    assert await c.storage.get_dict("manager") == {"value": 2, "trigger": 2}
    await c.storage.set_dict("trigger", 3)
    assert await c.storage.get_dict("manager") == {"value": 5, "trigger": 3}
    row = await c.storage.find_one(DICTIONARY_RECORD, {"key": "manager"}, ["state"])
    assert row is not None and row["state"] == {"count": 5}
    report = await c.verify()
    assert report.ok and "manager" in report.skipped


async def test_property_state_with_triggers(make: MakeController) -> None:
    """State on an event-driven Custom: per host, in an internal field, written with the value
    (also when the value is UNCHANGED); the declared initial state is never shared."""
    note = r.Entity("Note", [r.Property("order_id", "number"), r.Property("text")])

    def longest_run(last: Any, event: r.MutationEvent, state: dict[str, Any]) -> Any:
        state["seen"].append(event.record["text"])
        return len(state["seen"]) if len(state["seen"]) % 2 == 0 else r.UNCHANGED

    order = r.Entity(
        "Order",
        [
            r.Property("code"),
            r.Property(
                "pairs",
                "number",
                computation=r.Custom(
                    longest_run,
                    triggers=[r.Trigger(note, "create")],
                    compute_target=lambda ev: {"id": ev.record["order_id"]},
                    initial=0,
                    state={"seen": []},
                ),
            ),
        ],
    )
    c = await make([note, order])
    o = await c.storage.create("Order", {"code": "o"})
    p = await c.storage.create("Order", {"code": "p"})
    for text in ["a", "b", "c"]:
        await c.storage.create("Note", {"order_id": o["id"], "text": text})
    await c.storage.create("Note", {"order_id": p["id"], "text": "z"})
    rows = await c.storage.find(
        "Order", None, ["pairs", "_pairs_bound_custom_state"], order_by={"id": "asc"}
    )
    assert [(x["pairs"], x["_pairs_bound_custom_state"]) for x in rows] == [
        (2, {"seen": ["a", "b", "c"]}),
        (0, {"seen": ["z"]}),
    ]
    public = await c.storage.find_one("Order", {"id": o["id"]}, ["*"])
    assert public is not None and "_pairs_bound_custom_state" not in public
    report = await c.verify()
    assert report.ok and "Order.pairs" in report.skipped


async def test_verify_finds_a_wrong_custom_value(make: MakeController) -> None:
    product, total = product_total()
    c = await make([product], dictionaries=[total])
    await c.storage.create("Product", {"name": "a", "price": 4})

    row = await c.storage.find_one(DICTIONARY_RECORD, {"key": "total_value"})
    assert row is not None
    await c.backend.run(
        lambda session: session.write_internal(DICTIONARY_RECORD, row["id"], {"value": 99})
    )
    report = await c.verify()
    assert [(d.id, d.stored, d.expected) for d in report.differences] == [("total_value", 99, 4)]
    await c.recompute("total_value")
    assert await c.storage.get_dict("total_value") == 4


# -- bad declarations ------------------------------------------------------------------------


def test_bad_declarations_fail_at_construction() -> None:
    with pytest.raises(r.ModelError, match=r"exactly one of triggers= .* or data_deps="):
        r.Custom(lambda deps: 1)
    with pytest.raises(r.ModelError, match="exactly one of"):
        r.Custom(
            lambda deps: 1,
            triggers=[r.Trigger("X")],
            data_deps={"x": r.RecordsDep("X")},
        )
    with pytest.raises(r.ModelError, match="'x': a RecordsDep"):
        r.Custom(lambda deps: 1, data_deps={"x": "X"})  # type: ignore[dict-item]
    with pytest.raises(r.ModelError, match="compute_target"):
        r.Custom(lambda deps: 1, data_deps={"x": r.RecordsDep("X")}, compute_target=lambda e: None)
    with pytest.raises(r.ModelError, match="state must be a dict"):
        r.Custom(lambda deps: 1, data_deps={"x": r.RecordsDep("X")}, state=3)
    with pytest.raises(r.ModelError, match="list of field names"):
        r.RecordsDep("X", "price")
    with pytest.raises(r.ModelError, match="at least one field"):
        r.OwnFieldsDep([])


@pytest.mark.parametrize(
    ("prop_deps", "message"),
    [
        ({"x": r.RecordsDep("Ghost")}, r"Shop\.label \(Custom\): data_deps 'x' reads 'Ghost'"),
        (
            {"x": r.RecordsDep("Shop", ["colour"])},
            r"Shop\.label \(Custom\): data_deps 'x': Shop has no field 'colour'",
        ),
        (
            {"x": r.RecordsDep("Shop", ["label"])},
            r"Shop\.label \(Custom\): data_deps 'x' reads Shop\.label, the value it computes",
        ),
        ({"x": r.OwnFieldsDep(["colour"])}, r"Shop\.label .*'colour', which Shop does not have"),
        ({"x": r.OwnFieldsDep(["label"])}, r"Shop\.label .*reads Shop\.label, the value it"),
        (
            {"x": r.RelatedDep("owner", ["name"])},
            r"Shop\.label \(Custom\): data_deps 'x': Shop has no relation attribute 'owner'",
        ),
        (
            {"x": r.DictionaryDep("nope")},
            r"Shop\.label \(Custom\): data_deps 'x' reads dictionary 'nope', which is not declared",
        ),
    ],
)
def test_bad_dependencies_fail_at_setup_naming_entity_and_property(
    prop_deps: dict[str, Any], message: str
) -> None:
    shop = r.Entity(
        "Shop",
        [
            r.Property("name"),
            r.Property("label", computation=r.Custom(lambda deps, rec: "", data_deps=prop_deps)),
        ],
    )
    with pytest.raises(r.ModelError, match=message):
        r.Controller(SQLiteStorage(":memory:"), [shop])


def test_related_field_must_exist() -> None:
    town = r.Entity("Town", [r.Property("name")])
    shop = r.Entity(
        "Shop",
        [
            r.Property(
                "label",
                computation=r.Custom(
                    lambda deps, rec: "", data_deps={"t": r.RelatedDep("town", ["mayor"])}
                ),
            )
        ],
    )
    located = r.Relation(shop, "town", town, "shops", "n:1")
    with pytest.raises(r.ModelError, match=r"Shop\.label .*Town \(reached by Shop\.town\) has no"):
        r.Controller(SQLiteStorage(":memory:"), [town, shop], [located])


def test_own_fields_on_a_dictionary_is_refused() -> None:
    d = r.Dictionary(
        "d", computation=r.Custom(lambda deps: 1, data_deps={"x": r.OwnFieldsDep(["a"])})
    )
    with pytest.raises(r.ModelError, match=r"d \(Custom\): data_deps 'x' is an OwnFieldsDep"):
        r.Controller(SQLiteStorage(":memory:"), [], [], [d])


# -- sequences of writes against a plain-Python model -------------------------------------------

EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "40"))
Step = tuple[str, int, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 20), st.integers(0, 3)),
        st.tuples(st.just("price"), st.integers(0, 20), st.integers(0, 20)),
        st.tuples(st.just("qty"), st.integers(0, 20), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("threshold"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("move"), st.integers(0, 20), st.integers(0, 2)),
    ),
    max_size=16,
)


def model_of() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    threshold = r.Dictionary("threshold", "number", default=10)

    def over(deps: dict[str, Any]) -> list[int]:
        return [i["id"] for i in deps["items"] if i["price"] > deps["threshold"]]

    def tally(deps: dict[str, Any], state: dict[str, Any]) -> int:
        state["runs"] += 1
        runs: int = state["runs"]
        return runs

    item = r.Entity(
        "Item",
        [
            r.Property("price", "number"),
            r.Property("qty", "number"),
            r.Property(
                "line",
                "number",
                computation=r.Custom(
                    lambda deps, rec: deps["own"]["price"] * deps["own"]["qty"],
                    data_deps={"own": r.OwnFieldsDep(["price", "qty"])},
                ),
            ),
            r.Property(
                "above",
                "boolean",
                computation=r.Custom(
                    lambda deps, rec: rec["price"] > deps["threshold"],
                    data_deps={
                        "threshold": r.DictionaryDep(threshold),
                        "price": r.OwnFieldsDep(["price"]),  # read from the record: declared
                    },
                ),
            ),
        ],
    )
    shelf = r.Entity(
        "Shelf",
        [
            r.Property("name"),
            r.Property(
                "prices",
                "json",
                computation=r.Custom(
                    lambda deps, rec: sorted(i["price"] for i in deps["items"]),
                    data_deps={"items": r.RelatedDep("items", ["price"])},
                ),
            ),
        ],
    )
    on = r.Relation(item, "shelf", shelf, "items", "n:1")
    dictionaries = [
        threshold,
        r.Dictionary(
            "over",
            "json",
            computation=r.Custom(
                over,
                data_deps={
                    "items": r.RecordsDep(item, ["price"]),
                    "threshold": r.DictionaryDep(threshold),
                },
            ),
        ),
        r.Dictionary(
            "runs",
            "number",
            computation=r.Custom(
                tally, data_deps={"items": r.RecordsDep(item, ["qty"])}, state={"runs": 0}
            ),
        ),
    ]
    return [item, shelf], [on], dictionaries


async def follow(sequence: list[Step], backend: str) -> None:
    """Random creates, updates, deletes and threshold changes: every Custom value equals what
    plain Python computes from the same data; the stateful one counts the changes of its
    dependency; verify() agrees."""
    entities, relations, dictionaries = model_of()
    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, entities, relations, dictionaries)
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
    items: dict[int, dict[str, Any]] = {}
    shelves = [(await c.storage.create("Shelf", {"name": n}))["id"] for n in ("s1", "s2")]
    threshold = 10
    runs = 1  # computed once at install
    for kind, a, b in sequence:
        ids = sorted(items)
        if kind == "create":
            shelf = shelves[b - 1] if 0 < b <= len(shelves) else None  # qty 0 or 3: none
            data: dict[str, Any] = {"price": a, "qty": b}
            if shelf is not None:
                data["shelf"] = {"id": shelf}
            row = await c.storage.create("Item", data)
            items[row["id"]] = {"price": a, "qty": b, "shelf": shelf}
            runs += 1
        elif kind == "move" and ids:
            target = ids[a % len(ids)]
            shelf = shelves[b - 1] if b else None
            await c.storage.update(
                "Item", {"id": target}, {"shelf": {"id": shelf} if shelf else None}
            )
            items[target]["shelf"] = shelf
        elif kind == "price" and ids:
            target = ids[a % len(ids)]
            await c.storage.update("Item", {"id": target}, {"price": b})
            items[target]["price"] = b
        elif kind == "qty" and ids:
            target = ids[a % len(ids)]
            await c.storage.update("Item", {"id": target}, {"qty": b})
            runs += items[target]["qty"] != b
            items[target]["qty"] = b
        elif kind == "delete" and ids:
            target = ids[a % len(ids)]
            await c.storage.delete("Item", {"id": target})
            del items[target]
            runs += 1
        elif kind == "threshold":
            await c.storage.set_dict("threshold", a)
            threshold = a
    rows = await c.storage.find("Item", None, ["line", "above"], order_by={"id": "asc"})
    assert [(x["id"], x["line"], x["above"]) for x in rows] == [
        (i, v["price"] * v["qty"], v["price"] > threshold) for i, v in sorted(items.items())
    ]
    assert await c.storage.get_dict("over") == [
        i for i, v in sorted(items.items()) if v["price"] > threshold
    ]
    assert await c.storage.get_dict("runs") == runs
    rows = await c.storage.find("Shelf", None, ["prices"], order_by={"id": "asc"})
    assert [x["prices"] for x in rows] == [
        sorted(v["price"] for v in items.values() if v["shelf"] == s) for s in shelves
    ]
    report = await c.verify()
    assert report.ok, str(report)
    assert "runs" in report.skipped
