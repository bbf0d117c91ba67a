"""Fixtures for the reactive engine: controllers on each backend (a real SQLite file through
aiosqlite, and a PostgreSQL schema of the test's own; see ``make_storage`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Protocol

import pytest

import reactive as r
from tests.conftest import StorageFactory


class MakeController(Protocol):
    def __call__(
        self,
        entities: Iterable[r.Entity] = (),
        relations: Iterable[r.Relation] = (),
        dictionaries: Iterable[r.Dictionary] = (),
        interactions: Iterable[r.Interaction] = (),
        side_effects: Iterable[r.RecordMutationSideEffect] = (),
        *,
        path: str | None = None,
        install: bool = True,
    ) -> Awaitable[r.Controller]: ...


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "reactive.db")


@pytest.fixture
async def make(db_path: str, make_storage: StorageFactory) -> AsyncIterator[MakeController]:
    """``await make(entities, relations, dictionaries, interactions, side_effects)``: a set-up
    controller on the test's database (of the test's backend), closed at teardown."""
    controllers: list[r.Controller] = []

    async def factory(
        entities: Iterable[r.Entity] = (),
        relations: Iterable[r.Relation] = (),
        dictionaries: Iterable[r.Dictionary] = (),
        interactions: Iterable[r.Interaction] = (),
        side_effects: Iterable[r.RecordMutationSideEffect] = (),
        *,
        path: str | None = None,
        install: bool = True,
    ) -> r.Controller:
        controller = r.Controller(
            make_storage(path or db_path),
            entities,
            relations,
            dictionaries,
            interactions,
            side_effects,
        )
        controllers.append(controller)
        await controller.setup(install)
        return controller

    yield factory
    for controller in reversed(controllers):
        await controller.close()
