"""Delivery guarantees of APICallIntegration against the fake provider over loopback HTTP:
retries (what is transient, backoff with full jitter, Retry-After), permanent failures, the
attempt record, per-attempt timeouts, the overall deadline, the sweeper, event dedup, and
superseded calls. Time that the runner waits on goes through a FakeClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations import RetryPolicy
from integrations.testing import Delay, Drop, FakeClock, FakeProvider, Hold, Reply

from .app import CALL, add_call, call_events, create_greeting, get_call, greeting_value
from .conftest import MakeApp
from .helpers import Transitions, eventually, run_clock, settled, terminal

SWEEPER = 86_400.0


def key_of(call_id: Any) -> str:
    return f"fake_tasks.submit:{CALL}:{call_id}"


def backoff_sleeps(clock: FakeClock) -> list[float]:
    return [s for s in clock.sleeps if s != SWEEPER]


async def attempts(app: Any, call_id: Any) -> list[dict[str, Any]]:
    return [e["data"] for e in await call_events(app.controller, call_id, "attempt")]


# -- the happy paths -----------------------------------------------------------------------


async def test_sync_call_completes_with_one_request_carrying_the_idempotency_key(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    app = await make_app(sync=True)
    transitions = Transitions(app.controller)
    greeting_id, call_id = await create_greeting(app.controller, {"text": "hi"})
    call = await settled(app.controller, call_id)
    assert call["status"] == "completed"
    assert call["response_data"]["params"] == {"text": "hi"}
    assert call["completed_at"] is not None
    [request] = provider.requests_to("run")
    assert request.idempotency_key == key_of(call_id)
    assert request.body == {"text": "hi"}
    assert await greeting_value(app.controller, greeting_id) == call["response_data"]["url"]
    kinds = [e["event_type"] for e in await call_events(app.controller, call_id)]
    assert kinds == ["attempt", "initialized", "processing", "completed"]
    assert transitions.terminal_transitions(call_id) == 1


async def test_async_call_is_initialized_with_the_provider_task_id(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    app = await make_app()
    _, call_id = await create_greeting(app.controller)
    await provider.wait_for_requests("submit", 1)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await eventually(initialized)
    call = await get_call(app.controller, call_id)
    task = provider.task_for_key(key_of(call_id))
    assert task is not None and call["external_id"] == task.id
    assert call["status"] == "pending"
    assert provider.requests_to("status") == []  # no poller unless asked for


# -- retries -------------------------------------------------------------------------------


async def test_transient_failures_are_retried_with_backoff_then_succeed(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_attempts=10, base=1.0, cap=3.0, retry_after_cap=60.0)
    app = await make_app(sync=True, retry=policy, clock=clock)
    provider.script(
        "run",
        Reply(500, {"n": 1}),
        Reply(503, {"n": 2}),
        Drop(),
        Reply(408),
        Reply.rate_limited(7),
        Reply(502),
    )
    _, call_id = await create_greeting(app.controller)
    await run_clock(clock, terminal(app.controller, call_id))
    call = await get_call(app.controller, call_id)
    assert call["status"] == "completed"
    assert call["call_state"]["attempts"] == 7

    # every attempt is recorded: its number, time, outcome and error
    recorded = await attempts(app, call_id)
    assert [a["attempt"] for a in recorded] == list(range(1, 8))
    assert [a["outcome"] for a in recorded] == ["transient"] * 6 + ["ok"]
    assert [a["error"].get("status") for a in recorded[:6]] == [500, 503, None, 408, 429, 502]
    assert recorded[2]["error"]["type"] == "ServerDisconnectedError"
    assert "error" not in recorded[6]
    times = [a["started_at"] for a in recorded]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert {a["idempotency_key"] for a in recorded} == {key_of(call_id)}

    # each provider request carried the same key
    assert [r.idempotency_key for r in provider.requests_to("run")] == [key_of(call_id)] * 7
    # full jitter: each wait within [0, min(cap, base * 2**(n-1))]; Retry-After exactly
    waits = backoff_sleeps(clock)
    assert len(waits) == 6
    assert waits[4] == 7.0
    for n, wait in enumerate(waits, start=1):
        if n != 5:
            assert 0.0 <= wait <= min(3.0, 1.0 * 2 ** (n - 1))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock, status: int
) -> None:
    app = await make_app(retry=RetryPolicy(base=0.5), clock=clock)
    provider.script("submit", Reply(status))
    _, call_id = await create_greeting(app.controller)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await run_clock(clock, initialized)
    assert [a["outcome"] for a in await attempts(app, call_id)] == ["transient", "ok"]
    assert len(provider.tasks) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_other_4xx_fail_at_once(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock, status: int
) -> None:
    app = await make_app(sync=True, retry=RetryPolicy(max_attempts=5), clock=clock)
    provider.script("run", Reply(status, {"error": "bad voice"}))
    _, call_id = await create_greeting(app.controller)
    call = await settled(app.controller, call_id)
    assert call["status"] == "failed"
    assert call["error"]["status"] == status
    assert "bad voice" in call["error"]["message"]
    assert call["external_id"] is None  # it never reached the provider's books
    assert len(provider.requests_to("run")) == 1
    assert backoff_sleeps(clock) == []
    [attempt] = await attempts(app, call_id)
    assert attempt["outcome"] == "permanent" and attempt["error"]["status"] == status


async def test_retry_after_is_honoured_and_capped(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    policy = RetryPolicy(base=0.5, retry_after_cap=20.0)
    app = await make_app(sync=True, retry=policy, clock=clock)
    provider.script(
        "run",
        Reply.rate_limited(3),
        Reply.rate_limited(3600),
        Reply.rate_limited("Wed, 21 Oct 2099 07:28:00 GMT"),
        Reply.rate_limited(),  # no Retry-After: plain backoff
    )
    _, call_id = await create_greeting(app.controller)
    await run_clock(clock, terminal(app.controller, call_id))
    assert (await get_call(app.controller, call_id))["status"] == "completed"
    waits = backoff_sleeps(clock)
    assert waits[:3] == [3.0, 20.0, 20.0]
    assert 0.0 <= waits[3] <= 0.5 * 2**3


async def test_exhausted_attempts_fail_with_the_last_error(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    app = await make_app(sync=True, retry=RetryPolicy(max_attempts=3, base=1.0), clock=clock)
    provider.script("run", Reply(500, "first"), Reply(502, "second"), Reply(503, "third"))
    greeting_id, call_id = await create_greeting(app.controller)
    await run_clock(clock, terminal(app.controller, call_id))
    call = await get_call(app.controller, call_id)
    assert call["status"] == "failed"
    assert call["error"]["status"] == 503 and "third" in call["error"]["message"]
    assert len(provider.requests_to("run")) == 3
    assert len(backoff_sleeps(clock)) == 2
    assert [a["outcome"] for a in await attempts(app, call_id)] == ["transient"] * 3
    assert await greeting_value(app.controller, greeting_id) is None
    assert len(await call_events(app.controller, call_id, "failed")) == 1


# -- timeouts and deadlines ----------------------------------------------------------------


async def test_an_attempt_that_outlives_its_timeout_is_retried(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    policy = RetryPolicy(attempt_timeout=0.2, base=0.5)
    app = await make_app(retry=policy, clock=clock)
    provider.script("submit", Delay(30.0))  # the provider works on, the client gave up
    _, call_id = await create_greeting(app.controller)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await run_clock(clock, initialized)
    recorded = await attempts(app, call_id)
    assert [a["outcome"] for a in recorded] == ["transient", "ok"]
    assert recorded[0]["error"]["type"] == "TimeoutError"
    assert [r.idempotency_key for r in provider.requests_to("submit")] == [key_of(call_id)] * 2


async def test_every_attempt_timing_out_fails_the_call_with_a_timeout(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    policy = RetryPolicy(attempt_timeout=0.1, max_attempts=2, base=0.5)
    app = await make_app(retry=policy, clock=clock)
    provider.script("submit", Hold(), Hold())
    _, call_id = await create_greeting(app.controller)
    await run_clock(clock, terminal(app.controller, call_id))
    call = await get_call(app.controller, call_id)
    assert call["status"] == "failed"
    assert call["error"]["type"] == "TimeoutError"
    provider.release()


async def failed_within_the_deadline(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    """A call the provider refuses (503) every time, retried for at most 60 s: it fails, having
    spent no more than the deadline on ``clock``, with the last refusal as its error."""
    policy = RetryPolicy(max_attempts=1000, base=10.0, cap=10.0, deadline=60.0)
    app = await make_app(sync=True, retry=policy, clock=clock)
    provider.script("run", *[Reply(503, f"try {n}") for n in range(1, 1000)])
    start = clock.now()
    _, call_id = await create_greeting(app.controller)
    await run_clock(clock, terminal(app.controller, call_id))
    call = await get_call(app.controller, call_id)
    assert call["status"] == "failed"
    made = len(provider.requests_to("run"))
    assert made < 1000
    assert call["error"]["status"] == 503 and f"try {made}" in call["error"]["message"]
    assert (clock.now() - start).total_seconds() <= 60.0


async def test_the_overall_deadline_stops_retrying(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    await failed_within_the_deadline(make_app, provider, clock)


async def test_the_deadline_holds_on_a_clock_that_trails_the_records_time(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    """The call's created_at comes from the wall clock; the runner sleeps on its own clock. When
    that clock trails (here by an hour), the deadline still holds on it: before, it counted from
    the record's later time and the call was retried for an hour and a minute."""
    trailing = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    await failed_within_the_deadline(make_app, provider, trailing)


async def test_the_sweeper_fails_calls_stuck_past_their_deadline(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    provider.progression = []  # tasks stay pending
    app = await make_app(retry=RetryPolicy(deadline=100.0), clock=clock, sweep_interval=60.0)
    integration = app.integration
    transitions = Transitions(app.controller)
    _, stuck = await create_greeting(app.controller)
    _, processing = await create_greeting(app.controller)
    _, done = await create_greeting(app.controller)
    await provider.wait_for_requests("submit", 3)

    async def all_initialized() -> bool:
        calls = [await get_call(app.controller, c) for c in (stuck, processing, done)]
        return all(c["external_id"] is not None for c in calls)

    await eventually(all_initialized)
    ext = {c: (await get_call(app.controller, c))["external_id"] for c in (processing, done)}
    await integration.events.processing(ext[processing])
    await integration.events.completed(ext[done], {"url": "u"})
    assert await integration.sweep() == 0  # nobody is late yet

    clock.advance(60.0)  # the sweeper's first round: still within the deadline
    await clock.wait_for_sleepers(1)
    assert (await get_call(app.controller, stuck))["status"] == "pending"
    clock.advance(60.0)  # second round, 120 s after creation
    for call_id in (stuck, processing):
        call = await settled(app.controller, call_id)
        assert call["status"] == "failed"
        assert call["error"]["type"] == "Timeout"
    assert (await get_call(app.controller, done))["status"] == "completed"
    for call_id in (stuck, processing, done):
        assert transitions.terminal_transitions(call_id) == 1
    # created_at defaults to the wall clock; a call made "now" on the fake clock says so
    _, young = await create_greeting(app.controller, created_at=clock.now())
    assert await integration.sweep() == 0
    assert (await get_call(app.controller, young))["status"] == "pending"


async def test_a_late_completion_does_not_revive_a_call_the_sweeper_failed(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    provider.progression = []
    app = await make_app(retry=RetryPolicy(deadline=100.0), clock=clock)
    transitions = Transitions(app.controller)
    greeting_id, call_id = await create_greeting(app.controller)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await eventually(initialized)
    ext = (await get_call(app.controller, call_id))["external_id"]
    clock.advance(101.0)
    assert await app.integration.sweep() == 1
    await app.integration.events.completed(ext, {"url": "too late"})
    call = await get_call(app.controller, call_id)
    assert call["status"] == "failed" and call["error"]["type"] == "Timeout"
    assert transitions.regressions() == []
    assert transitions.terminal_transitions(call_id) == 1
    assert await greeting_value(app.controller, greeting_id) is None


# -- events: dedup and superseded calls ----------------------------------------------------


async def test_each_inbound_event_is_stored_once_by_its_dedup_key(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    app = await make_app()
    events = app.integration.events
    _, call_id = await create_greeting(app.controller)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await eventually(initialized)
    ext = (await get_call(app.controller, call_id))["external_id"]
    first = await events.processing(ext)
    again = await events.processing(ext)
    assert (first.outcome, again.outcome) == ("stored", "duplicate")
    assert first.dedup_key == again.dedup_key == f"processing:{ext}"
    # a provider event id is the key when there is one
    assert (await events.completed(ext, {"url": "a"}, dedup_key="evt-9")).outcome == "stored"
    assert (await events.completed(ext, {"url": "b"}, dedup_key="evt-9")).outcome == "duplicate"
    assert (await events.completed(ext, {"url": "c"})).outcome == "stored"  # another report
    rows = await call_events(app.controller, call_id)
    keys = [e["dedup_key"] for e in rows]
    assert len(keys) == len(set(keys)) and all(keys)
    call = await get_call(app.controller, call_id)
    assert call["response_data"] == {"url": "a"}  # the first completion decides


async def test_a_late_result_of_an_older_call_never_completes_the_newer_one(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    provider.progression = []
    app = await make_app()
    transitions = Transitions(app.controller)
    greeting_id, old = await create_greeting(app.controller)
    new = await add_call(app.controller, greeting_id)
    await provider.wait_for_requests("submit", 2)

    async def initialized() -> bool:
        calls = [await get_call(app.controller, c) for c in (old, new)]
        return all(c["external_id"] is not None for c in calls)

    await eventually(initialized)
    old_ext = (await get_call(app.controller, old))["external_id"]
    new_ext = (await get_call(app.controller, new))["external_id"]
    assert old_ext != new_ext
    await app.integration.events.completed(new_ext, {"url": "new"})
    await app.integration.events.completed(old_ext, {"url": "old"})  # late
    assert (await get_call(app.controller, new))["response_data"] == {"url": "new"}
    assert (await get_call(app.controller, old))["response_data"] == {"url": "old"}
    assert await greeting_value(app.controller, greeting_id) == "new"
    assert transitions.terminal_transitions(new) == 1
    assert transitions.regressions() == []


async def test_a_superseded_attempt_of_the_same_call_never_completes_it(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    """The runner re-initialized the call with a new task: results for the old task are
    kept but never reach the call."""
    provider.progression = []
    app = await make_app()
    events = app.integration.events
    _, call_id = await create_greeting(app.controller)

    async def initialized() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await eventually(initialized)
    older = (await get_call(app.controller, call_id))["external_id"]
    await events.initialized(call_id, "newer-task")
    assert (await events.completed(older, {"url": "stale"})).outcome == "stored"
    call = await get_call(app.controller, call_id)
    assert (call["status"], call["external_id"], call["response_data"]) == (
        "pending",
        "newer-task",
        None,
    )
    await events.failed("newer-task", {"code": "x"})
    call = await get_call(app.controller, call_id)
    assert (call["status"], call["error"]) == ("failed", {"code": "x"})
