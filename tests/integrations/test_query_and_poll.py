"""The manual status query API (owner only) and the opt-in backend poller."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest

import reactive as r
from integrations import PollPolicy
from integrations.testing import FakeClock, FakeProvider, Hold, Reply
from tests.conftest import sqlite_only

from .app import OWNER, call_events, create_greeting, get_call, greeting_value
from .conftest import App, MakeApp
from .helpers import Transitions, eventually, run_clock, terminal


async def initialized_call(app: App, **call: Any) -> tuple[Any, Any, str]:
    """A greeting whose call the provider accepted: (greeting id, call id, task id)."""
    greeting_id, call_id = await create_greeting(app.controller, **call)

    async def known() -> bool:
        return (await get_call(app.controller, call_id))["external_id"] is not None

    await eventually(known)
    return greeting_id, call_id, (await get_call(app.controller, call_id))["external_id"]


def query_api(app: App) -> r.API:
    return app.integration.create_apis()["fake_tasks.query"]


async def ask(app: App, user_id: Any, call_id: Any) -> Any:
    api = query_api(app)
    return await api.handler(r.APIContext(app.controller, user_id=user_id), {"call_id": call_id})


# -- the query API -------------------------------------------------------------------------


async def test_the_owner_queries_the_provider_and_new_events_are_written(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    app = await make_app()
    assert query_api(app).params == {"call_id": "id"}
    greeting_id, call_id, task_id = await initialized_call(app)

    first = await ask(app, OWNER, call_id)
    assert (first["id"], first["status"], first["external_id"]) == (call_id, "processing", task_id)
    assert len(await call_events(app.controller, call_id, "processing")) == 1

    second = await ask(app, str(OWNER), call_id)  # ids compare as strings
    assert second["status"] == "completed"
    assert second["response_data"] == provider.tasks[task_id].result
    assert await greeting_value(app.controller, greeting_id) == second["response_data"]["url"]

    third = await ask(app, OWNER, call_id)  # terminal: answered from the record
    assert third["status"] == "completed"
    assert len(provider.requests_to("status")) == 2
    assert len(await call_events(app.controller, call_id, "completed")) == 1


async def test_asking_again_writes_nothing_new(make_app: MakeApp, provider: FakeProvider) -> None:
    provider.progression = ["processing"]
    app = await make_app()
    _, call_id, _ = await initialized_call(app)
    for _ in range(3):
        assert (await ask(app, OWNER, call_id))["status"] == "processing"
    kinds = [e["event_type"] for e in await call_events(app.controller, call_id)]
    assert kinds == ["attempt", "initialized", "processing"]


@pytest.mark.parametrize("user_id", [OWNER + 1, None, "someone"])
async def test_someone_elses_call_looks_missing(
    make_app: MakeApp, provider: FakeProvider, user_id: Any
) -> None:
    app = await make_app()
    _, call_id, _ = await initialized_call(app)
    with pytest.raises(r.APIError) as refused:
        await ask(app, user_id, call_id)
    with pytest.raises(r.APIError) as missing:
        await ask(app, OWNER, 999_999)
    assert refused.value.status == missing.value.status == 404
    assert refused.value.code == missing.value.code == "not_found"
    assert provider.requests_to("status") == []  # nothing was asked on their behalf


async def test_a_provider_error_on_query_is_a_502_and_changes_nothing(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    app = await make_app()
    _, call_id, _ = await initialized_call(app)
    provider.script("status", Reply(503, "down"))
    with pytest.raises(r.APIError) as failed:
        await ask(app, OWNER, call_id)
    assert failed.value.status == 502
    assert (await get_call(app.controller, call_id))["status"] == "pending"
    assert (await ask(app, OWNER, call_id))["status"] == "processing"  # next time works


async def test_a_call_not_yet_at_the_provider_is_returned_without_a_query(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    provider.script("submit", Hold())
    app = await make_app()
    _, call_id = await create_greeting(app.controller)
    await provider.wait_for_requests("submit", 1)
    call = await ask(app, OWNER, call_id)
    assert (call["status"], call["external_id"]) == ("pending", None)
    assert provider.requests_to("status") == []
    provider.release()


# -- the poller ----------------------------------------------------------------------------


async def test_no_polling_unless_asked_for(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    app = await make_app(clock=clock)
    assert app.integration.poll is None
    _, call_id, _ = await initialized_call(app)
    assert clock.sleepers == 1  # the sweeper only
    clock.advance(3_600.0)
    await clock.wait_for_sleepers(1)
    assert provider.requests_to("status") == []
    assert (await get_call(app.controller, call_id))["status"] == "pending"


async def test_the_poller_backs_off_and_stops_at_the_result(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    provider.progression = ["processing", "processing", "processing", "processing", "completed"]
    poll = PollPolicy(initial=1.0, factor=2.0, max_interval=5.0)
    app = await make_app(clock=clock, poll=poll)
    transitions = Transitions(app.controller)
    greeting_id, call_id, task_id = await initialized_call(app)
    steps = await run_clock(clock, terminal(app.controller, call_id))
    assert steps == [1.0, 2.0, 4.0, 5.0, 5.0]  # adaptive: longer each time, capped
    call = await get_call(app.controller, call_id)
    assert call["status"] == "completed"
    assert await greeting_value(app.controller, greeting_id) == call["response_data"]["url"]
    assert provider.tasks[task_id].polls == 5
    await eventually(_sleepers_back_to(clock, 1))  # the poller ended
    clock.advance(600.0)
    await clock.wait_for_sleepers(1)
    assert provider.tasks[task_id].polls == 5
    assert transitions.terminal_transitions(call_id) == 1
    assert [new for _, new in transitions.of(call_id)] == ["processing", "completed"]


@pytest.mark.parametrize("source", ["webhook", "query"])
async def test_the_poller_stops_when_another_source_finished_the_call(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock, source: str
) -> None:
    provider.progression = []  # the task only moves when told
    app = await make_app(clock=clock, poll=PollPolicy(initial=10.0))
    _, call_id, task_id = await initialized_call(app)
    await clock.wait_for_sleepers(2)  # the sweeper and the poller
    if source == "webhook":
        await app.integration.events.completed(task_id, {"url": "from the webhook"})
    else:
        provider.complete(task_id)
        assert (await ask(app, OWNER, call_id))["status"] == "completed"
    polls_before = provider.tasks[task_id].polls
    clock.advance(10.0)  # the poller wakes, sees the call finished, and leaves
    await eventually(_sleepers_back_to(clock, 1))
    clock.advance(1_000.0)
    await clock.wait_for_sleepers(1)
    assert provider.tasks[task_id].polls == polls_before
    assert (await get_call(app.controller, call_id))["status"] == "completed"


async def test_the_poller_retries_transient_errors_and_gives_up_on_permanent_ones(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    provider.progression = []
    app = await make_app(clock=clock, poll=PollPolicy(initial=1.0, factor=1.0))
    _, call_id, _ = await initialized_call(app)
    provider.script("status", Reply(503), Reply.rate_limited(1), Reply(404, "gone"))
    await run_clock(clock, terminal(app.controller, call_id))
    call = await get_call(app.controller, call_id)
    assert call["status"] == "failed" and call["error"]["status"] == 404
    assert len(provider.requests_to("status")) == 3


async def test_pollers_resume_for_open_calls_after_a_restart(
    make_app: MakeApp, provider: FakeProvider, clock: FakeClock
) -> None:
    provider.progression = ["completed"]
    first = await make_app()  # no poller in the first process
    _, call_id, _ = await initialized_call(first)
    await first.close()
    second = await make_app(clock=clock, poll=PollPolicy(initial=2.0))
    await clock.wait_for_sleepers(2)
    await run_clock(clock, terminal(second.controller, call_id))
    assert (await get_call(second.controller, call_id))["status"] == "completed"
    assert len(provider.requests_to("submit")) == 1


def _sleepers_back_to(clock: FakeClock, count: int) -> Any:
    async def check() -> bool:
        return clock.sleepers == count

    return check


@pytest.mark.parametrize("bad", [[1], {"id": 1}, 1.5, True, None, 2**70])
async def test_a_call_id_that_is_not_an_id_is_a_bad_param(make_app: MakeApp, bad: Any) -> None:
    app = await make_app()
    with pytest.raises(r.APIError) as caught:
        await ask(app, OWNER, bad)
    assert (caught.value.status, caught.value.code) == (400, "invalid_param")


@sqlite_only("a sqlite3 connection holds the file's write lock")
async def test_a_poll_whose_status_cannot_be_recorded_is_polled_again(
    make_app: MakeApp,
    provider: FakeProvider,
    clock: FakeClock,
    db_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A storage error while recording a polled status (here: another connection holds the
    write lock) does not end the poller: it is logged once and the next round records it.
    Before, the poller's task died with the error and the call stayed open."""
    provider.progression = ["processing", "completed"]
    app = await make_app(clock=clock, poll=PollPolicy(initial=1.0, factor=1.0), busy_timeout=0.05)
    _, call_id, task_id = await initialized_call(app)
    lock = sqlite3.connect(db_path, isolation_level=None)
    try:
        with caplog.at_level(logging.WARNING, "integrations.runner"):
            await clock.wait_for_sleepers(2)  # the sweeper and the poller
            lock.execute("BEGIN IMMEDIATE")
            clock.advance(1.0)

            async def warned() -> bool:
                return bool(caplog.records)

            await eventually(warned)
            lock.execute("COMMIT")
            await run_clock(clock, terminal(app.controller, call_id))
        call = await get_call(app.controller, call_id)
        assert call["status"] == "completed"
        assert provider.tasks[task_id].polls == 2  # processing (not recorded), then completed
        [logged] = caplog.records
        assert "could not read or record the status, will retry" in logged.getMessage()
        assert "locked" in logged.getMessage()
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
