"""A write that keeps conflicting on PostgreSQL, over real HTTP on loopback: 503
``storage_conflict`` with Retry-After, nothing written; with retries left it simply succeeds.

Two requests each run a SERIALIZABLE transaction that reads a counter, waits for the other
(an asyncio barrier awaited inside the body), then writes it: one of them fails with a
serialization failure on every run of this test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import create_app
from storage.postgres.bridge import await_

from ..conftest import PostgresFactory

Client = TestClient[web.Request, web.Application]
Serve = Callable[[int], Awaitable[tuple[r.Controller, Client, asyncio.Barrier]]]
_WAIT = 20.0


@pytest.fixture
async def serve(postgres_storage_factory: PostgresFactory) -> AsyncIterator[Serve]:
    started: list[tuple[r.Controller, Client]] = []

    async def factory(attempts: int) -> tuple[r.Controller, Client, asyncio.Barrier]:
        counter = r.Entity("Counter", [r.Property("n", "number")])
        storage = await postgres_storage_factory(
            isolation="serializable", attempts=attempts, concurrent_writes=True, pool_size=4
        )
        controller = r.Controller(storage, [counter])
        await controller.setup()
        created = await controller.storage.create("Counter", {"n": 0})
        both_read = asyncio.Barrier(2)
        runs: list[int] = []

        async def bump(ctx: r.APIContext, params: Any) -> Any:
            def body(tx: r.TransactionContext) -> int:
                runs.append(1)
                found = tx.storage.find_one("Counter", {"id": created["id"]}, ["n"])
                assert found is not None
                if len(runs) <= 2:  # the first run of each request waits for the other
                    await_(asyncio.wait_for(both_read.wait(), _WAIT))
                tx.storage.update("Counter", {"id": created["id"]}, {"n": found["n"] + 1})
                return int(found["n"]) + 1

            n, _ = await ctx.controller.transact(body)
            return {"n": n}

        app = create_app(controller, {"counter.bump": r.API(bump, allow_anonymous=True)})
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append((controller, client))
        return controller, client, both_read

    yield factory
    for controller, client in started:
        await client.close()
        await controller.close()


async def _bump_twice(client: Client) -> list[tuple[int, Any, str | None]]:
    answers = await asyncio.gather(
        client.post("/api/counter.bump", json={}), client.post("/api/counter.bump", json={})
    )
    return [(a.status, await a.json(), a.headers.get("Retry-After")) for a in answers]


async def test_a_write_that_conflicts_past_its_attempts_answers_503_storage_conflict(
    serve: Serve,
) -> None:
    controller, client, _ = await serve(1)
    answers = sorted(await _bump_twice(client), key=lambda a: a[0])
    (ok, ok_body, _), (busy, busy_body, retry_after) = answers
    assert (ok, ok_body) == (200, {"n": 1})
    assert busy == 503 and retry_after == "1"
    assert busy_body["error"]["code"] == "storage_conflict"
    assert busy_body["error"]["details"] == {"retry_after": 1, "attempts": 1}
    assert "nothing was written" in busy_body["error"]["message"]
    assert [c["n"] for c in await controller.storage.find("Counter", None, ["n"])] == [1]


async def test_with_attempts_left_both_writes_succeed(serve: Serve) -> None:
    controller, client, _ = await serve(8)
    answers = await _bump_twice(client)
    assert sorted((status, body["n"]) for status, body, _ in answers) == [(200, 1), (200, 2)]
    assert [c["n"] for c in await controller.storage.find("Counter", None, ["n"])] == [2]
