"""Every failure path of a side effect run ends in a retry or a dead letter, logged once.

The fault is real: another connection to the same SQLite file holds the write lock, so the
queue's own bookkeeping writes (recording an attempt, removing a finished intent, parking a dead
one) fail with the storage's error, as on a full disk or a locked database. The handler takes the
lock itself at a chosen point, so the fault hits exactly the write under test; the test lets it
go once the failure has been logged.

Before, each of these killed the run's task: "Task exception was never retrieved", the intent
pending and never retried or parked until a restart.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from storage import SQLiteStorage


class Lock:
    """The write lock of the database, held by a second, real connection."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.held = False

    def take(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("COMMIT")
            self.held = False


@pytest.fixture
async def unretrieved() -> AsyncIterator[list[dict[str, Any]]]:
    """What the loop's exception handler saw (an unretrieved task exception lands here)."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "faults.db")


@pytest.fixture
def lock(path: str) -> Iterator[Lock]:
    held = Lock(path)
    yield held
    held.release()
    held.conn.close()


@pytest.fixture
async def start(path: str) -> AsyncIterator[Callable[[Any, int], Awaitable[r.Controller]]]:
    """``await start(handler, max_attempts)``: a controller whose side effect ``mail`` runs
    ``handler`` on each new Item; closed at teardown."""
    started: list[r.Controller] = []

    async def make(handler: Any, max_attempts: int) -> r.Controller:
        item = r.Entity("Item", [r.Property("n", "number")])
        effect = r.RecordMutationSideEffect(
            "mail", item, handler, on=("create",), max_attempts=max_attempts, backoff=0.01
        )
        # A short busy timeout: a write waits this long for the lock, then fails.
        storage = SQLiteStorage(path, busy_timeout=0.05)
        controller = r.Controller(storage, [item], side_effects=[effect])
        await controller.setup()
        started.append(controller)
        return controller

    yield make
    for controller in started:
        await controller.close()


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not check():
        if loop.time() > give_up:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.005)


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def finish(controller: r.Controller, lock: Lock, unretrieved: list[dict[str, Any]]) -> None:
    lock.release()
    await asyncio.wait_for(controller.drain(), 10)
    gc.collect()  # an abandoned task's exception is reported when it is collected
    await asyncio.sleep(0)
    assert unretrieved == []


Faults = tuple[Lock, pytest.LogCaptureFixture, list[dict[str, Any]]]


@pytest.fixture
def faults(
    lock: Lock, caplog: pytest.LogCaptureFixture, unretrieved: list[dict[str, Any]]
) -> Iterator[Faults]:
    with caplog.at_level(logging.DEBUG, "reactive.side_effects"):
        yield lock, caplog, unretrieved


def debug_records(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.levelno == logging.DEBUG for r in caplog.records)


async def test_an_attempt_that_cannot_be_recorded_is_still_retried(
    start: Any, faults: Faults
) -> None:
    lock, caplog, unretrieved = faults
    runs: list[int] = []

    async def handler(
        event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        runs.append(run.attempt)
        if run.attempt == 1:
            lock.take()  # recording this failed attempt will fail
            raise ConnectionError("provider unreachable")
        lock.release()

    controller = await start(handler, 3)
    await controller.storage.create("Item", {"n": 1})
    await until(lambda: len(runs) == 2, "the retry")
    await finish(controller, lock, unretrieved)
    assert runs == [1, 2]
    assert await controller.side_effects.pending() == []
    assert await controller.side_effects.dead() == []
    [logged] = problems(caplog)
    message = logged.getMessage()
    assert "attempt 1 failed, will retry: ConnectionError: provider unreachable" in message
    assert "could not be recorded" in message and "locked" in message


async def test_a_dead_side_effect_that_cannot_be_parked_is_parked_once_the_storage_recovers(
    start: Any, faults: Faults
) -> None:
    lock, caplog, unretrieved = faults

    async def handler(event: r.MutationEvent, controller: r.Controller) -> None:
        lock.take()  # parking it as dead will fail
        raise ValueError("bad address")

    controller = await start(handler, 1)
    await controller.storage.create("Item", {"n": 1})
    await until(lambda: bool(problems(caplog)), "the failure to park")
    # still failing while the lock is held: it keeps trying, logged once
    await until(lambda: debug_records(caplog) >= 2, "more tries")
    await finish(controller, lock, unretrieved)
    [dead] = await controller.side_effects.dead()
    assert (dead.attempts, dead.last_error) == (1, "ValueError: bad address")
    assert dead.lease_owner is None
    assert await controller.side_effects.pending() == []
    [logged] = problems(caplog)
    assert logged.levelno == logging.ERROR
    assert "mail is dead after 1 attempts (ValueError: bad address)" in logged.getMessage()
    assert "could not be parked" in logged.getMessage()


async def test_a_finished_intent_that_cannot_be_removed_is_removed_once_the_storage_recovers(
    start: Any, faults: Faults
) -> None:
    lock, caplog, unretrieved = faults
    runs: list[str] = []

    async def handler(
        event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        runs.append(run.idempotency_key)
        lock.take()  # removing the finished intent will fail

    controller = await start(handler, 3)
    await controller.storage.create("Item", {"n": 1})
    await until(lambda: bool(problems(caplog)), "the failure to remove")
    # the intent is still there, held by this process (not for another to re-run)
    lock.release()
    [pending] = await controller.side_effects.pending()
    assert pending.lease_owner == controller.side_effects.owner
    lock.take()
    await until(lambda: debug_records(caplog) >= 1, "another try")
    await finish(controller, lock, unretrieved)
    assert await controller.side_effects.pending() == []
    assert runs == ["mail:Item:1"]  # done once: removing it is retried, not the handler
    [logged] = problems(caplog)
    assert "could not remove 1 finished side effect intents, retrying" in logged.getMessage()
