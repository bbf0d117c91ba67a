"""One process of the outbox test (``test_outbox_processes.py``), run as
``python -m tests.reactive.outbox_worker CONFIG.json INDEX``.

It opens a controller with ``outbox=True`` on the test's database: a PostgreSQL schema
(``concurrent_writes``, a pool of ``writers`` connections) or an SQLite file (one connection;
the other process's writes wait for the file's write lock). It subscribes four times
(``mutations`` twice, ``stream("Item")``, ``stream("Hot")``), writes ``INDEX/ready``, waits for
``go``, then runs ``writers`` asyncio tasks of ``per_writer`` transactions each: a create of
``Item`` (``writer``, ``n``), and every tenth one an update of one of the shared ``Hot`` records
instead. A task prunes the outbox every 0.1 s meanwhile. Once its first subscriber has seen
``total`` events (every process's) and a little longer (a duplicate would show), it writes what
each subscriber saw to ``INDEX/seen.json`` and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import reactive as r
from storage import PostgresStorage, SQLiteStorage, Storage
from storage.abc import Outbox


def model() -> list[r.Entity]:
    item = r.Entity("Item", [r.Property("writer", "number"), r.Property("n", "number")])
    hot = r.Entity("Hot", [r.Property("key", "number"), r.Property("last")])
    return [item, hot]


def row(event: r.MutationEvent) -> list[Any]:
    assert isinstance(event, r.OutboxEvent)
    return [
        str(event.position),
        event.record_name,
        event.type,
        event.record.get("id"),
        event.version,
        event.record.get("writer"),
        event.record.get("n"),
    ]


async def main(config: dict[str, Any], index: int) -> None:
    here = Path(config["dir"]) / str(index)
    here.mkdir(parents=True, exist_ok=True)
    writers, per_writer = config["writers"], config["per_writer"]
    storage: Storage
    if config["sqlite"]:
        storage = SQLiteStorage(config["sqlite"], busy_timeout=60)
    else:
        storage = PostgresStorage(
            config["dsn"], schema=config["schema"], pool_size=writers, concurrent_writes=True
        )
    controller = r.Controller(storage, model(), outbox=True, outbox_poll=0.5)
    await controller.setup(install=False)
    seen: dict[str, list[list[Any]]] = {"all": [], "all2": [], "items": [], "hot": []}
    controller.mutations.subscribe(lambda e: seen["all"].append(row(e)))
    controller.mutations.subscribe(lambda e: seen["all2"].append(row(e)))
    controller.stream("Item").subscribe(lambda e: seen["items"].append(row(e)))
    controller.stream("Hot").subscribe(lambda e: seen["hot"].append(row(e)))
    (here / "ready").write_text("ready")
    go = Path(config["dir"]) / "go"
    deadline = time.monotonic() + 60 + config["total"] / 50
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go")
        await asyncio.sleep(0.01)

    hot_ids: list[int] = config["hot_ids"]

    async def write(writer: int) -> None:
        for n in range(per_writer):
            if n % 10 == 9:
                key = (writer + n) % len(hot_ids)
                await controller.storage.update(
                    "Hot", {"id": hot_ids[key]}, {"last": f"{writer}:{n}"}
                )
            else:
                await controller.storage.create("Item", {"writer": writer, "n": n})

    stop = asyncio.Event()
    backend = controller.backend
    assert isinstance(backend, Outbox)

    async def prune() -> None:
        while not stop.is_set():
            await backend.outbox_prune()
            await asyncio.sleep(0.1)

    pruner = asyncio.create_task(prune())
    first = index * writers
    started = time.monotonic()
    await asyncio.gather(*(write(first + w) for w in range(writers)))
    written = time.monotonic()
    while len(seen["all"]) < config["total"]:
        if time.monotonic() > deadline:
            break  # the test reports what is missing
        await asyncio.sleep(0.02)
    delivered = time.monotonic()
    await asyncio.sleep(1.2)  # more than two polls: anything delivered twice would show
    stop.set()
    await pruner
    timing = {"writes": written - started, "then delivered": delivered - written}
    (here / "seen.json").write_text(json.dumps({**seen, "timing": timing}))
    await controller.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2])))
