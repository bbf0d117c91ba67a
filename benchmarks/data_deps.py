"""Aggregates with ``data_deps`` and a deep path, as the number of items grows.

``User.expensive`` counts a user's posts whose price is above the ``threshold`` dictionary and
whose author is active (``data_deps`` + ``("author", ["status"])``); ``n_expensive`` is the
same over every post. Bases of 1,000 and 10,000 posts (each its own SQLite file, 100 users
owning and writing them, filled without events, the values recomputed once) take their writes
in turns. Two figures per size:

- ``item_write``: one post's price changed (the incremental delta under the current threshold;
  flat in the number of posts: ``cost_ratio_to_smallest`` near 1);
- ``threshold_change``: the threshold moved (every item re-evaluated: O(posts), so its cost
  grows with the base, as the original framework's recount does).

Every run ends by checking ``verify()``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import reactive as r
from benchmarks.common import Timer, report, scaled
from storage import Session, SQLiteStorage

HOSTS = 100


def counted(item: dict[str, Any], deps: dict[str, Any]) -> bool:
    return (item["price"] or 0) > deps["t"] and (item["author"] or {}).get("status") == "on"


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    user = r.Entity("User", [r.Property("status")])
    post = r.Entity("Post", [r.Property("price", "integer")])
    owns = r.Relation(user, "posts", post, "owner", "1:n")
    wrote = r.Relation(post, "author", user, "wrote", "n:1")
    deps = {"t": r.DictionaryDep("threshold")}
    query = ["price", ("author", ["status"])]
    user.properties.append(
        r.Property(
            "expensive",
            "integer",
            computation=r.Count(
                property="posts", attribute_query=query, data_deps=deps, callback=counted
            ),
        )
    )
    dictionaries = [
        r.Dictionary("threshold", "integer", default=50),
        r.Dictionary(
            "n_expensive",
            "integer",
            computation=r.Count(
                record=post, attribute_query=query, data_deps=deps, callback=counted
            ),
        ),
    ]
    return [user, post], [owns, wrote], dictionaries


async def open_base(path: Path, size: int) -> r.Controller:
    controller = r.Controller(SQLiteStorage(str(path)), *model())
    await controller.setup()

    def fill(session: Session) -> None:
        for i in range(HOSTS):
            session.insert_internal("User", {"status": "on" if i % 2 else "off"})
        for i in range(size):
            owner, author = 1 + i % HOSTS, 1 + (i * 7) % HOSTS
            session.create(
                "Post", {"price": i % 100, "owner": {"id": owner}, "author": {"id": author}}
            )

    await controller.backend.run(fill)  # no events: the values are recomputed once below
    await controller.recompute()
    return controller


async def run(root: Path, sizes: list[int], window: int, attempt: int) -> list[tuple[Any, ...]]:
    controllers = [await open_base(root / f"d{attempt}_{s}.db", s) for s in sizes]
    try:
        writes: list[list[float]] = [[] for _ in sizes]
        changes: list[list[float]] = [[] for _ in sizes]
        for step in range(window):
            for k, (c, size) in enumerate(zip(controllers, sizes, strict=True)):
                post_id = 1 + (step * 7919) % size
                with Timer() as t:
                    await c.storage.update("Post", {"id": post_id}, {"price": step % 100})
                writes[k].append(t.seconds)
                if step % 10 == 0:
                    with Timer() as t:
                        await c.storage.set_dict("threshold", 30 + step % 40)
                    changes[k].append(t.seconds)
        for c in controllers:
            found = await c.verify()
            assert found.ok, str(found)
        return [
            (statistics.median(w), sum(w), statistics.median(ch))
            for w, ch in zip(writes, changes, strict=True)
        ]
    finally:
        for c in controllers:
            await c.close()


def main() -> None:
    sizes = sorted({max(HOSTS, scaled(n)) for n in (1000, 10000)})
    window = max(20, scaled(200))
    with tempfile.TemporaryDirectory() as tmp:
        runs = [asyncio.run(run(Path(tmp), sizes, window, i)) for i in range(2)]
    best = [min(per_size) for per_size in zip(*runs, strict=True)]
    for size, (median, seconds, change) in zip(sizes, best, strict=True):
        report(
            "data_deps_item_write",
            window,
            seconds,
            items=size,
            median_write_us=round(median * 1e6, 1),
            cost_ratio_to_smallest=round(median / best[0][0], 2),
        )
        report(
            "data_deps_threshold_change",
            1,
            change,
            items=size,
            median_change_ms=round(change * 1e3, 2),
        )


if __name__ == "__main__":
    main()
