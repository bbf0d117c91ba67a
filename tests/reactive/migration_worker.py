"""A process for test_migration_crash.py to kill in the middle of a migration's backfill.

    python -m tests.reactive.migration_worker DB

Sets up the new model (``model(new=True, hook=...)``) on DB, which holds data of the old one:
the backfill of ``Host.w`` calls its callback once per item; the first call prints
``BACKFILLING`` and then blocks the process (inside the migration's transaction) until it is
killed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import reactive as r
from storage import SQLiteStorage


def model(
    new: bool, hook: Callable[[], None] | None = None
) -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    """The old model (Host 1:n Item) or the new one: Host.n (Count), Host.w (a
    WeightedSummation, whose callback first calls ``hook``), and a dictionary Count."""
    host_props = [r.Property("name")]
    item = r.Entity("Item", [r.Property("val", "number")])
    dictionaries: list[r.Dictionary] = []
    if new:

        def weighted(i: dict[str, Any]) -> tuple[int, Any]:
            if hook is not None:
                hook()
            return (2, i["val"])

        host_props += [
            r.Property("n", "number", computation=r.Count(property="items")),
            r.Property(
                "w",
                "number",
                computation=r.WeightedSummation(
                    property="items", callback=weighted, attribute_query=["val"]
                ),
            ),
        ]
        dictionaries.append(r.Dictionary("items", "number", computation=r.Count(record=item)))
    host = r.Entity("Host", host_props)
    return [host, item], [r.Relation(host, "items", item, "host", "1:n")], dictionaries


def block_forever() -> None:
    print("BACKFILLING", flush=True)
    deadline = time.monotonic() + 120  # bounded: the test kills it long before
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(3)


async def main(path: str) -> None:
    controller = r.Controller(SQLiteStorage(path), *model(True, block_forever))
    await controller.setup()
    print("MIGRATED", flush=True)  # never reached: the backfill blocks
    await controller.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
