"""controller.mutations and controller.stream: committed events only, in commit order."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from tests.conftest import sqlite_only

from .conftest import MakeController

EV = r.INTERACTION_EVENT


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary], list[r.Interaction]]:
    def positive(item: dict[str, Any]) -> bool:
        if item["score"] is not None and item["score"] < 0:
            raise ValueError("negative score")
        return True

    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("posts_n", "number", computation=r.Count(property="posts")),
        ],
    )
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    authors = r.Relation(user, "posts", post, "author", "1:n")
    dicts = [
        r.Dictionary(
            "fine",
            "number",
            computation=r.Count(record=post, callback=positive, attribute_query=["score"]),
        )
    ]
    write = r.Interaction(
        "Write",
        r.Payload([r.PayloadItem("title", required=True), r.PayloadItem("score", "number")]),
        resolve=lambda ev, ctx: ctx.storage.create(
            "Post", {"title": ev["payload"]["title"], "score": ev["payload"].get("score")}
        ),
    )
    return [user, post], [authors], dicts, [write]


def kinds(events: list[r.MutationEvent]) -> list[tuple[str, str]]:
    return [(e.record_name, e.type) for e in events]


async def test_mutations_in_commit_order_for_dispatch_and_storage_writes(
    make: MakeController,
) -> None:
    c = await make(*model())
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)

    ada = await c.storage.create("User", {"name": "ada"})
    first = len(seen)
    post = await c.storage.create("Post", {"title": "p", "author": {"id": ada["id"]}})
    second = len(seen)
    result = await c.dispatch("Write", payload={"title": "q"})
    third = len(seen)
    await c.storage.update("Post", {"id": post["id"]}, {"title": "p2"})
    fourth = len(seen)
    await c.storage.delete("User", {"id": ada["id"]})

    assert kinds(seen[:first]) == [("User", "create")]
    # the write's own events first, then what computations derived from each, in turn
    assert kinds(seen[first:second]) == [
        ("Post", "create"),
        ("User_posts_author_Post", "create"),
        (DICTIONARY_RECORD, "update"),
        ("User", "update"),
    ]
    assert seen[first:second][3].record["posts_n"] == 1
    assert seen[second:third] == result.effects
    assert sorted(kinds(result.effects)) == sorted(
        [(EV, "create"), ("Post", "create"), (DICTIONARY_RECORD, "update")]
    )
    assert kinds(seen[third:fourth]) == [("Post", "update")]
    assert seen[third].record == {"id": post["id"], "title": "p2"}
    old = seen[third].old_record
    assert old is not None and old["title"] == "p"
    assert seen[third].keys == ("title",)
    assert kinds(seen[fourth:]) == [("User_posts_author_Post", "delete"), ("User", "delete")]


@sqlite_only(
    "reads the SQLite file from a second sqlite3 connection inside a synchronous subscriber"
)
async def test_events_are_published_after_commit(make: MakeController, db_path: str) -> None:
    c = await make(*model())
    visible: list[int] = []

    def check(event: r.MutationEvent) -> None:
        # another connection only sees committed data
        with sqlite3.connect(db_path) as other:
            (count,) = other.execute('SELECT COUNT(*) FROM "Post"').fetchone()
        visible.append(count)

    c.stream("Post", "create").subscribe(check)
    await c.storage.create("Post", {"title": "a"})
    await c.dispatch("Write", payload={"title": "b"})

    assert visible == [1, 2]


async def test_failed_writes_publish_nothing(make: MakeController) -> None:
    c = await make(*model())
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)

    with pytest.raises(r.ComputationError):
        await c.storage.create("Post", {"title": "bad", "score": -1})
    failed = await c.dispatch("Write", payload={"title": "bad", "score": -1})
    rejected = await c.dispatch("Write", payload={"score": 1})
    with pytest.raises(r.ModelError):
        await c.storage.create("User", {"name": "x", "posts_n": 3})

    assert failed.error is not None and failed.error.code == "computation_error"
    assert rejected.error is not None and rejected.error.code == "payload_missing"
    assert seen == []
    assert await c.storage.count("Post") == 0

    ok = await c.dispatch("Write", payload={"title": "good", "score": 1})
    assert ok.error is None
    assert seen == ok.effects


async def test_stream_filters_by_record_and_type(make: MakeController) -> None:
    entities, relations, dicts, interactions = model()
    c = await make(entities, relations, dicts, interactions)
    every_post: list[r.MutationEvent] = []
    post_updates: list[r.MutationEvent] = []
    interaction_events: list[r.MutationEvent] = []
    c.stream("Post").subscribe(every_post.append)
    c.stream(entities[1], "update").subscribe(post_updates.append)
    c.stream(EV, "create").subscribe(interaction_events.append)

    p = await c.storage.create("Post", {"title": "a"})
    await c.storage.update("Post", {"id": p["id"]}, {"title": "b"})
    await c.storage.create("User", {"name": "u"})
    await c.dispatch("Write", payload={"title": "c"})
    await c.storage.delete("Post", {})

    assert kinds(every_post) == [
        ("Post", "create"),
        ("Post", "update"),
        ("Post", "create"),
        ("Post", "delete"),
        ("Post", "delete"),
    ]
    assert [e.record["title"] for e in post_updates] == ["b"]
    assert [e.record["interaction_name"] for e in interaction_events] == ["Write"]


async def test_stream_argument_errors(make: MakeController) -> None:
    c = await make(*model())
    with pytest.raises(r.ModelError):
        c.stream("Nope")
    with pytest.raises(r.ModelError):
        c.stream("Post", "upsert")


async def test_side_effect_bookkeeping_is_not_published(make: MakeController) -> None:
    async def noop(event: r.MutationEvent, controller: r.Controller) -> None:
        return None

    entities, relations, dicts, interactions = model()
    effect = r.RecordMutationSideEffect("noop", "Post", noop)
    c = await make(entities, relations, dicts, interactions, [effect])
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)

    await c.storage.create("Post", {"title": "a"})
    await c.drain()

    assert kinds(seen) == [("Post", "create"), (DICTIONARY_RECORD, "update")]


async def test_a_raising_subscriber_does_not_starve_the_others(make: MakeController) -> None:
    c = await make(*model())

    def broken(event: r.MutationEvent) -> None:
        raise RuntimeError("subscriber bug")

    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(broken)
    c.mutations.subscribe(seen.append)

    post = await c.storage.create("Post", {"title": "a"})  # the write itself still commits

    assert await c.storage.count("Post", {"id": post["id"]}) == 1
    assert kinds(seen) == [("Post", "create"), (DICTIONARY_RECORD, "update")]
