"""The tools of integrations.testing themselves: the fake clock, the fake provider's wire
format and scripts, and the strategies' shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import Clock, ProviderHTTPError
from integrations.testing import (
    Delay,
    Drop,
    EventSequence,
    FakeClock,
    FakeProvider,
    Hold,
    Reply,
    adversarial_scenarios,
    deliveries,
    valid_sequences,
)

# -- FakeClock ------------------------------------------------------------------------------


def test_fake_clock_is_a_clock() -> None:
    clock: Clock = FakeClock()
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError):
        FakeClock(datetime(2030, 1, 1))


async def test_sleepers_wake_in_due_order_when_time_is_advanced() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = FakeClock(start)
    woke: list[tuple[str, datetime]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(nap(n, s)) for n, s in [("c", 30.0), ("a", 10.0), ("b", 20.0)]]
    await clock.wait_for_sleepers(3)
    assert clock.pending_sleeps == [10.0, 20.0, 30.0]
    assert clock.next_due() == 10.0
    assert clock.advance(5.0) == 0
    await asyncio.sleep(0)
    assert woke == [] and clock.sleepers == 3
    assert clock.advance(20.0) == 2  # both wake, in due order, and see the target time
    await asyncio.gather(*tasks[1:])
    assert woke == [("a", start + timedelta(seconds=25)), ("b", start + timedelta(seconds=25))]
    assert clock.advance_to_next() == 5.0  # exactly to the next due time
    await tasks[0]
    assert woke[-1] == ("c", start + timedelta(seconds=30))
    assert clock.sleeps == [30.0, 10.0, 20.0]
    assert clock.sleepers == 0 and clock.next_due() is None
    with pytest.raises(LookupError):
        clock.advance_to_next()
    with pytest.raises(ValueError):
        clock.advance(-1.0)


async def test_a_cancelled_sleeper_leaves_and_zero_sleeps_do_not_wait() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await clock.wait_for_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0
    await clock.sleep(0)  # returns at once
    with pytest.raises(TimeoutError):
        await clock.wait_for_sleepers(1, timeout=0.05)


# -- FakeProvider -------------------------------------------------------------------------


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, key: str | None = None
) -> tuple[int, Any, Mapping[str, str]]:
    headers = {"Idempotency-Key": key} if key else {}
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def test_the_task_api_and_its_idempotency() -> None:
    async with FakeProvider() as provider, aiohttp.ClientSession() as session:
        assert provider.url.startswith("http://127.0.0.1:")
        status, body, _ = await post(session, f"{provider.url}/v1/tasks", {"a": 1}, "k1")
        assert (status, body) == (202, {"id": "task-1", "status": "pending"})
        status, again, _ = await post(session, f"{provider.url}/v1/tasks", {"a": 1}, "k1")
        assert again["id"] == "task-1" and len(provider.tasks) == 1
        _, other, _ = await post(session, f"{provider.url}/v1/tasks", {"a": 2})
        assert other["id"] == "task-2"

        seen = []
        for _ in range(3):
            async with session.get(f"{provider.url}/v1/tasks/task-1") as response:
                seen.append(await response.json())
        assert [s["status"] for s in seen] == ["processing", "completed", "completed"]
        assert seen[1]["result"] == {"output": "result-of-task-1", "params": {"a": 1}}
        provider.fail("task-2", {"code": "nope"})
        async with session.get(f"{provider.url}/v1/tasks/task-2") as response:
            assert await response.json() == {
                "id": "task-2",
                "status": "failed",
                "error": {"code": "nope"},
            }
        async with session.get(f"{provider.url}/v1/tasks/task-9") as response:
            assert response.status == 404

        [first, *_] = provider.requests
        assert first.idempotency_key == "k1" == first.header("idempotency-key")
        assert (first.route, first.method, first.path, first.body) == (
            "submit",
            "POST",
            "/v1/tasks",
            {"a": 1},
        )
        assert provider.task_for_key("k1") is provider.tasks["task-1"]


async def test_the_sync_api_answers_the_same_run_for_the_same_key() -> None:
    async with FakeProvider() as provider, aiohttp.ClientSession() as session:
        _, one, _ = await post(session, f"{provider.url}/v1/run", {"t": "x"}, "k")
        _, two, _ = await post(session, f"{provider.url}/v1/run", {"t": "x"}, "k")
        assert one == two and one["result"]["params"] == {"t": "x"}
        assert len(provider.runs) == 1 and len(provider.requests_to("run")) == 2


async def test_scripted_outcomes_are_used_in_order_then_requests_are_handled() -> None:
    async with FakeProvider() as provider, aiohttp.ClientSession() as session:
        provider.script("run", Reply(503, "busy"), Reply.rate_limited(7), Drop())
        provider.script("run", Drop(process=True), Reply(400, process=True))
        assert provider.scripted("run") == 5
        url = f"{provider.url}/v1/run"
        assert (await post(session, url, {}, "k"))[0] == 503
        status, _, headers = await post(session, url, {}, "k")
        assert (status, headers["Retry-After"]) == (429, "7")
        for _ in range(2):
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, url, {}, "k")
        assert len(provider.runs) == 1  # the dropped-after-processing request did the work
        assert (await post(session, url, {}, "k2"))[0] == 400
        status, _, _ = await post(session, url, {}, "k2")
        assert status == 200 and len(provider.runs) == 2
        assert [r.outcome for r in provider.requests] == [
            "reply 503",
            "reply 429",
            "drop",
            "drop after processing",
            "reply 400 after processing",
            "handled",
        ]
        with pytest.raises(ValueError):
            provider.script("nope", Reply(500))  # type: ignore[arg-type]


async def test_delays_and_holds() -> None:
    async with FakeProvider() as provider, aiohttp.ClientSession() as session:
        provider.script("submit", Delay(30.0), Hold())
        timeout = aiohttp.ClientTimeout(total=0.1)
        with pytest.raises(TimeoutError):
            async with session.post(f"{provider.url}/v1/tasks", json={}, timeout=timeout):
                pass
        held = asyncio.create_task(post(session, f"{provider.url}/v1/tasks", {}, "h"))
        await provider.wait_for_requests("submit", 2)
        await asyncio.sleep(0.01)
        assert not held.done()
        provider.release()
        status, _, _ = await held
        assert status == 202
        with pytest.raises(TimeoutError):
            await provider.wait_for_requests("status", 1, timeout=0.05)


async def test_close_answers_what_is_still_held() -> None:
    provider = await FakeProvider().start()
    provider.script("submit", Hold())
    async with aiohttp.ClientSession() as session:
        held = asyncio.create_task(post(session, f"{provider.url}/v1/tasks", {}))
        await provider.wait_for_requests("submit", 1)
        await provider.close()
        status, _, _ = await held
        assert status == 503


async def test_raise_for_status_maps_the_fake_answers() -> None:
    from integrations import raise_for_status

    async with FakeProvider() as provider, aiohttp.ClientSession() as session:
        provider.script("run", Reply.rate_limited(3), Reply(404, "no"))
        for transient in (True, False):
            async with session.post(f"{provider.url}/v1/run", json={}) as response:
                with pytest.raises(ProviderHTTPError) as error:
                    await raise_for_status(response)
            assert error.value.transient is transient
        assert error.value.status == 404


# -- strategies ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_valid_sequences_have_the_documented_shapes(data: st.DataObject) -> None:
    sequence: EventSequence = data.draw(valid_sequences(terminal=None))
    kinds = [e.kind for e in sequence.events]
    assert kinds[0] == "initialized"
    assert len({e.external_id for e in sequence.events}) == 1
    if sequence.shape == "sync":
        assert kinds in (["initialized", "processing", "completed"], ["initialized", "failed"])
    else:
        assert kinds[1:-1] in ([], ["processing"])
    terminal = [k for k in kinds if k in ("completed", "failed")]
    assert len(terminal) <= 1
    assert sequence.expected.status == (
        terminal[0] if terminal else kinds[-1].replace("initialized", "pending")
    )
    delivery = data.draw(deliveries(sequence))
    assert all(event in delivery for event in sequence.events)
    assert all(event in sequence.events for event in delivery)
    assert len(sequence.events) <= len(delivery) <= len(sequence.events) + 4


@settings(max_examples=50, deadline=None)
@given(scenario=adversarial_scenarios())
def test_adversarial_scenarios_are_labelled_and_deliverable(scenario: Any) -> None:
    assert scenario.label in {"unknown ids", "after terminal", "superseded", "contradictory"}
    pending = [spec.to_pending(1, "ns-") for spec in scenario.delivery]
    assert all(p.external_id and p.external_id.startswith("ns-") for p in pending)
    assert all((p.entity_id == 1) == (p.event_type == "initialized") for p in pending)
    if scenario.label == "superseded":
        assert [s.kind for s in scenario.delivery].count("initialized") >= 2
