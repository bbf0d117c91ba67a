"""Fixtures: a controller on each backend (``make_storage`` in tests/conftest.py), and apps
served over real HTTP on 127.0.0.1 (aiohttp's TestServer binds a TCP port; TestClient talks
to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Middleware

import reactive as r
from tests.conftest import StorageFactory

from .app import make_controller, mini_app

Client = TestClient[web.Request, web.Application]


class Serve(Protocol):
    def __call__(
        self, apis: Mapping[str, r.API], middlewares: Iterable[Middleware] = ()
    ) -> Awaitable[Client]: ...


@pytest.fixture
async def controller(make_storage: StorageFactory) -> AsyncIterator[r.Controller]:
    controller = await make_controller(make_storage("app.db"))
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
