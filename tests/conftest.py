"""The PostgreSQL half of the suites: where it runs, and what happens when it cannot.

``INTERAQT_TEST_PG`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``).
The session probes it once at start:

- reachable: tests that take ``postgres_url`` (and the ``postgres`` parameter of the backend
  fixtures) run, each in a PostgreSQL schema of its own, dropped afterwards;
- unreachable, or the driver not installed: those tests are skipped, and the run ends with
  ONE line saying so and why;
- unreachable with ``INTERAQT_REQUIRE_PG=1`` (``.ci/run`` sets it): the run FAILS at once
  (exit status 1), so CI never passes with the PostgreSQL half silently left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from storage import PostgresStorage, SQLiteStorage, Storage
from storage.postgres.address import Address

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("INTERAQT_TEST_PG", "").strip() or DEFAULT_PG
REQUIRE_PG = os.environ.get("INTERAQT_REQUIRE_PG", "").strip() not in ("", "0")

_unreachable: str | None = None
"""Why the PostgreSQL half cannot run (None: it can)."""


def _probe(url: str) -> str | None:
    """None when ``url`` accepts a connection, else why not (never showing the password)."""
    try:
        address = Address(url)
    except Exception as exc:
        return f"INTERAQT_TEST_PG is not a PostgreSQL URL ({exc})"
    try:
        import asyncpg
    except ImportError:
        return "the PostgreSQL driver (asyncpg) is not installed"

    async def connect() -> None:
        connection = await asyncpg.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(connect())
    except Exception as exc:
        return address.scrub(f"{address}: {exc or type(exc).__name__}")
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _unreachable
    _unreachable = _probe(PG_URL)
    if _unreachable is not None and REQUIRE_PG:
        pytest.exit(
            f"INTERAQT_REQUIRE_PG is set but PostgreSQL cannot be used: {_unreachable} "
            "(start the server, or point INTERAQT_TEST_PG at one)",
            returncode=1,
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _unreachable is not None:
        terminalreporter.write_line(
            f"PostgreSQL tests skipped: {_unreachable} (set INTERAQT_TEST_PG to a reachable "
            "server; INTERAQT_REQUIRE_PG=1 makes this a failure)"
        )


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL half cannot run, or None (known once the session has started)."""
    return _unreachable


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the test server; skips the test when it cannot be reached."""
    if _unreachable is not None:
        pytest.skip(f"PostgreSQL unavailable: {_unreachable}")
    return PG_URL


async def drop_schema(url: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it."""
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


PostgresFactory = Callable[..., Awaitable[PostgresStorage]]


async def open_postgres(url: str, **options: Any) -> PostgresStorage:
    """A connected :class:`PostgresStorage` in a fresh PostgreSQL schema of its own
    (``storage.schema_name``); :func:`dispose_postgres` closes it and drops the schema."""
    options.setdefault("schema", f"t_{uuid.uuid4().hex[:16]}")
    store = PostgresStorage(url, **options)
    try:
        await store._connect()
    except BaseException:
        await dispose_postgres(store)
        raise
    return store


async def dispose_postgres(store: PostgresStorage) -> None:
    """Close ``store`` and drop its PostgreSQL schema."""
    await store.close()
    if store.schema_name:
        await drop_schema(store.dsn, store.schema_name)


@pytest.fixture
async def postgres_storage_factory(postgres_url: str) -> AsyncIterator[PostgresFactory]:
    """``await make(**options)``: :func:`open_postgres` on the test server; every storage is
    disposed of after the test."""
    made: list[PostgresStorage] = []

    async def make(**options: Any) -> PostgresStorage:
        store = await open_postgres(postgres_url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await dispose_postgres(store)


StorageFactory = Callable[..., Storage]
"""``make_storage(path, **sqlite_options)``: a new, not yet set up storage of the test's backend."""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a behaviour test runs on: ``"sqlite"`` and ``"postgres"`` (the latter
    skipped when the server cannot be reached). Tests that are about SQLite itself (files,
    WAL, locks, crash workers on a file) do not take it and stay on SQLite."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    return str(request.param)


@pytest.fixture
async def make_storage(backend: str, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    """``make_storage(path, **sqlite_options)``: a storage on the test's backend. ``path``
    names the database: on SQLite the file (a relative path is in the test's ``tmp_path``), on
    PostgreSQL a schema of the test's own (the same path twice is the same schema, so a test can
    reopen its data). SQLite-only options (``executor``, ``busy_timeout``) are ignored on
    PostgreSQL. Every schema is dropped after the test."""
    schemas: dict[str, str] = {}
    made: list[Storage] = []

    def make(path: str, **options: Any) -> Storage:
        store: Storage
        if backend == "sqlite":
            where = path if path == ":memory:" else str(tmp_path / path)
            store = SQLiteStorage(where, **options)
        else:
            schema = schemas.setdefault(path, f"t_{uuid.uuid4().hex[:16]}")
            store = PostgresStorage(PG_URL, schema=schema)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    for schema in schemas.values():
        await drop_schema(PG_URL, schema)


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """Mark a test that takes the ``backend`` fixture (directly or through ``make``) as about
    SQLite itself, and so run on SQLite alone; ``reason`` says why (kept for the reader)."""
    assert reason, "say why the test is SQLite-only"
    return pytest.mark.parametrize("backend", ["sqlite"])


@contextlib.asynccontextmanager
async def scratch_storage(backend: str) -> AsyncIterator[Storage]:
    """A fresh, not yet set up storage on ``backend`` for one example of a property test
    (function-scoped fixtures last a whole test): in-memory SQLite, or a PostgreSQL schema of
    its own, closed and dropped on exit."""
    if backend == "sqlite":
        store: Storage = SQLiteStorage(":memory:")
        try:
            yield store
        finally:
            await store.close()
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    pg = PostgresStorage(PG_URL, schema=schema)
    try:
        yield pg
    finally:
        await pg.close()
        await drop_schema(PG_URL, schema)
