"""Aggregates that read more than their related records (issue 14, item 4): ``data_deps`` on a
dictionary's value, and attribute-query paths one relation past the item
(``("author", ["status"])``). Modeled on the original framework's tests (a Count of purchases
above a global minimum follows the minimum; a Count whose callback reads a field of a record
the item links to), plus a hypothesis run of random writes (items created, updated, deleted,
re-linked; the threshold changed; authors' status changed; authors deleted) checked after
every step against a plain-Python recount and ``verify()``, on both backends."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from functools import partial
from typing import Any

import pytest
from hypothesis import strategies as st

import reactive as r
from reactive.errors import ModelError
from storage import PostgresStorage, SQLiteStorage
from tests._backends import on_both_backends
from tests.conftest import PG_URL, dispose_postgres, open_postgres, scratch_storage
from tests.reactive.conftest import MakeController

EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "30"))
AUTHORED = "Post_author_authored_User"


def above(item: dict[str, Any], deps: dict[str, Any]) -> bool:
    return bool((item["price"] or 0) > deps["t"])


def by_active(item: dict[str, Any]) -> bool:
    return (item["author"] or {}).get("status") == "active"


def above_by_active(item: dict[str, Any], deps: dict[str, Any]) -> bool:
    return above(item, deps) and by_active(item)


def weighted(item: dict[str, Any], deps: dict[str, Any]) -> tuple[int, Any]:
    return (2 if by_active(item) else 1, (item["price"] or 0) if above(item, deps) else 0)


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    user = r.Entity("User", [r.Property("name"), r.Property("status")])
    post = r.Entity("Post", [r.Property("price", "integer")])
    owns = r.Relation(user, "posts", post, "owner", "1:n")
    authored = r.Relation(post, "author", user, "authored", "n:1")
    t = {"t": r.DictionaryDep("threshold")}
    deep = ["price", ["author", ["status"]]]  # a list entry, as ported code writes it
    user.properties += [
        # A plain Count first: it locks the host's row before the aggregates with data deps
        # run (the order in which concurrent writes must not deadlock).
        r.Property("n_posts", "integer", computation=r.Count(property="posts")),
        r.Property(
            "expensive",
            "integer",
            computation=r.Count(
                property="posts", attribute_query=["price"], data_deps=t, callback=above
            ),
        ),
        r.Property(
            "by_active",
            "integer",
            computation=r.Count(property="posts", attribute_query=deep, callback=by_active),
        ),
        r.Property(
            "weighted",
            "integer",
            computation=r.WeightedSummation(
                property="posts", attribute_query=deep, data_deps=t, callback=weighted
            ),
        ),
        r.Property(
            "all_above",
            "boolean",
            computation=r.Every(
                property="posts", attribute_query=["price"], data_deps=t, callback=above
            ),
        ),
        r.Property(
            "any_both",
            "boolean",
            computation=r.Any(
                property="posts", attribute_query=deep, data_deps=t, callback=above_by_active
            ),
        ),
    ]
    dictionaries = [
        r.Dictionary("threshold", "integer", default=10),
        r.Dictionary(
            "n_above",
            "integer",
            computation=r.Count(
                record=post, attribute_query=["price"], data_deps=t, callback=above
            ),
        ),
        r.Dictionary(
            "n_both",
            "integer",
            computation=r.Count(
                record=post, attribute_query=deep, data_deps=t, callback=above_by_active
            ),
        ),
        r.Dictionary(
            "sum_weighted",
            "integer",
            computation=r.WeightedSummation(
                record=post, attribute_query=deep, data_deps=t, callback=weighted
            ),
        ),
        r.Dictionary(
            "every_by_active",
            "boolean",
            computation=r.Every(record=post, attribute_query=deep, callback=by_active),
        ),
    ]
    return [user, post], [owns, authored], dictionaries


async def expected(c: r.Controller) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Every derived value recounted in plain Python from what is stored."""
    t = await c.storage.get_dict("threshold")
    deps = {"t": 10 if t is None else t}
    posts = await c.storage.find(
        "Post", None, ["price", ("owner", ["id"]), ("author", ["id", "status"])]
    )
    users = await c.storage.find("User")
    hosts: dict[Any, dict[str, Any]] = {}
    for u in users:
        own = [p for p in posts if (p["owner"] or {}).get("id") == u["id"]]
        hosts[u["id"]] = {
            "n_posts": len(own),
            "expensive": sum(1 for p in own if above(p, deps)),
            "by_active": sum(1 for p in own if by_active(p)),
            "weighted": sum(w * v for w, v in (weighted(p, deps) for p in own)),
            "all_above": all(above(p, deps) for p in own),
            "any_both": any(above_by_active(p, deps) for p in own),
        }
    globals_ = {
        "n_above": sum(1 for p in posts if above(p, deps)),
        "n_both": sum(1 for p in posts if above_by_active(p, deps)),
        "sum_weighted": sum(w * v for w, v in (weighted(p, deps) for p in posts)),
        "every_by_active": all(by_active(p) for p in posts),
    }
    return hosts, globals_


async def check(c: r.Controller) -> None:
    hosts, globals_ = await expected(c)
    fields = ["n_posts", "expensive", "by_active", "weighted", "all_above", "any_both"]
    stored = {u["id"]: u for u in await c.storage.find("User", None, fields)}
    for user_id, values in hosts.items():
        assert {f: stored[user_id][f] for f in fields} == values, user_id
    for name, value in globals_.items():
        assert await c.storage.get_dict(name) == value, name
    report = await c.verify()
    assert report.ok, str(report)


async def test_count_follows_a_global_threshold(make: MakeController) -> None:
    """The original's 'VIP purchases': a Count of items above a dictionary's value changes
    when the value does, for every host and for the global count."""
    c = await make(*model())
    alice = await c.storage.create("User", {"name": "alice", "status": "active"})
    bob = await c.storage.create("User", {"name": "bob", "status": "idle"})
    for price, owner in [(5, alice), (12, alice), (8, alice), (15, bob)]:
        await c.storage.create("Post", {"price": price, "owner": owner})
    found = await c.storage.find("User", None, ["expensive", "all_above"])
    assert [(u["expensive"], u["all_above"]) for u in found] == [(1, False), (1, True)]
    assert await c.storage.get_dict("n_above") == 2
    await c.storage.set_dict("threshold", 6)
    found = await c.storage.find("User", None, ["expensive", "all_above"])
    assert [(u["expensive"], u["all_above"]) for u in found] == [(2, False), (1, True)]
    assert await c.storage.get_dict("n_above") == 3
    await c.storage.set_dict("threshold", 100)
    assert [u["expensive"] for u in await c.storage.find("User", None, ["expensive"])] == [0, 0]
    assert await c.storage.get_dict("n_above") == 0
    # An item change after the threshold moved is judged against the new value.
    post = (await c.storage.find("Post", None, ["price"]))[0]
    await c.storage.update("Post", {"id": post["id"]}, {"price": 101})
    alice_now = await c.storage.find_one("User", {"id": alice["id"]}, ["expensive"])
    assert alice_now is not None and alice_now["expensive"] == 1
    await check(c)


async def test_deep_path_follows_the_author(make: MakeController) -> None:
    """A Count whose callback reads ``item["author"]["status"]`` changes when the author's
    status changes, when the item gets another author or none, and when the author goes."""
    c = await make(*model())
    host = await c.storage.create("User", {"name": "host", "status": "idle"})
    ann = await c.storage.create("User", {"name": "ann", "status": "idle"})
    ben = await c.storage.create("User", {"name": "ben", "status": "active"})
    p1 = await c.storage.create("Post", {"price": 20, "owner": host, "author": ann})
    await c.storage.create("Post", {"price": 30, "owner": host, "author": ann})

    async def by_active_of_host() -> int:
        found = await c.storage.find_one("User", {"id": host["id"]}, ["by_active"])
        assert found is not None
        return int(found["by_active"])

    assert await by_active_of_host() == 0
    await c.storage.update("User", {"id": ann["id"]}, {"status": "active"})
    assert await by_active_of_host() == 2
    assert await c.storage.get_dict("n_both") == 2
    await c.storage.update("User", {"id": ann["id"]}, {"name": "ann2"})  # not read: no change
    assert await by_active_of_host() == 2
    await c.storage.update("User", {"id": ann["id"]}, {"status": "gone"})
    assert await by_active_of_host() == 0
    await c.storage.update("Post", {"id": p1["id"]}, {"author": ben})  # relinked
    assert await by_active_of_host() == 1
    await c.storage.update("Post", {"id": p1["id"]}, {"author": None})  # unlinked
    assert await by_active_of_host() == 0
    await c.storage.update("Post", {"id": p1["id"]}, {"author": ben})
    assert await by_active_of_host() == 1
    await c.storage.delete("User", {"id": ben["id"]})  # the author goes, and its links
    assert await by_active_of_host() == 0
    await check(c)


async def test_nested_create_and_same_write_changes(make: MakeController) -> None:
    """An item created with a new author in one write, and a write that changes several
    things in one transaction, leave values a recount agrees with."""
    c = await make(*model())
    host = await c.storage.create("User", {"name": "host", "status": "idle"})
    await c.storage.create(
        "Post", {"price": 50, "owner": host, "author": {"name": "new", "status": "active"}}
    )
    await check(c)

    def several(ctx: r.TransactionContext) -> None:
        post = ctx.storage.create("Post", {"price": 40, "owner": host})
        author = ctx.storage.create("User", {"name": "x", "status": "active"})
        ctx.storage.update("Post", {"id": post["id"]}, {"author": author})
        ctx.storage.set_dict("threshold", 35)
        ctx.storage.update("User", {"id": author["id"]}, {"status": "idle"})
        ctx.storage.update("User", {"id": author["id"]}, {"status": "active"})
        ctx.storage.update("Post", {"id": post["id"]}, {"price": 41})

    await c.transact(several)
    found = await c.storage.find_one("User", {"id": host["id"]}, ["by_active", "expensive"])
    assert found is not None
    assert (found["by_active"], found["expensive"]) == (2, 2)
    await check(c)


async def test_added_to_a_model_with_data_the_values_are_backfilled(
    make: MakeController,
) -> None:
    """Adding these aggregates to a database that holds data: ``setup()`` computes them from
    the stored records, the dictionary's value and the authors' fields; then they follow."""
    entities, relations, dictionaries = model()
    for entity in entities:
        entity.properties[:] = [p for p in entity.properties if p.computation is None]
    plain = await make(entities, relations, [d for d in dictionaries if d.computation is None])
    ann = await plain.storage.create("User", {"name": "ann", "status": "active"})
    for price in (5, 15, 25):
        await plain.storage.create("Post", {"price": price, "owner": ann, "author": ann})
    await plain.storage.set_dict("threshold", 12)
    await plain.close()
    c = await make(*model())
    found = await c.storage.find_one("User", {"id": ann["id"]}, ["expensive", "by_active"])
    assert found is not None
    assert (found["expensive"], found["by_active"]) == (2, 3)
    assert await c.storage.get_dict("n_both") == 2
    await c.storage.set_dict("threshold", 20)
    assert await c.storage.get_dict("n_both") == 1
    await check(c)


async def test_verify_recounts_with_the_dictionary_and_the_authors(
    make: MakeController,
) -> None:
    """``verify()`` judges the stored values with the dictionary's value and the authors'
    fields as stored: a dictionary or an author changed behind the engine's back (no events)
    shows as differences, and ``recompute()`` brings the values to them."""
    c = await make(*model())
    ann = await c.storage.create("User", {"name": "ann", "status": "active"})
    for price in (5, 15, 25):
        await c.storage.create("Post", {"price": price, "owner": ann, "author": ann})
    assert (await c.verify()).ok
    row = await c.storage.find_one("_Dictionary_", {"key": "threshold"}, ["id"])
    assert row is not None
    await c.backend.run(lambda s: s.write_internal("_Dictionary_", row["id"], {"value": 20}))
    report = await c.verify()
    wrong = {(d.record, d.id, d.field) for d in report.differences}
    assert ("User", ann["id"], "expensive") in wrong
    assert ("_Dictionary_", "n_above", "value") in wrong
    await c.recompute()
    found = await c.storage.find_one("User", {"id": ann["id"]}, ["expensive", "by_active"])
    assert found is not None
    assert (found["expensive"], found["by_active"]) == (1, 3)
    await c.backend.run(lambda s: s.write_internal("User", ann["id"], {"status": "idle"}))
    wrong = {(d.record, d.id, d.field) for d in (await c.verify()).differences}
    assert ("User", ann["id"], "by_active") in wrong
    assert ("_Dictionary_", "every_by_active", "value") in wrong
    await c.recompute()
    await check(c)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (
            lambda p: r.Count(
                property="posts",
                attribute_query=["price"],
                data_deps={"t": r.DictionaryDep("nope")},
                callback=above,
            ),
            ["User.bad", "'nope'", "does not declare"],
        ),
        (
            lambda p: r.Count(
                property="posts", attribute_query=[("author", ["shoe_size"])], callback=by_active
            ),
            ["User.bad", "Post.author.shoe_size", "does not have"],
        ),
        (
            lambda p: r.Count(
                property="posts", attribute_query=[("nobody", ["status"])], callback=by_active
            ),
            ["User.bad", "no relation attribute 'nobody'"],
        ),
        (
            lambda p: r.Count(
                property="posts",
                attribute_query=[("author", ["status", ("authored", ["price"])])],
                callback=by_active,
            ),
            ["User.bad", "at most one relation further"],
        ),
        (
            lambda p: r.Summation(
                property="posts", attribute_query=["price"], data_deps={"t": r.DictionaryDep(p)}
            ),
            ["User.bad", "data_deps feed the callback", "WeightedSummation"],
        ),
        (
            lambda p: r.Count(
                property="posts", attribute_query=["price"], data_deps={"t": "threshold"}
            ),
            ["User.bad", "must be a DictionaryDep"],
        ),
        (
            lambda p: r.Count(
                property="posts",
                attribute_query=["price"],
                data_deps={"t": r.DictionaryDep(p)},
                callback=lambda item: True,
            ),
            ["User.bad", "(item, deps)"],
        ),
    ],
)
def test_bad_declarations_fail_at_setup(build: Any, words: list[str]) -> None:
    entities, relations, dictionaries = model()
    threshold = dictionaries[0]
    entities[0].properties.append(r.Property("bad", "integer", computation=build(threshold)))
    with pytest.raises(ModelError) as info:
        r.Controller(SQLiteStorage(":memory:"), entities, relations, dictionaries)
    for word in words:
        assert word in str(info.value)


def test_a_dictionary_cannot_depend_on_itself() -> None:
    entities, relations, _ = model()
    own = r.Dictionary(
        "own",
        "integer",
        computation=r.Count(
            record=entities[1],
            attribute_query=["price"],
            data_deps={"t": r.DictionaryDep("own")},
            callback=above,
        ),
    )
    with pytest.raises(ModelError, match=r"own .*itself keeps"):
        r.Controller(SQLiteStorage(":memory:"), entities, relations, [own])


def test_a_dependency_on_a_dictionary_derived_from_the_same_items_is_refused() -> None:
    """A Count of posts above their average price would move with every post twice (the
    average and the item at once): refused at setup, naming both computations."""
    entities, relations, dictionaries = model()
    post = entities[1]
    dictionaries.append(
        r.Dictionary("avg", "number", computation=r.Average(record=post, attribute_query=["price"]))
    )
    entities[0].properties.append(
        r.Property(
            "above_avg",
            "integer",
            computation=r.Count(
                property="posts",
                attribute_query=["price"],
                data_deps={"t": r.DictionaryDep("avg")},
                callback=above,
            ),
        )
    )
    with pytest.raises(ModelError) as info:
        r.Controller(SQLiteStorage(":memory:"), entities, relations, dictionaries)
    for word in ["User.above_avg", "'avg'", "avg (Average over Post)", "Post"]:
        assert word in str(info.value)


# -- random sequences -------------------------------------------------------------------------

IDX = st.integers(0, 5)
PRICE = st.one_of(st.none(), st.integers(0, 30))
STATUS = st.sampled_from(["active", "idle", None])
WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("user"), STATUS),
        st.tuples(st.just("post"), PRICE, IDX, st.one_of(st.none(), IDX)),
        st.tuples(st.just("price"), IDX, PRICE),
        st.tuples(st.just("delete_post"), IDX),
        st.tuples(st.just("threshold"), st.integers(0, 30)),
        st.tuples(st.just("status"), IDX, STATUS),
        st.tuples(st.just("author"), IDX, st.one_of(st.none(), IDX)),
        st.tuples(st.just("owner"), IDX, IDX),
        st.tuples(st.just("delete_user"), IDX),
    ),
    max_size=14,
)


async def apply(c: r.Controller, write: tuple[Any, ...]) -> None:
    users = [u["id"] for u in await c.storage.find("User")]
    posts = [p["id"] for p in await c.storage.find("Post")]

    def pick(ids: list[Any], i: Any) -> Any:
        return None if i is None or not ids else {"id": ids[i % len(ids)]}

    op = write[0]
    if op == "user":
        await c.storage.create("User", {"name": "u", "status": write[1]})
    elif op == "post":
        data: dict[str, Any] = {"price": write[1]}
        if pick(users, write[2]) is not None:
            data["owner"] = pick(users, write[2])
        if pick(users, write[3]) is not None:
            data["author"] = pick(users, write[3])
        await c.storage.create("Post", data)
    elif op == "threshold":
        await c.storage.set_dict("threshold", write[1])
    elif op in ("status", "delete_user") and users:
        target = pick(users, write[1])
        if op == "status":
            await c.storage.update("User", target, {"status": write[2]})
        else:
            await c.storage.delete("User", target)
    elif posts and op in ("price", "delete_post", "author", "owner"):
        target = pick(posts, write[1])
        if op == "price":
            await c.storage.update("Post", target, {"price": write[2]})
        elif op == "delete_post":
            await c.storage.delete("Post", target)
        elif op == "author":
            await c.storage.update("Post", target, {"author": pick(users, write[2])})
        elif users:
            await c.storage.update("Post", target, {"owner": pick(users, write[2])})


async def follows(writes: list[tuple[Any, ...]], backend: str) -> None:
    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, *model())
        await c.setup()
        try:
            # A start with something to change: users of each status, posts on both sides.
            for status in ("active", "idle", None):
                await apply(c, ("user", status))
            for price, owner, author in [(5, 0, 0), (15, 0, 1), (25, 1, 0), (12, 2, None)]:
                await apply(c, ("post", price, owner, author))
            for write in writes:
                await apply(c, write)
                await check(c)
        finally:
            await c.close()


test_random_writes_equal_a_recount, test_random_writes_equal_a_recount_on_postgresql = (
    on_both_backends(
        "test_random_writes_equal_a_recount",
        follows,
        examples=EXAMPLES,
        pg_examples=max(5, EXAMPLES // 4),
        writes=WRITES,
    )
)


async def test_concurrent_items_and_threshold_changes_lose_nothing(postgres_url: str) -> None:
    """PostgreSQL, transactions at once on several connections: tasks create and reprice
    posts of one user while another moves the threshold. An item write reads the threshold
    with its row locked, so no item is counted under a value replaced in between: the stored
    values equal a recount (and ``verify()``) however they interleave."""
    storage = await open_postgres(postgres_url, concurrent_writes=True, pool_size=4)
    controller = r.Controller(storage, *model())
    try:
        await controller.setup()
        host = await controller.storage.create("User", {"name": "host", "status": "active"})

        async def items(i: int) -> None:
            for k in range(12):
                post = await controller.storage.create(
                    "Post", {"price": (i * 7 + k * 5) % 30, "owner": host, "author": host}
                )
                await controller.storage.update("Post", {"id": post["id"]}, {"price": k * 3})

        async def thresholds() -> None:
            for k in range(12):
                await controller.storage.set_dict("threshold", (k * 11) % 30)

        await asyncio.gather(*(items(i) for i in range(3)), thresholds())
        await check(controller)
    finally:
        await controller.close()
        await dispose_postgres(storage)


def deep_model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    """A deep path and no data deps: nothing else orders the writes (a data dep's row, locked
    by every write that reaches its aggregates, would serialise them)."""
    user = r.Entity("User", [r.Property("name"), r.Property("status")])
    post = r.Entity("Post", [r.Property("price", "integer")])
    owns = r.Relation(user, "posts", post, "owner", "1:n")
    authored = r.Relation(post, "author", user, "authored", "n:1")
    deep = [["author", ["status"]]]
    user.properties += [
        r.Property("n_posts", "integer", computation=r.Count(property="posts")),
        r.Property(
            "by_active",
            "integer",
            computation=r.Count(property="posts", attribute_query=deep, callback=by_active),
        ),
    ]
    return [user, post], [owns, authored], []


async def check_deep(c: r.Controller) -> None:
    """by_active and n_posts of every user equal a recount of what is stored; verify agrees."""
    posts = await c.storage.find("Post", None, [("owner", ["id"]), ("author", ["id", "status"])])
    for user in await c.storage.find("User", None, ["n_posts", "by_active"]):
        own = [p for p in posts if (p["owner"] or {}).get("id") == user["id"]]
        assert (user["n_posts"], user["by_active"]) == (
            len(own),
            sum(1 for p in own if by_active(p)),
        ), user
    report = await c.verify()
    assert report.ok, str(report)


def in_thread(schema: str, run: Any) -> threading.Thread:
    """``await run(controller)`` on a controller of its own (its own storage, connection pool
    and event loop) on ``schema``, in a thread: a transaction body that blocks blocks only it."""

    async def main() -> None:
        storage = PostgresStorage(PG_URL, schema=schema, concurrent_writes=True, pool_size=2)
        controller = r.Controller(storage, *deep_model())
        try:
            await controller.setup()
            await run(controller)
        finally:
            await controller.close()
            await storage.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    return thread


async def test_an_unlink_waits_for_an_uncommitted_author_change(postgres_url: str) -> None:
    """PostgreSQL: one transaction changes an author's status and stays open; another unlinks
    a post from that author meanwhile. The unlink reads the author share-locked, so it waits
    for the change to commit and takes the post's share out under the new status (which the
    change, not seeing the unlink, applied to it): the host's count is right, not -1."""
    storage = await open_postgres(postgres_url, concurrent_writes=True, pool_size=2)
    controller = r.Controller(storage, *deep_model())
    try:
        await controller.setup()
        author = await controller.storage.create("User", {"name": "a", "status": "active"})
        host = await controller.storage.create("User", {"name": "h", "status": "active"})
        post = await controller.storage.create("Post", {"owner": host, "author": author})
        before = await controller.storage.find_one("User", {"id": host["id"]}, ["by_active"])
        assert before is not None and before["by_active"] == 1
        written = threading.Event()

        def change(ctx: Any) -> None:
            ctx.storage.update("User", {"id": author["id"]}, {"status": "idle"})
            written.set()
            time.sleep(0.3)  # uncommitted a while

        async def other(c: r.Controller) -> None:
            await c.transact(change)

        thread = in_thread(storage.schema_name or "", other)
        assert await asyncio.to_thread(written.wait, 10)
        await controller.storage.update("Post", {"id": post["id"]}, {"author": None})
        await asyncio.to_thread(thread.join)
        stored = await controller.storage.find_one("User", {"id": host["id"]}, ["by_active"])
        assert stored is not None and stored["by_active"] == 0
        await check_deep(controller)
    finally:
        await controller.close()
        await dispose_postgres(storage)


async def test_concurrent_links_and_author_changes_lose_nothing(postgres_url: str) -> None:
    """PostgreSQL, two controllers (two pools, two event loops) on one schema: one creates
    posts with an author, moves posts between authors, unlinks and deletes them; the other
    flips the authors' status. Each transaction stays open a moment after its write, so they
    overlap. A write that links or unlinks a post reads the author share-locked before any
    computation runs, so no post is counted under a status that a transaction not seeing the
    (un)link replaced: the stored values equal a recount (and ``verify()``)."""
    storage = await open_postgres(postgres_url, concurrent_writes=True, pool_size=2)
    controller = r.Controller(storage, *deep_model())
    try:
        await controller.setup()
        users = [
            await controller.storage.create("User", {"name": f"u{i}", "status": "active"})
            for i in range(2)
        ]
        hosts = [{"id": u["id"]} for u in users]

        def held(write: Any) -> Any:
            def body(ctx: Any) -> None:
                write(ctx)
                time.sleep(0.003)  # uncommitted a while

            return body

        async def posts(c: r.Controller) -> None:
            mine: list[Any] = []
            for k in range(24):
                post = await c.storage.create(
                    "Post", {"price": k, "owner": hosts[k % 2], "author": hosts[(k // 2) % 2]}
                )
                mine.append({"id": post["id"]})
                moved, author = mine[(k * 3) % len(mine)], [None, *hosts][k % 3]
                await c.transact(held(partial(_set_author, moved, author)))
                if k % 3 == 2:  # a post goes, and its link to its author with it
                    await c.transact(held(partial(_delete_post, mine.pop(0))))

        async def statuses(c: r.Controller) -> None:
            for k in range(40):
                change = partial(_set_status, hosts[k % 2], ["active", "idle"][(k // 2) % 2])
                await c.transact(held(change))

        thread = in_thread(storage.schema_name or "", statuses)
        try:
            await posts(controller)
        finally:
            await asyncio.to_thread(thread.join)
        await check_deep(controller)
    finally:
        await controller.close()
        await dispose_postgres(storage)


def _set_author(post: Any, author: Any, ctx: Any) -> None:
    ctx.storage.update("Post", post, {"author": author})


def _delete_post(post: Any, ctx: Any) -> None:
    ctx.storage.delete("Post", post)


def _set_status(user: Any, status: str, ctx: Any) -> None:
    ctx.storage.update("User", user, {"status": status})
