"""The aiosqlite adapter (storage.sqlite.aio): the private internals SQLiteStorage runs on are
checked when a connection opens, and an aiosqlite without them is refused with an error naming
what is missing and the versions that have it, before anything is opened or written."""

from __future__ import annotations

import threading
from pathlib import Path

import aiosqlite
import pytest

from storage import NotSetUpError, SQLiteStorage, StorageError
from storage.sqlite import aio
from storage.sqlite.storage import Executor
from tests.storage.conftest import blog_schema


@pytest.mark.parametrize(
    ("internal", "named"),
    [
        ("_execute", "Connection._execute"),
        ("_conn", "Connection._conn"),
    ],
)
@pytest.mark.parametrize("executor", ["loop", "thread"])
async def test_an_aiosqlite_without_the_internals_is_refused_at_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, internal: str, named: str, executor: Executor
) -> None:
    monkeypatch.delattr(aiosqlite.Connection, internal)
    path = tmp_path / "refused.db"
    storage = SQLiteStorage(str(path), executor=executor)
    with pytest.raises(StorageError) as info:
        await storage.setup(blog_schema())
    message = str(info.value)
    assert named in message
    assert f"aiosqlite{aio.SUPPORTED}" in message
    assert aiosqlite.__version__ in message
    # Refused before anything was opened: no file, no schema bound, nothing to close.
    assert not path.exists()
    with pytest.raises(NotSetUpError):
        storage.schema  # noqa: B018
    await storage.close()


async def test_a_connection_without_a_worker_thread_is_refused(tmp_path: Path) -> None:
    connecting = aiosqlite.connect(str(tmp_path / "x.db"))
    del connecting._thread
    with pytest.raises(StorageError, match=r"Connection\._thread \(the worker thread\)"):
        aio.check(connecting)


@pytest.mark.parametrize("executor", ["loop", "thread"])
async def test_transactions_run_on_the_loop_or_as_one_job_on_a_daemon_worker(
    tmp_path: Path, executor: Executor
) -> None:
    storage = SQLiteStorage(str(tmp_path / "ok.db"), executor=executor)
    await storage.setup(blog_schema())
    try:
        loop_thread = threading.get_ident()
        ran_on: list[int] = []

        def body(tx: object) -> int:
            ran_on.append(threading.get_ident())
            return 1

        assert await storage.run(body) == 1
        assert await storage.run(body) == 1
        if executor == "loop":
            assert ran_on == [loop_thread, loop_thread]
        else:
            assert ran_on[0] == ran_on[1] != loop_thread
            worker = next(t for t in threading.enumerate() if t.ident == ran_on[0])
            assert worker.daemon
    finally:
        await storage.close()
