"""Fixtures for the reactive engine: controllers on a real SQLite file (aiosqlite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Protocol

import pytest

import reactive as r
from storage import SQLiteStorage


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
async def make(db_path: str) -> AsyncIterator[MakeController]:
    """``await make(entities, relations, dictionaries, interactions, side_effects)``: a set-up
    controller on the test's database file, closed at teardown."""
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
            SQLiteStorage(path or db_path),
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
