"""A lock held by another process: waiting for it never blocks the event loop, the transaction
runs (again, whole) once the lock is free, and past ``busy_timeout`` it is a StorageBusyError.

The lock is held by a real second process (:mod:`tests.storage.lock_holder`). Whether the loop
kept running is measured by what it did meanwhile (a coroutine's ticks), not by the clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import SQLiteSession, SQLiteStorage, StorageBusyError, StorageError
from storage.sqlite.storage import Executor

from .conftest import blog_schema
from .lock_holder import LockHolder

TICKS = 10  # a blocked loop gets none while the transaction waits


async def _ticks_while(task: asyncio.Task[Any], wanted: int = TICKS) -> int:
    """How many times the loop ran this coroutine (a 10 ms sleep each) while ``task`` was
    pending, up to ``wanted``."""
    ticks = 0
    for _ in range(wanted):
        if task.done():
            break
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


@pytest.fixture(params=["loop", "thread"])
async def locked_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteStorage]:
    """A storage that waits long for locks (a blocked loop would fail the test long before)."""
    store = SQLiteStorage(str(tmp_path / "locked.db"), executor=request.param, busy_timeout=30)
    await store.setup(blog_schema())
    yield store
    await store.close()


async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    locked_storage: SQLiteStorage,
) -> None:
    storage = locked_storage
    async with LockHolder(storage.path) as holder:
        write = asyncio.create_task(storage.create("User", {"name": "ada"}))
        ticks = await _ticks_while(write)
        assert not write.done(), write  # still waiting for the lock
        assert ticks == TICKS
        # In WAL mode reads do not wait for the write lock, on the loop or in the thread.
        assert await storage.count("User") == 0
        await holder.release()
        created = await asyncio.wait_for(write, 30)
    assert created.record == {"id": 1, "name": "ada"}
    assert await storage.find("User", None, ["name"]) == [{"id": 1, "name": "ada"}]


async def test_many_writes_waiting_for_the_lock_all_land_once(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "many.db"), busy_timeout=30)
    await storage.setup(blog_schema())
    try:
        async with LockHolder(storage.path) as holder:
            writes = [
                asyncio.create_task(storage.create("User", {"name": f"u{i}"})) for i in range(20)
            ]
            assert await _ticks_while(writes[-1]) == TICKS
            assert not any(write.done() for write in writes)
            await holder.release()
            await asyncio.wait_for(asyncio.gather(*writes), 30)
        names = sorted(u["name"] for u in await storage.find("User", None, ["name"]))
        assert names == sorted(f"u{i}" for i in range(20))
    finally:
        await storage.close()


@pytest.mark.parametrize("executor", ["loop", "thread"])
async def test_a_lock_held_past_busy_timeout_is_a_storage_busy_error(
    tmp_path: Path, executor: Executor
) -> None:
    path = str(tmp_path / "busy.db")
    storage = SQLiteStorage(path, executor=executor, busy_timeout=0.3)
    await storage.setup(blog_schema())
    try:
        async with LockHolder(path) as holder:
            write = asyncio.create_task(storage.create("User", {"name": "ada"}))
            ticks = await _ticks_while(write, 1000)
            with pytest.raises(StorageBusyError) as caught:
                await write
            assert ticks > 3  # the loop ran while the write waited
            error = caught.value
            assert isinstance(error, StorageError)
            assert error.path == path
            assert error.waited >= 0.3
            assert error.busy_timeout == 0.3
            assert error.retry_after == 1
            assert path in str(error) and "locked" in str(error)
            await holder.release()
        assert await storage.count("User") == 0  # nothing was written
        assert (await storage.create("User", {"name": "bob"})).record == {"id": 1, "name": "bob"}
    finally:
        await storage.close()


async def test_busy_timeout_zero_gives_up_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "zero.db")
    storage = SQLiteStorage(path, busy_timeout=0)
    await storage.setup(blog_schema())
    try:
        async with LockHolder(path):
            with pytest.raises(StorageBusyError) as caught:
                await storage.create("User", {"name": "ada"})
            assert caught.value.retry_after == 1
        assert await storage.count("User") == 0
    finally:
        await storage.close()


@pytest.mark.parametrize("executor", ["loop", "thread"])
async def test_a_body_that_meets_busy_midway_runs_again_whole(
    tmp_path: Path, executor: Executor
) -> None:
    """A read transaction that turns into a write after another connection committed gets
    SQLITE_BUSY (its snapshot is stale) after its first statements ran: it is rolled back and
    the body run again whole, on a fresh snapshot."""
    path = str(tmp_path / "midway.db")
    storage = SQLiteStorage(path, executor=executor, busy_timeout=30)
    await storage.setup(blog_schema())
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    runs: list[int] = []

    def body(tx: SQLiteSession) -> tuple[int, int]:
        seen = tx.count("User")  # the snapshot starts here
        runs.append(seen)
        if len(runs) == 1:
            # Another connection commits between this body's read and its write.
            other.execute("INSERT INTO User (name) VALUES ('other')")
        tx.create("User", {"name": f"after {seen}"})
        return len(runs), tx.count("User")

    try:
        assert await storage.run(body, write=False) == (2, 2)
        assert runs == [0, 1]
        users = await storage.find("User", None, ["name"], order_by={"id": "asc"})
        assert users == [{"id": 1, "name": "other"}, {"id": 2, "name": "after 1"}]
    finally:
        other.close()
        await storage.close()


@pytest.mark.parametrize("busy_timeout", [-1, float("nan"), "5", True])
def test_a_bad_busy_timeout_is_refused(busy_timeout: Any) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStorage(busy_timeout=busy_timeout)


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 3)),
        st.tuples(st.just("lock"), st.just(0)),
        st.tuples(st.just("unlock"), st.just(0)),
        st.tuples(st.just("yield"), st.integers(0, 3)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS, executor=st.sampled_from(["loop", "thread"]))
def test_writes_around_a_lock_taken_and_released_at_random_land_exactly_once(
    steps: list[tuple[str, int]], executor: Executor
) -> None:
    """Writes started while a second connection takes and releases the write lock at random
    points: none commits while the lock is held, and in the end each has landed exactly once
    (a write run again after a busy attempt is never written twice)."""

    async def scenario(path: str) -> None:
        storage = SQLiteStorage(path, executor=executor, busy_timeout=60)
        await storage.setup(blog_schema())
        other = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        writes: list[asyncio.Task[Any]] = []
        locked_at: int | None = None

        def committed() -> int:
            return int(other.execute("SELECT count(*) FROM User").fetchone()[0])

        try:
            for step, value in steps:
                if step == "write":
                    name = f"u{len(writes)}"
                    writes.append(asyncio.create_task(storage.create("User", {"name": name})))
                    for _ in range(value):
                        await asyncio.sleep(0)
                elif step == "lock" and locked_at is None:
                    # The storage may be between BEGIN IMMEDIATE and COMMIT in its thread.
                    for _ in range(1000):
                        try:
                            other.execute("BEGIN IMMEDIATE")
                            break
                        except sqlite3.OperationalError:
                            await asyncio.sleep(0.001)
                    assert other.in_transaction
                    locked_at = committed()
                elif step == "unlock" and locked_at is not None:
                    assert committed() == locked_at  # nothing committed under the lock
                    other.execute("COMMIT")
                    locked_at = None
                elif step == "yield":
                    await asyncio.sleep(0.001 * value)
            if locked_at is not None:
                assert committed() == locked_at
                other.execute("COMMIT")
            results = await asyncio.wait_for(asyncio.gather(*writes), 60)
            assert sorted(result.record["id"] for result in results) == list(
                range(1, len(writes) + 1)
            )
            rows = await storage.find("User", None, ["name"], order_by={"id": "asc"})
            assert sorted(row["name"] for row in rows) == sorted(
                f"u{i}" for i in range(len(writes))
            )
            assert len(rows) == len(writes)
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
            for write in writes:
                write.cancel()
            await storage.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(str(Path(tmp) / "random.db")))
