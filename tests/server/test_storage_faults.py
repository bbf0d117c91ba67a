"""The server while its storage is in trouble, over real HTTP on loopback, on both backends.

- Another client holds a lock the write needs (SQLite: another process holds the file's write
  lock; PostgreSQL: another connection holds ``LOCK TABLE ... IN EXCLUSIVE MODE`` on the table
  the write inserts into): ``/health`` and reads are answered while the write waits, and it
  commits once the lock is let go.
- Past ``busy_timeout`` the write answers 503 ``storage_busy`` with Retry-After: SQLite only,
  since ``PostgresStorage`` sets no ``lock_timeout`` (a write waits until the lock is released).
- The store cannot write (SQLite: a full disk, through ``max_size``; PostgreSQL: the server
  terminates the connection in the middle of the write, SQLSTATE 57P01): the write answers 500
  ``internal_error`` with nothing internal in it and nothing written, ``/health`` answers 503
  ``degraded`` naming the reason (``Storage.write_fault``), and ``ok`` again once a write
  commits (on PostgreSQL, on a new pooled connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import create_app
from storage import PostgresStorage, SQLiteStorage
from tests.conftest import PG_URL, StorageFactory, sqlite_only

from ..storage.lock_holder import LockHolder

EV = r.INTERACTION_EVENT
Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[tuple[r.Controller, Client]]]


def _note(event: dict[str, Any]) -> Any:
    return {"text": event["payload"]["text"]}  # AddNote is the only interaction


async def _add(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    return await ctx.controller.storage.create("Note", {"text": params["text"]})


async def _notes(ctx: r.APIContext, params: Any) -> Any:
    return await ctx.controller.storage.find("Note", None, ["text"])


@pytest.fixture
async def serve(make_storage: StorageFactory) -> AsyncIterator[Serve]:
    """``await serve(**SQLiteStorage options)``: a controller of notes and its app on loopback,
    on the test's backend (SQLite-only options are ignored on PostgreSQL)."""
    started: list[tuple[r.Controller, Client]] = []

    async def factory(**options: Any) -> tuple[r.Controller, Client]:
        note = r.Entity("Note", [r.Property("text")], computation=r.Transform(EV, _note))
        add = r.Interaction("AddNote", r.Payload([r.PayloadItem("text", required=True)]))
        storage = make_storage("notes.db", **options)
        controller = r.Controller(storage, [note], interactions=[add])
        await controller.setup()
        apis = {
            "notes.list": r.API(_notes, allow_anonymous=True),
            "notes.add": r.API(_add, params={"text": "string"}, allow_anonymous=True),
        }
        app = create_app(controller, apis, anonymous_interactions=True)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append((controller, client))
        return controller, client

    yield factory
    for controller, client in started:
        await client.close()
        await controller.close()


def _add_note(client: Client, text: str = "hi") -> Any:
    return client.post("/interaction/AddNote", json={"payload": {"text": text}})


@contextlib.asynccontextmanager
async def another_client_holds_the_write_lock(
    controller: r.Controller,
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Hold, from outside this storage, a lock every write of a Note waits for; yields
    ``release()``. SQLite: another process holds the file's write lock. PostgreSQL: another
    connection holds the Note table in EXCLUSIVE mode (reads go on, writes wait)."""
    backend = controller.backend
    if isinstance(backend, SQLiteStorage):
        async with LockHolder(backend.path) as holder:
            yield holder.release
        return
    assert isinstance(backend, PostgresStorage)
    import asyncpg

    connection = await asyncpg.connect(PG_URL, timeout=10)
    held = True

    async def release() -> None:
        nonlocal held
        if held:
            held = False
            await connection.execute("COMMIT")

    try:
        await connection.execute(f'SET search_path TO "{backend.schema_name}"')
        await connection.execute('BEGIN; LOCK TABLE "Note" IN EXCLUSIVE MODE')
        yield release
    finally:
        await release()
        await connection.close()


async def test_health_and_reads_answer_while_a_write_waits_for_another_process(
    serve: Serve,
) -> None:
    controller, client = await serve(busy_timeout=10)
    async with another_client_holds_the_write_lock(controller) as release:
        write = asyncio.create_task(_add_note(client))
        for _ in range(20):  # let the write reach the lock
            await asyncio.sleep(0.01)
        health = await client.get("/health")
        assert health.status == 200
        assert await health.json() == {"status": "ok"}
        notes = await client.post("/api/notes.list", json={})
        assert notes.status == 200
        assert await notes.json() == []
        assert not write.done()  # the write is still waiting for the lock
        await release()
        answer = await asyncio.wait_for(write, 30)
        assert answer.status == 200, await answer.text()
    assert await controller.storage.find("Note", None, ["text"]) == [{"id": 1, "text": "hi"}]


@sqlite_only("PostgresStorage sets no lock_timeout: a write waits until the lock is released")
async def test_a_lock_held_past_busy_timeout_answers_503_with_retry_after(serve: Serve) -> None:
    controller, client = await serve(busy_timeout=0.3)
    path = cast(SQLiteStorage, controller.backend).path  # sqlite_only
    async with LockHolder(path) as holder:
        for response in (
            await _add_note(client),
            await client.post("/api/notes.add", json={"text": "hi"}),
        ):
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "1"
            body = await response.json()
            assert body["error"]["code"] == "storage_busy"
            assert body["error"]["details"] == {"retry_after": 1}
            assert "try again" in body["error"]["message"]
            assert path not in body["error"]["message"]  # nothing internal goes out
        health = await client.get("/health")
        assert (health.status, await health.json()) == (200, {"status": "ok"})
        await holder.release()
    assert await controller.storage.count("Note") == 0
    assert await controller.storage.count(EV) == 0
    again = await _add_note(client)
    assert again.status == 200, await again.text()
    assert await controller.storage.count("Note") == 1


async def assert_degraded_then_healed(
    controller: r.Controller, client: Client, response: Any, reason: str
) -> None:
    """The write that met the fault answered 500 with nothing internal in it, ``/health``
    names ``reason``, and the next write that commits makes the store healthy again."""
    # The Transform's write of the Note met the fault: the server's, not the request's (not
    # a 422 computation_error), and nothing internal goes out.
    assert response.status == 500, await response.text()
    assert (await response.json())["error"] == {
        "code": "internal_error",
        "message": "internal server error",
    }
    health = await client.get("/health")
    assert health.status == 503
    assert await health.json() == {"status": "degraded", "storage": f"cannot write: {reason}"}
    assert controller.backend.write_fault == reason
    # Room again (a new connection): the next write commits and the store is healthy.
    await controller.storage.delete("Note", None)
    assert (await _add_note(client, "small")).status == 200
    health = await client.get("/health")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert controller.backend.write_fault is None


@sqlite_only("the PostgreSQL fault is the terminated connection below")
async def test_health_reports_a_store_that_cannot_write(serve: Serve) -> None:
    controller, client = await serve(max_size=96 * 1024)
    statuses: list[int] = []
    for i in range(200):  # bounded: 200 notes of 2 KB are far more than 96 KB
        response = await _add_note(client, f"{i} " + "x" * 2000)
        statuses.append(response.status)
        if response.status != 200:
            break
    assert set(statuses[:-1]) == {200}
    await assert_degraded_then_healed(controller, client, response, "database or disk is full")


TERMINATE_ON_BOOM = """
CREATE FUNCTION terminate_on_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.text = 'boom' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination arrives while it waits
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER terminate_on_boom BEFORE INSERT ON "Note"
    FOR EACH ROW EXECUTE FUNCTION terminate_on_boom();
"""


@pytest.mark.parametrize("backend", ["postgres"])
async def test_health_reports_a_connection_the_server_terminated(
    backend: str, serve: Serve
) -> None:
    """PostgreSQL: the server ends the connection in the middle of a write (an administrator's
    ``pg_terminate_backend``, as at a server restart; set off by a trigger on the one Note
    whose text is ``boom``). Nothing of the dispatch is written; the pool replaces the
    connection."""
    controller, client = await serve()
    assert (await _add_note(client, "before")).status == 200
    backend_storage = controller.backend
    assert isinstance(backend_storage, PostgresStorage)
    import asyncpg

    connection = await asyncpg.connect(PG_URL, timeout=10)
    try:
        await connection.execute(f'SET search_path TO "{backend_storage.schema_name}"')
        await connection.execute(TERMINATE_ON_BOOM)
    finally:
        await connection.close()
    response = await _add_note(client, "boom")
    assert await controller.storage.find("Note", None, ["text"]) == [{"id": 1, "text": "before"}]
    assert await controller.storage.count(EV) == 1
    reason = "connection was closed in the middle of operation: terminating connection due to "
    await assert_degraded_then_healed(
        controller, client, response, reason + "administrator command"
    )
