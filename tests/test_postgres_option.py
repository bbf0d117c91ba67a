"""The PostgreSQL half of the suites: skipped with one line when the server cannot be reached,
and a FAILED run when ``INTERAQT_REQUIRE_PG`` is set (CI). Real pytest processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "postgresql://postgres:hunter2@127.0.0.1:1/test"


def test_needs_postgres(postgres_url: str) -> None:
    """The probe target of the runs below (and, run directly, a check that the server
    answers wherever the PostgreSQL half is expected to run)."""
    assert postgres_url.startswith("postgresql://")


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTERAQT_")}
    environment.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_postgres_option.py::test_needs_postgres",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_server_skips_the_postgres_half_with_one_line() -> None:
    done = _pytest(INTERAQT_TEST_PG=UNREACHABLE)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "PostgreSQL tests skipped" in line]
    assert len(lines) == 1, done.stdout
    assert "127.0.0.1:1" in lines[0]
    assert "1 skipped" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


def test_an_unreachable_server_fails_the_run_when_postgres_is_required() -> None:
    done = _pytest(INTERAQT_TEST_PG=UNREACHABLE, INTERAQT_REQUIRE_PG="1")
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "INTERAQT_REQUIRE_PG is set but PostgreSQL cannot be used" in output
    assert "127.0.0.1:1" in output
    assert "hunter2" not in output


def test_a_reachable_server_runs_the_postgres_half(postgres_url: str) -> None:
    done = _pytest(INTERAQT_TEST_PG=postgres_url, INTERAQT_REQUIRE_PG="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "PostgreSQL tests skipped" not in done.stdout
