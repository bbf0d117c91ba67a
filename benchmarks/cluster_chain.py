"""``cluster_chain``: the chain of :mod:`benchmarks.chain` dispatched from 1, 2 and 4 processes
on one PostgreSQL, each process with ``Controller`` on ``PostgresStorage(concurrent_writes=True)``
and :data:`CONCURRENCY` dispatch loops of its own (a server process taking concurrent requests).

One line per process count: ``n`` chains in all (split evenly between the processes),
``seconds`` from the moment every process was told to start (all set up, idle) until every chain
is completed in the database, verified there (every ``TTSCall`` completed, every ``Greeting``
with its voice URL, no side-effect intent left: intents are leased across processes, so a chain
may finish in another process than the one that dispatched it), ``processes``,
``concurrency_per_process``, and ``ratio_to_one_process`` (the one-process seconds over these
seconds: the throughput gained). Runs take turns (1, 2, 4, 1, 2, 4, ...), :data:`RUNS` of each,
each in a fresh PostgreSQL schema dropped afterwards; the median is reported. Process start-up
and set-up are not timed. ``load_average``: the machine's 1-minute load when the line was
printed (the database shares the cores with the processes and with anything else running).

Server: ``INTERAQT_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
A worker is this module run with ``--worker SCHEMA N``: it sets up, prints ``ready``, waits for
a line on stdin, dispatches its ``N`` chains, drains its queue and prints ``done``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg

import reactive as r
from benchmarks.chain import chain_model, r_match_not_null, tts_side_effect
from benchmarks.common import report, scaled
from storage import PostgresStorage

URL = os.environ.get("INTERAQT_TEST_PG", "").strip() or "postgresql://postgres@127.0.0.1:5432/test"
PROCESSES = (1, 2, 4)
CONCURRENCY = 4
RUNS = max(1, int(os.environ.get("CLUSTER_RUNS", "2")))
"""Runs of each process count (``CLUSTER_RUNS``, default 2; the smoke test runs one)."""
START_TIMEOUT = 120.0
SETTLE_POLLS = 30_000
"""Bound on the looks (2 ms apart) at the database for the last chains to complete."""


def _controller(schema: str, *, run_here: bool = True) -> r.Controller:
    entities, relations, interactions = chain_model()
    return r.Controller(
        PostgresStorage(URL, schema=schema, pool_size=CONCURRENCY + 2, concurrent_writes=True),
        entities,
        relations,
        interactions=interactions,
        side_effects=[
            r.RecordMutationSideEffect("tts", "TTSCall", tts_side_effect, on=("create",))
        ],
        side_effect_leases=r.SideEffectLeases(run_here=run_here),
    )


async def _worker(schema: str, n: int) -> None:
    controller = _controller(schema)
    await controller.setup()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    remaining = iter(range(n))

    async def dispatch_loop() -> None:
        for i in remaining:  # the loops share one iterator: n dispatches in all
            result = await controller.dispatch("Greet", {"id": 1}, {"text": f"hello {i}"})
            assert result.error is None, result.error

    await asyncio.gather(*(dispatch_loop() for _ in range(CONCURRENCY)))
    await controller.drain()
    print("done", flush=True)
    await controller.close()


async def _line(process: asyncio.subprocess.Process, expected: str) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(START_TIMEOUT):
        line = (await process.stdout.readline()).decode().strip()
    if line != expected:
        raise RuntimeError(
            f"cluster_chain worker {process.pid}: expected {expected!r}, got {line!r}"
        )


async def _settled(controller: r.Controller, n: int) -> tuple[int, int, int]:
    """Completed calls, voice URLs and intents left, once all are final (bounded)."""
    for _ in range(SETTLE_POLLS):
        done = await controller.storage.count("TTSCall", {"status": "completed"})
        urls = await controller.storage.count("Greeting", r_match_not_null("voice_url"))
        left = len(await controller.side_effects.pending())
        if done >= n and urls >= n and not left:
            break
        await asyncio.sleep(0.002)
    return done, urls, left


async def run_cluster(processes: int, n: int) -> float:
    """Seconds for ``n`` chains dispatched from ``processes`` processes (see the module)."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(URL)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    # The parent creates the tables before the workers start, and runs no intent itself.
    observer = _controller(schema, run_here=False)
    workers: list[asyncio.subprocess.Process] = []
    try:
        await observer.setup()
        share = n // processes
        for _ in range(processes):
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.cluster_chain",
                    "--worker",
                    schema,
                    str(share),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for process in workers:
            await _line(process, "ready")
        start = time.perf_counter()
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        for process in workers:
            await _line(process, "done")
        done, urls, left = await _settled(observer, n)
        seconds = time.perf_counter() - start
        assert done == n and urls == n and not left, (done, urls, left)
        for process in workers:
            assert await process.wait() == 0
        return seconds
    finally:
        for process in workers:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await observer.close()
        connection = await asyncpg.connect(URL)
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()


async def main() -> None:
    n = max(PROCESSES) * max(1, scaled(800) // max(PROCESSES))
    seconds: dict[int, list[float]] = {p: [] for p in PROCESSES}
    for _ in range(RUNS):
        for processes in PROCESSES:
            seconds[processes].append(await run_cluster(processes, n))
    one = statistics.median(seconds[1])
    for processes in PROCESSES:
        median = statistics.median(seconds[processes])
        extra: dict[str, Any] = {
            "processes": processes,
            "concurrency_per_process": CONCURRENCY,
            "ratio_to_one_process": round(one / median, 2),
            "runs": RUNS,
            "load_average": round(os.getloadavg()[0], 2),
        }
        report("cluster_chain", n, median, **extra)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(_worker(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(main())
