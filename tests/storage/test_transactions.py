"""Transactions: ``storage.run`` returns the body's value and rolls back whole on an exception;
savepoints nest; a nested ``run`` is refused; the "loop" and "thread" executors agree."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from storage import (
    Field,
    MatchExp,
    MissingReferenceError,
    RecordType,
    Schema,
    SQLiteSession,
    SQLiteStorage,
    StorageError,
    TransactionError,
    UniqueViolationError,
)

from .conftest import blog_schema
from .helpers import COMMENT_AUTHOR, COMMENTS, POSTS, counts, dump, kinds


class Boom(Exception):
    pass


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine's synchronous start from inside a transaction body."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        coro.close()
    raise AssertionError("the coroutine suspended")


async def test_run_returns_the_body_value(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> tuple[int, int, list[dict[str, Any]]]:
        ada = tx.create("User", {"name": "ada"}).record
        assert ada is not None
        tx.create("Post", {"title": "p", "author": {"id": ada["id"]}})
        return ada["id"], tx.count("Post"), tx.find("Post", None, [("author", ["name"])])

    assert await executor_storage.run(body) == (
        1,
        1,
        [{"id": 1, "author": {"id": 1, "name": "ada"}}],
    )
    assert await executor_storage.count("User") == 1

    def returns_nothing(tx: SQLiteSession) -> object:
        return None

    assert await executor_storage.run(returns_nothing) is None


async def test_a_body_that_raises_rolls_back_everything(executor_storage: SQLiteStorage) -> None:
    storage = executor_storage
    await storage.create("User", {"name": "keep", "posts": [{"title": "kept"}]})
    before = await dump(storage)
    error = Boom("stop")

    def body(tx: SQLiteSession) -> None:
        tx.create("User", {"name": "ada", "posts": [{"title": "p"}], "profile": {"bio": "b"}})
        tx.update("User", {"name": "keep"}, {"age": 5, "posts": []})
        tx.delete("Post", {"title": "kept"})
        assert tx.count("User") == 2 and tx.count("Post") == 1
        raise error

    with pytest.raises(Boom) as info:
        await storage.run(body)
    assert info.value is error  # the very exception, not a wrapper
    assert await dump(storage) == before
    # the storage goes on working, and ids of the rolled-back records were not consumed
    assert (await storage.create("User", {"name": "next"})).records == [{"id": 2, "name": "next"}]


async def test_a_storage_error_in_the_body_rolls_back_too(executor_storage: SQLiteStorage) -> None:
    await executor_storage.create("User", {"name": "ada"})
    before = await dump(executor_storage)

    def body(tx: SQLiteSession) -> None:
        tx.create("User", {"name": "bob"})
        tx.create("User", {"name": "ada"})  # unique violation

    with pytest.raises(UniqueViolationError):
        await executor_storage.run(body)
    assert await dump(executor_storage) == before


async def test_savepoint_undoes_only_its_part(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> list[tuple[str, str]]:
        tx.create("User", {"name": "outer"})
        with pytest.raises(Boom), tx.savepoint():
            tx.create("User", {"name": "inner", "posts": [{"title": "p"}]})
            tx.update("User", {"name": "outer"}, {"age": 1})
            assert tx.count("User") == 2
            raise Boom
        # the savepoint's writes and events are gone
        assert tx.count("User") == 1 and tx.count("Post") == 0
        assert tx.find("User", None, ["age"]) == [{"id": 1, "age": None}]
        tx.create("Tag", {"label": "after"})
        return kinds(tx.events)

    assert await executor_storage.run(body) == [("create", "User"), ("create", "Tag")]
    assert await executor_storage.find("User", None, ["name"]) == [{"id": 1, "name": "outer"}]
    assert await executor_storage.count("Tag") == 1


async def test_savepoints_nest(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> list[str]:
        tx.create("Tag", {"label": "a"})
        with tx.savepoint():
            tx.create("Tag", {"label": "b"})
            with pytest.raises(Boom), tx.savepoint():
                tx.create("Tag", {"label": "c"})
                with tx.savepoint():
                    tx.create("Tag", {"label": "d"})
                raise Boom  # undoes c and d, not b
            with tx.savepoint():
                tx.create("Tag", {"label": "e"})
        with pytest.raises(Boom), tx.savepoint():
            tx.delete("Tag", None)
            raise Boom
        return [e.record["label"] for e in tx.events]

    assert await executor_storage.run(body) == ["a", "b", "e"]
    labels = await executor_storage.find("Tag", None, ["label"], order_by={"id": "asc"})
    assert [t["label"] for t in labels] == ["a", "b", "e"]


async def test_savepoint_then_failure_of_the_whole(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> None:
        with tx.savepoint():
            tx.create("Tag", {"label": "committed savepoint"})
        raise Boom

    with pytest.raises(Boom):
        await executor_storage.run(body)
    assert await executor_storage.count("Tag") == 0


async def test_a_failed_write_inside_a_body_leaves_nothing_and_the_body_goes_on(
    executor_storage: SQLiteStorage,
) -> None:
    def body(tx: SQLiteSession) -> list[tuple[str, str]]:
        tx.create("User", {"name": "ada"})
        with pytest.raises(MissingReferenceError):
            tx.create("Post", {"title": "p", "tags": [{"label": "t"}], "comments": [{"id": 99}]})
        with pytest.raises(UniqueViolationError):
            tx.create("User", {"name": "ada"})
        tx.create("User", {"name": "bob"})
        with pytest.raises(UniqueViolationError):
            tx.update("User", None, {"name": "same"})  # the second row collides
        assert tx.count("Post") == 0 and tx.count("Tag") == 0
        return kinds(tx.events)

    assert await executor_storage.run(body) == [("create", "User"), ("create", "User")]
    assert await executor_storage.find("User", None, ["name"], order_by={"id": "asc"}) == [
        {"id": 1, "name": "ada"},
        {"id": 2, "name": "bob"},
    ]


async def test_a_create_whose_second_reference_is_missing_undoes_its_first_link(
    executor_storage: SQLiteStorage,
) -> None:
    """Two to-one references: the record and its first link are written before the second
    link fails; the failed create must leave neither behind, and the body goes on."""

    def body(tx: SQLiteSession) -> tuple[list[tuple[str, str]], int, int]:
        author = tx.create("User", {"name": "ada"}).record
        post = tx.create("Post", {"title": "p"}).record
        assert author is not None and post is not None
        with pytest.raises(MissingReferenceError) as failed:
            tx.create("Comment", {"body": "x", "post": {"id": post["id"]}, "author": {"id": 999}})
        assert failed.value.field == "author"
        assert tx.count("Comment") == 0
        assert tx.count(COMMENTS) == 0
        kept = tx.create("Comment", {"body": "y", "post": {"id": post["id"]}}).record
        assert kept is not None and kept["post"] == {"id": post["id"]}
        return (
            kinds(tx.events),
            tx.count(COMMENTS),
            tx.count(COMMENT_AUTHOR),
        )

    events, post_links, author_links = await executor_storage.run(body)
    assert events == [
        ("create", "User"),
        ("create", "Post"),
        ("create", "Comment"),
        ("create", COMMENTS),
    ]
    assert (post_links, author_links) == (1, 0)
    assert [c["body"] for c in await executor_storage.find("Comment", None, ["body"])] == ["y"]


async def test_session_events_and_write_results(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> tuple[Any, ...]:
        first = tx.create("User", {"name": "ada"})
        second = tx.create("Post", {"title": "p", "author": {"id": 1}})
        third = tx.update("Post", {"id": 1}, {"title": "q"})
        return first.events, second.events, third.events, list(tx.events)

    first, second, third, everything = await executor_storage.run(body)
    assert everything == [*first, *second, *third]
    assert kinds(everything) == [
        ("create", "User"),
        ("create", "Post"),
        ("create", POSTS),
        ("update", "Post"),
    ]


async def test_session_snapshots_are_what_update_record_takes(
    executor_storage: SQLiteStorage,
) -> None:
    def body(tx: SQLiteSession) -> tuple[Any, ...]:
        tx.create("User", {"name": "ada", "age": 3, "posts": [{"title": "a"}, {"title": "b"}]})
        tx.create("User", {"name": "bob", "age": 5})
        young = tx.snapshots("User", {"age": 3})
        links = tx.snapshots(POSTS, None)
        none = tx.snapshots("User", {"name": "nobody"})
        each = [tx.snapshot(POSTS, link["id"]) for link in links]
        return young, links, none, each

    young, links, none, each = await executor_storage.run(body)
    assert young == [
        {"id": 1, "name": "ada", "age": 3, "active": None, "meta": None, "joined": None}
    ]
    assert links == each
    assert [(link["source"], link["target"]) for link in links] == [
        ({"id": 1}, {"id": 1}),
        ({"id": 1}, {"id": 2}),
    ]
    assert none == []
    with pytest.raises(StorageError, match="Nope"):
        await executor_storage.run(lambda tx: tx.snapshots("Nope", None))


async def test_nested_run_is_refused(executor_storage: SQLiteStorage) -> None:
    storage = executor_storage

    def body(tx: SQLiteSession) -> str:
        tx.create("User", {"name": "ada"})
        with pytest.raises(TransactionError, match="savepoint"):
            _drive(storage.run(lambda inner: inner.create("User", {"name": "nested"})))
        with pytest.raises(TransactionError):
            _drive(storage.count("User"))
        return "done"

    assert await storage.run(body) == "done"
    # the outer transaction committed, the nested one never ran
    assert await storage.find("User", None, ["name"]) == [{"id": 1, "name": "ada"}]
    # and the storage is free again
    assert await storage.run(lambda tx: tx.count("User")) == 1


async def test_where_the_body_runs(executor_storage: SQLiteStorage) -> None:
    loop_thread = threading.get_ident()
    body_thread = await executor_storage.run(lambda tx: threading.get_ident())
    if executor_storage.executor == "loop":
        assert body_thread == loop_thread
    else:
        assert body_thread != loop_thread


async def test_concurrent_transactions_do_not_interleave(executor_storage: SQLiteStorage) -> None:
    def body(tx: SQLiteSession) -> int:
        before = tx.count("Tag")
        tx.create("Tag", {"label": str(before)})
        return tx.count("Tag") - before

    results = await asyncio.gather(*(executor_storage.run(body) for _ in range(20)))
    assert results == [1] * 20
    labels = [
        t["label"]
        for t in await executor_storage.find("Tag", None, ["label"], order_by={"id": "asc"})
    ]
    assert labels == [str(i) for i in range(20)]


async def test_read_transaction(executor_storage: SQLiteStorage) -> None:
    await executor_storage.create("User", {"name": "ada"})
    found = await executor_storage.run(lambda tx: tx.find_one("User", None, ["name"]), write=False)
    assert found == {"id": 1, "name": "ada"}


async def _workload(storage: SQLiteStorage) -> list[Any]:
    """The same writes and reads, to compare the executors' observable results."""
    out: list[Any] = []
    out.append(
        await storage.create(
            "User", {"name": "ada", "posts": [{"title": "p", "tags": [{"label": "t"}]}]}
        )
    )
    out.append(await storage.update("Post", {"id": 1}, {"author": None, "score": 2}))

    def body(tx: SQLiteSession) -> Any:
        tx.create("User", {"name": "bob", "posts": [{"id": 1}]})
        with pytest.raises(Boom), tx.savepoint():
            tx.delete("Tag", None)
            raise Boom
        return list(tx.events)

    out.append(await storage.run(body))
    with pytest.raises(StorageError) as info:
        await storage.create("User", {"name": "ada"})
    out.append((type(info.value), str(info.value)))
    out.append(await storage.delete("User", {"name": "bob"}))
    out.append(await dump(storage))
    return out


async def test_both_executors_behave_identically(tmp_path: Path) -> None:
    results: list[Any] = []
    for executor in ("loop", "thread"):
        storage = SQLiteStorage(str(tmp_path / f"{executor}.db"), executor=executor)
        await storage.setup(blog_schema())
        try:
            results.append(await _workload(storage))
            results.append(await counts(storage))
        finally:
            await storage.close()
    assert results[0] == results[2]
    assert results[1] == results[3]


async def test_insert_internal_writes_a_record_without_an_event(
    executor_storage: SQLiteStorage,
) -> None:
    def body(tx: SQLiteSession) -> tuple[Any, list[Any]]:
        tag_id = tx.insert_internal("Tag", {"label": "quiet"})
        return tag_id, list(tx.events)

    tag_id, events = await executor_storage.run(body)
    assert events == []
    assert await executor_storage.find("Tag", None, ["label"]) == [{"id": tag_id, "label": "quiet"}]


async def test_insert_internal_refuses_bad_input_and_link_records(
    executor_storage: SQLiteStorage,
) -> None:
    with pytest.raises(StorageError, match="nope"):
        await executor_storage.run(lambda tx: tx.insert_internal("Tag", {"nope": 1}))
    with pytest.raises(StorageError, match="label"):
        await executor_storage.run(lambda tx: tx.insert_internal("Tag", {"label": 5}))
    with pytest.raises(StorageError, match="create"):
        await executor_storage.run(
            lambda tx: tx.insert_internal(COMMENTS, {"source": 1, "target": 1})
        )
    assert await executor_storage.count("Tag") == 0


async def test_conditional_internal_writes_report_how_many_records_matched() -> None:
    """The claim primitive: one conditional UPDATE (or DELETE) whose count says who won."""
    storage = SQLiteStorage(":memory:")
    await storage.setup(Schema([RecordType("Job", [Field("owner"), Field("until", "number")])]))
    try:
        free, taken = await storage.run(
            lambda tx: [tx.insert_internal("Job", {"owner": o, "until": 5}) for o in (None, "b")]
        )

        def claim(tx: SQLiteSession, job: Any, now: float) -> tuple[int, list[Any]]:
            expired = MatchExp.atom("owner", "=", None) | MatchExp.atom("until", "<", now)
            won = tx.write_internal_where(
                "Job", MatchExp.atom("id", "=", job) & expired, {"owner": "a", "until": now + 10}
            )
            return won, list(tx.events)

        assert await storage.run(lambda tx: claim(tx, free, 1.0)) == (1, [])
        assert await storage.run(lambda tx: claim(tx, free, 2.0)) == (0, [])  # "a" holds it
        assert await storage.run(lambda tx: claim(tx, taken, 4.5)) == (0, [])  # not expired
        assert await storage.run(lambda tx: claim(tx, taken, 5.5)) == (1, [])  # expired
        rows = await storage.find("Job", None, ["owner", "until"], order_by={"id": "asc"})
        assert rows == [
            {"id": free, "owner": "a", "until": 11.0},
            {"id": taken, "owner": "a", "until": 15.5},
        ]
        gone = await storage.run(lambda tx: tx.delete_internal_where("Job", {"owner": "b"}))
        assert gone == 0
        assert await storage.run(lambda tx: tx.delete_internal_where("Job", {"id": taken})) == 1
        assert await storage.count("Job") == 1
        with pytest.raises(StorageError, match="nope"):
            await storage.run(lambda tx: tx.write_internal_where("Job", {}, {"nope": 1}))
        with pytest.raises(StorageError, match="until"):
            await storage.run(lambda tx: tx.write_internal_where("Job", {}, {"until": "soon"}))
        assert await storage.find("Job", None, ["owner"]) == [{"id": free, "owner": "a"}]
    finally:
        await storage.close()


async def test_conditional_internal_delete_refuses_records_with_links(
    executor_storage: SQLiteStorage,
) -> None:
    with pytest.raises(StorageError, match="has links"):
        await executor_storage.run(lambda tx: tx.delete_internal_where("Tag", {"id": 1}))
