"""A Count over a filtered entity whose membership flips on every write, as the base grows.

``ActiveUser`` is ``User`` where ``active = true``; ``active_users`` is a Count over it. Each
timed write flips one user's ``active``: the user enters or leaves the view, and the Count
follows from the update's own old and new values (no read of the view). Bases of 1,000, 10,000
and 100,000 users (each its own SQLite file, filled without events, half of them active, the
Count recomputed once) take their writes in turns, so every size sees the same moments of this
shared machine; per size the median write, and its ratio to the smallest base's
(``cost_ratio_to_smallest``: flat means O(1) in the size of the base). Every run ends by
checking the Count against a recount and ``verify()``.

Both backends, one after the other; each line names its ``backend``. On PostgreSQL each base
is a fresh schema (dropped afterwards) whose ``User`` table, created by the engine's
``setup()``, is filled by one ``COPY`` through asyncpg (100,000 rows in well under a second);
server: ``INTERAQT_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``). A server
that cannot be reached skips PostgreSQL with a note on stderr. ``FILTERED_COUNT_BACKENDS``
(``sqlite,postgres``) picks the backends.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg

import reactive as r
from benchmarks.common import Timer, report, scaled
from storage import MatchExp, PostgresStorage, Session, SQLiteStorage

RUNS = 3
URL = os.environ.get("INTERAQT_TEST_PG", "").strip() or "postgresql://postgres@127.0.0.1:5432/test"


def model() -> tuple[list[r.Entity], list[r.Dictionary]]:
    user = r.Entity("User", [r.Property("name"), r.Property("active", "boolean")])
    active = r.Entity("ActiveUser", base=user, match=MatchExp.atom("active", "=", True))
    count = r.Dictionary("active_users", "integer", computation=r.Count(record=active))
    return [user, active], [count]


async def open_base(backend: str, path: Path, size: int) -> r.Controller:
    """A controller on a new database holding ``size`` users (every other one active)."""
    entities, dictionaries = model()
    if backend == "sqlite":
        storage: SQLiteStorage | PostgresStorage = SQLiteStorage(str(path))
    else:
        storage = PostgresStorage(URL, schema=f"bench_fc_{uuid.uuid4().hex[:12]}")
    controller = r.Controller(storage, entities, [], dictionaries)
    await controller.setup()
    # No events: the Count is recomputed once below.
    if isinstance(storage, PostgresStorage):
        connection = await asyncpg.connect(URL)
        try:
            await connection.copy_records_to_table(
                "User",
                records=((f"u{i}", i % 2 == 0) for i in range(size)),
                columns=["name", "active"],
                schema_name=storage.schema_name,
            )
        finally:
            await connection.close()
    else:

        def fill(session: Session) -> None:
            for i in range(size):
                session.insert_internal("User", {"name": f"u{i}", "active": i % 2 == 0})

        await controller.backend.run(fill)
    await controller.recompute("active_users")
    assert await controller.storage.get_dict("active_users") == (size + 1) // 2
    return controller


async def close(controller: r.Controller) -> None:
    """Close the controller; on PostgreSQL drop its schema too."""
    storage = controller.backend
    await controller.close()
    if isinstance(storage, PostgresStorage):
        connection = await asyncpg.connect(URL)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{storage.schema_name}" CASCADE')
        finally:
            await connection.close()


async def run(
    backend: str, root: Path, sizes: list[int], window: int, attempt: int
) -> list[tuple[float, float]]:
    """(median seconds per write, seconds of the window) for each size, the sizes' writes
    taken in turns."""
    controllers = []
    try:
        for s in sizes:
            controllers.append(await open_base(backend, root / f"base{attempt}_{s}.db", s))
        flipped: list[set[int]] = [set() for _ in sizes]  # ids whose "active" was flipped
        # Warm statement caches and code paths on every base first.
        for c, seen in zip(controllers, flipped, strict=True):
            for i in range(1, 21):
                await flip(c, i, seen)
        times: list[list[float]] = [[] for _ in sizes]
        for step in range(window):
            for k, (c, size) in enumerate(zip(controllers, sizes, strict=True)):
                record_id = 1 + (step * 7919) % size  # spread over the whole base
                with Timer() as t:
                    await flip(c, record_id, flipped[k])
                times[k].append(t.seconds)
        for c in controllers:
            expected = await c.storage.count("User", {"active": True})
            assert await c.storage.get_dict("active_users") == expected
            assert await c.storage.count("ActiveUser") == expected
            report_ = await c.verify()
            assert report_.ok, str(report_)
        return [(statistics.median(t), sum(t)) for t in times]
    finally:
        for c in controllers:
            await close(c)


async def flip(controller: r.Controller, record_id: int, flipped: set[int]) -> None:
    """One write that moves a user into the view or out of it (user ``id`` was filled
    active when ``id`` is odd; ``flipped`` holds the ids flipped an odd number of times)."""
    active = (record_id % 2 == 1) != (record_id in flipped)
    flipped.symmetric_difference_update({record_id})
    await controller.storage.update("User", {"id": record_id}, {"active": not active})


async def reachable() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        connection = await asyncpg.connect(URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


def main() -> None:
    sizes = sorted({max(10, scaled(n)) for n in (1000, 10000, 100000)})
    window = max(20, scaled(400))
    backends = os.environ.get("FILTERED_COUNT_BACKENDS", "sqlite,postgres").split(",")
    for backend in (b.strip() for b in backends if b.strip()):
        if backend == "postgres":
            why = asyncio.run(reachable())
            if why is not None:
                print(f"filtered_count: PostgreSQL at {URL} skipped ({why})", file=sys.stderr)
                continue
        elif backend != "sqlite":
            raise SystemExit(f"FILTERED_COUNT_BACKENDS: unknown backend {backend!r}")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            runs = [asyncio.run(run(backend, root, sizes, window, i)) for i in range(RUNS)]
        # Per size the best run's median: a slow spell of the machine lands in some run or other.
        best = [min(per_size) for per_size in zip(*runs, strict=True)]
        for size, (median, seconds) in zip(sizes, best, strict=True):
            report(
                "filtered_count",
                window,
                seconds,
                backend=backend,
                base_records=size,
                median_write_us=round(median * 1e6, 1),
                cost_ratio_to_smallest=round(median / best[0][0], 2),
                runs=RUNS,
            )


if __name__ == "__main__":
    main()
