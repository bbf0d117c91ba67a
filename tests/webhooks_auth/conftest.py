"""Fixtures: a controller on a tmp SQLite file, and apps served over real HTTP on 127.0.0.1
(aiohttp's TestServer binds a TCP port; TestClient talks to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Middleware

import reactive as r

from .app import make_controller, mini_app

Client = TestClient[web.Request, web.Application]


class Serve(Protocol):
    def __call__(
        self, apis: Mapping[str, r.API], middlewares: Iterable[Middleware] = ()
    ) -> Awaitable[Client]: ...


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[r.Controller]:
    controller = await make_controller(str(tmp_path / "app.db"))
    yield controller
    await controller.close()


@pytest.fixture
async def serve(controller: r.Controller) -> AsyncIterator[Serve]:
    """``await serve(apis, middlewares)``: a client of the minimal app on loopback."""
    clients: list[Client] = []

    async def factory(apis: Mapping[str, r.API], middlewares: Iterable[Middleware] = ()) -> Client:
        app = mini_app(controller, apis, middlewares)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()
