"""Fixtures for the server tests: a controller on each backend (``make_storage`` in
tests/conftest.py) and the app served over real
HTTP on 127.0.0.1 (aiohttp's TestServer binds a TCP port; TestClient talks to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from tests.conftest import StorageFactory

from .app import build_app, build_controller, seed

Client = TestClient[web.Request, web.Application]


class MakeClient(Protocol):
    def __call__(self, **options: Any) -> Awaitable[Client]: ...


@pytest.fixture
async def controller(make_storage: StorageFactory) -> AsyncIterator[r.Controller]:
    controller = build_controller(make_storage("server.db"))
    await controller.setup()
    await seed(controller)
    yield controller
    await controller.close()


@pytest.fixture
async def make_client(controller: r.Controller) -> AsyncIterator[MakeClient]:
    """``await make_client(**create_app options)``: a client of the test app on loopback."""
    clients: list[Client] = []

    async def factory(**options: Any) -> Client:
        client: Client = TestClient(TestServer(build_app(controller, **options), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()
