"""The ModelMachine of ``reactive.testing`` over a model with Transforms over events (deletions,
one interaction's events) and Customs over data_deps (records, a dictionary, own fields,
related records, and one with state): after every drawn step (dispatches, plain writes,
restarts) ``verify()`` finds nothing and the invariants below hold. Derandomized, a modest
number of examples (INTERAQT_MAX_EXAMPLES raises it)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import reactive as r
from reactive.testing import ModelMachine
from storage import SQLiteStorage


def _model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary], list[r.Interaction]]:
    donate = r.Interaction(
        "Donate", r.Payload([r.PayloadItem("amount", "integer", minimum=1, maximum=100)])
    )
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property(
                "codes",
                "json",
                computation=r.Custom(
                    lambda deps, rec: sorted(o["code"] or "" for o in deps["orders"]),
                    data_deps={"orders": r.RelatedDep("orders", ["code"])},
                ),
            ),
        ],
    )
    order = r.Entity(
        "Order",
        [
            r.Property("code"),
            r.Property("total", "number"),
            r.Property(
                "label",
                computation=r.Custom(
                    lambda deps, rec: f"{deps['own']['code']}:{deps['own']['total']}",
                    data_deps={"own": r.OwnFieldsDep(["code", "total"])},
                ),
            ),
        ],
    )
    placed = r.Relation(user, "orders", order, "owner", "1:n")
    archive = r.Entity(
        "OrderArchive",
        [r.Property("code")],
        computation=r.Transform(
            event_deps=[r.Trigger(order, "delete")],
            callback=lambda event: {"code": event.record["code"]},
        ),
    )
    donation = r.Entity(
        "Donation",
        [r.Property("amount", "number")],
        computation=r.Transform(
            event_deps=[r.Trigger(donate)],
            callback=lambda event: {"amount": event.record["payload"].get("amount")},
        ),
    )

    def seen(deps: dict[str, Any], state: dict[str, Any]) -> int:
        state["runs"] += 1
        return len(deps["donations"])

    dictionaries = [
        r.Dictionary("floor", "number", default=0),
        r.Dictionary(
            "big_orders",
            "integer",
            computation=r.Custom(
                lambda deps: sum(1 for o in deps["orders"] if (o["total"] or 0) > deps["floor"]),
                data_deps={
                    "orders": r.RecordsDep(order, ["total"]),
                    "floor": r.DictionaryDep("floor"),
                },
            ),
        ),
        r.Dictionary(
            "donations",
            "integer",
            computation=r.Custom(
                seen, data_deps={"donations": r.RecordsDep(donation)}, state={"runs": 0}
            ),
        ),
    ]
    return [user, order, archive, donation], [placed], dictionaries, [donate]


async def build(database: str) -> r.Controller:
    entities, relations, dictionaries, interactions = _model()
    controller = r.Controller(
        SQLiteStorage(database), entities, relations, dictionaries, interactions
    )
    await controller.setup()
    return controller


async def events_and_values_follow(controller: r.Controller) -> None:
    events = await controller.storage.find(
        r.INTERACTION_EVENT, {"interaction_name": "Donate"}, ["payload"], order_by={"id": "asc"}
    )
    donations = await controller.storage.find("Donation", None, ["amount"], order_by={"id": "asc"})
    assert [d["amount"] for d in donations] == [e["payload"].get("amount") for e in events]
    assert await controller.storage.get_dict("donations") == len(donations)
    users = await controller.storage.find("User", None, ["codes", ("orders", ["code"])])
    for u in users:
        assert u["codes"] == sorted(o["code"] or "" for o in u["orders"])


def test_the_model_machine_holds_over_event_transforms_and_data_deps() -> None:
    machine = ModelMachine.for_app(
        build,
        users="User",
        invariants=[events_and_values_follow],
        max_examples=int(os.environ.get("INTERAQT_MAX_EXAMPLES", "15")),
        steps=12,
    )
    chosen = settings(machine.TestCase.settings, database=None, derandomize=True)
    run_state_machine_as_test(machine, settings=chosen)
