"""Clients that stall or leave: a body that never arrives is answered 408 and the connection is
closed once ``body_timeout`` has passed (it used to be held for minutes), and a client that
disconnects mid-request is a debug line, not an ERROR with a traceback. Real sockets on
loopback against the app run the way ``web.run_app`` runs it (AppRunner + TCPSite)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import create_app

from .app import build_app
from .helpers import counts, error_of, quiet_request_keys

pytestmark = quiet_request_keys

HEAD = (
    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer 1\r\n"
    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
)
PARTIAL = b'{"payload": {"title": "never fin'

Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve(controller: r.Controller) -> AsyncIterator[Serve]:
    """``port = await serve(**create_app options)``: the app on an AppRunner, as run_app runs
    it (aiohttp's test server handles a lost connection differently)."""
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> int:
        runner = web.AppRunner(build_app(controller, **options))
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def _stall(port: int, path: str) -> bytes:
    """Send the head and part of the body, then nothing; everything the server sends until
    it closes the connection (bounded: a server that never closes fails the test)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HEAD.format(path=path).encode() + PARTIAL)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=60)
    finally:
        writer.close()


async def test_a_body_that_never_arrives_is_408_and_the_connection_closes(
    serve: Serve, controller: r.Controller
) -> None:
    port = await serve(body_timeout=0.2)
    before = await counts(controller)
    for path in ("/interaction/CreatePost", "/api/posts.search", "/api/echo.raw"):
        answer = await _stall(port, path)  # returns only once the server has closed
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer
        assert b"Connection: close" in head
        assert b'"request_timeout"' in body and b"0.2 s" in body
    assert await counts(controller) == before


async def test_a_client_that_leaves_mid_body_is_logged_at_debug_only(
    serve: Serve, controller: r.Controller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = await serve()
    before = await counts(controller)
    for path in ("/interaction/CreatePost", "/api/echo.raw"):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD.format(path=path).encode() + PARTIAL)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the server start reading the body
        writer.transport.abort()
        for _ in range(200):  # bounded wait for the server to notice
            if any(path in m and "disconnected" in m for m in caplog.messages):
                break
            await asyncio.sleep(0.01)
    disconnects = [
        rec for rec in caplog.records if rec.name == "reactive.server" and "disconnected" in rec.msg
    ]
    assert len(disconnects) == 2
    assert all(rec.levelno == logging.DEBUG and rec.exc_info is None for rec in disconnects)
    loud = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert loud == [], [(rec.name, rec.getMessage()) for rec in loud]
    assert await counts(controller) == before


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "30"])
async def test_body_timeout_is_checked_when_the_app_is_built(
    controller: r.Controller, bad: Any
) -> None:
    with pytest.raises(r.ModelError, match="body_timeout"):
        build_app(controller, body_timeout=bad)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
async def test_max_json_depth_is_checked_when_the_app_is_built(
    controller: r.Controller, bad: Any
) -> None:
    with pytest.raises(r.ModelError, match="max_json_depth"):
        build_app(controller, max_json_depth=bad)


async def test_a_handler_whose_own_connection_fails_is_still_a_500(
    controller: r.Controller, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the *client's* connection going away is quiet: a ConnectionError from the
    handler's own outgoing call, with the client still there, is a server error."""

    async def outbound(ctx: r.APIContext, params: Any) -> Any:
        raise ConnectionRefusedError("the provider refused the connection")

    app = create_app(controller, {"outbound": r.API(outbound, allow_anonymous=True)})
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.post("/api/outbound", json={})
        await error_of(response, 500, "internal_error")
    finally:
        await client.close()
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
