"""The model the cluster tests share with their worker processes, and the worker itself.

    python -m tests.cluster.likes URL SCHEMA POST_ID LIKES CONCURRENCY LABEL

A worker connects to URL (PostgreSQL: in SCHEMA; SQLite: SCHEMA is ignored), attaches to the
model the test installed (``setup(install=False)``), prints ``READY``, waits for a line on
stdin (so every worker starts at once), then makes LIKES likes on post POST_ID through the
engine (``controller.storage.create("Like", ...)``), CONCURRENCY at a time, and prints ``DONE
<likes made> <failures> <conflicts retried> <seconds>`` and, per failure, ``FAILED <error>``.
Like ``i`` of worker LABEL weighs :func:`weight` ``(i)``.

The model: ``Like`` n:1 ``Post``; ``Post.like_count`` (Count) and ``Post.weight_sum``
(Summation of the likes' weights); dictionaries ``likes_total`` (Count of every Like) and
``weight_total`` (Summation of every Like's weight).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import reactive as r
from storage import Storage, from_url


def weight(i: int) -> int:
    """The weight of a worker's like number ``i``."""
    return i % 5 + 1


def model() -> dict[str, Any]:
    """Entities, relations and dictionaries for :class:`reactive.Controller`."""
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("like_count", "number", computation=r.Count(property="likes")),
            r.Property(
                "weight_sum",
                "number",
                computation=r.Summation(property="likes", attribute_query=["weight"]),
            ),
        ],
    )
    like = r.Entity("Like", [r.Property("weight", "number"), r.Property("who")])
    likes = r.Relation(like, "post", post, "likes", "n:1")
    dictionaries = [
        r.Dictionary("likes_total", "number", computation=r.Count(record=like)),
        r.Dictionary(
            "weight_total",
            "number",
            computation=r.Summation(record=like, attribute_query=["weight"]),
        ),
    ]
    return {"entities": [post, like], "relations": [likes], "dictionaries": dictionaries}


def open_storage(url: str, schema: str) -> Storage:
    """The storage a worker (or the test) uses: writes at once on PostgreSQL."""
    if url.startswith("sqlite"):
        return from_url(url, busy_timeout=30.0)
    return from_url(url, schema=schema, pool_size=4, concurrent_writes=True)


async def work(
    url: str, schema: str, post_id: int, likes: int, concurrency: int, label: str
) -> None:
    controller = r.Controller(open_storage(url, schema), **model())
    await controller.setup(install=False)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    failures: list[str] = []
    made = 0
    queue = iter(range(likes))

    async def liker() -> None:
        nonlocal made
        for i in queue:
            try:
                await controller.storage.create(
                    "Like", {"post": {"id": post_id}, "weight": weight(i), "who": f"{label}{i}"}
                )
                made += 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(liker() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    await controller.close()
    conflicts = getattr(controller.backend, "conflicts", 0)
    print(f"DONE {made} {len(failures)} {conflicts} {seconds:.3f}", flush=True)
    for failure in failures[:20]:
        print(f"FAILED {failure}", flush=True)


if __name__ == "__main__":
    url, schema, post_id, likes, concurrency, label = sys.argv[1:7]
    asyncio.run(work(url, schema, int(post_id), int(likes), int(concurrency), label))
