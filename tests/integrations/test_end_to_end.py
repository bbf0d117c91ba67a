"""End to end over loopback HTTP: several calls per scenario through the real runner and the fake
provider, and the same invariants for each: zero lost calls (every call ends), zero double
terminal transitions, one terminal event per call, every request carrying the call's key, and
the provider doing each call's work at most once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

import reactive as r
from integrations import PollPolicy, RetryPolicy
from integrations.testing import Drop, FakeClock, FakeProvider, Hold, Reply, Route

from .app import OWNER, call_events, create_greeting, get_call, greeting_value
from .conftest import App, MakeApp
from .helpers import TERMINAL, Transitions, eventually, run_clock
from .test_delivery import key_of

CALLS = 5


@attrs.frozen
class Scenario:
    name: str
    options: dict[str, Any]
    prepare: Callable[[FakeProvider], None]
    drive: str  # "wait", "clock" or "query"
    status: str
    check: Callable[[dict[str, Any]], bool] = lambda call: True


def _nothing(provider: FakeProvider) -> None:
    pass


def _transient(provider: FakeProvider) -> None:
    provider.script(
        "submit",
        Reply(500),
        Reply.rate_limited(2),
        Drop(),
        Drop(process=True),  # the task is made, the answer lost: the retry gets the same task
        Reply(503, process=True),
        Reply(408),
    )


def _permanent(provider: FakeProvider) -> None:
    provider.script("run", *[Reply(422, {"error": "unsupported voice"})] * CALLS)


def _task_fails(provider: FakeProvider) -> None:
    provider.progression = ["processing", "failed"]


def _hangs(provider: FakeProvider) -> None:
    provider.script("run", *[Hold()] * (2 * CALLS))


def _stays_pending(provider: FakeProvider) -> None:
    provider.progression = []


SCENARIOS = [
    Scenario("sync", {"sync": True}, _nothing, "wait", "completed"),
    Scenario("async with query", {}, _nothing, "query", "completed"),
    Scenario(
        "async with poller", {"poll": PollPolicy(initial=1.0)}, _nothing, "clock", "completed"
    ),
    Scenario(
        "transient failures then success",
        {"poll": PollPolicy(initial=1.0), "retry": RetryPolicy(base=1.0)},
        _transient,
        "clock",
        "completed",
    ),
    Scenario(
        "permanent failure",
        {"sync": True},
        _permanent,
        "wait",
        "failed",
        lambda call: call["error"]["status"] == 422,
    ),
    Scenario(
        "the provider fails the task",
        {"poll": PollPolicy(initial=1.0)},
        _task_fails,
        "clock",
        "failed",
        lambda call: call["error"]["code"] == "task_failed",
    ),
    Scenario(
        "attempt timeout",
        {"sync": True, "retry": RetryPolicy(attempt_timeout=0.1, max_attempts=2, base=1.0)},
        _hangs,
        "clock",
        "failed",
        lambda call: call["error"]["type"] == "TimeoutError",
    ),
    Scenario(
        "deadline (sweeper)",
        {"retry": RetryPolicy(deadline=120.0), "sweep_interval": 60.0},
        _stays_pending,
        "sweep",
        "failed",
        lambda call: call["error"]["type"] == "Timeout",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenario(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock, scenario: Scenario
) -> None:
    scenario.prepare(provider)
    app = await make_app(clock=clock, **scenario.options)
    transitions = Transitions(app.controller)
    made = [await create_greeting(app.controller, {"n": n}) for n in range(CALLS)]
    call_ids = [call_id for _, call_id in made]

    await DRIVERS[scenario.drive](app, clock, call_ids)

    for greeting_id, call_id in made:
        call = await get_call(app.controller, call_id)
        assert call["status"] == scenario.status, call  # zero lost calls
        assert scenario.check(call), call
        assert transitions.terminal_transitions(call_id) == 1
        terminal_events = [
            e for e in await call_events(app.controller, call_id) if e["event_type"] in TERMINAL
        ]
        assert len(terminal_events) == 1
        value = await greeting_value(app.controller, greeting_id)
        expected = call["response_data"]["url"] if scenario.status == "completed" else None
        assert value == expected
    assert transitions.regressions() == []

    route: Route = "run" if scenario.options.get("sync") else "submit"
    keys = {r.idempotency_key for r in provider.requests_to(route)}
    assert keys == {key_of(c) for c in call_ids}  # every call reached the provider, keyed
    work = provider.runs if scenario.options.get("sync") else provider.tasks
    # the provider did each call's work at most once (exactly once when it completed)
    assert len(work) == CALLS if scenario.status == "completed" else len(work) <= CALLS
    provider.release()


async def _wait(app: App, clock: FakeClock, call_ids: list[Any]) -> None:
    await eventually(_all_terminal(app.controller, call_ids))


async def _clock(app: App, clock: FakeClock, call_ids: list[Any]) -> None:
    await run_clock(clock, _all_terminal(app.controller, call_ids))


async def _query(app: App, clock: FakeClock, call_ids: list[Any]) -> None:
    api = app.integration.create_apis()["fake_tasks.query"]
    ctx = r.APIContext(app.controller, user_id=OWNER)

    async def ask_all() -> bool:
        statuses = [(await api.handler(ctx, {"call_id": c}))["status"] for c in call_ids]
        return all(s in TERMINAL for s in statuses)

    await eventually(ask_all)


async def _sweep(app: App, clock: FakeClock, call_ids: list[Any]) -> None:
    async def initialized() -> bool:
        calls = [await get_call(app.controller, c) for c in call_ids]
        return all(c["external_id"] is not None for c in calls)

    await eventually(initialized)
    await run_clock(clock, _all_terminal(app.controller, call_ids), background=0)


def _all_terminal(controller: r.Controller, call_ids: list[Any]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        calls = [await get_call(controller, c) for c in call_ids]
        return all(c["status"] in TERMINAL for c in calls)

    return check


DRIVERS: dict[str, Callable[[App, FakeClock, list[Any]], Awaitable[None]]] = {
    "wait": _wait,
    "clock": _clock,
    "query": _query,
    "sweep": _sweep,
}
