"""The interaqt pytest plugin: fixtures for testing an application built on the engine.

Installed with the package (the ``pytest11`` entry point ``interaqt``), so every test suite of
a project that depends on interaqt-py has these fixtures without a ``conftest.py``:

- ``interaqt_controller``: a factory, ``await interaqt_controller(entities, relations,
  dictionaries, interactions, side_effects)`` -> a set-up :class:`reactive.Controller` on a
  fresh storage (``interaqt_storage``); every controller it made is closed after the test.
- ``interaqt_storage``: a fresh storage. In-memory SQLite by default; with
  ``--interaqt-backend=postgres`` the PostgreSQL backend, built by ``storage.from_url`` from
  ``--interaqt-database-url`` (or ``INTERAQT_DATABASE_URL``) in a PostgreSQL schema of the
  test's own (``interaqt_<random>``, created at setup): after the test the storage is closed
  and the schema dropped with everything in it, so tests neither see each other's rows nor
  leave tables behind. Each controller ``interaqt_controller`` makes gets a storage (and so a
  schema) of its own.
- ``interaqt_clock``: a :class:`~integrations.testing.FakeClock` (time moves only when the test
  advances it).
- ``interaqt_fake_provider``: a started :class:`~integrations.testing.FakeProvider` on
  127.0.0.1 (a scriptable task API), stopped after the test.

It also imports :mod:`integrations.testing.machine`, so that a
:class:`reactive.testing.ModelMachine` of an app with APICall entities draws provider events.
The async fixtures need ``pytest-asyncio`` (the ``testing`` extra installs it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
import pytest_asyncio

import integrations.testing.machine  # noqa: F401  (registers the APICall event steps)
import reactive as r
import storage
from integrations.testing.clock import FakeClock
from integrations.testing.fake_provider import FakeProvider

BACKENDS = ("sqlite", "postgres")
URL_ENV = "INTERAQT_DATABASE_URL"

MakeController = Callable[..., Awaitable[r.Controller]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("interaqt", "interaqt-py fixtures")
    group.addoption(
        "--interaqt-backend",
        choices=BACKENDS,
        default="sqlite",
        help="storage of the interaqt_storage / interaqt_controller fixtures: in-memory "
        "SQLite (default) or PostgreSQL (needs --interaqt-database-url)",
    )
    group.addoption(
        "--interaqt-database-url",
        default=None,
        help=f"PostgreSQL URL for --interaqt-backend=postgres (default: ${URL_ENV})",
    )


def make_storage(backend: str, url: str | None) -> Any:
    """The storage the options ask for (see the module docstring); on PostgreSQL in a new
    schema of its own (``storage.schema_name``)."""
    if backend == "sqlite":
        return storage.SQLiteStorage(":memory:")
    if backend != "postgres":
        raise pytest.UsageError(
            f"--interaqt-backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    from_url = getattr(storage, "from_url", None)
    if from_url is None:
        raise pytest.UsageError(
            "--interaqt-backend=postgres: PostgreSQL backend not available in this version of "
            "interaqt-py (storage.from_url is missing); use the default SQLite backend"
        )
    if not url:
        raise pytest.UsageError(
            f"--interaqt-backend=postgres needs --interaqt-database-url or ${URL_ENV} "
            "(postgresql://user:password@host/database)"
        )
    return from_url(url, schema=f"interaqt_{uuid.uuid4().hex[:16]}")


async def dispose(made: Any) -> None:
    """Close a storage :func:`make_storage` made; on PostgreSQL drop its schema too (on a
    connection of its own: the storage's pool is closed by then)."""
    await made.close()
    schema = getattr(made, "schema_name", None)
    if not schema:
        return
    import asyncpg

    connection = await asyncpg.connect(made.dsn, timeout=made.connect_timeout)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


class _Storages:
    """The storages of one test, disposed of after it."""

    def __init__(self, config: pytest.Config) -> None:
        self.backend = config.getoption("--interaqt-backend")
        self.url = config.getoption("--interaqt-database-url") or os.environ.get(URL_ENV)
        self.made: list[Any] = []

    def new(self) -> Any:
        made = make_storage(self.backend, self.url)
        self.made.append(made)
        return made

    async def dispose(self) -> None:
        errors: list[BaseException] = []
        for made in reversed(self.made):
            try:
                await dispose(made)
            except Exception as exc:  # dispose of the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest_asyncio.fixture
async def _interaqt_storages(request: pytest.FixtureRequest) -> AsyncIterator[_Storages]:
    storages = _Storages(request.config)
    yield storages
    await storages.dispose()


@pytest.fixture
def interaqt_storage(_interaqt_storages: _Storages) -> Any:
    """A fresh, not yet set up storage (see the module docstring); closed after the test
    (on PostgreSQL its schema dropped)."""
    return _interaqt_storages.new()


@pytest_asyncio.fixture
async def interaqt_controller(
    request: pytest.FixtureRequest, _interaqt_storages: _Storages
) -> AsyncIterator[MakeController]:
    """``await interaqt_controller(entities, relations, ...)``: a set-up controller on a fresh
    storage (the test's ``interaqt_storage`` first, then one more each); all of them are
    closed after the test."""
    made: list[r.Controller] = []

    async def factory(
        entities: Iterable[r.Entity] = (),
        relations: Iterable[r.Relation] = (),
        dictionaries: Iterable[r.Dictionary] = (),
        interactions: Iterable[r.Interaction] = (),
        side_effects: Iterable[r.RecordMutationSideEffect] = (),
    ) -> r.Controller:
        # the test's interaqt_storage first; a second controller gets another fresh storage
        backend = _interaqt_storages.new() if made else request.getfixturevalue("interaqt_storage")
        controller = r.Controller(
            backend, entities, relations, dictionaries, interactions, side_effects
        )
        made.append(controller)
        await controller.setup()
        return controller

    yield factory
    for controller in reversed(made):
        await controller.close()


@pytest.fixture
def interaqt_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance``."""
    return FakeClock()


@pytest_asyncio.fixture
async def interaqt_fake_provider() -> AsyncIterator[FakeProvider]:
    """A started fake task API on 127.0.0.1 (``provider.url``), stopped after the test."""
    provider = await FakeProvider().start()
    try:
        yield provider
    finally:
        await provider.close()
