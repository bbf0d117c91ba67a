"""Faults of the store itself: a full disk, a read-only file, a path that is no database.

Each is a StorageError naming the path and SQLite's real reason, never a raw driver error, and
changes nothing. The full disk is SQLite's own SQLITE_FULL path, reached through ``max_size``
(``PRAGMA max_page_count``): SQLite rolls the transaction back by itself, as on a real full
disk. The read-only file is read-only for this process even as root (the immutable attribute).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from storage import NotSetUpError, SQLiteSession, SQLiteStorage, StorageError
from storage.sqlite.storage import Executor

from .conftest import blog_schema


def _fill(tx: SQLiteSession) -> None:
    for _ in range(500):
        tx.create("Post", {"title": "x" * 1000})


@pytest.mark.parametrize("executor", ["loop", "thread"])
async def test_a_full_disk_is_a_storage_error_with_sqlites_reason(
    tmp_path: Path, executor: Executor
) -> None:
    path = str(tmp_path / "full.db")
    storage = SQLiteStorage(path, executor=executor, max_size=64 * 1024)
    await storage.setup(blog_schema())
    try:
        await storage.create("User", {"name": "kept"})
        assert storage.write_fault is None
        with pytest.raises(StorageError) as caught:
            await storage.run(_fill)
        error = caught.value
        assert "database or disk is full" in str(error)
        assert path in str(error)
        cause = error.__cause__
        assert isinstance(cause, sqlite3.OperationalError)
        assert cause.sqlite_errorname == "SQLITE_FULL"
        assert storage.write_fault == "database or disk is full"
        # Nothing of the failed transaction is left; what was there before is.
        assert await storage.count("Post") == 0
        assert await storage.find("User", None, ["name"]) == [{"id": 1, "name": "kept"}]
        # A write that fits commits, and the store no longer reports a fault.
        await storage.create("User", {"name": "small"})
        assert storage.write_fault is None
        assert await storage.count("User") == 2
    finally:
        await storage.close()


async def test_a_full_disk_is_a_storage_error_however_the_body_wrapped_it(
    tmp_path: Path,
) -> None:
    """A body that wraps the storage's error in its own (as the engine does for a computation
    that fails) does not turn the store's fault into its own: the caller gets the StorageError
    with SQLite's reason, the body's exception behind it."""
    storage = SQLiteStorage(str(tmp_path / "wrapped.db"), max_size=64 * 1024)
    await storage.setup(blog_schema())

    class Wrapped(Exception):
        pass

    def body(tx: SQLiteSession) -> None:
        try:
            _fill(tx)
        except sqlite3.Error as exc:
            raise Wrapped("the computation failed") from exc

    try:
        with pytest.raises(StorageError, match="database or disk is full") as caught:
            await storage.run(body)
        assert isinstance(caught.value.__cause__, Wrapped)
        assert storage.write_fault == "database or disk is full"
        assert await storage.count("Post") == 0
    finally:
        await storage.close()


@pytest.mark.parametrize("max_size", [0, -1, 1.5, "1000", True])
def test_a_bad_max_size_is_refused(max_size: Any) -> None:
    with pytest.raises(ValueError, match="max_size"):
        SQLiteStorage(max_size=max_size)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` read-only for this process. File modes do not stop root, so as root the
    file gets the immutable attribute (``chattr +i``), which does."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    else:
        path.chmod(0o444)
    try:
        # The premise of the test: this process cannot open the file for writing.
        with pytest.raises(PermissionError):
            open(path, "r+b").close()
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)
        else:
            path.chmod(0o644)


@pytest.mark.parametrize("install", [True, False])
async def test_a_read_only_database_is_refused_at_setup(tmp_path: Path, install: bool) -> None:
    path = tmp_path / "ro.db"
    first = SQLiteStorage(str(path))
    await first.setup(blog_schema())
    await first.create("User", {"name": "ada"})
    await first.close()
    before = path.read_bytes()
    with read_only(path):
        storage = SQLiteStorage(str(path))
        with pytest.raises(StorageError) as caught:
            await storage.setup(blog_schema(), install=install)
        message = str(caught.value)
        assert str(path) in message
        assert "cannot be written" in message and "write access" in message
        assert "ro.db-wal" in message  # the fix names the files SQLite writes beside it
        with pytest.raises(NotSetUpError):
            await storage.count("User")
    assert path.read_bytes() == before
    # Writable again, the same file sets up and keeps its data.
    again = SQLiteStorage(str(path))
    await again.setup(blog_schema())
    try:
        assert await again.find("User", None, ["name"]) == [{"id": 1, "name": "ada"}]
    finally:
        await again.close()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    storage = SQLiteStorage(str(path))
    with pytest.raises(StorageError) as caught:
        await storage.setup(blog_schema())
    message = str(caught.value)
    assert f"{path} is not an SQLite database" in message
    assert "file is not a database" in message  # SQLite's own words
    with pytest.raises(NotSetUpError):
        await storage.count("User")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path))
    with pytest.raises(StorageError, match="is a directory, not a database file") as caught:
        await storage.setup(blog_schema())
    assert str(tmp_path) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_directory_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "app.db"
    storage = SQLiteStorage(str(path))
    with pytest.raises(StorageError) as caught:
        await storage.setup(blog_schema())
    message = str(caught.value)
    assert str(path) in message
    assert f"its directory {path.parent} does not exist" in message
    assert not (tmp_path / "no").exists()
