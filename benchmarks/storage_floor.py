"""Storage floor: what one write transaction costs through SQLiteStorage, next to the same
statements in plain sqlite3 in the same run.

Workloads (each for both executors, ``loop`` and ``thread``):
- ``storage_single``: N transactions of one record create.
- ``storage_five``: N transactions of five record creates.
Each line carries ``ratio_to_sqlite3`` (our seconds / plain sqlite3 seconds for the same rows).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from benchmarks.common import Timer, floor_connection, report, scaled
from storage import Field, RecordType, Schema, SQLiteSession, SQLiteStorage
from storage.sqlite.storage import Executor

SCHEMA = Schema(records=[RecordType("Item", [Field("name"), Field("qty", "number")])])


def plain_sqlite(path: Path, n: int, per_tx: int) -> float:
    conn = floor_connection(path)
    conn.execute('CREATE TABLE "Item" (id INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT, "qty")')
    with Timer() as t:
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            for j in range(per_tx):
                conn.execute('INSERT INTO "Item" ("name", "qty") VALUES (?, ?)', ("item", i + j))
            conn.execute("COMMIT")
    conn.close()
    return t.seconds


async def through_storage(path: Path, n: int, per_tx: int, executor: Executor) -> float:
    storage = SQLiteStorage(str(path), executor=executor)
    await storage.setup(SCHEMA)

    def body(tx: SQLiteSession, i: int = 0) -> None:
        for j in range(per_tx):
            tx.create("Item", {"name": "item", "qty": i + j})

    with Timer() as t:
        for i in range(n):

            def one(tx: SQLiteSession, i: int = i) -> None:
                body(tx, i)

            await storage.run(one)
    count = await storage.count("Item")
    await storage.close()
    assert count == n * per_tx, f"expected {n * per_tx} items, found {count}"
    return t.seconds


def main() -> None:
    n = scaled(5000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for per_tx, workload in ((1, "storage_single"), (5, "storage_five")):
            floor = plain_sqlite(root / f"plain{per_tx}.db", n, per_tx)
            report(f"sqlite3_{workload.split('_')[1]}", n, floor, records_per_tx=per_tx)
            executors: tuple[Executor, ...] = ("loop", "thread")
            for executor in executors:
                seconds = asyncio.run(
                    through_storage(root / f"{executor}{per_tx}.db", n, per_tx, executor)
                )
                report(
                    workload,
                    n,
                    seconds,
                    executor=executor,
                    records_per_tx=per_tx,
                    ratio_to_sqlite3=round(seconds / floor, 2),
                )


if __name__ == "__main__":
    main()
