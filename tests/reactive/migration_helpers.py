"""Helpers for the model-evolution tests, the same on both backends: a test database (a SQLite
file or a PostgreSQL schema of the test's own), controllers on it, a neutral dump of everything
it holds, and edits behind the engine's back.

The dump is what a refused or failed migration must leave unchanged: every table with its
columns in order (``Storage.inspect()``) and every row of it (``Storage.peek()``, by id), each
value normalised so that the two backends' representations of one value compare equal (SQLite
0/1 and PostgreSQL booleans, ``numeric`` and SQLite numbers, ``timestamptz`` and integer
microseconds). It is read through a storage of its own, never the controller under test.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import reactive as r
from storage import Field, PostgresStorage, RecordType, SQLiteStorage, Storage
from tests.conftest import PG_URL, drop_schema

DatabaseFactory = Callable[[str], "Database"]
"""``make(name)``: the test's database called ``name`` (the same name, the same database)."""

Dump = dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]
"""table -> (its column names in order, its rows by id as tuples of neutral values)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Database:
    """One test database: ``backend`` ``"sqlite"`` (a file at ``where``) or ``"postgres"``
    (the schema ``where`` on the test server). Every :meth:`storage` opens the same data."""

    def __init__(self, backend: str, where: str) -> None:
        self.backend = backend
        self.where = where

    def __repr__(self) -> str:
        return f"Database({self.backend}, {self.where})"

    def storage(self, **sqlite_options: Any) -> Storage:
        """A new storage on this database, not yet set up (SQLite-only options such as
        ``executor=`` are ignored on PostgreSQL)."""
        if self.backend == "sqlite":
            return SQLiteStorage(self.where, **sqlite_options)
        return PostgresStorage(PG_URL, schema=self.where)

    async def dump(self) -> Dump:
        """Every table's columns and rows, normalised (see the module docstring)."""
        store = self.storage()
        try:
            out: Dump = {}
            for table, columns in sorted((await store.inspect()).items()):
                record = RecordType(table, [Field(c) for c in columns if c != "id"])
                rows = await store.peek(record)
                out[table] = (
                    tuple(columns),
                    [tuple(_neutral(row.get(c)) for c in columns) for row in rows],
                )
            return out
        finally:
            await store.close()

    async def tables(self) -> set[str]:
        """The names of the database's tables."""
        return set(await self._inspect())

    async def columns(self, table: str) -> list[str]:
        """``table``'s column names in order ([] when there is no such table)."""
        return (await self._inspect()).get(table, [])

    async def _inspect(self) -> dict[str, list[str]]:
        store = self.storage()
        try:
            return await store.inspect()
        finally:
            await store.close()

    async def execute(self, sql: str) -> None:
        """Run one statement behind the engine's back, on a connection of its own. Write it
        in SQL both backends read alike (booleans as TRUE/FALSE, quoted identifiers)."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.where)
            try:
                conn.execute(sql)
                conn.commit()
            finally:
                conn.close()
            return
        import asyncpg

        connection = await asyncpg.connect(PG_URL, timeout=10)
        try:
            await connection.execute(f'SET search_path TO "{self.where}"')
            await connection.execute(sql)
        finally:
            await connection.close()


def _neutral(value: Any) -> Any:
    """One representation per value across the backends."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime):
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value


@contextlib.asynccontextmanager
async def databases(backend: str, folder: Path | str) -> AsyncIterator[DatabaseFactory]:
    """``make(name)``: a :class:`Database` on ``backend`` per name (SQLite: a file in
    ``folder``; PostgreSQL: a schema of its own). Every PostgreSQL schema made is dropped on
    exit."""
    made: dict[str, Database] = {}
    token = uuid.uuid4().hex[:12]

    def make(name: str) -> Database:
        if name not in made:
            if backend == "sqlite":
                made[name] = Database("sqlite", str(Path(folder) / f"{name}.db"))
            else:
                made[name] = Database("postgres", f"t_{token}_{name}")
        return made[name]

    try:
        yield make
    finally:
        for db in made.values():
            if db.backend == "postgres":
                await drop_schema(PG_URL, db.where)


async def open_controller(
    db: Database,
    entities: Iterable[r.Entity] = (),
    relations: Iterable[r.Relation] = (),
    dictionaries: Iterable[r.Dictionary] = (),
    **setup: Any,
) -> r.Controller:
    """A controller on ``db``, set up (``setup`` keywords passed on). Closed on failure."""
    controller = r.Controller(db.storage(), entities, relations, dictionaries)
    try:
        await controller.setup(**setup)
    except BaseException:
        await controller.close()
        raise
    return controller


def sqlite_dump(path: str) -> list[str]:
    """A SQLite file's content as SQL (schema and rows), read by a separate connection: for
    the tests about the file itself (a process killed mid-migration)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
