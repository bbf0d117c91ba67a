"""Migration backfill: a Count and a Summation added to a model with stored data.

Workload ``migration_backfill``: 1,000 hosts with 100,000 items (100 each, ``Host.items`` 1:n
``Item.host``) are stored under a model without computations; a new model adds
``Host.n = Count(items)`` and ``Host.total = Summation(items, val)``; the figure is the whole
``setup()`` that migrates (plan, DDL, backfill of both with their running totals, manifest)
in one transaction. The floor, in the same run on a copy of the same file: one hand-written
``ALTER TABLE`` + ``UPDATE Host SET n = (SELECT count(*) FROM link WHERE source = Host.id)``
in plain sqlite3 (``ratio_to_floor``); ``ratio_to_floor_pair`` compares with the two
hand-written UPDATEs (count and sum) our backfill does the work of. ``migration_backfill_count``
adds the Count alone (the same work as the floor, plus planning and the running totals).
The results are checked (values and ``verify()``).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import reactive as r
from benchmarks.common import Timer, report, scaled
from storage import SQLiteStorage

LINK = "Host_items_host_Item"


def model(new: bool, summation: bool = True) -> tuple[list[r.Entity], list[r.Relation]]:
    host_props = [r.Property("name")]
    if new:
        host_props.append(r.Property("n", "number", computation=r.Count(property="items")))
    if new and summation:
        host_props += [
            r.Property(
                "total",
                "number",
                computation=r.Summation(property="items", attribute_query=["val"]),
            ),
        ]
    host = r.Entity("Host", host_props)
    item = r.Entity("Item", [r.Property("val", "number")])
    return [host, item], [r.Relation(host, "items", item, "host", "1:n")]


async def seed(path: Path, hosts: int, items: int) -> None:
    c = r.Controller(SQLiteStorage(str(path)), *model(False))
    await c.setup()

    def body(ctx: r.TransactionContext) -> None:
        ids = [ctx.storage.create("Host", {"name": f"h{h}"})["id"] for h in range(hosts)]
        for i in range(items):
            ctx.storage.create("Item", {"val": i % 7, "host": {"id": ids[i % hosts]}})

    await c.transact(body)
    await c.close()


async def migrate(path: Path, summation: bool) -> tuple[float, list[dict[str, Any]]]:
    c = r.Controller(SQLiteStorage(str(path)), *model(True, summation))
    with Timer() as t:
        await c.setup()
    fields = ["n", "total"] if summation else ["n"]
    rows = await c.storage.find("Host", None, fields, order_by={"id": "asc"})
    report_ = await c.verify()
    await c.close()
    assert report_.ok, str(report_)
    return t.seconds, rows


def floor(path: Path, pair: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    with Timer() as t:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute('ALTER TABLE "Host" ADD COLUMN "n"')
        conn.execute(
            f'UPDATE "Host" SET "n" = (SELECT count(*) FROM "{LINK}" l WHERE l.source = "Host".id)'
        )
        if pair:
            conn.execute('ALTER TABLE "Host" ADD COLUMN "total"')
            conn.execute(
                f'UPDATE "Host" SET "total" = (SELECT coalesce(sum(i.val), 0) FROM "{LINK}" l '
                'JOIN "Item" i ON i.id = l.target WHERE l.source = "Host".id)'
            )
        conn.execute("COMMIT")
    conn.close()
    return t.seconds


def main() -> None:
    hosts, items = scaled(1000), scaled(100_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seeded = root / "seeded.db"
        asyncio.run(seed(seeded, hosts, items))
        copies = {}
        for name in ("ours", "count", "floor", "pair"):
            copies[name] = root / f"{name}.db"
            shutil.copy(seeded, copies[name])
        floor_seconds = floor(copies["floor"], pair=False)
        pair_seconds = floor(copies["pair"], pair=True)
        count_seconds, count_rows = asyncio.run(migrate(copies["count"], summation=False))
        seconds, rows = asyncio.run(migrate(copies["ours"], summation=True))
    per_host = [items // hosts + (1 if h < items % hosts else 0) for h in range(hosts)]
    assert [row["n"] for row in rows] == per_host, "backfilled counts are wrong"
    assert [row["n"] for row in count_rows] == per_host, "backfilled counts are wrong"
    assert sum(row["total"] for row in rows) == sum(i % 7 for i in range(items))
    report("sqlite3_update_count_floor", items, floor_seconds, hosts=hosts)
    report("sqlite3_update_count_and_sum", items, pair_seconds, hosts=hosts)
    report(
        "migration_backfill_count",
        items,
        count_seconds,
        hosts=hosts,
        computations=["Count"],
        ratio_to_floor=round(count_seconds / floor_seconds, 2),
    )
    report(
        "migration_backfill",
        items,
        seconds,
        hosts=hosts,
        computations=["Count", "Summation"],
        ratio_to_floor=round(seconds / floor_seconds, 2),
        ratio_to_floor_pair=round(seconds / pair_seconds, 2),
    )


if __name__ == "__main__":
    main()
