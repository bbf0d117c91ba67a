"""Waiting helpers and invariant monitors for the integration tests (no timing asserts:
real-time bounds here only stop a test that would otherwise hang)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import reactive as r
from integrations.testing import FakeClock

from .app import CALL, get_call

TERMINAL = ("completed", "failed")


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Let the loop run until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not await check():
        if loop.time() > give_up:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.005)


async def settled(controller: r.Controller, call_id: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the call is completed or failed; returns it."""

    async def done() -> bool:
        return (await get_call(controller, call_id))["status"] in TERMINAL

    await eventually(done, timeout, f"call {call_id} finishing")
    return await get_call(controller, call_id)


async def run_clock(
    clock: FakeClock,
    until: Callable[[], Awaitable[bool]],
    *,
    background: int = 1,
    timeout: float = 10.0,
) -> list[float]:
    """Advance the fake clock to the next wake-up whenever more than ``background`` tasks (the
    sweeper) sleep on it, until ``until()`` holds; returns the steps taken."""
    steps: list[float] = []
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not await until():
        if loop.time() > give_up:
            raise TimeoutError(f"not done after advancing the clock by {steps}")
        if clock.sleepers > background:
            steps.append(clock.advance_to_next())
        await asyncio.sleep(0.002)
    return steps


def terminal(controller: r.Controller, call_id: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await get_call(controller, call_id))["status"] in TERMINAL

    return check


class Transitions:
    """Every status change of every call, as committed (from the controller's stream)."""

    def __init__(self, controller: r.Controller):
        self.changes: list[tuple[Any, Any, Any]] = []
        self._subscription = controller.stream(CALL, "update").subscribe(self._on)

    def _on(self, event: r.MutationEvent) -> None:
        if event.keys and "status" in event.keys:
            old = (event.old_record or {}).get("status")
            new = event.record["status"]
            if old != new:
                self.changes.append((event.record["id"], old, new))

    def of(self, call_id: Any) -> list[tuple[Any, Any]]:
        return [(old, new) for cid, old, new in self.changes if cid == call_id]

    def terminal_transitions(self, call_id: Any) -> int:
        """How many times the call's status moved into a terminal status (or between two)."""
        return sum(1 for old, new in self.of(call_id) if new in TERMINAL)

    def regressions(self) -> list[tuple[Any, Any, Any]]:
        """Changes that left a terminal status."""
        return [(c, old, new) for c, old, new in self.changes if old in TERMINAL]
