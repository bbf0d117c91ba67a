"""Our engine beside the original interaqt framework (npm ``interaqt``), both on this PostgreSQL.

Workloads, the same on both sides (``benchmarks/original/bench.mjs`` builds the original's with
its own API, ``benchmarks/original/chain.mjs`` its chain; see their headers):
- ``chain``: the guide's chain of :func:`benchmarks.chain.run_chain` (dispatch, a side effect
  writing three events, a StateMachine and event-set values), N chains to all completed,
  verified. The original's differs where its API does (chain.mjs says how): its side effect
  runs after the dispatch commits and writes each event in its own transaction.
- ``count``: N likes one at a time on one post, ``Post.likes`` a Count over its ``liked_by``
  n:n relation; ``min(20, N)`` untimed likes on another post first; verified ``likes == N``.
- ``summation``: N items one at a time on one order, ``Order.total`` a WeightedSummation
  (quantity x price) over its 1:n ``items``; verified against the sum
  (:func:`benchmarks.chain.run_summation`).
Ours writes through ``controller.storage.create`` on ``PostgresStorage`` (one transaction per
write), in a fresh schema dropped afterwards (:mod:`benchmarks.pg_chain`'s helpers, which also
count the statements sent while timed). The original runs in a fresh database of its own (its
``PostgreSQLDB`` owns one), dropped afterwards, along two paths: ``dispatch`` (an Interaction
per like/item, a Transform creating the record: its documented normal path) and ``storage``
(``system.storage.create``: the same call ours times); both chains run by dispatch. Runs take
turns (ours, then the original's paths; RUNS times) and the median of each is reported, so slow
spells of this shared machine fall on all of them.

Lines: ``orig_side_<workload>`` (ours, with ``ratio_to_original``: our ops/s over the
original's dispatch path, the issue's comparison; ``ratio_to_original_storage_path``;
``cpu_seconds``: this process's CPU time while timed, as the original's scripts report their
own: a side mostly waiting on the server suffers more from a slow server than a side mostly
computing; ``goal_ratio_to_original``: the issue's goal; ``floor_ratio_to_original`` and, for
count and summation, ``one_trip_ratio_to_original``: the same ratio for the hand-written runs
of ``CEILINGS``, timed in the same turns: the most an engine could show here while it waits for
each statement's answer, and with a whole transaction in one round trip), then the original's
lines as its script printed them (its median run per path).
Needs ``node`` and ``benchmarks/original/node_modules``
(``npm ci --prefix benchmarks/original``, or ``make bench-original``); without them it prints
one line saying it skipped and exits 0. Server: ``INTERAQT_TEST_PG``.
Costs: the original does ~100 likes or items/s and ~10 chains/s here, so with the default N
(300 likes and items, 100 chains; ``BENCH_SCALE`` scales them) a full run takes about 2 min.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.chain import likes_controller, run_chain, run_summation
from benchmarks.common import Timer, report, scaled
from benchmarks.pg_chain import (
    _CHAIN_TABLES,
    _COUNT_TABLES,
    _SUM_TABLES,
    URL,
    CountingPostgres,
    Sent,
    _floor,
    _timed_engine,
    chain_floor,
    count_floor,
    count_one_trip,
    summation_floor,
    summation_one_trip,
)
from storage import Storage

RUNS = 3
ORIGINAL = Path(__file__).resolve().parent / "original"
PATHS = {
    "chain": ("dispatch",),
    "count": ("dispatch", "storage"),
    "summation": ("dispatch", "storage"),
}
"""The original's paths per workload (its chain is dispatch alone: a chain starts with one)."""
GOALS = {"chain": 20, "count": 10, "summation": 10}
"""The ratios to the original's dispatch path that issue 11 asks for."""
FloorRun = Callable[[Any, int, Callable[[], Timer]], Any]
CEILINGS: dict[str, dict[str, tuple[str, FloorRun]]] = {
    "chain": {"floor": (_CHAIN_TABLES, chain_floor)},
    "count": {
        "floor": (_COUNT_TABLES, count_floor),
        "one_trip": (_COUNT_TABLES, count_one_trip),
    },
    "summation": {
        "floor": (_SUM_TABLES, summation_floor),
        "one_trip": (_SUM_TABLES, summation_one_trip),
    },
}
"""Hand-written runs of the same rows (:mod:`benchmarks.pg_chain`), timed in the same turns:
``floor`` (the same statements through the same driver, each waiting for its answer) and
``one_trip`` (each unit's transaction sent as one round trip). Their ratios to the original are
the most any engine could show here with that many round trips."""


async def run_count(storage: Storage, n: int, timer: Callable[[], Timer] = Timer) -> float:
    """Seconds for ``n`` likes on one post (the model of ``run_count_growth``), after
    ``min(20, n)`` untimed likes on another post to warm the code paths and statement caches."""
    controller, link = await likes_controller(storage)
    the_post = await controller.storage.create("Post", {"title": "p"})
    warm_up = await controller.storage.create("Post", {"title": "warm-up"})
    fan = await controller.storage.create("User", {"name": "fan"})

    async def like(post_id: int) -> None:
        await controller.storage.create(
            link, {"source": {"id": post_id}, "target": {"id": fan["id"]}}
        )

    for _ in range(min(20, n)):
        await like(warm_up["id"])
    with timer() as t:
        for _ in range(n):
            await like(the_post["id"])
    final = await controller.storage.find_one("Post", {"id": the_post["id"]}, ["likes"])
    await controller.close()
    if final is None or final["likes"] != n:
        raise AssertionError(f"count: post {the_post['id']} has {final}, expected likes={n}")
    return t.seconds


class CpuTimer(Timer):
    """``inner`` (a wall-clock Timer) that also takes this process's CPU time (all threads) over
    the same window, as ``cpu_seconds``: ours runs in this process, so seconds - cpu_seconds is
    roughly time spent waiting on the server, as the original's script reports of its own."""

    def __init__(self, inner: Timer) -> None:
        self.inner = inner
        self.cpu_seconds = 0.0

    def __enter__(self) -> CpuTimer:
        self.inner.__enter__()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_seconds = time.process_time() - self._cpu
        self.inner.__exit__(*exc)
        self.seconds = self.inner.seconds


def original(workload: str, n: int, path: str) -> dict[str, Any]:
    """One run of the original's script: its JSON line; its stderr when it fails."""
    script = ["chain.mjs", str(n)] if workload == "chain" else ["bench.mjs", workload, str(n), path]
    done = subprocess.run(
        ["node", *script],
        cwd=ORIGINAL,
        capture_output=True,
        text=True,
        env={**os.environ, "INTERAQT_TEST_PG": URL},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"original {workload} ({path}) exited {done.returncode}: {done.stderr.strip()}"
        )
    line: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return line


async def _ceiling(tables: str, run: FloorRun, n: int) -> float:
    """Seconds of one hand-written run of ``n`` units in a fresh schema holding ``tables``."""

    async def timed(conn: Any, timer: Callable[[], Timer]) -> float:
        seconds: float = await run(conn, n, timer)
        return seconds

    seconds, _sent = await _floor(tables, timed)
    return seconds


def _median_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(lines, key=lambda line: float(line["seconds"]))[len(lines) // 2]


async def side_by_side(workload: str, n: int) -> None:
    cpu: list[float] = []

    async def ours_once(store: CountingPostgres, timer: Callable[[], Timer]) -> float:
        timers: list[CpuTimer] = []

        def cpu_timer() -> Timer:
            timers.append(CpuTimer(timer()))
            return timers[-1]

        if workload == "chain":
            seconds = await run_chain(store, n, cpu_timer)
        elif workload == "count":
            seconds = await run_count(store, n, cpu_timer)
        else:
            seconds = await run_summation(store, n, cpu_timer)
        cpu.append(timers[-1].cpu_seconds)
        return seconds

    ours: list[tuple[float, Sent]] = []
    paths = PATHS[workload]
    theirs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    ceilings: dict[str, list[float]] = {name: [] for name in CEILINGS[workload]}
    for _ in range(RUNS):
        ours.append(await _timed_engine(ours_once))
        for name, (tables, run) in CEILINGS[workload].items():
            ceilings[name].append(await _ceiling(tables, run, n))
        for path in paths:
            theirs[path].append(original(workload, n, path))
    seconds = statistics.median(s for s, _ in ours)
    cpu_seconds = statistics.median(cpu)
    statements = statistics.median(sent[0] for _, sent in ours)
    trips = statistics.median(sent[3] for _, sent in ours)
    medians = {path: _median_line(lines) for path, lines in theirs.items()}
    ops = n / seconds
    theirs_ops = float(medians["dispatch"]["ops_per_second"])
    ceiling_ratios = {
        f"{name}_ratio_to_original": round(n / statistics.median(runs) / theirs_ops, 2)
        for name, runs in ceilings.items()
    }
    storage_path = (
        {
            "ratio_to_original_storage_path": round(
                ops / float(medians["storage"]["ops_per_second"]), 2
            )
        }
        if "storage" in medians
        else {}
    )
    report(
        f"orig_side_{workload}",
        n,
        seconds,
        ratio_to_original=round(ops / theirs_ops, 2),
        **storage_path,
        goal_ratio_to_original=GOALS[workload],
        **ceiling_ratios,
        statements_per_op=round(statements / n, 2),
        round_trips_per_op=round(trips / n, 2),
        cpu_seconds=round(cpu_seconds, 6),
        original_ops_per_second=medians["dispatch"]["ops_per_second"],
        runs=RUNS,
    )
    for path in paths:
        print(json.dumps({**medians[path], "runs": RUNS}), flush=True)


def missing() -> str | None:
    """Why the original cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (ORIGINAL / "node_modules" / "interaqt").is_dir():
        return f"{ORIGINAL / 'node_modules'} is missing (npm ci --prefix benchmarks/original)"
    return None


async def main() -> None:
    why = missing()
    if why is not None:
        print(json.dumps({"workload": "orig_side", "skipped": why}), flush=True)
        return
    await side_by_side("chain", scaled(100))
    n = scaled(300)
    await side_by_side("count", n)
    await side_by_side("summation", n)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
