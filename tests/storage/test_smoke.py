from storage import SQLiteStorage


async def test_create_then_find_round_trips(storage: SQLiteStorage) -> None:
    created = await storage.create("User", {"name": "ada", "age": 36})
    assert created.record is not None
    found = await storage.find("User", {"id": created.record["id"]}, ["name", "age"])
    assert found == [{"id": created.record["id"], "name": "ada", "age": 36}]
    assert [(e.type, e.record_name) for e in created.events] == [("create", "User")]
