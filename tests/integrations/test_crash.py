"""Crash and restart: a worker process is killed with SIGKILL after committing its calls, and a
fresh controller on the same SQLite file makes them. Zero lost calls, zero double terminal
transitions, and the provider sees the same Idempotency-Key from both processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from integrations import PollPolicy
from integrations.testing import FakeClock, FakeProvider, Route
from tests.conftest import sqlite_only

from .app import call_events, greeting_value
from .conftest import MakeApp
from .helpers import Transitions, run_clock, settled, terminal
from .test_delivery import key_of

ROOT = Path(__file__).resolve().parents[2]
CALLS = 3


async def run_worker_until_stuck(
    db_path: str, provider: FakeProvider, mode: str, shape: str
) -> tuple[list[int], list[str]]:
    """Start the worker, wait until every call is committed and stuck in ``submit``, then
    SIGKILL it. Returns the committed call ids and the keys ``submit`` was given."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integrations.crash_worker",
        db_path,
        provider.url,
        mode,
        str(CALLS),
        shape,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    committed: list[int] = []
    keys: list[str] = []
    assert worker.stdout is not None
    try:
        async with asyncio.timeout(30):
            while len(committed) < CALLS or len(keys) < CALLS:
                line = (await worker.stdout.readline()).decode()
                if not line:
                    assert worker.stderr is not None
                    error = (await worker.stderr.read()).decode()
                    raise AssertionError(f"the worker ended early:\n{error}")
                word, value = line.split()
                if word == "COMMITTED":
                    committed.append(int(value))
                else:
                    keys.append(value)
    finally:
        worker.send_signal(signal.SIGKILL)
        assert await worker.wait() == -signal.SIGKILL
    return committed, keys


@sqlite_only("a worker process is killed while writing the SQLite file")
@pytest.mark.parametrize(
    ("mode", "shape"),
    [
        ("before_call", "sync"),
        ("before_call", "async"),
        ("after_call", "sync"),
        ("after_call", "async"),
    ],
)
async def test_calls_survive_a_sigkill(
    make_app: MakeApp,
    provider: FakeProvider,
    clock: FakeClock,
    db_path: str,
    mode: str,
    shape: str,
) -> None:
    provider.progression = ["processing", "completed"]
    call_ids, keys = await run_worker_until_stuck(db_path, provider, mode, shape)
    assert sorted(keys) == sorted(key_of(c) for c in call_ids)
    route: Route = "run" if shape == "sync" else "submit"
    made_before = len(provider.requests_to(route))
    assert made_before == (CALLS if mode == "after_call" else 0)

    options: dict[str, Any] = {"sync": shape == "sync"}
    if shape == "async":
        options.update(clock=clock, poll=PollPolicy(initial=1.0))
    # The killed worker's intents stay leased to it for 30 s; the restart reads a clock an
    # hour ahead, as a restart coming after that would (test_leases.py waits for real).
    app = await make_app(leases=r.SideEffectLeases(clock=lambda: time.time() + 3600), **options)
    transitions = Transitions(app.controller)
    for call_id in call_ids:
        if shape == "async":
            await run_clock(clock, terminal(app.controller, call_id))
        call = await settled(app.controller, call_id)
        assert call["status"] == "completed"  # zero lost calls
        # exactly one terminal transition, one terminal event
        assert transitions.terminal_transitions(call_id) == 1
        assert len(await call_events(app.controller, call_id, "completed")) == 1
        assert len(await call_events(app.controller, call_id, "initialized")) == 1
    assert transitions.regressions() == []

    requests = provider.requests_to(route)
    assert len(requests) == made_before + CALLS  # each call sent once more by the new process
    assert sorted(r.idempotency_key or "" for r in requests[made_before:]) == sorted(keys)
    # the provider did each call's work once
    assert len(provider.runs if shape == "sync" else provider.tasks) == CALLS
    await app.controller.drain()  # intents are removed just after their handler returns
    assert await app.controller.side_effects.pending() == []
    # the business values followed
    for call_id in call_ids:
        row = await app.controller.storage.find_one(
            "TaskCall", {"id": call_id}, ["response_data", ("greeting", ["id"])]
        )
        assert row is not None
        url = row["response_data"]["url"]
        assert await greeting_value(app.controller, row["greeting"]["id"]) == url
