"""Helpers for the model-evolution tests: controllers on one file, dumps, edits behind the
engine's back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import reactive as r
from storage import SQLiteStorage


async def open_controller(
    path: str,
    entities: Iterable[r.Entity] = (),
    relations: Iterable[r.Relation] = (),
    dictionaries: Iterable[r.Dictionary] = (),
    **setup: Any,
) -> r.Controller:
    """A controller on ``path``, set up (``setup`` keywords passed on). Closed on failure."""
    controller = r.Controller(SQLiteStorage(path), entities, relations, dictionaries)
    try:
        await controller.setup(**setup)
    except BaseException:
        await controller.close()
        raise
    return controller


def dump(path: str) -> list[str]:
    """The database's content as SQL (schema and rows), read by a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def execute(path: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement behind the engine's back (a separate connection)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()
