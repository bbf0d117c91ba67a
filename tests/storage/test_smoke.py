import pytest

from storage import NotSetUpError, SQLiteStorage


async def test_create_then_find_round_trips(storage: SQLiteStorage) -> None:
    created = await storage.create("User", {"name": "ada", "age": 36})
    assert created.record is not None
    found = await storage.find("User", {"id": created.record["id"]}, ["name", "age"])
    assert found == [{"id": created.record["id"], "name": "ada", "age": 36}]
    assert [(e.type, e.record_name) for e in created.events] == [("create", "User")]


async def test_async_with_closes_the_storage(storage: SQLiteStorage) -> None:
    # Every backend is an async context manager (SQLStorage): leaving the block closes it.
    async with storage as same:
        assert same is storage
        assert await storage.count("User") == 0
    with pytest.raises(NotSetUpError):
        await storage.count("User")
