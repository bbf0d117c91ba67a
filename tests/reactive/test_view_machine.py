"""The ModelMachine of ``reactive.testing`` over a model with views and a hard-deletion
property: its plain writes and dispatches go to the stored records (views refuse writes),
restarts reopen the file, and after every step ``verify()`` — which now also compares each
filtered view's members with the ones its events are judged on — and the invariants below
hold. Derandomized, a modest number of examples (INTERAQT_MAX_EXAMPLES raises it)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import reactive as r
from reactive.testing import ModelMachine
from storage import MatchExp, MutationEvent, SQLiteStorage


def _model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary], list[r.Interaction]]:
    user = r.Entity(
        "User", [r.Property("name"), r.Property("active", "boolean"), r.Property("score", "number")]
    )
    active = r.Entity(
        "ActiveUser",
        base=user,
        match=MatchExp.atom("active", "=", True) & ~MatchExp.atom("score", "<", 0),
    )
    team = r.Entity("Team", [r.Property("name")])
    member = r.Relation(team, "members", user, "teams", "n:n", properties=[r.Property("role")])
    leads = r.Relation(name="Leadership", base=member, match={"role": "lead"})
    team.properties.append(r.Property("leads", "integer", computation=r.Count(record=leads)))
    vendor = r.Entity("Vendor", [r.Property("name"), r.Property("active", "boolean")])
    contact = r.Entity("Contact", inputs=[user, vendor])

    def retired(event: MutationEvent) -> Any:
        return event.record["payload"]["user"]

    retire = r.Interaction(
        "Retire", r.Payload([r.PayloadItem("user", "json", required=True, base=user, is_ref=True)])
    )
    user.properties.append(
        r.HardDeletionProperty(
            r.StateMachine(
                states=[r.NON_DELETED_STATE, r.DELETED_STATE],
                transfers=[
                    r.StateTransfer(
                        r.NON_DELETED_STATE,
                        r.DELETED_STATE,
                        r.Trigger(r.INTERACTION_EVENT, fields={"interaction_name": "Retire"}),
                        retired,
                    )
                ],
                initial_state=r.NON_DELETED_STATE,
            )
        )
    )
    dictionaries = [
        r.Dictionary("active_users", "integer", computation=r.Count(record=active)),
        r.Dictionary(
            "active_score",
            "number",
            computation=r.Summation(record=active, attribute_query=["score"]),
        ),
        r.Dictionary("contacts", "integer", computation=r.Count(record=contact)),
    ]
    return [user, active, team, vendor, contact], [member, leads], dictionaries, [retire]


async def build(database: str) -> r.Controller:
    entities, relations, dictionaries, interactions = _model()
    controller = r.Controller(
        SQLiteStorage(database), entities, relations, dictionaries, interactions
    )
    await controller.setup()
    return controller


async def views_read_their_definition(controller: r.Controller) -> None:
    users = await controller.storage.find("User", None, ["active", "score"])
    expected = [
        u["id"]
        for u in users
        if u["active"] is True and not (u["score"] is not None and u["score"] < 0)
    ]
    assert [u["id"] for u in await controller.storage.find("ActiveUser")] == expected
    vendors = await controller.storage.count("Vendor")
    assert await controller.storage.get_dict("contacts") == len(users) + vendors
    assert await controller.storage.count("Contact") == len(users) + vendors


def test_the_model_machine_holds_over_views() -> None:
    machine = ModelMachine.for_app(
        build,
        users="User",
        invariants=[views_read_their_definition],
        max_examples=int(os.environ.get("INTERAQT_MAX_EXAMPLES", "15")),
        steps=12,
    )
    chosen = settings(machine.TestCase.settings, database=None, derandomize=True)
    run_state_machine_as_test(machine, settings=chosen)
