"""One leader for periodic work across real processes on one PostgreSQL schema.

Three processes (``leader_worker.py``) run the same integration; its deadline sweeper must run
in exactly one of them (every journaled sweep comes from one pid), and fail a call stuck past
its deadline. The leader is SIGKILLed: its advisory lock goes with its connection, another
process takes the leadership at its next try, and its sweeper fails a call stuck after the
kill. Waits are bounded loops on what the processes wrote (no timing asserts): the bound,
TAKEOVER, is the leadership retry plus the call deadline plus a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from tests.conftest import dispose_postgres, open_postgres

from . import leader_worker as worker
from .app import CALL, OWNER, start

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
TAKEOVER = worker.RETRY + worker.DEADLINE + worker.SWEEP + 5.0
START = 60.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def wait_until(check: Any, what: str, bound: float) -> None:
    give_up = time.monotonic() + bound
    while not await check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} did not happen within {bound} s")
        await asyncio.sleep(0.05)


async def stuck_call(controller: r.Controller) -> Any:
    """A call nobody submits (this process has no integration): only the sweeper ends it."""
    call = await controller.storage.create(CALL, {"request_params": {"n": 1}, "owner_id": OWNER})
    return call["id"]


async def status(controller: r.Controller, call_id: Any) -> Any:
    call = await controller.storage.find_one(CALL, {"id": call_id}, ["status"])
    assert call is not None
    return call["status"]


async def test_one_process_sweeps_and_another_takes_over_when_it_is_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    storage = await open_postgres(postgres_url, pool_size=2)
    journal = str(tmp_path / "sweeps")
    procs: list[subprocess.Popen[str]] = []
    controller, _ = await start(storage)  # the tables exist before the workers start
    try:
        schema = storage.schema_name
        assert schema is not None
        for n in range(WORKERS):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.integrations.leader_worker",
                        postgres_url,
                        schema,
                        journal,
                    ],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=(tmp_path / f"stderr{n}").open("w"),
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        pids = set()
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), START)
            assert line.startswith("READY "), line
            pids.add(int(line.split()[1]))

        async def swept(count: int) -> bool:
            return len(worker.read_sweeps(journal)) >= count

        await wait_until(lambda: swept(10), "ten sweeps", START)
        first = await stuck_call(controller)

        async def failed(call_id: Any) -> bool:
            return bool(await status(controller, call_id) == "failed")

        await wait_until(lambda: failed(first), "the leader failing a stuck call", TAKEOVER)
        sweeps = worker.read_sweeps(journal)
        leaders = {pid for pid, _, _ in sweeps}
        assert len(leaders) == 1 and leaders <= pids, sweeps  # one process sweeps
        (leader,) = leaders
        assert sum(n for pid, _, n in sweeps) >= 1  # and it was that one that failed the call

        victim = next(p for p in procs if p.pid == leader)
        os.kill(leader, signal.SIGKILL)
        victim.wait(START)
        killed_at = time.time()
        second = await stuck_call(controller)

        async def taken_over() -> bool:
            return any(pid != leader for pid, _, _ in worker.read_sweeps(journal))

        await wait_until(taken_over, "another process sweeping", TAKEOVER)
        await wait_until(lambda: failed(second), "the new leader failing a stuck call", TAKEOVER)
        after = [(pid, at) for pid, at, _ in worker.read_sweeps(journal) if pid != leader]
        assert all(at >= killed_at for _, at in after)  # nobody else swept while it led
        successors = {pid for pid, _ in after}
        assert len(successors) == 1 and successors <= pids - {leader}, after
        # The dead leader swept no more, and the new one keeps sweeping alone.
        count = len(worker.read_sweeps(journal))
        await wait_until(lambda: swept(count + 5), "five more sweeps", TAKEOVER)
        later = worker.read_sweeps(journal)[count:]
        assert {pid for pid, _, _ in later} == successors
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(START)
            if proc.stdout is not None:
                proc.stdout.close()
        await controller.close()
        await dispose_postgres(storage)
