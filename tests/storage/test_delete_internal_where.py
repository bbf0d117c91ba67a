"""``Storage.delete_internal_where``: a conditional bookkeeping delete in a transaction of its own
(one statement; on PostgreSQL sent alone, with no BEGIN/COMMIT), the same on every backend."""

from __future__ import annotations

import pytest

from storage import MatchError, MatchExp, Storage, StorageError, UnknownRecordError
from tests.storage.test_apply_deltas import store

__all__ = ["store"]  # the fixture, on SQLite, the standard rendering and PostgreSQL


async def test_deletes_the_matching_records_and_says_how_many(store: Storage) -> None:
    ids = []
    for i, name in enumerate("abcd"):
        created = await store.create("Host", {"name": name, "units": i})
        assert created.record is not None
        ids.append(created.record["id"])
    assert await store.delete_internal_where("Host", {"name": "zz"}) == 0
    gone = await store.delete_internal_where(
        "Host", MatchExp.atom("id", "in", ids[:3]) & {"units": 1}
    )
    assert gone == 1
    assert await store.delete_internal_where("Host", MatchExp.atom("units", ">=", 2)) == 2
    left = await store.find("Host", None, ["name"])
    assert left == [{"id": ids[0], "name": "a"}]


async def test_bad_input_names_the_fault_and_deletes_nothing(store: Storage) -> None:
    await store.create("Host", {"name": "a"})
    with pytest.raises(UnknownRecordError):
        await store.delete_internal_where("Nope", {"name": "a"})
    with pytest.raises(MatchError, match="nope"):
        await store.delete_internal_where("Host", {"nope": "a"})
    with pytest.raises(StorageError):
        await store.delete_internal_where("Host", MatchExp.atom("units", ">", "x"))
    assert await store.count("Host") == 1
