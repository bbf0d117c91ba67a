"""The fold is order-insensitive and duplicate-safe: property tests over event deliveries.

One controller (in memory) serves every example; each example makes fresh records and writes
under its own namespace of external ids, so examples never see each other's events.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactive as r
from integrations import IntegrationEvents, api_call_entities
from integrations.events import PendingEvent
from integrations.testing import (
    EventSpec,
    Expected,
    adversarial_scenarios,
    deliver,
    deliveries,
    valid_sequences,
)
from storage import MatchExp, SQLiteStorage, UniqueViolationError
from tests.aborting_storage import AbortingStorage
from tests.conftest import StorageFactory

from .app import EVENT, create_greeting, get_call, greeting_value, start

FIXTURE_OK = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_names = itertools.count()


@pytest.fixture
async def memory_app() -> AsyncIterator[tuple[r.Controller, IntegrationEvents]]:
    controller, _ = await start(":memory:")
    yield controller, IntegrationEvents(controller, EVENT)
    await controller.close()


async def outcome(
    controller: r.Controller,
    events: IntegrationEvents,
    delivery: tuple[EventSpec, ...],
) -> dict[str, Any]:
    """Deliver to a fresh call; what the call and its business value became."""
    namespace = f"n{next(_names)}-"
    greeting_id, call_id = await create_greeting(controller)
    writes = await deliver(events, call_id, delivery, namespace)
    call = await get_call(controller, call_id)
    ext = call["external_id"]
    state = dict(call["call_state"])
    return {
        "status": call["status"],
        "external_id": ext.removeprefix(namespace) if ext is not None else None,
        "response_data": call["response_data"],
        "error": call["error"],
        "finished": call["completed_at"] is not None,
        "attempts": state["attempts"],
        "value": await greeting_value(controller, greeting_id),
        "stored": sum(1 for w in writes if w.outcome == "stored"),
    }


def expected_outcome(expected: Expected) -> dict[str, Any]:
    data = expected.response_data
    return {
        "status": expected.status,
        "external_id": expected.external_id,
        "response_data": data,
        "error": expected.error,
        "finished": expected.terminal,
        "attempts": 0,
        "value": data["url"] if expected.status == "completed" else None,
    }


@settings(FIXTURE_OK, max_examples=500)
@given(data=st.data())
async def test_any_permutation_with_duplicates_folds_to_the_same_call(
    memory_app: tuple[r.Controller, IntegrationEvents], data: st.DataObject
) -> None:
    controller, events = memory_app
    sequence = data.draw(valid_sequences(terminal=None), label="sequence")
    in_order = await outcome(controller, events, sequence.events)
    assert in_order["stored"] == len(sequence.events)
    assert {k: v for k, v in in_order.items() if k != "stored"} == expected_outcome(
        sequence.expected
    )
    for n in range(2):
        delivery = data.draw(deliveries(sequence), label=f"delivery {n}")
        shuffled = await outcome(controller, events, delivery)
        # the same call, the same business value, and every event stored exactly once
        assert shuffled == in_order, delivery


@settings(FIXTURE_OK, max_examples=200)
@given(scenario=adversarial_scenarios())
async def test_adversarial_deliveries_fold_to_the_expected_call(
    memory_app: tuple[r.Controller, IntegrationEvents], scenario: Any
) -> None:
    controller, events = memory_app
    got = await outcome(controller, events, scenario.delivery)
    got.pop("stored")
    assert got == expected_outcome(scenario.expected), scenario.label


# -- the same rules, one example each ------------------------------------------------------


async def test_an_event_for_an_unknown_id_waits_for_its_initialized(
    memory_app: tuple[r.Controller, IntegrationEvents],
) -> None:
    controller, events = memory_app
    greeting_id, call_id = await create_greeting(controller)
    assert (await events.completed("early-task", {"url": "u"})).outcome == "stored"
    assert (await events.processing("early-task")).outcome == "stored"
    call = await get_call(controller, call_id)
    assert (call["status"], call["external_id"]) == ("pending", None)
    parked = await controller.storage.find(EVENT, {"external_id": "early-task"}, ["event_type"])
    assert len(parked) == 2  # kept, not applied
    await events.initialized(call_id, "early-task")
    call = await get_call(controller, call_id)
    assert (call["status"], call["response_data"]) == ("completed", {"url": "u"})
    assert await greeting_value(controller, greeting_id) == "u"


async def test_terminal_states_absorb_and_repeats_change_nothing(
    memory_app: tuple[r.Controller, IntegrationEvents],
) -> None:
    controller, events = memory_app
    _, call_id = await create_greeting(controller)
    await events.initialized(call_id, "t1")
    await events.completed("t1", {"url": "first"})
    before = await get_call(controller, call_id)
    assert (await events.processing("t1")).outcome == "stored"  # a late processing
    assert (await events.completed("t1", {"url": "second"})).outcome == "duplicate"
    await events.completed("t1", {"url": "third"}, dedup_key="provider-evt-2")
    await events.failed("t1", {"code": "late"})
    after = await get_call(controller, call_id)
    assert after == before


async def test_a_sync_failure_is_initialized_then_failed(
    memory_app: tuple[r.Controller, IntegrationEvents],
) -> None:
    controller, events = memory_app
    _, call_id = await create_greeting(controller)
    writes = await events.sync_failure(call_id, {"code": "rejected"})
    assert [w.event_type for w in writes] == ["initialized", "failed"]
    call = await get_call(controller, call_id)
    assert (call["status"], call["error"]) == ("failed", {"code": "rejected"})
    assert call["external_id"] == writes[0].external_id


async def test_another_unique_field_of_the_event_is_an_error_not_a_duplicate(
    make_storage: StorageFactory,
) -> None:
    """Duplicates are told by the dedup key alone: a clash on a unique field an application
    added to the event record is reported as the error it is, and stores nothing."""
    call, event = api_call_entities(
        "Charge",
        "ChargeEvent",
        # A mistake an application can make: a unique field every event gets the same value of.
        event_properties=[r.Property("receipt", unique=True, default="R-1")],
    )
    controller = r.Controller(make_storage("memory.db"), [call, event])
    await controller.setup()
    events = IntegrationEvents(controller, event)
    try:
        charge = await controller.storage.create("Charge", {"request_params": {"amount": 5}})
        assert (await events.initialized(charge["id"], "ext-1")).outcome == "stored"

        with pytest.raises(UniqueViolationError) as raised:
            await events.processing("ext-1")
        assert raised.value.fields == ("receipt",)
        assert await controller.storage.count("ChargeEvent") == 1
    finally:
        await controller.close()


@settings(FIXTURE_OK, max_examples=200)
@given(data=st.data())
async def test_attempts_count_every_attempt_record_whichever_order_events_arrive_in(
    memory_app: tuple[r.Controller, IntegrationEvents], data: st.DataObject
) -> None:
    """``call_state.attempts`` is the number of attempt records, also when some land after a
    webhook (or the sweeper) already finished the call: two processes running one call, or a
    runner recording its attempt late."""
    controller, events = memory_app
    external_id = f"n{next(_names)}-task"
    attempts = data.draw(st.integers(0, 4), label="attempts")
    terminal = data.draw(st.sampled_from(["completed", "failed", "verdict"]), label="terminal")
    steps = [f"attempt {n}" for n in range(attempts)] + ["initialized", "processing", terminal]
    order = data.draw(st.permutations(steps), label="order")
    _, call_id = await create_greeting(controller)
    for step in order:
        if step.startswith("attempt"):
            await events.attempt(call_id, {"attempt": int(step.split()[1]) + 1, "outcome": "ok"})
        elif step == "initialized":
            await events.initialized(call_id, external_id)
        elif step == "processing":
            await events.processing(external_id)
        elif step == "completed":
            await events.completed(external_id, {"url": "u"})
        elif step == "failed":
            await events.failed(external_id, {"code": "refused"})
        else:  # our own verdict, naming the call
            await events.failed(None, {"code": "timeout"}, entity_id=call_id)
    call = await get_call(controller, call_id)
    assert call["call_state"]["attempts"] == attempts, order
    assert call["status"] == ("completed" if terminal == "completed" else "failed"), order
    assert call["external_id"] == external_id


async def test_a_duplicate_in_a_batch_leaves_the_transaction_usable_under_postgres_rules() -> None:
    """A duplicate is detected by the unique index refusing the INSERT; on PostgreSQL that
    failed statement aborts the transaction unless it ran under a savepoint, so the events
    after it in the same batch (and the commit) must still go through."""
    call, event = api_call_entities("Charge", "ChargeEvent")
    backend = AbortingStorage(SQLiteStorage(":memory:"))
    controller = r.Controller(backend, [call, event])
    await controller.setup()
    events = IntegrationEvents(controller, event)
    try:
        charge = await controller.storage.create("Charge", {"request_params": {"amount": 5}})
        assert (await events.initialized(charge["id"], "ext-1")).outcome == "stored"
        writes = await events.write_many(
            [
                PendingEvent("initialized", "ext-1", charge["id"]),  # the duplicate
                PendingEvent("processing", "ext-1"),
                PendingEvent("completed", "ext-1", None, {"url": "u"}),
            ]
        )
        assert [w.outcome for w in writes] == ["duplicate", "stored", "stored"]
        stored = await controller.storage.find(
            "ChargeEvent", None, ["event_type"], order_by={"id": "asc"}
        )
        assert [e["event_type"] for e in stored] == ["initialized", "processing", "completed"]
        found = await controller.storage.find_one(
            "Charge", {"id": charge["id"]}, ["status", "response_data"]
        )
        assert found is not None
        assert (found["status"], found["response_data"]) == ("completed", {"url": "u"})
    finally:
        await controller.close()


@pytest.fixture
async def aborting_app() -> AsyncIterator[tuple[r.Controller, IntegrationEvents]]:
    call, event = api_call_entities("Charge", "ChargeEvent")
    controller = r.Controller(AbortingStorage(SQLiteStorage(":memory:")), [call, event])
    await controller.setup()
    yield controller, IntegrationEvents(controller, event)
    await controller.close()


@settings(FIXTURE_OK, max_examples=150)
@given(data=st.data())
async def test_batches_with_duplicates_anywhere_store_each_key_once_under_postgres_rules(
    aborting_app: tuple[r.Controller, IntegrationEvents], data: st.DataObject
) -> None:
    """Batches of events whose dedup keys repeat (within the batch and across batches), under
    PostgreSQL's abort rule: each key is stored once, by its first write; every later write of
    it is reported as a duplicate; nothing else is refused."""
    controller, events = aborting_app
    namespace = f"b{next(_names)}-"
    charge = await controller.storage.create("Charge", {"request_params": {}})
    seen: set[str] = set()
    batches = data.draw(
        st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=5), max_size=4),
        label="batches",
    )
    for batch in batches:
        pending = [
            PendingEvent("attempt", None, charge["id"], {"k": k}, dedup_key=namespace + k)
            for k in batch
        ]
        writes = await events.write_many(pending)
        expected = []
        for k in batch:
            expected.append("duplicate" if k in seen else "stored")
            seen.add(k)
        assert [w.outcome for w in writes] == expected
        assert [w.dedup_key for w in writes] == [namespace + k for k in batch]
    stored = await controller.storage.find(
        "ChargeEvent", MatchExp.atom("dedup_key", "like", namespace + "%"), ["dedup_key", "data"]
    )
    assert sorted(e["dedup_key"] for e in stored) == sorted(namespace + k for k in seen)
    assert all(e["data"] == {"k": e["dedup_key"].removeprefix(namespace)} for e in stored)
