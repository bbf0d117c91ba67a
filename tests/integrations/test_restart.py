"""No lost calls, no double calls, across restarts of the process (in-process simulations;
the SIGKILL version is test_crash.py)."""

from __future__ import annotations

import pytest

from integrations.testing import FakeProvider, Hold

from .app import call_events, create_greeting, get_call, greeting_value
from .conftest import App, MakeApp
from .helpers import eventually, settled
from .test_delivery import key_of


async def test_a_call_interrupted_by_shutdown_is_made_after_restart(
    make_app: MakeApp, provider: FakeProvider
) -> None:
    provider.script("run", Hold())  # the first process never gets an answer
    first = await make_app(sync=True)
    greeting_id, call_id = await create_greeting(first.controller)
    await provider.wait_for_requests("run", 1)
    await first.close()  # the handler is cancelled; its intent stays pending
    provider.release()

    second = await make_app(sync=True)
    call = await settled(second.controller, call_id)
    assert call["status"] == "completed"
    assert [r.idempotency_key for r in provider.requests_to("run")] == [key_of(call_id)] * 2
    assert len(provider.runs) == 1  # the provider did the work once
    assert len(await call_events(second.controller, call_id, "completed")) == 1
    assert await greeting_value(second.controller, greeting_id) == call["response_data"]["url"]


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_a_handler_rerun_after_its_outcome_was_recorded_changes_nothing(
    make_app: MakeApp, provider: FakeProvider, sync: bool
) -> None:
    """A crash after the events were written but before the side effect's intent was removed
    runs the handler again at the next start: no second provider call, no second terminal
    event, the same external id."""
    first = await make_app(sync=sync)
    # the intent's removal is lost, as in a crash right after the events were written
    first.controller.side_effects._complete = lambda intent_id: None  # type: ignore[method-assign]
    _, call_id = await create_greeting(first.controller)

    async def recorded() -> bool:
        return (await get_call(first.controller, call_id))["external_id"] is not None

    await eventually(recorded)
    await first.controller.drain()
    before = await get_call(first.controller, call_id)
    assert len(await first.controller.side_effects.pending()) == 1
    await first.close()

    second = await make_app(sync=sync)
    await eventually(lambda: _no_pending(second))
    after = await get_call(second.controller, call_id)
    assert after["external_id"] == before["external_id"]
    assert after["status"] == before["status"]
    assert len(provider.requests_to("run" if sync else "submit")) == 1
    for kind in ("initialized", "completed", "failed"):
        assert len(await call_events(second.controller, call_id, kind)) <= 1


async def _no_pending(app: App) -> bool:
    controller = app.controller
    await controller.drain()
    return not await controller.side_effects.pending()
