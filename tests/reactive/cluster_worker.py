"""A worker process of a cluster on one PostgreSQL schema, for test_cluster.py.

    python -m tests.reactive.cluster_worker URL SCHEMA JOURNAL LEASE MAX_HELD

It runs the ``notify`` create side effect of ``Item`` (the model of :func:`build`) for
whatever intents it claims: each run appends ``S <key> <item id> <owner> <time>`` to JOURNAL
when it starts and ``E <key> <item id> <owner> <time>`` when it ends (plain appends: they
survive SIGKILL), and sleeps :data:`RUN_SECONDS` in between. Leases last LEASE seconds; the
queue holds at most MAX_HELD intents. It prints ``READY <owner>`` once set up, then serves
until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import reactive as r
from storage import PostgresStorage

EFFECT = "notify"
RUN_SECONDS = 0.03


def item_key(item_id: Any) -> str:
    """The idempotency key of the notify side effect for one Item."""
    return f"{EFFECT}:Item:{item_id}"


def leases(lease: float, max_held: int | None = None, run_here: bool = True) -> r.SideEffectLeases:
    return r.SideEffectLeases(
        duration=lease,
        renew_every=lease / 4,
        reclaim_every=lease / 2,
        max_held=max_held,
        run_here=run_here,
    )


def build(
    storage: PostgresStorage,
    leases: r.SideEffectLeases,
    journal: str | None = None,
    run_seconds: float = RUN_SECONDS,
) -> r.Controller:
    """The cluster's controller: ``journal`` None for a process that only writes."""
    item = r.Entity("Item", [r.Property("n", "number")])
    owner: list[str] = []

    async def notify(
        event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        assert journal is not None
        item_id = event.record["id"]
        append(journal, f"S {run.idempotency_key} {item_id} {owner[0]} {time.time()!r}")
        await asyncio.sleep(run_seconds)
        append(journal, f"E {run.idempotency_key} {item_id} {owner[0]} {time.time()!r}")

    controller = r.Controller(
        storage,
        [item],
        side_effects=[r.RecordMutationSideEffect(EFFECT, item, notify, on=("create",))],
        side_effect_leases=leases,
    )
    owner.append(controller.side_effects.owner)
    return controller


def append(journal: str, line: str) -> None:
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_journal(journal: str) -> list[tuple[str, str, int, str, float]]:
    """(kind S/E, key, item id, owner, time) per line."""
    path = Path(journal)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        kind, key, item_id, owner, at = line.split(" ")
        rows.append((kind, key, int(item_id), owner, float(at)))
    return rows


async def main(url: str, schema: str, journal: str, lease: float, max_held: int) -> None:
    storage = PostgresStorage(url, schema=schema, pool_size=3)
    controller = build(storage, leases(lease, max_held), journal)
    await controller.setup()
    print("READY", controller.side_effects.owner, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    url_, schema_, journal_, lease_, held_ = sys.argv[1:6]
    asyncio.run(main(url_, schema_, journal_, float(lease_), int(held_)))
