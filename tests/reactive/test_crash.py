"""Durable create side effects survive SIGKILL: real processes, a real SQLite file.

``crash_worker.py`` (run with ``python -m tests.reactive.crash_worker``) writes ``Item`` records
whose create side effect journals its idempotency key to a file (fsync'd). The test kills it with
SIGKILL at a point the worker announced on stdout (no sleeps):

(a) after records committed, before any handler started, and while every handler was blocked
    before journaling;
(b) in the middle of a batch of writes: earlier batches finished, the last committed batch's
    handlers not started, the next batch open in its transaction; and at arbitrary points of a
    stream of writes whose handlers run concurrently;
(c) inside the handlers, after they journaled.

Then, in this process, it first looks at what the crash left (a controller without the side
effect: the pending intents), and a fresh controller with the side effect on the same file runs
``setup()`` and ``drain()``. Every committed record's side effect must have run to completion
(its key in the journal, nothing pending or dead), nothing uncommitted may ever have run (every
journaled key names a record that exists, and the records of the interrupted transaction do not),
exactly the intents left pending are run again, and a key is journaled twice only where the
handler had journaled before the kill and not been marked done (case c; in the stream, a
handler that finished in the loop turn before the kill). A second restart runs nothing.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

import reactive as r
from reactive.side_effects import SideEffectRecord

from . import crash_worker as worker

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
BY_ID = {"id": "asc"}
# The killed worker's intents stay leased to it for the lease duration (30 s by default); a
# restart that comes later takes them over. These tests are about what a crash leaves, not
# about leases (test_leases.py is), so the restarted controllers read a clock an hour ahead:
# the restart "comes later" without the wait.
LATER = r.SideEffectLeases(clock=lambda: time.time() + 3600)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


class Worker:
    """A crash_worker subprocess whose stdout lines are read by a thread into a queue."""

    def __init__(
        self, db: Path, journal: Path, mode: str, stderr: Path, lease: float | None = None
    ):
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        lease_arg = [] if lease is None else [str(lease)]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reactive.crash_worker",
                str(db),
                str(journal),
                mode,
                *lease_arg,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, done: Callable[[str], bool]) -> str:
        """Read lines until ``done(line)``; fail on timeout or if the worker exits first."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                self.fail("timed out")
            if line is None:
                self.fail("the worker exited")
            self.lines.append(line)
            if done(line):
                return line

    def fail(self, why: str) -> NoReturn:
        self.kill()
        pytest.fail(
            f"{why}; worker stdout: {self.lines!r}; stderr:\n{self.stderr_path.read_text()}"
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT)
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def crash(tmp_path: Path) -> Any:
    """``crash(mode)``: start a worker on a fresh database and journal; killed at teardown."""
    started: list[Worker] = []

    def start(mode: str) -> Worker:
        w = Worker(tmp_path / "crash.db", tmp_path / "journal", mode, tmp_path / "stderr")
        started.append(w)
        w.expect(lambda line: line == "READY")
        return w

    yield start
    for w in started:
        w.kill()


def ids_of(line: str) -> list[int]:
    return [int(part) for part in line.split()[1:]]


@dataclass
class Recovery:
    """What the crash left (intents pending, items), and what a fresh controller made of it."""

    pending_at_crash: list[str] = field(default_factory=list)
    items_at_crash: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    total: Any = None
    pending: list[SideEffectRecord] = field(default_factory=list)
    dead: list[SideEffectRecord] = field(default_factory=list)


async def _recover(db: Path, journal: Path) -> Recovery:
    out = Recovery()
    # 1. Look without running anything: a controller that does not declare the side effect
    #    leaves its intents pending (and logs that it does).
    look = worker.build(str(db), str(journal), "look", with_side_effect=False)
    await look.setup()
    try:
        out.pending_at_crash = [p.key for p in await look.side_effects.pending()]
        out.items_at_crash = [i["id"] for i in await look.storage.find("Item", order_by=BY_ID)]
    finally:
        await look.close()
    # 2. Restart for real.
    controller = worker.build(str(db), str(journal), "recovered", leases=LATER)
    await controller.setup()
    try:
        await controller.drain()
        out.pending = await controller.side_effects.pending()
        out.dead = await controller.side_effects.dead()
        out.items = [i["id"] for i in await controller.storage.find("Item", order_by=BY_ID)]
        out.total = await controller.storage.get_dict("item_total")
    finally:
        await controller.close()
    return out


async def _restart_again(db: Path, journal: Path) -> None:
    controller = worker.build(str(db), str(journal), "again", leases=LATER)
    await controller.setup()
    try:
        await controller.drain()
        assert await controller.side_effects.pending() == []
    finally:
        await controller.close()


def recover(db: Path, journal: Path) -> Recovery:
    """Recover in this process (its own event loop), then check the invariants every case
    shares; returns what was found for the case-specific checks."""
    crashed_journal = worker.read_journal(str(journal))
    assert {label for label, _ in crashed_journal} <= {"crashed"}
    found = asyncio.run(_recover(db, journal))
    entries = worker.read_journal(str(journal))
    assert entries[: len(crashed_journal)] == crashed_journal
    crashed = [key for _, key in crashed_journal]
    recovered = [key for label, key in entries[len(crashed_journal) :]]
    assert {label for label, _ in entries[len(crashed_journal) :]} <= {"recovered"}

    committed = {worker.item_key(i) for i in found.items}
    # The restart changed no data, and the derived value committed with the records.
    assert found.items == found.items_at_crash
    assert found.total == len(found.items)
    # Completion: every committed record's side effect ran and nothing is left pending or dead.
    assert committed <= set(crashed) | set(recovered)
    assert found.pending == [] and found.dead == []
    # Nothing uncommitted ever ran: each journaled key names a record that exists.
    assert set(crashed) | set(recovered) <= committed
    # The restart ran exactly the intents the crash left pending, once each.
    assert sorted(recovered) == sorted(found.pending_at_crash)
    assert len(set(recovered)) == len(recovered)
    # (So a handler that finished before the crash, its intent removed, was not run again.)
    assert len(set(crashed)) == len(crashed)
    # A second restart has nothing left to do.
    asyncio.run(_restart_again(db, journal))
    assert worker.read_journal(str(journal)) == entries
    return found


def duplicates(journal: Path) -> set[str]:
    counts = Counter(key for _, key in worker.read_journal(str(journal)))
    return {key for key, n in counts.items() if n > 1}


# -- (a) committed, handlers not run ---------------------------------------------------------


def test_kill_after_commit_before_any_handler_started(crash: Any, tmp_path: Path) -> None:
    w = crash("committed")
    ids = ids_of(w.expect(lambda line: line.startswith("COMMITTED")))
    w.kill()
    assert w.proc.returncode == -signal.SIGKILL
    assert worker.read_journal(str(tmp_path / "journal")) == []

    found = recover(tmp_path / "crash.db", tmp_path / "journal")
    assert found.items == ids
    assert sorted(found.pending_at_crash) == sorted(worker.item_key(i) for i in ids)
    assert duplicates(tmp_path / "journal") == set()


def test_kill_while_every_handler_is_blocked_before_journaling(crash: Any, tmp_path: Path) -> None:
    w = crash("handlers-blocked")
    ids = ids_of(w.expect(lambda line: line.startswith("COMMITTED")))
    keys = {worker.item_key(i) for i in ids}
    started: set[str] = set()

    def all_started(line: str) -> bool:
        if line.startswith("STARTED "):
            started.add(line.split(" ", 1)[1])
        return started >= keys

    w.expect(all_started)
    w.kill()
    assert started == keys
    assert worker.read_journal(str(tmp_path / "journal")) == []

    found = recover(tmp_path / "crash.db", tmp_path / "journal")
    assert found.items == ids
    assert sorted(found.pending_at_crash) == sorted(keys)
    assert duplicates(tmp_path / "journal") == set()


# -- (b) in the middle of a batch of writes --------------------------------------------------


def test_kill_inside_a_write_transaction_between_batches(crash: Any, tmp_path: Path) -> None:
    w = crash("mid-batch")
    last_committed = ids_of(w.expect(lambda line: line.startswith("COMMITTED")))
    uncommitted = ids_of(w.expect(lambda line: line.startswith("IN-TRANSACTION")))
    w.kill()
    journal = tmp_path / "journal"
    # Batches 1 and 2 finished their side effects before the kill.
    done_before = [key for _, key in worker.read_journal(str(journal))]
    assert len(done_before) == 8

    found = recover(tmp_path / "crash.db", journal)
    # The open transaction left nothing: no records, no derived value, no side effect.
    assert not set(uncommitted) & set(found.items)
    assert found.items[-4:] == last_committed
    assert len(found.items) == 12 and found.total == 12
    keys = Counter(key for _, key in worker.read_journal(str(journal)))
    assert not {worker.item_key(i) for i in uncommitted} & set(keys)
    # Exactly the last committed batch was left pending, and it ran once after the restart.
    assert sorted(found.pending_at_crash) == sorted(worker.item_key(i) for i in last_committed)
    assert duplicates(journal) == set()


@pytest.mark.parametrize("kill_after", [1, 25, 120])
def test_kill_at_an_arbitrary_point_of_a_stream_of_writes(
    crash: Any, tmp_path: Path, kill_after: int
) -> None:
    """No chosen point: the handlers run between the writes, and the kill lands wherever the
    worker is after it reported ``kill_after`` committed items (often inside a transaction)."""
    w = crash("stream")
    w.expect(lambda line: line.startswith("PROGRESS") and int(line.split()[1]) >= kill_after)
    w.kill()
    journal = tmp_path / "journal"
    crashed = {key for _, key in worker.read_journal(str(journal))}

    found = recover(tmp_path / "crash.db", journal)
    assert len(found.items) >= kill_after
    # At-least-once: a key runs twice only if its handler had journaled but its intent was
    # still pending when the process died (finished in the loop turn before the kill).
    assert duplicates(journal) <= crashed & set(found.pending_at_crash)


# -- (c) inside the handler, after its external effect ---------------------------------------


def test_kill_inside_handlers_after_they_journaled(crash: Any, tmp_path: Path) -> None:
    w = crash("in-handler")
    ids = ids_of(w.expect(lambda line: line.startswith("COMMITTED")))
    keys = {worker.item_key(i) for i in ids}
    journaled: set[str] = set()

    def all_journaled(line: str) -> bool:
        if line.startswith("JOURNALED "):
            journaled.add(line.split(" ", 1)[1])
        return journaled >= keys

    w.expect(all_journaled)
    w.kill()
    journal = tmp_path / "journal"
    assert sorted(key for _, key in worker.read_journal(str(journal))) == sorted(keys)

    found = recover(tmp_path / "crash.db", journal)
    assert found.items == ids
    # None finished, so every one runs again: at-least-once, with the same key.
    assert sorted(found.pending_at_crash) == sorted(keys)
    assert duplicates(journal) == keys
    counts = Counter(key for _, key in worker.read_journal(str(journal)))
    assert set(counts.values()) == {2}
