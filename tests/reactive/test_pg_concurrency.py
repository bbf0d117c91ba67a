"""The engine on one PostgreSQL with writes at once (``concurrent_writes=True``): computations
that read their host lock it, a conflicted transaction runs again whole, and only the run that
committed is seen (its events published once, its side effects started once).

The retry tests steer two transactions into a serialization failure on every run: their bodies
wait for each other (an asyncio barrier awaited between two statements, which works inside a
body) after reading and before writing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import reactive as r
from storage import MutationEvent, PostgresStorage
from storage.postgres.bridge import await_

from ..conftest import PostgresFactory

_WAIT = 20.0
_N = 30  # transactions at once in the hammering tests


def _post_model(**computed: r.Computation) -> tuple[r.Entity, r.Entity]:
    post = r.Entity(
        "Post",
        [r.Property("title")]
        + [r.Property(name, "json", computation=comp) for name, comp in computed.items()],
    )
    hit = r.Entity("Hit", [r.Property("post_id", "number"), r.Property("who")])
    return post, hit


async def _controller(
    make: PostgresFactory, entities: list[r.Entity], **options: Any
) -> tuple[r.Controller, PostgresStorage]:
    store = await make(concurrent_writes=True, pool_size=6, **options)
    controller = r.Controller(store, entities)
    await controller.setup()
    return controller, store


def _target(event: MutationEvent) -> dict[str, Any]:
    return {"id": event.record["post_id"]}


async def test_custom_state_machine_and_a_custom_over_a_collection_lose_nothing(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Many transactions at once, each a Hit on one post: the Custom counter, the
    StateMachine's step count and state, and a Custom that counts the post's hits by reading
    them all are exact, because each locks the post before it reads."""
    tick, tock = r.StateNode("tick"), r.StateNode("tock")

    def step(last: Any, event: Any) -> int:
        return (last or 0) + 1

    tick.compute_value = step
    tock.compute_value = step
    hit_trigger = r.Trigger("Hit", "create")
    machine = r.StateMachine(
        [tick, tock],
        [
            r.StateTransfer(tick, tock, hit_trigger, _target),
            r.StateTransfer(tock, tick, hit_trigger, _target),
        ],
        tick,
    )

    def count_all(last: Any, event: MutationEvent, ctx: r.TransactionContext) -> int:
        return len(ctx.storage.find("Hit", {"post_id": event.record["post_id"]}))

    post, hit = _post_model(
        hits=r.Custom(
            lambda last, event: last + 1, triggers=[hit_trigger], compute_target=_target, initial=0
        ),
        steps=machine,
        seen=r.Custom(count_all, triggers=[hit_trigger], compute_target=_target, initial=0),
    )
    controller, _ = await _controller(postgres_storage_factory, [post, hit])
    target = await controller.storage.create("Post", {"title": "hot"})
    await asyncio.gather(
        *(
            controller.storage.create("Hit", {"post_id": target["id"], "who": f"w{i}"})
            for i in range(_N)
        )
    )
    found = await controller.storage.find_one(
        "Post", {"id": target["id"]}, ["hits", "steps", "seen", "_steps_bound_state"]
    )
    assert found is not None
    assert (found["hits"], found["steps"], found["seen"]) == (_N + 0, _N + 1, _N)
    assert found["_steps_bound_state"] == ("tick" if _N % 2 == 0 else "tock")
    report = await controller.verify()
    assert report.ok, report.differences


async def test_a_transform_refreshed_at_once_by_many_writers_ends_as_its_source(
    postgres_storage_factory: PostgresFactory,
) -> None:
    post = r.Entity("Post", [r.Property("title"), r.Property("n", "number", default=0)])
    copy = r.Entity(
        "Copy",
        [r.Property("title"), r.Property("n", "number")],
        computation=r.Transform(post, lambda p: {"title": p["title"], "n": p["n"]}),
    )
    controller, _ = await _controller(postgres_storage_factory, [post, copy])
    source = await controller.storage.create("Post", {"title": "t0"})
    await asyncio.gather(
        *(
            controller.storage.update("Post", {"id": source["id"]}, {"title": f"t{i}", "n": i})
            for i in range(1, _N)
        )
    )
    final = await controller.storage.find_one("Post", {"id": source["id"]}, ["title", "n"])
    copies = await controller.storage.find("Copy", None, ["title", "n"])
    assert final is not None
    assert [(c["title"], c["n"]) for c in copies] == [(final["title"], final["n"])]
    report = await controller.verify()
    assert report.ok, report.differences


async def test_a_conflicted_transaction_runs_again_and_only_its_last_run_is_seen(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Two SERIALIZABLE transactions read the post, wait for each other, then both write it:
    one fails with 40001 and runs again whole. Subscribers see each transaction's events once
    (the committed run's), the side effect runs once per committed Hit, and the results are
    those of the runs that committed."""
    ran: list[tuple[str, Any]] = []

    async def effect(event: MutationEvent, controller: r.Controller) -> None:
        ran.append((event.record["who"], event.record["id"]))

    post, hit = _post_model()
    store = await postgres_storage_factory(
        concurrent_writes=True, pool_size=4, isolation="serializable"
    )
    controller = r.Controller(
        store,
        [post, hit],
        side_effects=[r.RecordMutationSideEffect("log", hit, effect, on=("create",))],
    )
    await controller.setup()
    target = await controller.storage.create("Post", {"title": "0"})
    published: list[MutationEvent] = []
    controller.mutations.subscribe(published.append)
    both_read = asyncio.Barrier(2)
    runs: list[str] = []

    def retitle(who: str) -> Any:
        def body(ctx: r.TransactionContext) -> str:
            runs.append(who)
            current = ctx.storage.find_one("Post", {"id": target["id"]}, ["title"])
            assert current is not None
            ctx.storage.create("Hit", {"post_id": target["id"], "who": who})
            if runs.count(who) == 1:
                await_(asyncio.wait_for(both_read.wait(), _WAIT))
            title = f"{current['title']}+{who}"
            ctx.storage.update("Post", {"id": target["id"]}, {"title": title})
            return title

        return body

    (a_title, a_events), (b_title, b_events) = await asyncio.gather(
        controller.transact(retitle("a")), controller.transact(retitle("b"))
    )
    await controller.drain()

    assert len(runs) == 3 and store.conflicts == 1
    assert sorted([a_title, b_title]) in (["0+a", "0+a+b"], ["0+b", "0+b+a"])
    final = await controller.storage.find_one("Post", {"id": target["id"]}, ["title"])
    assert final is not None and final["title"] == max(a_title, b_title, key=len)
    hits = await controller.storage.find("Hit", None, ["who"], order_by={"id": "asc"})
    assert sorted(h["who"] for h in hits) == ["a", "b"]  # the failed run's Hit is gone
    # Published: exactly the committed events, each once, Hit create then Post update per run.
    assert [(e.record_name, e.type) for e in published] == [
        ("Hit", "create"),
        ("Post", "update"),
    ] * 2
    assert published == [*a_events, *b_events] or published == [*b_events, *a_events]
    assert sorted(ran) == sorted((h["who"], h["id"]) for h in hits)
    assert await controller.side_effects.pending() == []  # every intent done and removed


async def test_recomputing_while_another_storage_writes_keeps_counts_exact(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """One controller likes a post (its writes take turns), another recomputes the counts at
    the same time on its own connections, as a second process would: the recomputation locks
    the hosts before it sums, so no like is lost or counted twice."""

    def entities() -> list[r.Entity]:
        post = r.Entity(
            "Post",
            [
                r.Property("title"),
                r.Property("n", "number", computation=r.Count(property="hits")),
            ],
        )
        hit = r.Entity("Hit", [r.Property("who")])
        return [post, hit]

    def relation(ents: list[r.Entity]) -> r.Relation:
        return r.Relation(ents[1], "post", ents[0], "hits", "n:1")

    writer_store = await postgres_storage_factory()
    writing = entities()
    writer = r.Controller(writer_store, writing, [relation(writing)])
    await writer.setup()
    recomputing = entities()
    other = r.Controller(
        await postgres_storage_factory(schema=writer_store.schema_name),
        recomputing,
        [relation(recomputing)],
    )
    await other.setup(install=False)
    posts = [await writer.storage.create("Post", {"title": f"p{i}"}) for i in range(3)]

    async def like() -> None:
        for i in range(_N * 2):
            target = posts[i % len(posts)]
            await writer.storage.create("Hit", {"who": f"w{i}", "post": {"id": target["id"]}})

    async def recompute() -> int:
        rounds = 0
        while not liking.done():
            await other.recompute("Post.n", batch_size=2)
            rounds += 1
        return rounds

    liking = asyncio.ensure_future(like())
    rounds = await recompute()
    await liking
    assert rounds >= 1
    for post in posts:
        found = await writer.storage.find_one("Post", {"id": post["id"]}, ["n"])
        hits = await writer.storage.count("Hit", {"post.id": post["id"]})
        assert found is not None and found["n"] == hits == _N * 2 // len(posts)
    report = await writer.verify()
    assert report.ok, report.differences


async def test_data_deps_customs_and_event_transforms_under_concurrent_writes(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Many Hits at once: a property Custom over every Hit (a global dependency: each host
    locked before the Hits are read), a dictionary Custom over them, one with state counting
    its runs, and a Transform over the Hits' create events are all exact afterwards."""

    def runs(deps: dict[str, Any], state: dict[str, Any]) -> int:
        state["runs"] += 1
        count: int = state["runs"]
        return count

    post, hit = _post_model(
        seen=r.Custom(
            lambda deps, rec: len(deps["hits"]), data_deps={"hits": r.RecordsDep("Hit", ["who"])}
        )
    )
    log = r.Entity(
        "HitLog",
        [r.Property("who")],
        computation=r.Transform(
            event_deps=[r.Trigger(hit, "create")], callback=lambda e: {"who": e.record["who"]}
        ),
    )
    dictionaries = [
        r.Dictionary(
            "hits",
            "integer",
            computation=r.Custom(
                lambda deps: len(deps["hits"]), data_deps={"hits": r.RecordsDep(hit, ["who"])}
            ),
        ),
        r.Dictionary(
            "runs",
            "integer",
            computation=r.Custom(
                runs, data_deps={"hits": r.RecordsDep(hit, ["who"])}, state={"runs": 0}
            ),
        ),
    ]
    store = await postgres_storage_factory(concurrent_writes=True, pool_size=6)
    controller = r.Controller(store, [post, hit, log], [], dictionaries)
    await controller.setup()
    posts = [await controller.storage.create("Post", {"title": t}) for t in ("a", "b")]
    await asyncio.gather(
        *(
            controller.storage.create("Hit", {"post_id": posts[i % 2]["id"], "who": f"w{i}"})
            for i in range(_N)
        )
    )
    rows = await controller.storage.find("Post", None, ["seen"], order_by={"id": "asc"})
    assert [x["seen"] for x in rows] == [_N, _N]
    assert await controller.storage.get_dict("hits") == _N
    assert await controller.storage.get_dict("runs") == _N + 1  # once at install
    logged = await controller.storage.find("HitLog", None, ["who"])
    assert sorted(x["who"] for x in logged) == sorted(f"w{i}" for i in range(_N))
    report = await controller.verify()
    assert report.ok, report.differences
    await controller.close()


def _lock_state(store: PostgresStorage, table: str, row_id: int) -> str:
    """From another connection (its own thread and event loop: the body blocks this loop):
    "locked" when the row cannot be locked at once, else "free"."""
    import asyncpg

    async def probe() -> str:
        conn = await asyncpg.connect(store.dsn)
        try:
            await conn.execute(f'SET search_path TO "{store.schema_name}"')
            async with conn.transaction():
                try:
                    await conn.fetch(
                        f'SELECT id FROM "{table}" WHERE id = $1 FOR UPDATE NOWAIT', row_id
                    )
                except asyncpg.LockNotAvailableError:
                    return "locked"
                return "free"
        finally:
            await conn.close()

    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(probe())))
    thread.start()
    thread.join(_WAIT)
    assert result, "the lock probe did not answer"
    return result[0]


async def test_a_compute_target_look_up_of_the_host_is_its_lock(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Inside ``compute_target`` a look-up of the host's record type reads the row locked (the
    host read that follows needs that lock, so the look-up is it: one statement, not two); a
    look-up of another type inside it, and a look-up of the host type elsewhere, lock nothing."""
    seen: dict[str, str] = {}
    store_box: list[PostgresStorage] = []

    def target(event: MutationEvent, ctx: r.TransactionContext) -> Any:
        post = ctx.storage.find_one("Post", {"title": event.record["who"]})
        other = ctx.storage.find_one("Hit", {"id": event.record["id"]})
        assert post is not None and other is not None
        seen["post"] = _lock_state(store_box[0], "Post", post["id"])
        seen["hit"] = _lock_state(store_box[0], "Hit", other["id"])
        return post

    post, hit = _post_model(
        hits=r.Custom(
            lambda last, event: (last or 0) + 1,
            triggers=[r.Trigger("Hit", "create")],
            compute_target=target,
            initial=0,
        )
    )
    controller, store = await _controller(postgres_storage_factory, [post, hit])
    store_box.append(store)
    try:
        created = await controller.storage.create("Post", {"title": "ada"})

        def plain_lookup(ctx: r.TransactionContext) -> str:
            found = ctx.storage.find_one("Post", {"title": "ada"})
            assert found == {"id": created["id"]}
            return _lock_state(store, "Post", created["id"])

        outside, _ = await controller.transact(plain_lookup)
        assert outside == "free"
        await controller.storage.create("Hit", {"post_id": created["id"], "who": "ada"})
        assert seen == {"post": "locked", "hit": "free"}
        got = await controller.storage.find_one("Post", {"id": created["id"]}, ["hits"])
        assert got == {"id": created["id"], "hits": 1}
    finally:
        await controller.close()
