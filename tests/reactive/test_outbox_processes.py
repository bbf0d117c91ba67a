"""One committed stream for all processes: 2 real processes, 8 writers in all, one database.

On PostgreSQL each process (``outbox_worker.py``) runs 4 writer tasks on 4 connections
(``concurrent_writes=True``); on SQLite the same 4 tasks share the process's connection and
the two processes take turns on the file's write lock (the outbox's order is then the
``AUTOINCREMENT`` key's). Each runs four subscribers and prunes the outbox every 0.1 s while it
writes. ``INTERAQT_OUTBOX_EVENTS`` events in all (a multiple of 80; default 800 so the test
stays under 20 s on this loaded 2-core machine, where the two processes write about 140
transactions/s together; ``INTERAQT_OUTBOX_EVENTS=7200`` runs the issue's figure, same shape):
creates of ``Item``, and every tenth transaction an update of one of 4
shared ``Hot`` records (row locks: their versions must follow the real order of the updates).

Checked:

- every subscriber of each process saw every event, none twice, in the same order as every
  other subscriber of both processes (the sequences of positions are equal);
- ``stream("Item")`` and ``stream("Hot")`` are exactly the matching part of ``mutations``;
- the creates are exactly the writers' ``(writer, n)``; each ``Hot`` record's versions are
  2, 3, ... without gap or repeat (1 was its create, before the processes started);
- a durable reader registered before the processes started and never read while they ran
  (pruning all along) replays all of it afterwards from its stored cursor, in the same order;
  once it has committed past the end and dropped its name, a prune leaves no row behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import reactive as r
from storage import PostgresStorage, SQLiteStorage
from storage.abc import Outbox
from tests.conftest import StorageFactory

from .outbox_worker import model

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 2
WRITERS = 4  # per process: 8 in all
TOTAL = int(os.environ.get("INTERAQT_OUTBOX_EVENTS", "800"))
TIMEOUT = 90.0 + TOTAL / 50


async def read_all(reader: r.OutboxReader, n: int) -> list[r.OutboxEvent]:
    got: list[r.OutboxEvent] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        batch = await reader.read(limit=2000)
        got += batch
        if not batch:
            await asyncio.sleep(0.02)
    return got


async def test_every_process_delivers_every_event_once_in_one_order(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    assert TOTAL % (PROCESSES * WRITERS * 10) == 0, "INTERAQT_OUTBOX_EVENTS: a multiple of 80"
    per_writer = TOTAL // (PROCESSES * WRITERS)

    # Install the model and the outbox once, register the late reader (on an empty outbox:
    # it starts before every row), and make the shared records (its first 4 events).
    store = make_storage("outbox.db")
    setup = r.Controller(store, model(), outbox=True)
    await setup.setup()
    late = await setup.outbox_reader("late")
    assert late.position == late.committed == r.OutboxPosition(-1, 0)
    hot_ids = [(await setup.storage.create("Hot", {"key": k}))["id"] for k in range(4)]
    await setup.close()

    config = {
        "sqlite": store.path if isinstance(store, SQLiteStorage) else None,
        "dsn": store.dsn if isinstance(store, PostgresStorage) else None,
        "schema": store.schema_name if isinstance(store, PostgresStorage) else None,
        "dir": str(tmp_path),
        "writers": WRITERS,
        "per_writer": per_writer,
        "total": TOTAL,
        "hot_ids": hot_ids,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    logs = [(tmp_path / f"stderr{i}").open("w") for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reactive.outbox_worker",
                str(tmp_path / "config.json"),
                str(i),
            ],
            cwd=ROOT,
            stderr=logs[i],
        )
        for i in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all((tmp_path / str(i) / "ready").exists() for i in range(PROCESSES)):
            assert all(p.poll() is None for p in procs), "a worker died before it was ready"
            assert time.monotonic() < deadline, "the workers were not ready in time"
            await asyncio.sleep(0.02)
        (tmp_path / "go").write_text("go")
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"stderr{i}").read_text()[-3000:]

    seen = [json.loads((tmp_path / str(i) / "seen.json").read_text()) for i in range(PROCESSES)]
    print("seconds:", [process.pop("timing") for process in seen])  # shown with -s
    reference = [row[0] for row in seen[0]["all"]]
    for i, process in enumerate(seen):
        for name in ("all", "all2"):
            positions = [row[0] for row in process[name]]
            assert len(positions) == TOTAL, (i, name, len(positions))
            assert len(set(positions)) == TOTAL, (i, name, "an event delivered twice")
            assert positions == reference, (i, name, "another order")
        everything = process["all"]
        assert process["items"] == [row for row in everything if row[1] == "Item"]
        assert process["hot"] == [row for row in everything if row[1] == "Hot"]

    rows = seen[0]["all"]
    ordered = [r.OutboxPosition.parse(row[0]) for row in rows]
    assert ordered == sorted(ordered)
    creates = sorted((row[5], row[6]) for row in rows if row[1] == "Item")
    assert creates == sorted(
        (w, n) for w in range(PROCESSES * WRITERS) for n in range(per_writer) if n % 10 != 9
    )
    assert all(row[2] == "create" and row[4] == 1 for row in rows if row[1] == "Item")
    for hot in hot_ids:
        versions = sorted(row[4] for row in rows if row[1] == "Hot" and row[3] == hot)
        assert versions == list(range(2, 2 + len(versions)))
    assert sum(1 for row in rows if row[1] == "Hot") == TOTAL // 10

    # The late reader: registered before, pruned around all along, replays everything.
    again = r.Controller(make_storage("outbox.db"), model(), outbox=True)
    await again.setup(install=False)
    try:
        late = await again.outbox_reader("late")
        replay = await read_all(late, 4 + TOTAL)
        assert [(e.record_name, e.type, e.record["id"]) for e in replay[:4]] == [
            ("Hot", "create", hot) for hot in hot_ids
        ]
        assert [str(e.position) for e in replay[4:]] == reference
        await late.commit()
        await late.drop()
        await again.close()
        again = r.Controller(make_storage("outbox.db"), model())
        await again.setup(install=False)
        backend = again.backend
        assert isinstance(backend, Outbox)
        await backend.outbox_prune()
        left = await backend.outbox_read(r.OutboxPosition(-1, 0), 10)
        assert left.rows == [] and not left.pending
    finally:
        await again.close()
