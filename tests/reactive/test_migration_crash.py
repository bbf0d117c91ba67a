"""A process killed (SIGKILL) in the middle of a migration's backfill leaves the old model's
data intact, and the next ``setup()`` completes the migration. Real processes, a real file.

SQLite only: the property is the file's (a writer killed inside its write transaction leaves
the journal to roll back, and the dump is sqlite3's own, the schema's SQL included). The
behaviour-level migration tests (tests/reactive/test_migration*.py) run on both backends."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import reactive as r
from tests.reactive.migration_helpers import Database, open_controller, sqlite_dump
from tests.reactive.migration_worker import model

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def seed(path: str) -> None:
    c = await open_controller(Database("sqlite", path), *model(False))
    try:

        def body(ctx: r.TransactionContext) -> None:
            for h in range(20):
                host = ctx.storage.create("Host", {"name": f"h{h}"})
                for i in range(h):
                    ctx.storage.create("Item", {"val": i, "host": {"id": host["id"]}})

        await c.transact(body)
    finally:
        await c.close()


def wait_for(proc: subprocess.Popen[str], wanted: str) -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line == wanted:
            return
    proc.kill()
    pytest.fail(f"the worker did not print {wanted!r}; it printed {seen!r}")


async def test_a_kill_in_the_middle_of_a_backfill_changes_nothing_and_setup_finishes(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "app.db")
    await seed(path)
    before = sqlite_dump(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reactive.migration_worker", path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for(proc, "BACKFILLING")  # the new columns exist inside its open transaction
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()

    assert sqlite_dump(path) == before  # the old model's tables, rows and manifest, untouched

    c = await open_controller(Database("sqlite", path), *model(True))
    try:
        hosts = await c.storage.find("Host", None, ["name", "n", "w"], order_by={"id": "asc"})
        assert [(h["n"], h["w"]) for h in hosts] == [(k, 2 * sum(range(k))) for k in range(20)]
        assert await c.storage.get_dict("items") == sum(range(20))
        assert (await c.verify()).ok
        assert (await c.plan_migration()).changes == []
    finally:
        await c.close()
