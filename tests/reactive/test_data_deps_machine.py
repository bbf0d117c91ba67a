"""The ModelMachine of ``reactive.testing`` over a model with data deps and deep paths (the
model of ``test_data_deps``, its threshold kept by a Custom that a ``SetThreshold`` dispatch
drives): plain writes create, update, delete and re-link users and posts, dispatches move the
threshold, and after every step ``verify()`` (which recounts the aggregates with the
dictionary's value and the authors' fields) and a plain-Python recount agree with what is
stored. Derandomized, a modest number of examples (INTERAQT_MAX_EXAMPLES raises it)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import reactive as r
from reactive.testing import ModelMachine
from storage import MutationEvent, SQLiteStorage
from tests.reactive.test_data_deps import expected, model


def _threshold(last: Any, event: MutationEvent) -> Any:
    value = event.record["payload"].get("value")
    return value if isinstance(value, int) else last


async def build(database: str) -> r.Controller:
    entities, relations, dictionaries = model()
    dictionaries[0] = r.Dictionary(
        "threshold",
        "integer",
        computation=r.Custom(
            compute=_threshold,
            triggers=[r.Trigger(r.INTERACTION_EVENT, fields={"interaction_name": "SetThreshold"})],
            initial=10,
        ),
    )
    set_threshold = r.Interaction(
        "SetThreshold",
        r.Payload([r.PayloadItem("value", "integer", required=True, minimum=0, maximum=40)]),
    )
    controller = r.Controller(
        SQLiteStorage(database), entities, relations, dictionaries, [set_threshold]
    )
    await controller.setup()
    return controller


async def values_equal_a_recount(controller: r.Controller) -> None:
    hosts, globals_ = await expected(controller)
    fields = list(next(iter(hosts.values()), {}))
    stored = {u["id"]: u for u in await controller.storage.find("User", None, fields)}
    for user_id, values in hosts.items():
        assert {f: stored[user_id][f] for f in fields} == values, user_id
    for name, value in globals_.items():
        assert await controller.storage.get_dict(name) == value, name


def test_the_model_machine_holds_over_data_deps_and_deep_paths() -> None:
    machine = ModelMachine.for_app(
        build,
        users="User",
        invariants=[values_equal_a_recount],
        max_examples=int(os.environ.get("INTERAQT_MAX_EXAMPLES", "15")),
        steps=30,  # long enough for posts to be linked to owners and authors, then changed
    )
    chosen = settings(machine.TestCase.settings, database=None, derandomize=True)
    run_state_machine_as_test(machine, settings=chosen)
