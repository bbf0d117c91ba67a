"""The one place that uses aiosqlite's private internals, checked when a connection opens.

:class:`~storage.sqlite.storage.SQLiteStorage` runs a whole transaction as one synchronous
function (DESIGN 3.1): on the loop's thread directly on the ``sqlite3`` handle, or as one job
on the connection's worker thread. aiosqlite's public API offers neither, so this module
reaches into three internals of ``aiosqlite.Connection``:

- ``_conn``: the ``sqlite3.Connection`` it owns;
- ``_execute(fn, *args)``: run ``fn`` on the connection's worker thread and await its result;
- ``_thread``: that worker thread (made a daemon, so a storage never closed does not keep the
  process alive at exit).

They exist in the versions of :data:`SUPPORTED` (the range ``pyproject.toml`` allows).
:func:`connect` checks them on every open, before any work is queued, and refuses another
aiosqlite with a :class:`~storage.errors.StorageError` naming what is missing and the range
that has it, rather than failing later mid-transaction.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from storage.errors import StorageError

__all__ = ["SUPPORTED", "call", "check", "connect", "handle"]

T = TypeVar("T")
SUPPORTED = ">=0.20,<0.23"
"""The aiosqlite versions whose internals this module was written against."""


def check(connecting: aiosqlite.Connection) -> None:
    """Refuse an aiosqlite whose connection lacks the internals used here."""
    kind = type(connecting)
    missing: list[str] = []
    if not isinstance(inspect.getattr_static(kind, "_conn", None), property):
        missing.append("Connection._conn (the sqlite3 handle)")
    if not inspect.iscoroutinefunction(getattr(kind, "_execute", None)):
        missing.append("Connection._execute (a job on the worker thread)")
    if not isinstance(getattr(connecting, "_thread", None), threading.Thread):
        missing.append("Connection._thread (the worker thread)")
    if missing:
        version = getattr(aiosqlite, "__version__", "of unknown version")
        raise StorageError(
            f"aiosqlite {version} lacks what SQLiteStorage runs on: {', '.join(missing)}. "
            f"Install a version it supports: pip install 'aiosqlite{SUPPORTED}'"
        )


async def connect(path: str, **options: Any) -> aiosqlite.Connection:
    """Open ``path`` with aiosqlite (``options`` go to ``sqlite3.connect``), after
    :func:`check`; the worker thread is a daemon."""
    connecting = aiosqlite.connect(path, **options)
    check(connecting)
    worker: threading.Thread = connecting._thread
    if not worker.is_alive():
        worker.daemon = True
    return await connecting


def handle(connection: aiosqlite.Connection) -> sqlite3.Connection:
    """The ``sqlite3`` handle of an open connection (a transaction on the loop's thread)."""
    raw: sqlite3.Connection = connection._conn
    return raw


async def call(connection: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the connection's worker thread: one hop, however long ``fn`` is."""
    result: T = await connection._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result
