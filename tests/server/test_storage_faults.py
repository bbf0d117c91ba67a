"""The server while its storage is in trouble, over real HTTP on loopback.

- Another process holds the database's write lock: ``/health`` and reads are answered while a
  write waits; past ``busy_timeout`` the write answers 503 ``storage_busy`` with Retry-After.
- The store cannot write (a full disk): the write answers 500, ``/health`` answers 503
  ``degraded`` naming the reason, and ``ok`` again once a write commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import create_app
from storage import SQLiteStorage

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
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """``await serve(**SQLiteStorage options)``: a controller of notes and its app on loopback."""
    started: list[tuple[r.Controller, Client]] = []

    async def factory(**options: Any) -> tuple[r.Controller, Client]:
        note = r.Entity("Note", [r.Property("text")], computation=r.Transform(EV, _note))
        add = r.Interaction("AddNote", r.Payload([r.PayloadItem("text", required=True)]))
        storage = SQLiteStorage(str(tmp_path / "notes.db"), **options)
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


async def test_health_and_reads_answer_while_a_write_waits_for_another_process(
    serve: Serve,
) -> None:
    controller, client = await serve(busy_timeout=10)
    async with LockHolder(controller.backend.path) as holder:
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
        await holder.release()
        answer = await asyncio.wait_for(write, 30)
        assert answer.status == 200, await answer.text()
    assert await controller.storage.find("Note", None, ["text"]) == [{"id": 1, "text": "hi"}]


async def test_a_lock_held_past_busy_timeout_answers_503_with_retry_after(serve: Serve) -> None:
    controller, client = await serve(busy_timeout=0.3)
    path = controller.backend.path
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


async def test_health_reports_a_store_that_cannot_write(serve: Serve) -> None:
    controller, client = await serve(max_size=96 * 1024)
    statuses: list[int] = []
    for i in range(200):  # bounded: 200 notes of 2 KB are far more than 96 KB
        response = await _add_note(client, f"{i} " + "x" * 2000)
        statuses.append(response.status)
        if response.status != 200:
            break
    # The Transform's write of the Note met the full disk: the server's fault, not the
    # request's (not a 422 computation_error), and nothing internal goes out.
    assert statuses[-1] == 500 and set(statuses[:-1]) == {200}
    assert (await response.json())["error"] == {
        "code": "internal_error",
        "message": "internal server error",
    }
    health = await client.get("/health")
    assert health.status == 503
    assert await health.json() == {
        "status": "degraded",
        "storage": "cannot write: database or disk is full",
    }
    # Room again: the next write commits and the store is healthy.
    await controller.storage.delete("Note", None)
    assert (await _add_note(client, "small")).status == 200
    health = await client.get("/health")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
