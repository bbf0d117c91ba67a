"""Side effects across real processes on one PostgreSQL schema, one of them SIGKILLed.

This process writes INTENTS items (their intents unowned: ``run_here=False``) in transactions
of 25, and so wakes, by a NOTIFY after each commit, three worker processes
(``cluster_worker.py``) that claim them in batches (``FOR UPDATE SKIP LOCKED``, at most
MAX_HELD each) and run them, journaling each run's start and end with their lease owner. Once
the victim has finished some runs it is SIGKILLed. Then:

- every intent completes (its key journaled as ended; nothing pending or dead);
- no intent runs in two processes while its lease holds: the live workers never run one key
  twice, and a key the victim had run again elsewhere only starts after the kill;
- the duplicates are at most the kill's in-flight intents (those the victim held, pending, when
  it died), and every run carried its item's idempotency key.

``CLUSTER_INTENTS`` scales the count (1,000 by default: the issue's shape).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from tests.conftest import dispose_postgres, open_postgres

from . import cluster_worker as worker

ROOT = Path(__file__).resolve().parents[2]
INTENTS = int(os.environ.get("CLUSTER_INTENTS", "1000"))
WORKERS = 3
LEASE = 3.0
MAX_HELD = 8
BOUND = 60.0  # only stops a hang

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


class Proc:
    def __init__(self, url: str, schema: str, journal: Path, stderr: Path) -> None:
        self._stderr = stderr.open("w")
        self.stderr_path = stderr
        self.journal = str(journal)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reactive.cluster_worker",
                url,
                schema,
                str(journal),
                str(LEASE),
                str(MAX_HELD),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.owner = ""

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), BOUND)
        if not line.startswith("READY "):
            self.kill()
            pytest.fail(f"worker did not start: {line!r}\n{self.stderr_path.read_text()}")
        self.owner = line.split()[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(BOUND)
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def eventually(check: Any, what: str) -> None:
    give_up = time.monotonic() + BOUND
    while not await check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} did not happen within {BOUND} s")
        await asyncio.sleep(0.02)


def runs(procs: list[Proc]) -> list[tuple[str, str, int, str, float]]:
    return [row for p in procs for row in worker.read_journal(p.journal)]


async def test_three_processes_finish_every_intent_when_one_is_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    storage = await open_postgres(postgres_url, pool_size=3)
    writer = worker.build(storage, worker.leases(LEASE, run_here=False))
    procs: list[Proc] = []
    try:
        await writer.setup()  # the tables exist before the workers start
        schema = storage.schema_name
        assert schema is not None
        procs = [
            Proc(postgres_url, schema, tmp_path / f"journal{n}", tmp_path / f"stderr{n}")
            for n in range(WORKERS)
        ]
        for proc in procs:
            await proc.ready()
        victim, live = procs[0], procs[1:]

        async def kill_mid_run() -> tuple[float, set[str]]:
            """SIGKILL the victim once it has finished some runs and is running more."""

            async def busy() -> bool:
                rows = worker.read_journal(victim.journal)
                ended = {row[1] for row in rows if row[0] == "E"}
                running = {row[1] for row in rows if row[0] == "S"} - ended
                return len(ended) >= min(20, INTENTS // 20) and bool(running)

            await eventually(busy, "the victim running")
            victim.kill()  # SIGKILL: no release, no removal of what it finished
            killed_at = time.time()
            # What the victim held when it died (it can change nothing any more; its leases
            # last LEASE seconds more).
            held = await storage.find(
                "_SideEffect_", {"lease_owner": victim.owner, "status": "pending"}, ["key"]
            )
            return killed_at, {row["key"] for row in held}

        # Written while the workers run; the victim is killed mid-run meanwhile.
        killer = asyncio.get_running_loop().create_task(kill_mid_run())
        ids: list[Any] = []
        for start in range(0, INTENTS, 25):

            def body(ctx: r.TransactionContext, start: int = start) -> list[Any]:
                count = min(25, INTENTS - start)
                return [ctx.storage.create("Item", {"n": start + i})["id"] for i in range(count)]

            made, _ = await writer.transact(body)
            ids += made
        assert len(ids) == INTENTS
        killed_at, in_flight = await killer
        finished_before = {row[1] for row in runs(procs) if row[0] == "E"}
        assert len(finished_before) < INTENTS, "the kill came after the run: scale INTENTS up"

        async def all_done() -> bool:
            ended = {row[1] for row in runs(procs) if row[0] == "E"}
            return len(ended) == INTENTS and not await writer.side_effects.pending()

        await eventually(all_done, "every intent completing")
        assert await writer.side_effects.dead() == []

        journal = runs(procs)
        # Every run carried the idempotency key of its own item, and every item ran.
        assert all(key == worker.item_key(item_id) for _, key, item_id, _, _ in journal)
        assert {row[1] for row in journal if row[0] == "E"} == {worker.item_key(i) for i in ids}
        owners = {p.owner for p in procs}
        assert {row[3] for row in journal} <= owners
        starts: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for kind, key, _, owner, at in journal:
            if kind == "S":
                starts[key].append((owner, at))
        # The live workers never ran one key twice; the victim ran a key at most once.
        for key, by in starts.items():
            live_runs = [owner for owner, _ in by if owner != victim.owner]
            assert len(live_runs) <= 1, (key, by)
            assert len(by) - len(live_runs) <= 1, (key, by)
        duplicates = {key for key, by in starts.items() if len(by) > 1}
        # Run twice only what the victim held when it died, and elsewhere only after the kill
        # (its lease had to expire first).
        assert duplicates <= in_flight, duplicates - in_flight
        assert len(duplicates) <= len(in_flight)
        for key in duplicates:
            (retaken_at,) = [at for owner, at in starts[key] if owner != victim.owner]
            assert retaken_at >= killed_at, (key, starts[key], killed_at)
        # The victim's held intents were all taken over: each ended elsewhere.
        ended_live = {row[1] for row in journal if row[0] == "E" and row[3] != victim.owner}
        assert in_flight <= ended_live
        assert in_flight, "the victim held nothing when it died: nothing was taken over"
        # Work was spread by claims: every live worker ran intents.
        for proc in live:
            assert any(row[3] == proc.owner for row in journal), proc.owner
    finally:
        for proc in procs:
            proc.kill()
        await writer.close()
        await dispose_postgres(storage)
