"""``PostgresStorage(lock_timeout=...)``: a write waiting on a row lock another connection holds
gives up after the timeout with :class:`LockTimeoutError` (naming it), writes nothing, and the
same call succeeds once the lock is released; without the option (the default) it waits for
the lock, as before. Two real connections: the storage's pool and a raw one holding the lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import (
    Field,
    LockTimeoutError,
    PostgresStorage,
    RecordType,
    Schema,
    StorageBusyError,
)
from tests.conftest import PostgresFactory

SCHEMA = Schema([RecordType("Account", [Field("balance", "number")])])


@pytest.fixture
async def held(postgres_url: str) -> AsyncIterator[Any]:
    """A raw connection of its own (``await held(store, id)`` locks the row in an open
    transaction; ``await held.release()`` rolls it back)."""
    import asyncpg

    connection = await asyncpg.connect(postgres_url)
    transaction = connection.transaction()

    class Holder:
        async def __call__(self, store: PostgresStorage, row_id: Any) -> None:
            await connection.execute(f'SET search_path TO "{store.schema_name}"')
            await transaction.start()
            rows = await connection.fetch(
                'SELECT id FROM "Account" WHERE id = $1 FOR UPDATE', row_id
            )
            assert len(rows) == 1

        async def release(self) -> None:
            await transaction.rollback()

    try:
        yield Holder()
    finally:
        await connection.close()


async def account(make: PostgresFactory, **options: Any) -> tuple[PostgresStorage, Any]:
    store = await make(concurrent_writes=True, **options)
    await store.setup(SCHEMA)
    created = await store.create("Account", {"balance": 10})
    assert created.record is not None
    return store, created.record["id"]


async def balance(store: PostgresStorage, row_id: Any) -> Any:
    row = await store.find_one("Account", {"id": row_id}, ["balance"])
    assert row is not None
    return row["balance"]


async def test_a_write_waiting_past_lock_timeout_gives_up_and_writes_nothing(
    postgres_storage_factory: PostgresFactory, held: Any
) -> None:
    store, row_id = await account(postgres_storage_factory, lock_timeout=0.2)
    await held(store, row_id)
    try:
        with pytest.raises(LockTimeoutError, match=r"lock_timeout=0\.2 s") as raised:
            await store.update("Account", {"id": row_id}, {"balance": 20})
        assert isinstance(raised.value, StorageBusyError)  # the server answers 503 Retry-After
        assert raised.value.lock_timeout == 0.2 and raised.value.retry_after == 1
        assert await balance(store, row_id) == 10  # reads take no row lock: not held up
    finally:
        await held.release()
    await store.update("Account", {"id": row_id}, {"balance": 20})  # the lock is gone
    assert await balance(store, row_id) == 20


async def test_without_lock_timeout_a_write_waits_for_the_lock(
    postgres_storage_factory: PostgresFactory, held: Any
) -> None:
    store, row_id = await account(postgres_storage_factory)
    await held(store, row_id)
    try:
        write = asyncio.ensure_future(store.update("Account", {"id": row_id}, {"balance": 20}))
        await asyncio.sleep(0.5)  # longer than the other test's timeout
        assert not write.done()  # still waiting for the lock, not failed
    finally:
        await held.release()
    await write
    assert await balance(store, row_id) == 20


@pytest.mark.parametrize("bad", [0, -1, 0.0001, True, "1s", float("inf"), float("nan")])
def test_a_bad_lock_timeout_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(ValueError, match="lock_timeout must be None"):
        PostgresStorage("postgresql://postgres@127.0.0.1:5432/test", lock_timeout=bad)
