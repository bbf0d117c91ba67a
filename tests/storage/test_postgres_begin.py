"""A transaction's BEGIN sent with its first statement, and its last pending update with its
COMMIT (storage.postgres.connection and .internals). The BEGIN against a model: random
transactions of inserts (some duplicates), reads, savepoints, ``executemany``, statements never
run before and empty bodies, read-only or not, one connection for all of them, through the
pipelined runner and through asyncpg's public API.

After every transaction the connection is idle (not left inside a transaction or holding an
answer), the committed rows are the model's, and the transaction failed exactly when the
model says one of its statements had to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import LockTimeoutError, PostgresStorage, StorageError
from storage.postgres import internals
from storage.postgres.connection import Connection

from ..conftest import dispose_postgres, open_postgres
from .conftest import blog_schema
from .helpers import created_id

KEYS = st.integers(1, 6)
STEP = st.one_of(
    st.tuples(st.just("insert"), KEYS),
    st.tuples(st.just("read"), st.just(0)),
    st.tuples(st.just("savepoint"), KEYS),  # an insert under a savepoint; a duplicate is caught
    st.tuples(st.just("many"), KEYS),  # executemany of the key and the key + 10
    st.tuples(st.just("fresh"), st.integers(0, 10**6)),  # a statement text not prepared yet
)
TRANSACTION = st.tuples(st.booleans(), st.lists(STEP, max_size=4))  # (write, steps)


class _Duplicate(Exception):
    """The model's verdict: the step's insert meets a key already there."""


def _model(write: bool, steps: list[tuple[str, int]], rows: set[int]) -> set[int] | None:
    """The rows after the transaction, or None when it must fail."""
    after = set(rows)
    for kind, key in steps:
        if kind in ("insert", "many", "savepoint") and not write:
            return None  # a read-only transaction refuses the insert
        if kind == "insert":
            if key in after:
                return None
            after.add(key)
        elif kind == "savepoint":
            after.add(key)  # a duplicate rolls back to the savepoint only
        elif kind == "many":
            if {key, key + 10} & after:
                return None
            after |= {key, key + 10}
    return after


def _body(steps: list[tuple[str, int]]) -> Callable[[Connection], None]:
    def body(c: Connection) -> None:
        for kind, key in steps:
            if kind == "insert":
                c.execute("INSERT INTO t VALUES ($1, 'v')", [key])
            elif kind == "read":
                c.execute("SELECT count(*) FROM t WHERE id > $1", [0]).fetchone()
            elif kind == "savepoint":
                try:
                    with c.savepoint():
                        c.execute("INSERT INTO t VALUES ($1, 's')", [key])
                except asyncpg.UniqueViolationError:
                    pass  # rolled back to the savepoint; the transaction goes on
            elif kind == "many":
                c.executemany("INSERT INTO t VALUES ($1, 'm')", [[key], [key + 10]])
            else:
                assert c.execute(f"SELECT {key} + $1::int", [1]).fetchone()[0] == key + 1

    return body


async def _run(
    url: str, transactions: list[tuple[bool, list[tuple[str, int]]]], pipelined: bool
) -> None:
    store = await open_postgres(url, pool_size=1)
    try:
        await store._transaction(
            True, lambda c: c.script("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        )
        connection = await _only_connection(store)
        if not pipelined:  # the public path, as when the internals check fails
            public = internals._public(connection.raw)
            connection.run_prepared_after = public.run_after
            connection.run_prepared_behind = None
        rows: set[int] = set()
        for write, steps in transactions:
            expected = _model(write, steps, rows)
            try:
                await store._transaction(write, _body(steps))
            except StorageError:
                assert expected is None, (write, steps, rows)
            else:
                assert expected is not None, (write, steps, rows)
                rows = expected
            assert connection.unsent_begin is None
            assert not connection.raw.is_closed() and not connection.raw.is_in_transaction()
            stored = await store._transaction(
                False, lambda c: {r[0] for r in c.execute("SELECT id FROM t").fetchall()}
            )
            assert stored == rows, (write, steps)
    finally:
        await dispose_postgres(store)


async def _only_connection(store: PostgresStorage) -> Connection:
    pool = store._pool
    assert pool is not None
    connection = await pool.acquire()
    await pool.release(connection)
    return connection


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "public"])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(transactions=st.lists(TRANSACTION, min_size=1, max_size=8))
def test_transactions_agree_with_the_model(
    postgres_url: str, pipelined: bool, transactions: list[Any]
) -> None:
    asyncio.run(_run(postgres_url, transactions, pipelined))


# -- what could leave a BEGIN without its Sync ---------------------------------------------------


async def _cached(store: PostgresStorage, sql: str, params: list[Any]) -> Connection:
    """Run ``sql`` once (so that the next run sends BEGIN with it); the pool's connection."""
    await store._transaction(True, lambda c: c.execute(sql, params))
    return await _only_connection(store)


async def test_parameters_the_driver_refuses_after_a_begin_went_out_drop_the_connection(
    postgres_storage_factory: Any,
) -> None:
    """A value asyncpg cannot encode, in a first statement whose BEGIN was already written:
    the connection is closed (the server drops the transaction), the error is the caller's
    (no write fault), nothing is written, and the next transaction runs on a new connection."""
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, lambda c: c.script("CREATE TABLE t (id int PRIMARY KEY)"))
    insert = "INSERT INTO t VALUES ($1)"
    first = await _cached(store, insert, [1])
    assert first.pipelined
    with pytest.raises(StorageError, match="invalid input for query argument"):
        await store._transaction(True, lambda c: c.execute(insert, ["not a number"]))
    assert first.raw.is_closed()
    assert store.write_fault is None
    await store._transaction(True, lambda c: c.execute(insert, [2]))
    second = await _only_connection(store)
    assert second is not first and not second.raw.is_in_transaction()
    rows = await store._transaction(False, lambda c: c.execute("SELECT id FROM t").fetchall())
    assert sorted(r[0] for r in rows) == [1, 2]


async def test_a_cancelled_first_statement_is_cancelled_on_the_server_too(
    postgres_storage_factory: Any,
) -> None:
    """Cancelled while its first statement (sent with the BEGIN) runs on the server: asyncpg
    cancels it there, nothing of the transaction stays, the connection serves the next one."""
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, lambda c: c.script("CREATE TABLE t (id int PRIMARY KEY)"))
    slow = "INSERT INTO t SELECT $1 FROM pg_sleep($2)"
    first = await _cached(store, slow, [1, 0])
    task = asyncio.ensure_future(store._transaction(True, lambda c: c.execute(slow, [2, 60])))
    watcher = await asyncpg.connect(_dsn(store))
    try:
        for _ in range(500):  # bounded: until the statement sleeps on the server
            await asyncio.sleep(0.01)
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            ):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await watcher.close()
    await store._transaction(True, lambda c: c.execute("INSERT INTO t VALUES ($1)", [3]))
    assert not first.raw.is_closed()  # the same connection, in step with the server
    assert await _only_connection(store) is first
    rows = await store._transaction(False, lambda c: c.execute("SELECT id FROM t").fetchall())
    assert sorted(r[0] for r in rows) == [1, 3]


def _dsn(store: PostgresStorage) -> str:
    return store.dsn


async def test_a_driver_that_fails_the_check_sends_begin_alone(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the check at the process's first connection finds that a BEGIN cannot travel with
    a statement, that connection is closed (it may hold unread answers), another is opened,
    and every connection sends BEGIN in a round trip of its own, with one warning."""
    opened: list[Any] = []
    connect = asyncpg.connect

    async def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append(await connect(*args, **kwargs))
        return opened[-1]

    async def refuse(runner: Any, select: Any, raw: Any) -> str:
        return "a run after BEGIN answered in another shape (simulated)"

    monkeypatch.setattr(asyncpg, "connect", counted)
    monkeypatch.setattr(internals, "_after_refused", None)
    monkeypatch.setattr(internals, "_warned", False)
    monkeypatch.setattr(internals, "_check_run_after", refuse)
    store = await open_postgres(postgres_url, pool_size=2)
    try:
        assert len(opened) == 2 and opened[0].is_closed() and not opened[1].is_closed()
        assert "simulated" in caplog.text and "round trip of its own" in caplog.text
        await store._transaction(True, lambda c: c.script("CREATE TABLE t (id int)"))
        await _run_twice(store)
        pool = store._pool
        assert pool is not None
        held = [await pool.acquire(), await pool.acquire()]  # the second is opened now
        for connection in held:
            assert not connection.pipelined
            await pool.release(connection)
        assert len(opened) == 3
    finally:
        await dispose_postgres(store)


async def _run_twice(store: PostgresStorage) -> None:
    def insert(key: int) -> Callable[[Connection], Any]:
        return lambda c: c.execute("INSERT INTO t VALUES ($1)", [key])

    for key in (1, 2):
        await store._transaction(True, insert(key))
    rows = await store._transaction(False, lambda c: c.execute("SELECT id FROM t").fetchall())
    assert sorted(r[0] for r in rows) == [1, 2]


# -- the last pending update with the COMMIT ---------------------------------------------------

_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "age": st.one_of(st.none(), _numbers),
        "active": st.one_of(st.none(), st.booleans()),
        "meta": st.one_of(st.none(), _json),
        "joined": st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))]),
            ),
        ),
    },
).filter(bool)


async def _held_and_sent(url: str, fields: dict[str, Any]) -> None:
    store = await open_postgres(url, pool_size=1)
    try:
        await store.setup(blog_schema())
        sent_alone = created_id(await store.create("User", {"name": "sent alone"}))
        held = created_id(await store.create("User", {"name": "held"}))
        connection = await _only_connection(store)
        holds: list[bool] = []
        hold = connection.hold

        def spied(sql: str, params: Any) -> bool:
            holds.append(hold(sql, params))
            return holds[-1]

        def update(user: int) -> Callable[[Any], None]:
            def body(tx: Any) -> None:
                current = tx.snapshot("User", user)
                tx.update_record("User", current, fields)

            return body

        connection.hold = lambda sql, params: False  # type: ignore[method-assign]
        await store.run(update(sent_alone))  # prepares the UPDATE: the next one can be held
        connection.hold = spied  # type: ignore[method-assign]
        await store.run(update(held))
        assert holds == [True]
        attributes = ["age", "active", "meta", "joined"]
        one = await store.find_one("User", {"id": sent_alone}, attributes)
        other = await store.find_one("User", {"id": held}, attributes)
        assert one is not None and other is not None
        assert {k: v for k, v in other.items() if k != "id"} == {
            k: v for k, v in one.items() if k != "id"
        }
        assert not connection.raw.is_in_transaction()
    finally:
        await dispose_postgres(store)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(fields=_FIELDS)
def test_an_update_sent_with_the_commit_stores_what_it_would_alone(
    postgres_url: str, fields: dict[str, Any]
) -> None:
    """Its parameters go in text form (the server parses each with its type): every field
    type stores and reads back exactly as asyncpg's binary form of the same update does."""
    asyncio.run(_held_and_sent(postgres_url, fields))


async def test_a_held_update_goes_with_the_commit_in_one_round_trip(
    postgres_storage_factory: Any,
) -> None:
    store = await postgres_storage_factory(pool_size=1)
    await store.setup(blog_schema())
    user = created_id(await store.create("User", {"name": "ada", "age": 1}))

    def birthday(tx: Any) -> None:
        current = tx.snapshot("User", user)
        tx.update_record("User", current, {"age": current["age"] + 1})

    await store.run(birthday)  # its UPDATE's first run: sent alone, and prepared
    connection = await _only_connection(store)
    behind: list[bytes] = []
    run_behind = connection.run_prepared_behind
    assert run_behind is not None

    def spied(messages: bytes, statement: Any, params: Any) -> Any:
        behind.append(messages)
        return run_behind(messages, statement, params)

    connection.run_prepared_behind = spied
    await store.run(birthday)
    assert len(behind) == 1 and behind[0].startswith(b"B")
    assert await store.find_one("User", {"id": user}, ["age"]) == {"id": user, "age": 3}


async def test_a_held_update_that_fails_fails_the_commit_and_stores_nothing(
    postgres_storage_factory: Any,
) -> None:
    """The held update waits for a row another connection holds, past ``lock_timeout``: the
    COMMIT's round trip raises LockTimeoutError, nothing of the transaction is stored, and the
    connection serves the next one."""
    store = await postgres_storage_factory(pool_size=1, lock_timeout=0.2)
    await store.setup(blog_schema())
    user = created_id(await store.create("User", {"name": "ada", "age": 1}))
    other = created_id(await store.create("User", {"name": "bo", "age": 1}))

    def update(target: int, age: int) -> Callable[[Any], None]:
        def body(tx: Any) -> None:
            tx.create("Tag", {"label": f"made with {age}"})
            current = tx.snapshot("User", target)
            tx.update_record("User", current, {"age": age})

        return body

    await store.run(update(other, 2))  # prepares the statements
    locker = await asyncpg.connect(_dsn(store), server_settings={"search_path": store.schema_name})
    try:
        await locker.execute("BEGIN")
        await locker.execute('SELECT 1 FROM "User" WHERE id = $1 FOR UPDATE', user)
        with pytest.raises(LockTimeoutError):
            await store.run(update(user, 5))
        await locker.execute("ROLLBACK")
    finally:
        await locker.close()
    assert await store.find_one("User", {"id": user}, ["age"]) == {"id": user, "age": 1}
    assert await store.count("Tag", {"label": "made with 5"}) == 0
    await store.run(update(user, 6))
    assert await store.find_one("User", {"id": user}, ["age"]) == {"id": user, "age": 6}


async def test_an_update_hold_cannot_carry_is_sent_alone_before_the_commit(
    postgres_storage_factory: Any,
) -> None:
    """``hold`` refuses (the caller sends the update itself) a statement not prepared on the
    connection, a parameter with no text form here, and a connection that does not pipeline;
    it takes the same update once it ran, and the COMMIT then carries it."""
    store = await postgres_storage_factory(pool_size=1)
    await store._transaction(True, lambda c: c.script("CREATE TABLE t (id bigint, f float8)"))
    update = "UPDATE t SET f = $1 WHERE id = $2"
    connection = await _only_connection(store)

    def refusals(c: Connection) -> list[bool]:
        c.execute("INSERT INTO t VALUES ($1, $2)", [1, 0.5])
        refused = [c.hold(update, [1.5, 1])]  # not prepared here yet
        c.execute(update, [2.5, 1])
        refused.append(c.hold(update, [3.5, 1]))  # float8 has no text form here
        return refused

    assert await store._transaction(True, refusals) == [False, False]
    assert connection.held is None

    def held(c: Connection) -> bool:
        c.execute("SELECT count(*) FROM t")
        return c.hold("UPDATE t SET id = $1 WHERE id = $2", [7, 1])

    moved = await store._transaction(
        True, lambda c: c.execute("UPDATE t SET id = $1 WHERE id = $2", [1, 1]).rowcount
    )
    assert moved == 1  # the statement ran here once: now it can be held
    assert await store._transaction(True, held) is True
    rows = await store._transaction(False, lambda c: c.execute("SELECT id, f FROM t").fetchall())
    assert [tuple(r) for r in rows] == [(7, 2.5)]

    behind, connection.run_prepared_behind = connection.run_prepared_behind, None
    try:
        assert await store._transaction(True, held) is False  # not pipelined: nothing held
    finally:
        connection.run_prepared_behind = behind
