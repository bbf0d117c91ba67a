"""What this checkout costs on SQLite next to another checkout (issue 11: "the seam must not
cost SQLite anything"), in CPU time, measured in turns in one run.

``python -m benchmarks.seam_cost /path/to/other/checkout [--turns 7]`` runs the SQLite
``chain``, ``count`` (likes on one post) and ``summation`` workloads of ``benchmarks.chain`` in
each checkout, with that checkout's own code and virtualenv (``<checkout>/.venv/bin/python``),
one process per workload per checkout per turn, the checkouts alternating within each turn.
Each process also runs the workload's plain-sqlite3 floor, so every turn gives both checkouts a
ratio to a floor measured moments apart.

CPU time (``time.process_time``, every thread of the process: the storage's worker included)
is the measure, not wall time: this machine is shared, and CPU time is what another process
taking the cores does not inflate much. Per workload and checkout the line carries the median
CPU microseconds per op over the turns, the median ratio to the floor, and this checkout's
ratio to the other's (``ratio_to_other``: the median over the turns of the two checkouts'
ratio in that turn); ``seconds`` and ``ops_per_second`` are in CPU time too. ``BENCH_SCALE``
scales every n.

On a machine shared with other work even CPU time moves by 10% and more from turn to turn;
take many turns, and for a figure that does not move, count instructions instead (the same
workloads under ``valgrind --tool=callgrind``).

``--instructions`` counts machine instructions instead (needs ``valgrind`` on the PATH): each
workload runs under ``valgrind --tool=callgrind`` in each checkout at n and at 2n
(``INSTRUCTION_WORKLOADS``, smaller: callgrind runs some 50x slower), and the difference of the
two processes' totals over n is the instructions of one op with the process's start, imports and
setup cancelled out. The garbage collector is collected and switched off when the timed region
starts (a collection falling inside the window or not moves a count by more than the
differences measured), and ``PYTHONHASHSEED=0``: the same checkout gives the same count to a few
parts in ten thousand. One JSON line per workload and checkout, ``instructions_per_op`` and
``ratio_to_other``; the floors are not run. The two checkouts' processes run side by side
(instruction counts do not depend on the machine's load).

Works on checkouts from before the seam (whose workloads take a path) and after (a storage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import report, scaled

# The body of one measuring process, run with the checkout's own interpreter in its directory:
# argv is the workload, n and the mode ("cpu", or "instructions": the garbage collector off from
# the first timed region on, no floor); prints one JSON object {"engine": cpu seconds, "floor":
# ...}.
_TURN = r"""
import asyncio, gc, inspect, json, statistics, sys, tempfile, time
from pathlib import Path
import benchmarks.chain as bc

workload, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class CPUTimer:
    def __enter__(self):
        if mode == "instructions" and gc.isenabled():
            gc.collect()
            gc.disable()
        self._start = time.process_time()
        return self
    def __exit__(self, *exc):
        self.seconds = time.process_time() - self._start

bc.Timer = CPUTimer  # the workloads' own timed regions, in CPU time

def storage_for(fn, path):
    first = next(iter(inspect.signature(fn).parameters))
    if first == "path":
        return path  # before the seam: the workload opens the file itself
    from storage import SQLiteStorage
    return SQLiteStorage(str(path))

def engine(fn, path, *args):
    extra = {"timer": CPUTimer} if "timer" in inspect.signature(fn).parameters else {}
    return asyncio.run(fn(storage_for(fn, path), *args, **extra))

def floor(fn, path, n):
    if mode == "instructions":
        return 0.0
    start = time.process_time()
    fn(path, n)  # the floor's own wall timer is not used: the whole call is its statements
    return time.process_time() - start

with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    if workload == "chain":
        seconds = engine(bc.run_chain, root / "e.db", n)
        base = floor(bc.chain_floor, root / "f.db", n)
    elif workload == "summation":
        seconds = engine(bc.run_summation, root / "e.db", n)
        base = floor(bc.summation_floor, root / "f.db", n)
    else:  # count: n likes on one post (after a warm-up of n on another), timed like by like
        ((_, seconds, _, _),) = engine(bc.run_count_growth, root / "e.db", [n], n)
        base = floor(bc.count_floor, root / "f.db", n)
print(json.dumps({"engine": seconds, "floor": base}))
"""

WORKLOADS = (("chain", 300), ("count", 400), ("summation", 1000))
"""Each workload and its n per process (the count's: likes on the big post)."""
INSTRUCTION_WORKLOADS = (("chain", 100), ("count", 100), ("summation", 200))
"""Each workload's n under ``--instructions`` (each also runs at 2n)."""


def _python(checkout: Path) -> Path:
    """The checkout's own ``.venv`` interpreter (this one where it has none)."""
    python = checkout / ".venv" / "bin" / "python"
    return python if python.exists() else Path(sys.executable)


def turn(checkout: Path, workload: str, n: int) -> dict[str, float]:
    """One process of ``checkout`` running ``workload``: its engine and floor CPU seconds."""
    done = subprocess.run(
        [str(_python(checkout)), "-c", _TURN, workload, str(n), "cpu"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{checkout} {workload} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _instructions_start(checkout: Path, workload: str, n: int) -> subprocess.Popen[str]:
    """Start one process of ``checkout`` running ``workload`` under callgrind."""
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            str(_python(checkout)),
            "-c",
            _TURN,
            workload,
            str(n),
            "instructions",
        ],
        cwd=checkout,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _instructions_total(process: subprocess.Popen[str], what: str) -> int:
    """The instructions the process ran in all (callgrind's ``Collected`` line)."""
    stdout, stderr = process.communicate(timeout=3600)
    found = re.search(r"Collected : (\d+)", stderr)
    if process.returncode != 0 or found is None:
        raise SystemExit(f"{what} failed under callgrind:\n{stderr[-4000:]}{stdout[-2000:]}")
    return int(found.group(1))


def instructions(checkouts: dict[str, Path]) -> None:
    """Per workload and checkout: the instructions of one op (see the module docstring)."""
    for workload, base_n in INSTRUCTION_WORKLOADS:
        n = max(10, scaled(base_n))
        per_op: dict[str, float] = {}
        for size in (n, 2 * n):  # both checkouts side by side
            running = {
                label: _instructions_start(path, workload, size)
                for label, path in checkouts.items()
            }
            for label, process in running.items():
                total = _instructions_total(process, f"{checkouts[label]} {workload} {size}")
                per_op[label] = per_op.get(label, 0) + (total if size > n else -total)
        for label in checkouts:
            other = "other" if label == "this" else "this"
            print(
                json.dumps(
                    {
                        "workload": f"seam_cost_{workload}_instructions",
                        "n": n,
                        "checkout": label,
                        "path": str(checkouts[label]),
                        "instructions_per_op": round(per_op[label] / n),
                        "ratio_to_other": round(per_op[label] / per_op[other], 4),
                    }
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other checkout (with its own .venv)")
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of CPU time",
    )
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts = {"this": here, "other": args.other.resolve()}
    if args.instructions:
        instructions(checkouts)
        return
    for workload, base_n in WORKLOADS:
        n = max(10, scaled(base_n))
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
        for i in range(args.turns):
            # Alternate which goes first, so neither always follows the other.
            order = list(checkouts) if i % 2 == 0 else list(reversed(checkouts))
            for label in order:
                runs[label].append(turn(checkouts[label], workload, n))
        per_op = {
            label: statistics.median(r["engine"] for r in results) / n
            for label, results in runs.items()
        }
        # Each turn's pair ran moments apart: the median of their ratios is steadier than the
        # ratio of the medians when the machine's speed drifts between turns.
        paired = statistics.median(
            a["engine"] / b["engine"] for a, b in zip(runs["this"], runs["other"], strict=True)
        )
        for label, results in runs.items():
            report(
                f"seam_cost_{workload}",
                n,
                per_op[label] * n,  # CPU seconds (the median turn's), not wall time
                checkout=label,
                path=str(checkouts[label]),
                turns=args.turns,
                cpu_us_per_op=round(per_op[label] * 1e6, 1),
                floor_cpu_us_per_op=round(
                    statistics.median(r["floor"] for r in results) / n * 1e6, 1
                ),
                ratio_to_floor=round(
                    statistics.median(r["engine"] / r["floor"] for r in results), 2
                ),
                ratio_to_other=round(paired if label == "this" else 1 / paired, 3),
            )


if __name__ == "__main__":
    main()
