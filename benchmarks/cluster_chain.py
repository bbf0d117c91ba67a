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

Where the time goes (when the server runs on this machine, so its processes' CPU can be read
in ``/proc``; otherwise these fields are left out): ``worker_cpu_ms_per_chain`` (the worker
processes' CPU, user and system, from go to done, per chain), ``postgres_cpu_ms_per_chain``
(the CPU of the server processes serving the workers' pooled connections, over the same span;
left out, with ``ratio_ceiling``, when it reads 0: ``/proc`` counts in clock ticks of 10 ms,
more than a tiny run's server may spend),
``machine_busy`` (the share of all cores busy meanwhile, anything else running included), and
on the one-process line ``ratio_ceiling``: the most any number of processes could gain over
one on this machine's ``cores`` if they were this workload's alone and the CPU per chain stayed
as measured with one process (``w`` worker, ``p`` server): one process (one thread) completes
at most ``1 / w`` chains a second, any number at most ``cores / (w + p)``, so the ceiling is
``max(1, cores * w / (w + p))``. Measured here the two CPU figures are about equal, so one
process and its server already keep two cores busy: on a 2-core machine the ceiling is near 1
whatever is tuned, short of cutting the server's CPU per chain to about half the worker's
(fewer statements per chain). Other load on the machine only lowers what is left.

Server: ``INTERAQT_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
A worker is this module run with ``--worker SCHEMA N``: it sets up, prints ``ready``, waits for
a line on stdin, dispatches its ``N`` chains, drains its queue and prints ``done``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import attrs

import reactive as r
from benchmarks.chain import chain_model, r_match_not_null, tts_side_effect
from benchmarks.common import report, scaled
from storage import PostgresStorage

URL = os.environ.get("INTERAQT_TEST_PG", "").strip() or "postgresql://postgres@127.0.0.1:5432/test"
PROCESSES = (1, 2, 4)
CONCURRENCY = max(1, int(os.environ.get("CLUSTER_CONCURRENCY", "4")))
"""Dispatch loops per process (``CLUSTER_CONCURRENCY``, default 4; the pool has two more
connections)."""
RUNS = max(1, int(os.environ.get("CLUSTER_RUNS", "2")))
"""Runs of each process count (``CLUSTER_RUNS``, default 2; the smoke test runs one)."""
TICKS = os.sysconf("SC_CLK_TCK")
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


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user and system) process ``pid`` has used, or None where it cannot be read
    (another machine's, or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def _machine_ticks() -> tuple[int, int]:
    """All cores' (busy, total) clock ticks since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_pids(controller: r.Controller) -> list[int]:
    """The server processes of the storage's pooled connections (a benchmark's instrument: it
    reaches into the pool, which the library never exposes)."""
    pool = getattr(controller.backend, "_pool", None)
    idle = getattr(pool, "_idle", [])
    return [connection.raw.get_server_pid() for connection in idle]


async def _worker(schema: str, n: int) -> None:
    controller = _controller(schema)
    await controller.setup()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    own = _own_cpu()
    server_before = {pid: _process_cpu(pid) for pid in _server_pids(controller)}
    remaining = iter(range(n))

    async def dispatch_loop() -> None:
        for i in remaining:  # the loops share one iterator: n dispatches in all
            result = await controller.dispatch("Greet", {"id": 1}, {"text": f"hello {i}"})
            assert result.error is None, result.error

    await asyncio.gather(*(dispatch_loop() for _ in range(CONCURRENCY)))
    await controller.drain()
    # Every pooled connection is idle again: its server process's CPU since go (a connection
    # opened meanwhile counts from its start).
    server: float | None = 0.0
    for pid in _server_pids(controller):
        now, before = _process_cpu(pid), server_before.get(pid, 0.0)
        if now is None or before is None or server is None:
            server = None
        else:
            server += now - before
    print("done " + json.dumps({"cpu": _own_cpu() - own, "server_cpu": server}), flush=True)
    await controller.close()


async def _line(process: asyncio.subprocess.Process, expected: str) -> str:
    """The worker's next line, which must start with ``expected``: what follows it."""
    assert process.stdout is not None
    async with asyncio.timeout(START_TIMEOUT):
        line = (await process.stdout.readline()).decode().strip()
    if line.split(" ", 1)[0] != expected:
        raise RuntimeError(
            f"cluster_chain worker {process.pid}: expected {expected!r}, got {line!r}"
        )
    return line[len(expected) :].strip()


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


@attrs.frozen
class Run:
    """One timed run: its seconds, and where the CPU went (None where it cannot be read)."""

    seconds: float
    worker_cpu: float
    server_cpu: float | None
    machine_busy: float


async def run_cluster(processes: int, n: int) -> Run:
    """``n`` chains dispatched from ``processes`` processes (see the module)."""
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
        busy_before, total_before = _machine_ticks()
        start = time.perf_counter()
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        figures = [json.loads(await _line(process, "done")) for process in workers]
        done, urls, left = await _settled(observer, n)
        seconds = time.perf_counter() - start
        busy_after, total_after = _machine_ticks()
        assert done == n and urls == n and not left, (done, urls, left)
        for process in workers:
            assert await process.wait() == 0
        server = [f["server_cpu"] for f in figures]
        return Run(
            seconds,
            sum(f["cpu"] for f in figures),
            None if None in server else sum(server),
            (busy_after - busy_before) / max(1, total_after - total_before),
        )
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
    runs: dict[int, list[Run]] = {p: [] for p in PROCESSES}
    for _ in range(RUNS):
        for processes in PROCESSES:
            runs[processes].append(await run_cluster(processes, n))
    one = statistics.median(run.seconds for run in runs[1])
    for processes in PROCESSES:
        median = statistics.median(run.seconds for run in runs[processes])
        extra: dict[str, Any] = {
            "processes": processes,
            "concurrency_per_process": CONCURRENCY,
            "ratio_to_one_process": round(one / median, 2),
            "runs": RUNS,
            "load_average": round(os.getloadavg()[0], 2),
        }
        worker = statistics.median(run.worker_cpu for run in runs[processes]) / n
        extra["worker_cpu_ms_per_chain"] = round(worker * 1000, 2)
        server = statistics.median(run.server_cpu or 0.0 for run in runs[processes]) / n
        if server > 0 and all(run.server_cpu is not None for run in runs[processes]):
            extra["postgres_cpu_ms_per_chain"] = round(server * 1000, 2)
            if processes == 1:
                cores = os.cpu_count() or 1
                extra["ratio_ceiling"] = round(max(1.0, cores * worker / (worker + server)), 2)
        extra["machine_busy"] = round(
            statistics.median(run.machine_busy for run in runs[processes]), 2
        )
        report("cluster_chain", n, median, **extra)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(_worker(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(main())
