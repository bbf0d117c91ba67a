"""Aggregates lose nothing when transactions on several connections add to one host at once.

PostgreSQL with ``concurrent_writes=True``: writes are not taken in turns, so four tasks liking
one post run their transactions at the same time on four pooled connections (each statement
is awaited on the event loop, so the bodies interleave at every statement). A Count and a
Summation over the likes apply their deltas atomically (``Session.apply_deltas``: the database
adds under its row lock), so the stored values equal a recount however the transactions
interleave; reading the post and writing back its total from Python lost most of them. A
dictionary Count and Summation (totals in the row's JSON state) lock their row before reading it.

One process here; the same with several processes is issue 12's cluster test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import reactive as r
from tests.conftest import dispose_postgres, open_postgres

TASKS = 4
LIKES_EACH = 25


def _model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    user = r.Entity("User", [r.Property("name"), r.Property("karma", "number")])
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("like_count", "number", computation=r.Count(property="liked_by")),
            r.Property(
                "karma_total",
                "number",
                computation=r.Summation(property="liked_by", attribute_query=["karma"]),
            ),
            r.Property(
                "anyone_good",
                "boolean",
                computation=r.Any(
                    property="liked_by",
                    attribute_query=["karma"],
                    callback=lambda u: (u["karma"] or 0) > 2,
                ),
            ),
        ],
    )
    likes = r.Relation(post, "liked_by", user, "liked", "n:n")
    dictionaries = [
        r.Dictionary("all_likes", "number", computation=r.Count(record=likes)),
        r.Dictionary(
            "all_karma",
            "number",
            computation=r.Summation(record=user, attribute_query=["karma"]),
        ),
    ]
    return [user, post], [likes], dictionaries


async def test_concurrent_likes_on_one_post_lose_nothing(postgres_url: str) -> None:
    storage = await open_postgres(postgres_url, concurrent_writes=True, pool_size=TASKS)
    entities, relations, dictionaries = _model()
    controller = r.Controller(storage, entities, relations, dictionaries)
    try:
        await controller.setup()
        post = await controller.storage.create("Post", {"title": "p"})
        users = [
            await controller.storage.create("User", {"name": f"u{i}", "karma": i})
            for i in range(TASKS)
        ]
        link = relations[0].relation_name
        overlapped = 0
        running = 0

        async def like(user: dict[str, Any]) -> None:
            nonlocal overlapped, running
            for _ in range(LIKES_EACH):
                running += 1
                overlapped = max(overlapped, running)
                try:
                    await controller.storage.create(
                        link, {"source": {"id": post["id"]}, "target": {"id": user["id"]}}
                    )
                finally:
                    running -= 1

        async def join(i: int) -> None:
            # New users at the same time: the dictionary Summation over their karma.
            for k in range(LIKES_EACH):
                await controller.storage.create("User", {"name": f"n{i}.{k}", "karma": 1})

        await asyncio.gather(*(like(user) for user in users), *(join(i) for i in range(TASKS)))

        # The transactions did run at the same time (else the test would prove nothing).
        assert overlapped == TASKS
        stored = await controller.storage.find_one(
            "Post", {"id": post["id"]}, ["like_count", "karma_total", "anyone_good"]
        )
        assert stored is not None
        recount = await controller.storage.count(link, {"source.id": post["id"]})
        assert recount == TASKS * LIKES_EACH
        assert stored["like_count"] == recount
        assert stored["karma_total"] == LIKES_EACH * sum(range(TASKS))
        assert stored["anyone_good"] is True
        assert await controller.storage.get_dict("all_likes") == recount
        joined = TASKS * LIKES_EACH
        assert await controller.storage.get_dict("all_karma") == sum(range(TASKS)) + joined
        report = await controller.verify()
        assert report.ok, report
    finally:
        await controller.close()
        await dispose_postgres(storage)
