"""Fixtures for the integration tests: a fake provider on loopback, a fake clock, and apps
(controller + integration on each backend: see ``make_storage`` in tests/conftest.py) closed
at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest

import reactive as r
from integrations.testing import FakeClock, FakeProvider, FakeTaskIntegration
from tests.conftest import StorageFactory

from .app import start, url_result


class MakeApp(Protocol):
    def __call__(
        self,
        path: str | None = None,
        leases: r.SideEffectLeases | None = None,
        busy_timeout: float = 5.0,
        **options: Any,
    ) -> Awaitable[App]: ...


class App:
    """A controller and its FakeTaskIntegration."""

    def __init__(self, controller: r.Controller, integration: FakeTaskIntegration):
        self.controller = controller
        self.integration = integration

    async def close(self) -> None:
        await self.integration.close()
        await self.controller.close()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "app.db")


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(result=url_result) as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_app(
    db_path: str, provider: FakeProvider, make_storage: StorageFactory
) -> AsyncIterator[MakeApp]:
    """``await make_app(sync=..., retry=..., poll=..., clock=...)``: a FakeTaskIntegration on
    the test's database, talking to the test's provider. The sweeper sleeps a day unless
    ``sweep_interval`` says otherwise."""
    apps: list[App] = []

    async def factory(
        path: str | None = None,
        leases: r.SideEffectLeases | None = None,
        busy_timeout: float = 5.0,
        **options: Any,
    ) -> App:
        options.setdefault("sweep_interval", 86_400.0)
        holder: list[FakeTaskIntegration] = []

        def make(model: Any) -> FakeTaskIntegration:
            holder.append(FakeTaskIntegration(model, provider.url, **options))
            return holder[0]

        storage = make_storage(path or db_path, busy_timeout=busy_timeout)
        controller, _ = await start(storage, make, leases)
        app = App(controller, holder[0])
        apps.append(app)
        return app

    yield factory
    for app in reversed(apps):
        await app.close()
