"""Concurrent transactions on a real PostgreSQL: row locks, serialization failures and deadlocks.

Each test runs real transactions on separate pooled connections and steers where they meet
with the bodies themselves: a body may wait, between two of its statements, for an asyncio
event or barrier (``await_`` works on any awaitable inside a body), or for the server to report
that another connection waits for a lock. So every conflict here happens on every run, and the
tests assert what the storage made of it: the body ran again whole, the result is right, and
nothing of a failed run was kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storage import ConflictError, Field, PostgresStorage, RecordType, Schema, Session
from storage.postgres.bridge import await_
from storage.postgres.session import PostgresSession

from ..conftest import PostgresFactory, dispose_postgres, open_postgres
from .helpers import created_id

_WAIT = 20.0  # seconds any one synchronisation step may take before the test fails


def _schema() -> Schema:
    return Schema(
        records=[
            RecordType("Counter", [Field("n", "number")]),
            RecordType("Log", [Field("who"), Field("run", "number")]),
        ]
    )


async def _store(make: PostgresFactory, **options: Any) -> PostgresStorage:
    store = await make(concurrent_writes=True, pool_size=4, **options)
    await store.setup(_schema())
    return store


async def _counters(store: PostgresStorage, *values: int) -> list[Any]:
    return [created_id(await store.create("Counter", {"n": v})) for v in values]


async def _n(store: PostgresStorage, counter: Any) -> Any:
    found = await store.find_one("Counter", {"id": counter}, ["n"])
    assert found is not None
    return found["n"]


async def _logs(store: PostgresStorage) -> Counter[str]:
    return Counter(row["who"] for row in await store.find("Log", None, ["who"]))


def _pid(tx: Session) -> int:
    assert isinstance(tx, PostgresSession)
    row = tx.connection.execute("SELECT pg_backend_pid()").fetchone()
    return int(row[0])


def _wait_until_blocked(tx: Session, pid: int) -> None:
    """Inside a body: wait until the server says connection ``pid`` waits for a lock."""
    assert isinstance(tx, PostgresSession)
    for _ in range(int(_WAIT / 0.01)):
        row = tx.connection.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", [pid]
        ).fetchone()
        if row[0]:
            return
        await_(asyncio.sleep(0.01))
    raise AssertionError(f"connection {pid} never waited for a lock")


# -- row locks under READ COMMITTED -----------------------------------------------------------


async def test_a_locked_read_waits_for_the_other_writer_and_sees_what_it_committed(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await _store(postgres_storage_factory)
    [counter] = await _counters(store, 0)
    b_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: dict[str, Any] = {}

    def first(tx: Session) -> None:
        old = tx.snapshot("Counter", counter, lock=True)
        assert old is not None
        pid = await_(asyncio.wait_for(b_pid, _WAIT))
        _wait_until_blocked(tx, pid)  # the second body's locked read waits for this one
        seen["first"] = old["n"]
        tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

    def second(tx: Session) -> None:
        b_pid.set_result(_pid(tx))
        old = tx.snapshot("Counter", counter, lock=True)
        assert old is not None
        seen["second"] = old["n"]
        tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

    await asyncio.gather(store.run(first), store.run(second))
    assert seen == {"first": 0, "second": 1}  # it read what the first committed
    assert await _n(store, counter) == 2
    assert store.conflicts == 0


async def test_without_the_lock_the_same_two_writers_lose_an_update(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Why the engine locks: READ COMMITTED lets both read 0 and both write 1."""
    store = await _store(postgres_storage_factory)
    [counter] = await _counters(store, 0)
    both_read = asyncio.Barrier(2)

    def add_one(tx: Session) -> None:
        old = tx.snapshot("Counter", counter)
        assert old is not None
        await_(asyncio.wait_for(both_read.wait(), _WAIT))
        tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

    await asyncio.gather(store.run(add_one), store.run(add_one))
    assert await _n(store, counter) == 1


async def test_many_locked_read_then_write_bodies_at_once_lose_nothing(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await _store(postgres_storage_factory)
    [counter] = await _counters(store, 0)

    def add_one(tx: Session) -> None:
        old = tx.snapshot("Counter", counter, lock=True)
        assert old is not None
        tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

    await asyncio.gather(*(store.run(add_one) for _ in range(40)))
    assert await _n(store, counter) == 40


async def test_locked_snapshots_of_many_rows(postgres_storage_factory: PostgresFactory) -> None:
    store = await _store(postgres_storage_factory)
    ids = await _counters(store, 1, 2, 3)
    rows = await store.run(lambda tx: tx.snapshots("Counter", None, lock=True))
    assert [(row["id"], row["n"]) for row in rows] == list(zip(ids, [1, 2, 3], strict=True))


async def test_share_locks_let_each_other_in_and_keep_a_writer_out(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """``snapshots(..., lock=True, share=True)`` (FOR SHARE): two transactions hold the lock on
    one row at once; an update of the row waits until they end."""
    store = await _store(postgres_storage_factory)
    [counter] = await _counters(store, 0)
    both_hold = asyncio.Barrier(2)
    held = asyncio.Event()
    w_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: dict[str, Any] = {}

    def sharer(name: str) -> Any:
        def body(tx: Session) -> None:
            [row] = tx.snapshots("Counter", {"id": counter}, lock=True, share=True)
            await_(asyncio.wait_for(both_hold.wait(), _WAIT))  # the other holds it too
            held.set()
            _wait_until_blocked(tx, await_(asyncio.wait_for(w_pid, _WAIT)))
            seen[name] = row["n"]

        return body

    def writer(tx: Session) -> None:
        await_(asyncio.wait_for(held.wait(), _WAIT))
        w_pid.set_result(_pid(tx))
        tx.update("Counter", {"id": counter}, {"n": 5})
        seen["writer"] = len(seen)  # how many sharers had ended when the update went through

    await asyncio.gather(store.run(sharer("a")), store.run(sharer("b")), store.run(writer))
    assert seen == {"a": 0, "b": 0, "writer": 2}
    assert await _n(store, counter) == 5
    assert store.conflicts == 0


# -- whole-body retry: serialization failures and deadlocks ------------------------------------


async def test_a_serialization_failure_runs_the_loser_again_whole(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Two SERIALIZABLE bodies read the counter, then both write it: the second writer fails
    with 40001 once the first commits, and runs again, now reading the first's result."""
    store = await _store(postgres_storage_factory, isolation="serializable")
    [counter] = await _counters(store, 0)
    both_read = asyncio.Barrier(2)
    runs: list[str] = []

    def add_one(who: str) -> Any:
        def body(tx: Session) -> int:
            runs.append(who)
            old = tx.snapshot("Counter", counter)
            assert old is not None
            tx.create("Log", {"who": who, "run": runs.count(who)})
            if runs.count(who) == 1:
                await_(asyncio.wait_for(both_read.wait(), _WAIT))
            tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})
            return int(old["n"]) + 1

        return body

    results = await asyncio.gather(store.run(add_one("a")), store.run(add_one("b")))
    assert sorted(results) == [1, 2]
    assert len(runs) == 3 and Counter(runs) in (Counter("aab"), Counter("abb"))
    assert store.conflicts == 1
    assert await _n(store, counter) == 2
    assert await _logs(store) == Counter("ab")  # the failed run's row is gone


async def test_a_deadlock_runs_the_victim_again_whole(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Two bodies lock two rows in opposite orders: PostgreSQL breaks the deadlock by failing
    one (40P01); it runs again after the other committed, and both increments count."""
    store = await _store(postgres_storage_factory)
    first, second = await _counters(store, 0, 0)
    both_hold_one = asyncio.Barrier(2)
    runs: list[str] = []

    def add_to_both(who: str, order: tuple[Any, Any]) -> Any:
        def body(tx: Session) -> None:
            runs.append(who)
            tx.create("Log", {"who": who, "run": runs.count(who)})
            for position, counter in enumerate(order):
                old = tx.snapshot("Counter", counter, lock=True)
                assert old is not None
                if position == 0 and runs.count(who) == 1:
                    await_(asyncio.wait_for(both_hold_one.wait(), _WAIT))
                tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

        return body

    await asyncio.gather(
        store.run(add_to_both("a", (first, second))), store.run(add_to_both("b", (second, first)))
    )
    assert len(runs) == 3
    assert store.conflicts == 1
    assert [await _n(store, first), await _n(store, second)] == [2, 2]
    assert await _logs(store) == Counter("ab")


async def test_a_conflict_past_the_bound_is_a_conflict_error_and_writes_nothing(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await _store(postgres_storage_factory, isolation="serializable", attempts=1)
    [counter] = await _counters(store, 0)
    both_read = asyncio.Barrier(2)

    def add_one(who: str) -> Any:
        def body(tx: Session) -> None:
            old = tx.snapshot("Counter", counter)
            assert old is not None
            tx.create("Log", {"who": who, "run": 1})
            await_(asyncio.wait_for(both_read.wait(), _WAIT))
            tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

        return body

    outcomes = await asyncio.gather(
        store.run(add_one("a")), store.run(add_one("b")), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ConflictError)
    assert errors[0].attempts == 1 and errors[0].sqlstate == "40001"
    assert "gave up after 1 attempt:" in str(errors[0]) and "nothing was written" in str(errors[0])
    assert await _n(store, counter) == 1
    assert sum((await _logs(store)).values()) == 1  # the loser's row was not kept


@pytest.mark.parametrize("isolation", ["read committed", "serializable"])
async def test_concurrent_increments_are_exact_at_either_isolation(
    postgres_storage_factory: PostgresFactory, isolation: Any
) -> None:
    store = await _store(postgres_storage_factory, isolation=isolation, attempts=50)
    [counter] = await _counters(store, 0)

    def add_one(tx: Session) -> None:
        old = tx.snapshot("Counter", counter, lock=isolation == "read committed")
        assert old is not None
        tx.update("Counter", {"id": counter}, {"n": old["n"] + 1})

    await asyncio.gather(*(store.run(add_one) for _ in range(30)))
    assert await _n(store, counter) == 30


# -- any interleaving (hypothesis) -------------------------------------------------------------

_ROWS = 3
_EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "0") or 0) or 15


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    bodies=st.lists(
        st.lists(st.integers(0, _ROWS - 1), min_size=1, max_size=4), min_size=2, max_size=4
    ),
    isolation=st.sampled_from(["read committed", "serializable"]),
)
@example(bodies=[[0, 1], [1, 0]], isolation="read committed")  # a deadlock, every time
@example(bodies=[[2], [2], [2, 2]], isolation="serializable")  # serialization failures
def test_any_interleaving_of_read_then_write_bodies_is_exact(
    postgres_url: str, bodies: list[list[int]], isolation: str
) -> None:
    """Bodies at once, each incrementing rows in its own order (a row more than once too),
    meeting after their first increment so that they overlap: row locks (READ COMMITTED) or
    SERIALIZABLE with retries, deadlocks broken and run again: every increment counts once,
    and every body's Log row is there once."""
    asyncio.run(_interleave(postgres_url, bodies, isolation))


async def _interleave(url: str, bodies: list[list[int]], isolation: str) -> None:
    # Deadlocks are found after deadlock_timeout (1 s by default): 50 ms keeps examples short.
    fast = url + ("&" if "?" in url else "?") + "deadlock_timeout=50ms"
    store = await open_postgres(
        fast,
        schema=f"t_{uuid.uuid4().hex[:16]}",
        isolation=isolation,
        attempts=50,
        concurrent_writes=True,
        pool_size=len(bodies),
    )
    try:
        await store.setup(_schema())
        rows = await _counters(store, *([0] * _ROWS))
        arrived: list[int] = []
        everyone = asyncio.Event()
        runs: list[int] = []

        def meet() -> None:
            """Wait a little for the others (those blocked on a lock never come)."""
            arrived.append(1)
            if len(arrived) >= len(bodies):
                everyone.set()
            with contextlib.suppress(TimeoutError):
                await_(asyncio.wait_for(everyone.wait(), 0.05))

        def body(number: int, order: list[int]) -> Any:
            def run(tx: Session) -> int:
                runs.append(number)
                tx.create("Log", {"who": str(number), "run": runs.count(number)})
                for position, index in enumerate(order):
                    old = tx.snapshot("Counter", rows[index], lock=isolation == "read committed")
                    assert old is not None
                    tx.update("Counter", {"id": rows[index]}, {"n": old["n"] + 1})
                    if position == 0 and runs.count(number) == 1:
                        meet()
                return number

            return run

        done = await asyncio.gather(*(store.run(body(i, o)) for i, o in enumerate(bodies)))
        assert done == list(range(len(bodies)))
        expected = Counter(index for order in bodies for index in order)
        assert [await _n(store, rows[i]) for i in range(_ROWS)] == [
            expected[i] for i in range(_ROWS)
        ]
        assert await _logs(store) == Counter(str(i) for i in range(len(bodies)))
        assert len(runs) == len(bodies) + store.conflicts  # a run per conflict, no more
    finally:
        await dispose_postgres(store)
