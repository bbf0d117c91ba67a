"""The benchmarks run end to end at a tiny scale: they must not rot between `make bench` runs.

This checks their shape and their own verification (each workload asserts its final values);
it asserts nothing about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module",
    [
        "benchmarks.storage_floor",
        "benchmarks.chain",
        "benchmarks.integrations_chain",
        "benchmarks.login_flood",
        "benchmarks.lock_latency",
        "benchmarks.migration_backfill",
    ],
)
def test_benchmark_prints_json_lines(module: str) -> None:
    lines = _json_lines(module)
    assert lines, "no benchmark output"
    for line in lines:
        assert {"workload", "n", "seconds", "ops_per_second"} <= set(line)
        assert line["n"] > 0 and line["seconds"] > 0


def _filtered_count_lines(lines: list[dict[str, Any]], backend: str) -> None:
    lines = [line for line in lines if line["backend"] == backend]
    assert [line["workload"] for line in lines] == ["filtered_count"] * 3
    sizes = [line["base_records"] for line in lines]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert lines[0]["cost_ratio_to_smallest"] == 1.0
    for line in lines:
        assert {"workload", "n", "seconds", "ops_per_second"} <= set(line)
        assert line["n"] > 0 and line["seconds"] > 0
        assert line["median_write_us"] > 0 and line["cost_ratio_to_smallest"] > 0


def test_filtered_count_reports_each_base_size() -> None:
    lines = _json_lines("benchmarks.filtered_count", FILTERED_COUNT_BACKENDS="sqlite")
    _filtered_count_lines(lines, "sqlite")


def test_filtered_count_on_postgres_reports_each_base_size(postgres_url: str) -> None:
    lines = _json_lines(
        "benchmarks.filtered_count",
        FILTERED_COUNT_BACKENDS="postgres",
        INTERAQT_TEST_PG=postgres_url,
    )
    assert {line["backend"] for line in lines} == {"postgres"}
    _filtered_count_lines(lines, "postgres")


def test_postgres_driver_benchmark_prints_json_lines(postgres_url: str) -> None:
    """The PostgreSQL execution-model benchmark (needs the server; skipped without it)."""
    lines = _json_lines("benchmarks.pg_driver", INTERAQT_TEST_PG=postgres_url)
    assert {line["workload"] for line in lines} == {"pg_tx25_bridge", "pg_tx25_psycopg_pool"}
    assert {line["connections"] for line in lines} == {1, 8}
    for line in lines:
        assert line["n"] > 0 and line["seconds"] > 0


def test_postgres_chain_benchmark_prints_json_lines(postgres_url: str) -> None:
    """The engine workloads on PostgreSQL beside their asyncpg floors (needs the server)."""
    lines = _json_lines("benchmarks.pg_chain", INTERAQT_TEST_PG=postgres_url)
    by_workload = {line["workload"]: line for line in lines}
    assert set(by_workload) == {
        "pg_chain",
        "pg_chain_floor",
        "pg_chain_outbox",
        "pg_count_growth",
        "pg_count_floor",
        "pg_summation",
        "pg_summation_floor",
    }
    for line in lines:
        assert line["n"] > 0 and line["seconds"] > 0
    for workload in ("pg_chain", "pg_count_growth", "pg_summation"):
        assert by_workload[workload]["ratio_to_floor"] > 0
    # the floor's statements are known: 3 transactions of 7, 13 and 3 (BEGIN, COMMIT included)
    assert by_workload["pg_chain_floor"]["statements_per_chain"] == 23
    assert by_workload["pg_chain_floor"]["transactions_per_chain"] == 3
    # the engine's chain sends BEGIN for the dispatch and the side effect's events; removing
    # the finished intent is one statement sent alone (a transaction without BEGIN)
    assert by_workload["pg_chain"]["transactions_per_chain"] >= 2
    assert by_workload["pg_chain"]["statements_per_chain"] >= 9
    # the outbox adds its appends (and the follower's reads) to the same chain, which its run
    # waited to see delivered from the outbox
    outbox = by_workload["pg_chain_outbox"]
    assert outbox["statements_per_chain"] > outbox["plain_statements_per_chain"] >= 9
    assert outbox["ratio_to_pg_chain"] > 0


def test_cluster_chain_benchmark_prints_a_line_per_process_count(postgres_url: str) -> None:
    """The chain from 1, 2 and 4 real processes on one PostgreSQL (needs the server); each run
    verified every chain completed in the database before its line was printed."""
    lines = _json_lines("benchmarks.cluster_chain", INTERAQT_TEST_PG=postgres_url, CLUSTER_RUNS="1")
    assert [line["workload"] for line in lines] == ["cluster_chain"] * 3
    assert [line["processes"] for line in lines] == [1, 2, 4]
    assert len({line["n"] for line in lines}) == 1
    assert lines[0]["ratio_to_one_process"] == 1.0
    for line in lines:
        assert line["n"] > 0 and line["seconds"] > 0 and line["ratio_to_one_process"] > 0
        assert line["runs"] == 1 and line["load_average"] >= 0
        assert line["worker_cpu_ms_per_chain"] > 0 and 0 <= line["machine_busy"] <= 1
        # The server's CPU is read in /proc only where the server runs on this machine.
        assert line.get("postgres_cpu_ms_per_chain", 1) > 0
    if "postgres_cpu_ms_per_chain" in lines[0]:
        assert lines[0]["ratio_ceiling"] >= 1


def test_seam_cost_compares_two_checkouts() -> None:
    """The SQLite seam-cost comparison, here of this checkout with itself: per workload one
    line per checkout, each with its CPU per op, its ratio to its floor and to the other."""
    lines = _json_lines("benchmarks.seam_cost", args=(str(ROOT), "--turns", "1"))
    assert [(line["workload"], line["checkout"]) for line in lines] == [
        (f"seam_cost_{workload}", checkout)
        for workload in ("chain", "count", "summation")
        for checkout in ("this", "other")
    ]
    for line in lines:
        assert line["n"] > 0 and line["seconds"] > 0 and line["turns"] == 1
        assert line["cpu_us_per_op"] > 0 and line["floor_cpu_us_per_op"] > 0
        assert line["ratio_to_floor"] > 0 and line["ratio_to_other"] > 0


def _json_lines(module: str, args: tuple[str, ...] = (), **env: str) -> list[dict[str, Any]]:
    """Run a benchmark module at a tiny scale; its JSON lines (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "BENCH_SCALE": "0.02", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
