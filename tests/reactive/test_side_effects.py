"""RecordMutationSideEffect: after commit, once per matching event; retried, parked, durable."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

import reactive as r
from reactive.side_effects import SideEffectRecord
from storage import SQLiteStorage
from tests.conftest import PostgresFactory, sqlite_only

from .conftest import MakeController

SE = "_SideEffect_"


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Interaction]]:
    def positive(item: dict[str, Any]) -> bool:
        if item["score"] is not None and item["score"] < 0:
            raise ValueError("negative score")
        return True

    user = r.Entity("User", [r.Property("name")])

    def post_from(event: dict[str, Any]) -> Any:
        if event["interaction_name"] != "Publish":
            return None
        payload = event["payload"]
        post = {"title": payload["title"], "score": payload.get("score")}
        if event["user"] is not None:
            post["author"] = {"id": event["user"]["id"]}
        return post

    post = r.Entity(
        "Post",
        [r.Property("title"), r.Property("score", "number")],
        computation=r.Transform(r.INTERACTION_EVENT, post_from),
    )
    user.properties.append(
        r.Property(
            "good",
            "number",
            computation=r.Count(property="posts", callback=positive, attribute_query=["score"]),
        )
    )
    authors = r.Relation(user, "posts", post, "author", "1:n")
    publish = r.Interaction(
        "Publish",
        r.Payload([r.PayloadItem("title", required=True), r.PayloadItem("score", "number")]),
    )
    return [user, post], [authors], [publish]


class Recorder:
    """A side effect handler that records (event, key, attempt) and can be made to fail."""

    def __init__(self, fail_times: int = 0, error: str = "handler failed"):
        self.calls: list[tuple[str, str, Any, str, int]] = []
        self.fail_times = fail_times
        self.error = error

    async def handle(
        self, event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        self.calls.append(
            (
                event.record_name,
                event.type,
                event.record.get("id"),
                run.idempotency_key,
                run.attempt,
            )
        )
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError(self.error)

    @property
    def seen(self) -> list[tuple[str, Any]]:
        return [(kind, record_id) for _, kind, record_id, _, _ in self.calls]


def effect(
    name: str,
    handler: Any,
    record: Any = "Post",
    on: Any = ("create", "update", "delete"),
    **kw: Any,
) -> r.RecordMutationSideEffect:
    if isinstance(handler, Recorder):
        # an object with an async __call__ is not accepted as content: pass the bound method
        handler = handler.handle
    return r.RecordMutationSideEffect(name, record, handler, on=on, backoff=0.001, **kw)


async def test_side_effects_run_once_per_matching_committed_event(make: MakeController) -> None:
    everything, creates, deletes, updates = Recorder(), Recorder(), Recorder(), Recorder()
    entities, relations, interactions = model()
    c = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[
            effect("everything", everything),
            effect("creates", creates, on=("create",)),
            effect("deletes", deletes, on="delete"),
            effect("updates", updates, record=entities[1], on=["update"]),
        ],
    )

    p = await c.storage.create("Post", {"title": "direct"})
    published = await c.dispatch("Publish", payload={"title": "dispatched"})
    assert published.error is None
    q = await c.storage.find_one("Post", {"title": "dispatched"})
    assert q is not None
    await c.storage.update("Post", {"id": p["id"]}, {"title": "direct 2"})
    await c.storage.update("Post", {}, {"score": 1})  # two events
    await c.storage.delete("Post", {"id": q["id"]})
    await c.storage.create("User", {"name": "not watched"})
    await c.drain()

    assert everything.seen == [
        ("create", p["id"]),
        ("create", q["id"]),
        ("update", p["id"]),
        ("update", p["id"]),
        ("update", q["id"]),
        ("delete", q["id"]),
    ]
    assert creates.seen == [("create", p["id"]), ("create", q["id"])]
    assert updates.seen == [("update", p["id"]), ("update", p["id"]), ("update", q["id"])]
    assert deletes.seen == [("delete", q["id"])]
    assert await c.side_effects.pending() == []
    assert await c.side_effects.dead() == []
    assert await c.storage.count(SE) == 0


async def test_side_effects_run_after_commit_and_may_write(make: MakeController) -> None:
    log = r.Entity("Log", [r.Property("text")])
    observed: list[Any] = []

    async def handler(event: r.MutationEvent, controller: r.Controller) -> None:
        # the record is committed: visible through a fresh read
        found = await controller.storage.find_one("Post", {"id": event.record["id"]}, ["title"])
        observed.append((found, controller is c))
        await controller.storage.create("Log", {"text": f"saw {event.record['title']}"})

    entities, relations, interactions = model()
    c = await make(
        [*entities, log],
        relations,
        interactions=interactions,
        side_effects=[effect("log", handler, on=("create",))],
    )

    result = await c.dispatch("Publish", payload={"title": "hello"})
    await c.drain()

    post_id = next(e.record["id"] for e in result.effects if e.record_name == "Post")
    assert observed == [({"id": post_id, "title": "hello"}, True)]
    assert [x["text"] for x in await c.storage.find("Log", None, ["text"])] == ["saw hello"]


async def test_no_side_effects_for_rolled_back_writes(make: MakeController) -> None:
    rec = Recorder()
    entities, relations, interactions = model()
    c = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[effect("all", rec), effect("users", rec, record="User")],
    )
    ada = await c.storage.create("User", {"name": "ada"})
    await c.drain()
    rec.calls.clear()

    with pytest.raises(r.ComputationError):
        await c.storage.create("Post", {"title": "bad", "score": -1, "author": {"id": ada["id"]}})
    failed = await c.dispatch(
        "Publish", user={"id": ada["id"]}, payload={"title": "x", "score": -1}
    )
    rejected = await c.dispatch("Publish", payload={})
    await c.drain()

    assert failed.error is not None and failed.error.code == "computation_error"
    assert rejected.error is not None and rejected.error.code == "payload_missing"
    assert rec.calls == []
    assert await c.storage.count(SE) == 0
    assert await c.storage.count("Post") == 0


async def test_a_failing_handler_is_retried_then_parked_dead(make: MakeController) -> None:
    rec = Recorder(fail_times=100, error="smtp down")
    entities, relations, _ = model()
    c = await make(
        entities, relations, side_effects=[effect("mail", rec, on=("create",), max_attempts=3)]
    )

    p = await c.storage.create("Post", {"title": "x"})
    await c.drain()

    key = f"mail:Post:{p['id']}"
    assert rec.calls == [("Post", "create", p["id"], key, n) for n in (1, 2, 3)]
    assert await c.side_effects.pending() == []
    dead = await c.side_effects.dead()
    assert len(dead) == 1
    parked = dead[0]
    assert (parked.name, parked.key, parked.status, parked.attempts) == ("mail", key, "dead", 3)
    assert parked.last_error is not None and "smtp down" in parked.last_error
    assert parked.event.record_name == "Post"
    assert parked.event.type == "create"
    assert parked.event.record["id"] == p["id"]

    # fixed: a rerun runs it again (attempts from 1) and it leaves the dead list
    rec.fail_times = 0
    await c.side_effects.rerun(parked.id)
    await c.drain()
    assert rec.calls[-1] == ("Post", "create", p["id"], key, 1)
    assert await c.side_effects.dead() == []
    assert await c.side_effects.pending() == []
    assert await c.storage.count(SE) == 0

    with pytest.raises(LookupError):
        await c.side_effects.rerun(parked.id)


async def test_a_rerun_that_fails_again_is_dead_again(make: MakeController) -> None:
    rec = Recorder(fail_times=100)
    entities, relations, _ = model()
    c = await make(
        entities, relations, side_effects=[effect("mail", rec, on=("create",), max_attempts=2)]
    )
    await c.storage.create("Post", {"title": "x"})
    await c.drain()
    (parked,) = await c.side_effects.dead()

    await c.side_effects.rerun(parked.id)
    await c.drain()

    (again,) = await c.side_effects.dead()
    assert again.id == parked.id and again.attempts == 2
    assert len(rec.calls) == 4


async def test_a_handler_that_recovers_within_its_attempts_is_not_dead(
    make: MakeController,
) -> None:
    rec = Recorder(fail_times=2)
    entities, relations, _ = model()
    c = await make(
        entities, relations, side_effects=[effect("mail", rec, on=("create",), max_attempts=5)]
    )

    p = await c.storage.create("Post", {"title": "x"})
    await c.drain()

    assert [attempt for *_, attempt in rec.calls] == [1, 2, 3]
    assert {key for _, _, _, key, _ in rec.calls} == {f"mail:Post:{p['id']}"}
    assert await c.side_effects.dead() == []
    assert await c.side_effects.pending() == []


def parking_model() -> tuple[
    list[r.Entity], list[r.Relation], Recorder, r.RecordMutationSideEffect
]:
    rec = Recorder(fail_times=100)
    entities, relations, _ = model()
    return entities, relations, rec, effect("changes", rec, on=("update", "delete"), max_attempts=1)


async def test_failing_update_and_delete_handlers_are_parked_too(make: MakeController) -> None:
    entities, relations, rec, changes = parking_model()
    c = await make(entities, relations, side_effects=[changes])
    await parked_update_and_delete_are_rerun(c, rec)


async def test_failing_update_and_delete_handlers_are_parked_with_concurrent_writes(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Where the two parks really race: PostgreSQL writes at once (``concurrent_writes``), as
    several processes do. Measured with the old positional assertion: the delete's row came
    first in 14 runs of 25."""
    entities, relations, rec, changes = parking_model()
    storage = await postgres_storage_factory(concurrent_writes=True)
    c = r.Controller(storage, entities, relations, side_effects=[changes])
    await c.setup()
    try:
        await parked_update_and_delete_are_rerun(c, rec)
    finally:
        await c.close()


async def parked_update_and_delete_are_rerun(c: r.Controller, rec: Recorder) -> None:
    """The update's and the delete's handlers run as two tasks at once, each parking its own
    row: the engine promises no order between them (nor between the ids of the rows they
    park, which follow whichever park commits first), so they are matched by key, never by
    position. Asserting the order of the two rows was the race this test had."""
    p = await c.storage.create("Post", {"title": "x"})
    await c.storage.update("Post", {"id": p["id"]}, {"title": "y"})
    await c.storage.delete("Post", {"id": p["id"]})
    await c.drain()

    dead = {d.key: d for d in await c.side_effects.dead()}
    update_key, delete_key = (f"changes:Post:{p['id']}:{kind}" for kind in ("update", "delete"))
    assert {k: (d.event.type, d.attempts, d.status) for k, d in dead.items()} == {
        update_key: ("update", 1, "dead"),
        delete_key: ("delete", 1, "dead"),
    }
    assert dead[update_key].event.record["title"] == "y"
    old = dead[update_key].event.old_record
    assert old is not None
    assert old["title"] == "x"
    assert all("handler failed" in (d.last_error or "") for d in dead.values())
    assert sorted(rec.calls) == sorted(
        [
            ("Post", kind, p["id"], f"changes:Post:{p['id']}:{kind}", 1)
            for kind in ("update", "delete")
        ]
    )

    rec.fail_times = 0
    for d in dead.values():
        await c.side_effects.rerun(d.id)
    await c.drain()
    assert await c.side_effects.dead() == []
    assert await c.side_effects.pending() == []
    assert await c.storage.count(SE) == 0
    assert sorted(rec.calls[2:]) == sorted(
        [
            ("Post", kind, p["id"], f"changes:Post:{p['id']}:{kind}", 1)
            for kind in ("update", "delete")
        ]
    )


async def test_idempotency_key_is_stable_and_per_record(make: MakeController) -> None:
    rec = Recorder()
    entities, relations, interactions = model()
    c = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[effect("notify", rec, on=("create",)), effect("links", rec, relations[0])],
    )
    ada = await c.storage.create("User", {"name": "ada"})
    a = await c.storage.create("Post", {"title": "a", "author": {"id": ada["id"]}})
    await c.dispatch("Publish", payload={"title": "b"})
    await c.drain()

    b = await c.storage.find_one("Post", {"title": "b"})
    assert b is not None
    link = await c.storage.find_one(relations[0])
    assert link is not None
    assert sorted(key for _, _, _, key, _ in rec.calls) == sorted(
        [
            f"notify:Post:{a['id']}",
            f"notify:Post:{b['id']}",
            f"links:User_posts_author_Post:{link['id']}",
        ]
    )


@sqlite_only(
    "reads the SQLite file from a second sqlite3 connection inside a synchronous subscriber"
)
async def test_create_intents_are_stored_with_the_record(
    make: MakeController, db_path: str
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(event: r.MutationEvent, controller: r.Controller) -> None:
        started.set()
        await release.wait()

    entities, relations, _ = model()
    c = await make(entities, relations, side_effects=[effect("slow", slow, on=("create",))])
    intents_at_publish: list[int] = []

    def check(event: r.MutationEvent) -> None:
        with sqlite3.connect(db_path) as other:
            (n,) = other.execute(f'SELECT COUNT(*) FROM "{SE}"').fetchone()
        intents_at_publish.append(n)

    c.stream("Post", "create").subscribe(check)

    p = await c.storage.create("Post", {"title": "x"})
    assert intents_at_publish == [1]  # committed together with the Post
    await asyncio.wait_for(started.wait(), 2)

    pending = await c.side_effects.pending()
    assert [(x.name, x.key, x.status, x.event.record["id"]) for x in pending] == [
        ("slow", f"slow:Post:{p['id']}", "pending", p["id"])
    ]

    release.set()
    await c.drain()
    assert await c.side_effects.pending() == []
    assert await c.storage.count(SE) == 0


@pytest.mark.parametrize("install", [False, True])
async def test_a_new_controller_runs_intents_left_pending(
    make: MakeController, install: bool
) -> None:
    never = asyncio.Event()
    started = asyncio.Event()

    async def stuck(event: r.MutationEvent, controller: r.Controller) -> None:
        started.set()
        await never.wait()

    entities, relations, interactions = model()
    first = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[effect("deliver", stuck, on=("create",))],
    )
    result = await first.dispatch("Publish", payload={"title": "x"})
    assert result.error is None
    post_id = next(e.record["id"] for e in result.effects if e.record_name == "Post")
    await asyncio.wait_for(started.wait(), 2)
    await first.close()  # the handler never finished

    rec = Recorder()
    second = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[effect("deliver", rec, on=("create",))],
        install=install,
    )
    await second.drain()

    assert rec.calls == [("Post", "create", post_id, f"deliver:Post:{post_id}", 1)]
    assert await second.side_effects.pending() == []
    assert await second.storage.count(SE) == 0
    # the data itself was committed by the first controller
    assert await second.storage.find("Post", None, ["title"]) == [{"id": post_id, "title": "x"}]


async def test_close_leaves_unstarted_side_effects_pending(make: MakeController) -> None:
    never = asyncio.Event()

    async def stuck(event: r.MutationEvent, controller: r.Controller) -> None:
        await never.wait()

    entities, relations, _ = model()
    first = await make(entities, relations, side_effects=[effect("deliver", stuck, on=("create",))])
    for title in ("a", "b"):
        await first.storage.create("Post", {"title": title})
    await first.close()

    inspect = await make(entities, relations, install=False)  # no side effects declared
    rows = await inspect.backend.find(SE, None, ["name", "status"])
    assert [(x["name"], x["status"]) for x in rows] == [("deliver", "pending")] * 2


async def test_attempts_are_recorded_while_waiting_for_a_retry(make: MakeController) -> None:
    rec = Recorder(fail_times=1, error="flaky")
    entities, relations, _ = model()
    slow_retry = r.RecordMutationSideEffect(
        "flaky", "Post", rec.handle, on=("create",), backoff=0.2, max_backoff=0.2
    )
    c = await make(entities, relations, side_effects=[slow_retry])
    p = await c.storage.create("Post", {"title": "x"})

    async def first_failure_recorded() -> list[SideEffectRecord]:
        while True:
            rows = await c.side_effects.pending()
            if rows and rows[0].attempts == 1:
                return rows
            await asyncio.sleep(0.005)

    rows = await asyncio.wait_for(first_failure_recorded(), 2)
    if len(rec.calls) == 1:  # still waiting for the retry
        assert rows[0].last_error is not None and "flaky" in rows[0].last_error
        assert rows[0].key == f"flaky:Post:{p['id']}"
    await c.drain()
    assert [attempt for *_, attempt in rec.calls] == [1, 2]
    assert await c.side_effects.pending() == []
    assert await c.side_effects.dead() == []


async def test_a_new_controller_continues_the_attempt_count(make: MakeController) -> None:
    rec = Recorder(fail_times=100)
    entities, relations, _ = model()
    waiting = r.RecordMutationSideEffect(
        "mail", "Post", rec.handle, on=("create",), max_attempts=3, backoff=60, max_backoff=60
    )
    first = await make(entities, relations, side_effects=[waiting])
    p = await first.storage.create("Post", {"title": "x"})

    async def failed_once() -> None:
        while not (rows := await first.side_effects.pending()) or rows[0].attempts < 1:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(failed_once(), 2)
    await first.close()  # cancelled while sleeping before attempt 2

    again = Recorder()
    second = await make(
        entities,
        relations,
        side_effects=[effect("mail", again, on=("create",), max_attempts=3)],
        install=False,
    )
    await second.drain()

    assert again.calls == [("Post", "create", p["id"], f"mail:Post:{p['id']}", 2)]
    assert await second.side_effects.pending() == []


async def test_dead_side_effects_are_not_rerun_by_a_new_controller(make: MakeController) -> None:
    rec = Recorder(fail_times=100)
    entities, relations, _ = model()
    first = await make(
        entities, relations, side_effects=[effect("mail", rec, on=("create",), max_attempts=1)]
    )
    await first.storage.create("Post", {"title": "x"})
    await first.drain()
    await first.close()

    again = Recorder()
    second = await make(
        entities, relations, side_effects=[effect("mail", again, on=("create",))], install=False
    )
    await second.drain()
    assert again.calls == []
    (parked,) = await second.side_effects.dead()

    await second.side_effects.rerun(parked.id)
    await second.drain()
    assert len(again.calls) == 1
    assert await second.side_effects.dead() == []


async def test_side_effects_on_interaction_events(make: MakeController) -> None:
    rec = Recorder()
    entities, relations, interactions = model()
    c = await make(
        entities,
        relations,
        interactions=interactions,
        side_effects=[effect("audit", rec, record=r.INTERACTION_EVENT)],
    )

    ada = await c.storage.create("User", {"name": "ada"})
    ok = await c.dispatch("Publish", user={"id": ada["id"]}, payload={"title": "x"})
    rejected = await c.dispatch("Publish", payload={})  # no event, no side effect
    assert ok.error is None and rejected.error is not None
    await c.drain()

    assert rec.calls == [
        (r.INTERACTION_EVENT, "create", ok.data["id"], f"audit:_Interaction_:{ok.data['id']}", 1)
    ]


def test_side_effect_declaration_errors() -> None:
    async def ok(event: r.MutationEvent, controller: r.Controller) -> None:
        return None

    with pytest.raises(r.ModelError):
        r.RecordMutationSideEffect("x", "Post", "not callable")  # type: ignore[arg-type]
    with pytest.raises(r.ModelError):
        r.RecordMutationSideEffect("x", "Post", ok, on=("upsert",))
    with pytest.raises(r.ModelError):
        r.RecordMutationSideEffect("x", "Post", ok, max_attempts=0)
    entities, relations, _ = model()
    with pytest.raises(r.ModelError):
        r.Controller(
            SQLiteStorage(":memory:"),
            entities,
            relations,
            side_effects=[r.RecordMutationSideEffect("x", "Nope", ok)],
        )
    with pytest.raises(r.ModelError):
        r.Controller(
            SQLiteStorage(":memory:"),
            entities,
            relations,
            side_effects=[
                r.RecordMutationSideEffect("x", "Post", ok),
                r.RecordMutationSideEffect("x", "User", ok),
            ],
        )
