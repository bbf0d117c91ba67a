"""The PostgreSQL connection layer on a real server: the greenlet bridge, one transaction per
body, savepoints, prepared statements per connection, the retry hook, write faults, and the
errors of a connection that cannot be opened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

import pytest

from storage import ConflictError, PostgresStorage, StorageError
from storage.errors import NotSetUpError, TransactionError
from storage.postgres.bridge import BridgeError, await_, run_sync
from storage.postgres.connection import Connection

from ..conftest import PostgresFactory
from .conftest import blog_schema
from .helpers import created_id


def _table(connection: Connection) -> None:
    connection.script("CREATE TABLE t (id bigint PRIMARY KEY, v text)")


async def _rows(store: PostgresStorage) -> list[tuple[Any, ...]]:
    return await store._transaction(
        False, lambda c: [tuple(r) for r in c.execute("SELECT id, v FROM t ORDER BY id").fetchall()]
    )


# -- the bridge --------------------------------------------------------------------------------


async def test_run_sync_returns_the_result_and_awaits_each_statement() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    def body(n: int) -> list[int]:
        return [await_(double(i)) for i in range(n)]

    assert await run_sync(body, 4) == [0, 2, 4, 6]


async def test_an_exception_of_an_awaitable_reaches_the_body_and_then_the_caller() -> None:
    async def fail() -> None:
        raise KeyError("inner")

    seen: list[str] = []

    def body() -> None:
        try:
            await_(fail())
        except KeyError:
            seen.append("caught in the body")
        raise ValueError("from the body")

    with pytest.raises(ValueError, match="from the body"):
        await run_sync(body)
    assert seen == ["caught in the body"]


async def test_await_outside_a_bridged_body_is_refused() -> None:
    async def nothing() -> int:
        return 1

    with pytest.raises(BridgeError, match=r"storage\.run"):
        await_(nothing())


async def test_the_loop_serves_other_tasks_while_a_body_waits_for_the_server(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """A body blocks on a lock another task holds; that task can only release it if the loop
    keeps running while the body waits (a blocked loop would deadlock here)."""
    store = await postgres_storage_factory(pool_size=2)
    pool = store._pool
    assert pool is not None
    holder = await pool.acquire()
    try:
        await holder.raw.execute("SELECT pg_advisory_lock(4242)")
        waiting = asyncio.create_task(
            store._transaction(
                True,
                lambda c: c.execute("SELECT pg_advisory_xact_lock(4242), 'got it'").fetchone()[1],
            )
        )
        for _ in range(500):  # bounded: until the body's statement waits on the server
            blocked = await holder.raw.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if blocked:
                break
            await asyncio.sleep(0.01)
        assert blocked == 1
        assert not waiting.done()
        await holder.raw.execute("SELECT pg_advisory_unlock(4242)")
        assert await asyncio.wait_for(waiting, 10) == "got it"
    finally:
        await pool.release(holder)


# -- transactions --------------------------------------------------------------------------


async def test_concurrent_read_then_write_bodies_lose_no_update(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Bodies that read a value and write what they derived from it (as the engine's
    computations do), run at once: by default the storage's writes take turns, as on SQLite,
    so every increment counts."""
    store = await postgres_storage_factory(pool_size=8)
    await store.setup(blog_schema())
    ada = created_id(await store.create("User", {"name": "ada", "age": 0}))

    def increment(tx: Any) -> None:
        old = tx.snapshot("User", ada)
        tx.update_record("User", old, {"age": old["age"] + 1})

    await asyncio.gather(*(store.run(increment) for _ in range(20)))
    assert await store.find_one("User", {"id": ada}, ["age"]) == {"id": ada, "age": 20}


async def test_reads_run_while_a_write_waits(postgres_storage_factory: PostgresFactory) -> None:
    store = await postgres_storage_factory(pool_size=3)
    await store.setup(blog_schema())
    pool = store._pool
    assert pool is not None
    holder = await pool.acquire()
    try:
        await holder.raw.execute("SELECT pg_advisory_lock(4343)")
        writing = asyncio.create_task(
            store._transaction(True, lambda c: c.execute("SELECT pg_advisory_xact_lock(4343)"))
        )
        for _ in range(500):  # bounded: until the write's statement waits on the server
            if await holder.raw.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                break
            await asyncio.sleep(0.01)
        # the write holds its turn and waits; a read goes through meanwhile
        assert await asyncio.wait_for(store.count("User"), 10) == 0
        assert not writing.done()
        await holder.raw.execute("SELECT pg_advisory_unlock(4343)")
        await asyncio.wait_for(writing, 10)
        bob = (await store.create("User", {"name": "bob"})).record
        assert bob is not None and bob["name"] == "bob"
    finally:
        await pool.release(holder)


async def test_a_body_commits_as_one_transaction(postgres_storage_factory: PostgresFactory) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)

    def write(c: Connection) -> int:
        c.executemany("INSERT INTO t VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, "c")])
        return c.execute("UPDATE t SET v = v || '!' WHERE id >= $1", [2]).rowcount

    assert await store._transaction(True, write) == 2
    assert await _rows(store) == [(1, "a"), (2, "b!"), (3, "c!")]


async def test_a_failing_body_leaves_no_trace(postgres_storage_factory: PostgresFactory) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)

    def write_then_fail(c: Connection) -> None:
        c.execute("INSERT INTO t VALUES (1, 'lost')")
        raise RuntimeError("the body failed")

    with pytest.raises(RuntimeError, match="the body failed"):
        await store._transaction(True, write_then_fail)
    assert await _rows(store) == []
    # the connection went back to the pool usable: the next transaction works
    await store._transaction(True, lambda c: c.execute("INSERT INTO t VALUES (2, 'kept')"))
    assert await _rows(store) == [(2, "kept")]


async def test_a_savepoint_undoes_only_its_own_writes(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """PostgreSQL refuses every statement after a failed one, unless a savepoint took it
    back: the failure inside is survived and the transaction commits the rest."""
    store = await postgres_storage_factory()
    await store._transaction(True, _table)

    def body(c: Connection) -> str:
        c.execute("INSERT INTO t VALUES (1, 'outer')")
        try:
            with c.savepoint():
                c.execute("INSERT INTO t VALUES (2, 'inner')")
                c.execute("INSERT INTO t VALUES (1, 'duplicate key')")
        except Exception as exc:
            caught = type(exc).__name__
        with c.savepoint():
            c.execute("INSERT INTO t VALUES (3, 'kept')")
        return caught

    assert await store._transaction(True, body) == "UniqueViolationError"
    assert await _rows(store) == [(1, "outer"), (3, "kept")]


async def test_reads_see_one_snapshot_and_cannot_write(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)
    with pytest.raises(StorageError, match="read-only transaction"):
        await store._transaction(False, lambda c: c.execute("INSERT INTO t VALUES (1, 'x')"))
    assert await _rows(store) == []
    assert store.write_fault is None  # a refused read is no fault of the store


async def test_prepared_statements_are_kept_per_connection_and_dropped_after_ddl(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, _table)

    def reads(c: Connection) -> int:
        for i in range(5):
            c.execute("SELECT v FROM t WHERE id = $1", [i])
        with c.savepoint():  # transaction control is never prepared
            c.execute("SAVEPOINT named")
            c.execute("RELEASE SAVEPOINT named")
        return len(c._statements)

    assert await store._transaction(False, reads) == 1
    assert await store._transaction(False, lambda c: len(c._statements)) == 1  # kept
    await store._transaction(True, lambda c: c.script("ALTER TABLE t ADD COLUMN w text"))
    assert await store._transaction(False, lambda c: len(c._statements)) == 0


async def test_a_statement_is_prepared_once_under_a_name_and_run_by_it_again(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """An unnamed statement would be parsed and planned again at every run: the server lists
    named ones only, and lists ours once however often it ran."""
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, _table)
    select = "SELECT v FROM t WHERE id = $1"

    def runs(c: Connection) -> list[str]:
        for i in range(3):
            c.execute(select, [i])
        listed = c.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
        return [name for name, statement in listed if statement == select]

    names = await store._transaction(False, runs)
    assert len(names) == 1 and names[0].startswith("__interaqt_")
    assert await store._transaction(False, runs) == names  # the same one, next transaction too


async def test_row_counts_come_from_the_rows_or_the_command_status(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)

    def counts(c: Connection) -> list[int]:
        return [
            c.execute("INSERT INTO t VALUES ($1, 'a'), ($2, 'b')", [1, 2]).rowcount,
            c.execute("UPDATE t SET v = $1 WHERE id > $2", ["c", 0]).rowcount,
            c.execute("UPDATE t SET v = $1 WHERE id > $2 RETURNING id", ["d", 1]).rowcount,
            c.execute("DELETE FROM t WHERE id = $1", [7]).rowcount,
            c.execute("SELECT id FROM t WHERE id > $1", [0]).rowcount,
        ]

    assert await store._transaction(True, counts) == [2, 2, 1, 0, 2]


async def test_without_the_driver_internals_statements_run_through_the_public_api(
    postgres_url: str,
) -> None:
    """An asyncpg lacking what storage.postgres.internals uses gets the public path, with the
    same rows and command status, alone and after a BEGIN (sent in a round trip of its own)."""
    import asyncpg

    from storage.postgres import internals

    class Public:  # an asyncpg connection as far as the public API goes, no protocol
        def __init__(self, raw: Any) -> None:
            self.prepare = raw.prepare
            self.execute = raw.execute

    raw = await asyncpg.connect(postgres_url, statement_cache_size=0)
    try:
        fast, public = await internals.runner(raw), await internals.runner(cast(Any, Public(raw)))
        assert fast is not None and fast.pipelined
        assert public is not None and not public.pipelined
        statement = await raw.prepare("SELECT g FROM generate_series(1, $1::int) g", name="s1")
        for runner in (fast, public):
            rows, status, completed = await runner.run(statement, [3])
            assert ([r[0] for r in rows], status, completed) == ([1, 2, 3], b"SELECT 3", True)
            assert not raw.is_in_transaction()
            rows, status, completed = await runner.run_after("BEGIN", statement, [2])
            assert ([r[0] for r in rows], status, completed) == ([1, 2], b"SELECT 2", True)
            assert raw.is_in_transaction()
            await raw.execute("ROLLBACK")
    finally:
        await raw.close()


async def test_a_begin_travels_with_the_first_statement_and_an_empty_body_sends_nothing(
    postgres_storage_factory: PostgresFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN goes out with the body's first statement (one round trip, not two); COMMIT after
    it; a body that sends nothing sends neither; a failed first statement rolls back."""
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, _table)
    sent: list[str] = []
    pool = store._pool
    assert pool is not None
    connection = await pool.acquire()
    await pool.release(connection)
    raw = connection.raw
    assert connection.pipelined

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def execute(self, sql: str, *args: Any) -> Any:
            sent.append(sql)
            return raw.execute(sql, *args)

    run_after = connection.run_prepared_after

    def spied_after(first: str, statement: Any, params: Any) -> Any:
        sent.append(f"{first} + run")
        return run_after(first, statement, params)

    monkeypatch.setattr(connection, "raw", Spy())
    monkeypatch.setattr(connection, "run_prepared_after", spied_after)

    def insert(key: int) -> Callable[[Connection], int]:
        def body(c: Connection) -> int:
            c.execute("INSERT INTO t VALUES ($1, $2)", [key, "a"])
            count: int = c.execute("SELECT count(*) FROM t").fetchone()[0]
            return count

        return body

    def read(c: Connection) -> int:
        count: int = c.execute("SELECT count(*) FROM t").fetchone()[0]
        return count

    # A statement's first run on the connection: it is prepared first, and a BEGIN cannot
    # follow asyncpg's Parse in the same round trip (connection.py), so it goes alone.
    assert await store._transaction(True, insert(1)) == 1
    assert sent == ["BEGIN ISOLATION LEVEL READ COMMITTED", "COMMIT"]
    sent.clear()
    assert await store._transaction(True, insert(3)) == 2
    assert await store._transaction(False, read) == 2  # another isolation level: allowed
    assert sent == [
        "BEGIN ISOLATION LEVEL READ COMMITTED + run",
        "COMMIT",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY + run",
        "COMMIT",
    ]
    sent.clear()

    def sends_nothing(c: Connection) -> object:
        return None

    assert await store._transaction(True, sends_nothing) is None
    assert await store._transaction(False, sends_nothing) is None
    assert sent == []
    with pytest.raises(StorageError, match="duplicate key"):
        await store._transaction(True, insert(1))
    assert sent == ["BEGIN ISOLATION LEVEL READ COMMITTED + run", "ROLLBACK"]
    sent.clear()

    def savepoint_first(c: Connection) -> None:
        with c.savepoint():
            c.execute("INSERT INTO t VALUES ($1, $2)", [2, "b"])

    await store._transaction(True, savepoint_first)
    assert sent[0] == "BEGIN ISOLATION LEVEL READ COMMITTED; SAVEPOINT sp1" and sent[-1] == "COMMIT"
    rows = await store._transaction(False, lambda c: c.execute("SELECT id FROM t").fetchall())
    assert sorted(r[0] for r in rows) == [1, 2, 3]
    assert not raw.is_in_transaction()


async def test_ddl_on_one_connection_clears_the_statements_of_every_pooled_one(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """A statement prepared before a column changed type would be decoded with the old type:
    DDL that commits on one connection makes every connection of the pool prepare again."""
    store = await postgres_storage_factory(pool_size=2)
    await store._transaction(True, _table)
    await store._transaction(True, lambda c: c.execute("INSERT INTO t VALUES (1, '42')"))

    def read(c: Connection) -> list[Any]:
        return [tuple(r) for r in c.execute("SELECT id, v FROM t").fetchall()]

    assert await store._transaction(False, read) == [(1, "42")]  # cached on the idle connection
    pool = store._pool
    assert pool is not None
    first = await pool.acquire()  # hold it, so that the DDL runs on the second connection
    try:
        alter = "ALTER TABLE t ALTER COLUMN v TYPE bigint USING v::bigint"
        await store._transaction(True, lambda c: c.script(alter))
    finally:
        await pool.release(first)
    rows = await store._transaction(False, read)
    assert rows == [(1, 42)]


async def test_a_statement_the_server_calls_stale_runs_the_body_again(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory(pool_size=1)
    runs: list[int] = []
    stale = (
        "DO $$ BEGIN RAISE EXCEPTION 'cached plan must not change result type' "
        "USING ERRCODE = '0A000'; END $$"
    )

    def body(c: Connection) -> int:
        runs.append(1)
        if len(runs) == 1:
            c.execute("SELECT 1")
            c.script(stale)
        return len(c._statements)

    assert await store._transaction(True, body) == 0  # the second run starts with none
    assert len(runs) == 2
    runs.clear()
    runs.extend([1, 1])  # from now on the body raises every time: retried once, not forever

    def always(c: Connection) -> None:
        runs.append(1)
        c.script(stale)

    with pytest.raises(StorageError, match="cached plan"):
        await store._transaction(True, always)
    assert len(runs) == 4


# -- the retry hook and faults -------------------------------------------------------------

_RAISE = "DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{}'; END $$"


async def test_a_serialization_failure_that_persists_is_a_conflict_error_naming_the_attempts(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory(attempts=3)
    await store._transaction(True, _table)
    runs: list[int] = []

    def body(c: Connection) -> None:
        runs.append(1)
        c.execute("INSERT INTO t VALUES ($1, 'x')", [len(runs)])
        c.script(_RAISE.format("40001"))

    with pytest.raises(ConflictError, match=r"gave up after 3 attempts.*40001.*nothing was wri"):
        await store._transaction(True, body)
    assert len(runs) == 3
    assert await _rows(store) == []


async def test_a_deadlock_runs_the_whole_body_again(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)
    runs: list[int] = []

    def body(c: Connection) -> int:
        runs.append(1)
        c.execute("INSERT INTO t VALUES ($1, 'x')", [len(runs)])
        if len(runs) < 3:
            c.script(_RAISE.format("40P01"))
        return len(runs)

    assert await store._transaction(True, body) == 3
    assert await _rows(store) == [(3, "x")]  # the two failed runs left nothing
    assert store.conflicts == 2


async def test_a_conflict_the_body_caught_still_voids_the_run(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """A computation may catch or wrap the error of a statement it made; the run is void all
    the same (the transaction is aborted), and it is run again."""
    store = await postgres_storage_factory()
    await store._transaction(True, _table)
    runs: list[int] = []

    def body(c: Connection) -> int:
        runs.append(1)
        c.execute("INSERT INTO t VALUES ($1, 'x')", [len(runs)])
        if len(runs) == 1:
            try:
                c.execute(_RAISE.format("40001"))
            except Exception:
                raise ValueError("a computation's own wrapping") from None
        return len(runs)

    assert await store._transaction(True, body) == 2
    assert await _rows(store) == [(2, "x")]


async def test_an_error_of_the_body_is_not_retried(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    runs: list[int] = []

    def body(c: Connection) -> None:
        runs.append(1)
        raise ValueError("the body's own")

    with pytest.raises(ValueError, match="the body's own"):
        await store._transaction(True, body)
    assert runs == [1]


@pytest.mark.parametrize("attempts", [0, -1, 1.5, True, "8"])
def test_a_bad_attempts_is_refused(attempts: Any) -> None:
    with pytest.raises(ValueError, match="attempts must be a positive number"):
        PostgresStorage("postgresql://u@127.0.0.1/db", attempts=attempts)


def test_a_bad_isolation_is_refused() -> None:
    with pytest.raises(ValueError, match="isolation must be 'read committed' or 'serializable'"):
        PostgresStorage("postgresql://u@127.0.0.1/db", isolation="repeatable read")  # type: ignore[arg-type]


def test_conflict_waits_are_jittered_below_a_doubling_cap_and_stop_at_the_bound() -> None:
    from storage.postgres.storage import FIRST_BACKOFF, MAX_BACKOFF, _Conflict

    store = PostgresStorage("postgresql://u@127.0.0.1/db", attempts=8)
    conflict = _Conflict("conflict", "40001")
    for attempt in range(1, 8):
        cap = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
        waits = [store.retry_delay(conflict, attempt) for _ in range(200)]
        assert all(w is not None and cap / 10 <= w <= cap for w in waits)
        assert len(set(waits)) > 100  # drawn, not fixed: processes do not retry in step
    assert store.retry_delay(conflict, 8) is None
    assert store.retry_delay(StorageError("not a conflict"), 1) is None


async def test_a_fault_of_the_store_is_kept_until_a_write_commits(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    await store._transaction(True, _table)
    assert store.write_fault is None
    with pytest.raises(StorageError, match="simulated"):
        await store._transaction(True, lambda c: c.script(_RAISE.format("53100")))  # disk_full
    assert store.write_fault is not None and "simulated" in store.write_fault
    await store._transaction(False, lambda c: c.execute("SELECT 1"))
    assert store.write_fault is not None  # a read does not clear it
    await store._transaction(True, lambda c: c.execute("INSERT INTO t VALUES (1, 'x')"))
    assert store.write_fault is None


async def test_a_data_error_is_not_a_fault_of_the_store(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory()
    with pytest.raises(StorageError, match="division by zero"):
        await store._transaction(True, lambda c: c.execute("SELECT 1 / 0"))
    assert store.write_fault is None


async def test_a_lost_connection_is_a_fault_and_the_pool_replaces_it(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, _table)
    pid = await store._transaction(
        False, lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0]
    )
    pool = store._pool
    assert pool is not None
    killer = await pool.open_one()
    try:
        with pytest.raises(StorageError, match="PostgreSQL error on"):

            def body(c: Connection) -> None:
                await_(killer.raw.execute(f"SELECT pg_terminate_backend({pid})"))
                c.execute("INSERT INTO t VALUES (1, 'x')")

            await store._transaction(True, body)
    finally:
        await killer.raw.close()
    assert store.write_fault is not None
    await store._transaction(True, lambda c: c.execute("INSERT INTO t VALUES (2, 'y')"))
    assert store.write_fault is None
    assert await _rows(store) == [(2, "y")]


async def test_a_transaction_inside_a_body_is_refused(
    postgres_storage_factory: PostgresFactory,
) -> None:
    store = await postgres_storage_factory(pool_size=1)

    def body(c: Connection) -> str:
        nested = store._transaction(True, lambda inner: None)
        try:
            nested.send(None)  # driven by hand, as only a synchronous body could
        except TransactionError as exc:
            return str(exc)
        finally:
            nested.close()
        return "ran"

    assert "savepoint" in await store._transaction(True, body)
    assert await store._transaction(False, lambda c: c.execute("SELECT 7").fetchone()[0]) == 7


async def test_a_storage_not_connected_refuses_transactions(postgres_url: str) -> None:
    store = PostgresStorage(postgres_url)
    with pytest.raises(NotSetUpError, match="setup"):
        await store._transaction(False, lambda c: None)


# -- connection errors ---------------------------------------------------------------------


def _url_with(postgres_url: str, **parts: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    split = urlsplit(postgres_url)
    user = parts.get("user", split.username or "postgres")
    password = parts.get("password")
    host = parts.get("host", split.hostname or "127.0.0.1")
    port = parts.get("port", str(split.port or 5432))
    database = parts.get("database", split.path.lstrip("/"))
    auth = f"{user}:{password}" if password else user
    return urlunsplit(("postgresql", f"{auth}@{host}:{port}", f"/{database}", "", ""))


async def test_an_unreachable_server_is_one_clear_error(postgres_url: str) -> None:
    url = _url_with(postgres_url, port="1", password="hunter2-secret")
    store = PostgresStorage(url, connect_timeout=5)
    with pytest.raises(StorageError) as caught:
        await store._connect()
    message = str(caught.value)
    assert ":1, database 'test'" in message or ":1, database" in message
    assert "no PostgreSQL server answers there" in message
    assert "hunter2-secret" not in message
    assert caught.value.__cause__ is None  # one error, not a driver traceback


async def test_wrong_credentials_are_one_clear_error(postgres_url: str) -> None:
    url = _url_with(postgres_url, user="no_such_role_x", password="hunter2-secret")
    with pytest.raises(StorageError) as caught:
        await PostgresStorage(url)._connect()
    message = str(caught.value)
    assert "user 'no_such_role_x'" in message
    assert "check the user and password" in message
    assert "hunter2-secret" not in message


async def test_a_missing_database_is_one_clear_error(postgres_url: str) -> None:
    url = _url_with(postgres_url, database="no_such_database_x")
    with pytest.raises(StorageError) as caught:
        await PostgresStorage(url)._connect()
    message = str(caught.value)
    assert "database 'no_such_database_x'" in message
    assert "createdb no_such_database_x" in message


@pytest.mark.parametrize("module", ["asyncpg", "greenlet"])
def test_a_missing_driver_is_one_clear_error_and_importing_needs_none(module: str) -> None:
    """Without asyncpg, ``from storage import PostgresStorage`` and constructing one work;
    setting it up names the server and the extra to install (and never the password)."""
    script = (
        "import sys, asyncio\n"
        "import storage\n"
        "assert 'asyncpg' not in sys.modules and 'greenlet' not in sys.modules\n"
        f"sys.modules[{module!r}] = None\n"  # what an environment without the extra does
        "from storage import PostgresStorage, StorageError\n"
        "store = PostgresStorage('postgresql://app:hunter2@db.example:6543/shop')\n"
        "try:\n"
        "    asyncio.run(store._connect())\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "db.example:6543, database 'shop' as user 'app'" in out
    assert "pip install 'interaqt-py[postgres]'" in out
    assert f"{module!r} is not installed" in out
    assert "hunter2" not in out


@pytest.mark.parametrize(
    ("options", "fault"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": True}, "pool_size"),
        ({"schema": "1bad"}, "schema"),
        ({"schema": 'x"; DROP'}, "schema"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        PostgresStorage("postgresql://u@h/d", **options)


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(StorageError, match="not a PostgreSQL URL"):
        PostgresStorage("mysql://u@h/d")
