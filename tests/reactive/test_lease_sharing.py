"""Side effects handed between controllers on one database (each with its own storage and
connections, as processes have), on both backends.

- A controller that writes with ``run_here=False`` leaves its intents unowned and wakes the
  claiming controllers after the commit: a worker whose polling is an hour apart runs them at
  once (on PostgreSQL through NOTIFY/LISTEN; on SQLite the in-process wake-up).
- ``pending()`` in one controller shows what another holds, with its lease owner; a dead side
  effect parked by the worker is in the writer's ``dead()``, and ``rerun(id)`` there hands it
  back to the worker, which runs it with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import reactive as r
from tests.conftest import StorageFactory

HOUR = 3600.0


def controller(
    storage: Any, leases: r.SideEffectLeases, handler: Any, max_attempts: int = 5
) -> r.Controller:
    item = r.Entity("Item", [r.Property("n", "number")])
    effect = r.RecordMutationSideEffect(
        "job", item, handler, on=("create",), max_attempts=max_attempts, backoff=0.001
    )
    return r.Controller(storage, [item], side_effects=[effect], side_effect_leases=leases)


async def eventually(check: Any, what: str, bound: float = 15.0) -> None:
    give_up = time.monotonic() + bound
    while not await check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} did not happen within {bound} s")
        await asyncio.sleep(0.01)


async def never(_event: r.MutationEvent, _controller: r.Controller) -> None:
    raise AssertionError("a controller with run_here=False ran a side effect")


async def test_a_writer_hands_its_intents_to_an_idle_worker(make_storage: StorageFactory) -> None:
    runs: list[str] = []
    gate = asyncio.Event()

    async def job(event: r.MutationEvent, _c: r.Controller, run: r.SideEffectRun) -> None:
        runs.append(run.idempotency_key)
        await gate.wait()

    # The worker polls once an hour: only a wake-up makes it claim in this test.
    worker = controller(make_storage("db"), r.SideEffectLeases(reclaim_every=HOUR), job)
    writer = controller(make_storage("db"), r.SideEffectLeases(run_here=False), never)
    await worker.setup()
    await writer.setup()
    try:
        assert await worker.side_effects.recover() == 0  # nothing to take yet
        made = await writer.storage.create("Item", {"n": 1})
        key = f"job:Item:{made['id']}"

        async def started() -> bool:
            return runs == [key]

        await eventually(started, "the worker running the written intent")
        # The writer sees it pending, held by the worker.
        (pending,) = await writer.side_effects.pending()
        assert pending.key == key and pending.lease_owner == worker.side_effects.owner
        gate.set()

        async def finished() -> bool:
            await worker.drain()
            return not await writer.side_effects.pending()

        await eventually(finished, "the intent being removed")
        assert runs == [key]
        assert await writer.side_effects.dead() == []
    finally:
        gate.set()
        await writer.close()
        await worker.close()


async def test_dead_side_effects_are_seen_and_rerun_from_another_controller(
    make_storage: StorageFactory,
) -> None:
    fail = [True]
    runs: list[tuple[str, int]] = []

    async def job(event: r.MutationEvent, _c: r.Controller, run: r.SideEffectRun) -> None:
        runs.append((run.idempotency_key, run.attempt))
        if fail[0]:
            raise RuntimeError("provider down")

    worker = controller(make_storage("db"), r.SideEffectLeases(reclaim_every=HOUR), job, 2)
    writer = controller(make_storage("db"), r.SideEffectLeases(run_here=False), never, 2)
    await worker.setup()
    await writer.setup()
    try:
        made = await writer.storage.create("Item", {"n": 1})
        key = f"job:Item:{made['id']}"

        async def parked() -> bool:
            await worker.drain()
            return len(await writer.side_effects.dead()) == 1

        await eventually(parked, "the side effect being parked as dead")
        (dead,) = await writer.side_effects.dead()
        assert dead.key == key and dead.attempts == 2 and dead.lease_owner is None
        assert "provider down" in (dead.last_error or "")
        assert runs == [(key, 1), (key, 2)]
        assert await writer.side_effects.pending() == []

        fail[0] = False
        await writer.side_effects.rerun(dead.id)  # unowned again; the worker is woken

        async def rerun_done() -> bool:
            await worker.drain()
            return len(runs) == 3 and not await writer.side_effects.pending()

        await eventually(rerun_done, "the worker running the re-run")
        assert runs[-1] == (key, 1)  # attempts start again, the key is the same
        assert await writer.side_effects.dead() == []
        with pytest.raises(LookupError, match="no dead side effect"):
            await writer.side_effects.rerun(dead.id)
    finally:
        await writer.close()
        await worker.close()


async def test_bad_lease_settings_are_refused() -> None:
    with pytest.raises(r.ModelError, match="run_here must be True or False"):
        r.SideEffectLeases(run_here="yes")  # type: ignore[arg-type]
    for bad in (0, -1, True, 1.5):
        with pytest.raises(r.ModelError, match="max_held must be a positive int"):
            r.SideEffectLeases(max_held=bad)  # type: ignore[arg-type]
