"""A process for test_crash.py to kill: writes records that have a durable create side effect.

    python -m tests.reactive.crash_worker DB JOURNAL MODE [LEASE]

The side effect ``notify`` on ``Item`` appends ``"<label> <idempotency key>"`` to JOURNAL (and
fsyncs it); ``Item`` also feeds a computed dictionary ``item_total`` (Count), so a record and
the values derived from it commit together. The worker reports on stdout, one line each, what
it has done, so the test can kill it at a known point without sleeping:

- ``committed``: creates 3 items one by one and 3 in one transaction, prints
  ``COMMITTED <ids>`` and blocks the event loop: the handlers are scheduled but never start.
- ``handlers-blocked``: the same writes; every handler prints ``STARTED <key>`` and then waits,
  before journaling, for a file that never appears.
- ``mid-batch``: batches of 4 items, one transaction each. Batches 1 and 2 commit and their side
  effects finish (``drain``); batch 3 commits (``COMMITTED <ids>``) and its handlers never
  start; batch 4 creates 2 items inside its transaction, prints ``IN-TRANSACTION <ids>`` and
  blocks there, before the commit.
- ``in-handler``: the same writes; every handler journals, prints ``JOURNALED <key>`` and then
  waits for a file that never appears.
- ``stream``: writes batches of 1-3 items without end, letting the handlers run between batches,
  and prints ``PROGRESS <count of committed items>`` after each commit.

Every mode prints ``READY`` once the controller is set up. With LEASE (seconds), the side
effect leases last that long (see :func:`short_leases`) instead of the default 30 s.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import reactive as r
from storage import SQLiteStorage

EFFECT = "notify"


def item_key(item_id: Any) -> str:
    """The idempotency key of the notify side effect for one Item."""
    return f"{EFFECT}:Item:{item_id}"


def short_leases(lease: float) -> r.SideEffectLeases:
    """Leases of ``lease`` seconds, renewed four times and looked for five times as often."""
    return r.SideEffectLeases(duration=lease, renew_every=lease / 4, reclaim_every=lease / 5)


def model() -> tuple[r.Entity, r.Dictionary]:
    item = r.Entity("Item", [r.Property("n", "number"), r.Property("batch", "number")])
    total = r.Dictionary("item_total", "number", computation=r.Count(record=item))
    return item, total


def emit(line: str) -> None:
    print(line, flush=True)


def append_journal(journal: str, line: str) -> None:
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(journal: str) -> list[tuple[str, str]]:
    """(label, key) per line of the journal, in order."""
    path = Path(journal)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(label, key) for label, key in (line.split(" ", 1) for line in lines)]


async def wait_for_file(path: str) -> None:
    """Wait until ``path`` exists (the tests never create it: the handler blocks for good)."""
    while not Path(path).exists():
        await asyncio.sleep(0.01)


def build(
    db: str,
    journal: str,
    label: str,
    block: str | None = None,
    with_side_effect: bool = True,
    leases: r.SideEffectLeases | None = None,
) -> r.Controller:
    """The controller of the worker (and of the recovering test): ``block`` is None,
    ``"before-journal"`` or ``"after-journal"``; ``leases`` as for the Controller."""
    item, total = model()
    never = journal + ".never"

    async def notify(
        event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        if block == "before-journal":
            emit(f"STARTED {run.idempotency_key}")
            await wait_for_file(never)
        append_journal(journal, f"{label} {run.idempotency_key}")
        if block == "after-journal":
            emit(f"JOURNALED {run.idempotency_key}")
            await wait_for_file(never)

    effects = [r.RecordMutationSideEffect(EFFECT, item, notify, on=("create",))]
    return r.Controller(
        SQLiteStorage(db),
        [item],
        dictionaries=[total],
        side_effects=effects if with_side_effect else [],
        side_effect_leases=leases,
    )


async def create_batch(
    controller: r.Controller, batch: int, size: int, hold: bool = False
) -> list[Any]:
    """Create ``size`` items in one transaction; with ``hold``, block inside it instead of
    committing."""

    def body(ctx: r.TransactionContext) -> list[Any]:
        ids = [ctx.storage.create("Item", {"n": i, "batch": batch})["id"] for i in range(size)]
        if hold:
            emit("IN-TRANSACTION " + " ".join(map(str, ids)))
            time.sleep(3600)  # synchronously, inside the open write transaction
        return ids

    ids, _ = await controller.transact(body)
    return ids


async def main(db: str, journal: str, mode: str, lease: float | None = None) -> None:
    block = {"handlers-blocked": "before-journal", "in-handler": "after-journal"}.get(mode)
    leases = short_leases(lease) if lease is not None else None
    controller = build(db, journal, "crashed", block, leases=leases)
    await controller.setup()
    emit("READY")
    if mode in ("committed", "handlers-blocked", "in-handler"):
        ids = []
        for n in range(3):
            ids.append((await controller.storage.create("Item", {"n": n, "batch": 0}))["id"])
        ids += await create_batch(controller, 1, 3)
        emit("COMMITTED " + " ".join(map(str, ids)))
        if mode == "committed":
            time.sleep(3600)  # the loop never runs again: no handler starts
        await asyncio.Event().wait()
    elif mode == "mid-batch":
        for batch in (1, 2):
            await create_batch(controller, batch, 4)
            await controller.drain()
        ids = await create_batch(controller, 3, 4)
        emit("COMMITTED " + " ".join(map(str, ids)))
        await create_batch(controller, 4, 2, hold=True)
    elif mode == "stream":
        committed = 0
        batch = 0
        while True:
            batch += 1
            committed += len(await create_batch(controller, batch, 1 + batch % 3))
            emit(f"PROGRESS {committed}")
            await asyncio.sleep(0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    lease_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else None
    db, journal, mode = sys.argv[1:4]
    asyncio.run(main(db, journal, mode, lease_seconds))
