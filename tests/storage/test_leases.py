"""The primitives of several processes on one database (storage.lease), on both backends.

Leased rows: claims take the lowest free ids, set the owner, skip what is held and take what
expired; on PostgreSQL every lease time is the server's clock (a caller's clock an hour off
changes nothing), on SQLite it is the caller's. Concurrent claims from several storages (own
connections: as from several processes) never take a row twice (hypothesis over row counts,
batch sizes and claimers). Wake-ups reach the listeners of the same database (and schema) and
no others. Leadership: one holder at a time; given up by resigning, by closing, and on
PostgreSQL by the death of its connection. Bad input is refused, naming what is wrong.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Field, Lease, PostgresStorage, RecordType, Schema, Storage, StorageError
from tests.conftest import PG_URL, StorageFactory, scratch_storage

JOB = RecordType(
    "Job",
    [Field("n", "number"), Field("state"), Field("lease_owner"), Field("lease_until", "number")],
)
PLAIN = RecordType("Plain", [Field("n", "number")])
SCHEMA = Schema([JOB, PLAIN])
HOUR = 3600.0
EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "8"))


def lease(owner: str, duration: float = 30.0, now: float | None = None) -> Lease:
    return Lease(owner, duration, time.time() if now is None else now)


async def fill(store: Storage, count: int) -> list[Any]:
    return await store.run(
        lambda s: [s.insert_internal("Job", {"n": n, "state": "open"}) for n in range(count)]
    )


async def owners(store: Storage) -> dict[Any, Any]:
    rows = await store.find("Job", None, ["lease_owner"], order_by={"id": "asc"})
    return {row["id"]: row["lease_owner"] for row in rows}


async def eventually(check: Any, what: str, bound: float = 10.0) -> None:
    give_up = time.monotonic() + bound
    while not await check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} did not happen within {bound} s")
        await asyncio.sleep(0.01)


async def test_claims_take_the_lowest_free_ids_and_skip_held_ones(
    make_storage: StorageFactory,
) -> None:
    store = make_storage("jobs.db")
    await store.setup(SCHEMA)
    ids = await fill(store, 7)
    first = await store.claim("Job", {"state": "open"}, lease("a"), limit=3, fields=["n"])
    assert [row["id"] for row in first] == ids[:3]
    assert [row["n"] for row in first] == [0, 1, 2]
    second = await store.claim("Job", {"state": "open"}, lease("b"), limit=10, fields=["n"])
    assert [row["id"] for row in second] == ids[3:]
    assert await store.claim("Job", {"state": "open"}, lease("c"), limit=10) == []
    held = await owners(store)
    assert [held[i] for i in ids] == ["a"] * 3 + ["b"] * 4
    # values are set with the lease; the match limits what is taken
    await store.run(lambda s: s.write_internal_where("Job", {"id": ids[0]}, {"lease_owner": None}))
    taken = await store.claim(
        "Job", {"state": "open"}, lease("c"), limit=5, fields=["state"], values={"state": "taken"}
    )
    assert taken == [{"id": ids[0], "state": "taken"}]
    assert await store.claim("Job", {"state": "open"}, lease("d"), limit=5) == []


async def test_expired_leases_are_claimed_and_renewals_keep_them(
    make_storage: StorageFactory,
) -> None:
    store = make_storage("jobs.db")
    await store.setup(SCHEMA)
    ids = await fill(store, 2)
    await store.claim("Job", None, lease("a", duration=0.2), limit=2)
    # "a" renews the first only; "b" takes the second once its lease has expired
    await asyncio.sleep(0.1)
    renewed = await store.run(
        lambda s: s.write_leased("Job", {"id": ids[0], "lease_owner": "a"}, {}, lease("a", HOUR))
    )
    assert renewed == 1

    async def second_taken() -> bool:
        taken = await store.claim("Job", None, lease("b"), limit=2)
        return [row["id"] for row in taken] == [ids[1]]

    await eventually(second_taken, "the expired lease being claimed")
    assert await owners(store) == {ids[0]: "a", ids[1]: "b"}
    # a renewal by a former owner matches nothing (fenced)
    stale = await store.run(
        lambda s: s.write_leased("Job", {"id": ids[1], "lease_owner": "a"}, {}, lease("a"))
    )
    assert stale == 0
    assert await owners(store) == {ids[0]: "a", ids[1]: "b"}


async def test_inserted_leases_are_held_until_they_expire(make_storage: StorageFactory) -> None:
    store = make_storage("jobs.db")
    await store.setup(SCHEMA)
    held = await store.run(lambda s: s.insert_leased("Job", {"n": 1}, lease("a", HOUR)))
    brief = await store.run(lambda s: s.insert_leased("Job", {"n": 2}, lease("a", 0.05)))
    row = await store.find_one("Job", {"id": held}, ["lease_owner", "lease_until"])
    assert row is not None and row["lease_owner"] == "a"
    assert abs(row["lease_until"] - (time.time() + HOUR)) < 60  # one host: the clocks agree

    async def brief_taken() -> bool:
        return [r["id"] for r in await store.claim("Job", None, lease("b"), limit=5)] == [brief]

    await eventually(brief_taken, "the short lease expiring")
    assert await owners(store) == {held: "a", brief: "b"}


async def test_lease_times_are_the_database_clock_on_postgres_and_the_callers_on_sqlite(
    make_storage: StorageFactory, backend: str
) -> None:
    store = make_storage("jobs.db")
    await store.setup(SCHEMA)
    ids = await fill(store, 1)
    await store.claim("Job", None, lease("a", duration=HOUR), limit=1)
    # A caller whose clock runs two hours ahead:
    skewed = await store.claim("Job", None, lease("b", now=time.time() + 2 * HOUR), limit=1)
    if backend == "postgres":
        assert skewed == []  # the server's clock says the lease holds
        assert await owners(store) == {ids[0]: "a"}
        row = await store.find_one("Job", {"id": ids[0]}, ["lease_until"])
        assert row is not None and abs(row["lease_until"] - (time.time() + HOUR)) < 60
    else:
        assert [row["id"] for row in skewed] == ids  # the caller's clock is the lease clock
        assert await owners(store) == {ids[0]: "b"}


@pytest.mark.parametrize("backend", ["postgres"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.integers(1, 60),
    limits=st.lists(st.integers(1, 9), min_size=2, max_size=4),
)
def test_concurrent_claims_never_take_a_row_twice(
    backend: str, rows: int, limits: list[int]
) -> None:
    """Claimers on connections of their own (as processes are) claim at once, in rounds,
    until nothing is left: every row is claimed exactly once."""

    async def scenario() -> None:
        async with scratch_storage(backend) as first:
            await first.setup(SCHEMA)
            ids = await fill(first, rows)
            assert isinstance(first, PostgresStorage)
            others = [PostgresStorage(PG_URL, schema=first.schema_name) for _ in limits[1:]]
            try:
                for other in others:
                    await other.setup(SCHEMA, install=False)
                claimers = [first, *others]
                taken: dict[str, list[Any]] = {str(n): [] for n in range(len(claimers))}

                async def claim_all(n: int, store: Storage, limit: int) -> None:
                    while True:
                        got = await store.claim("Job", None, lease(str(n)), limit=limit)
                        if not got:
                            return
                        taken[str(n)] += [row["id"] for row in got]

                await asyncio.gather(
                    *(
                        claim_all(n, s, lim)
                        for n, (s, lim) in enumerate(zip(claimers, limits, strict=True))
                    )
                )
                every = [i for got in taken.values() for i in got]
                assert sorted(every) == ids  # each exactly once
                stored = await owners(first)
                assert all(stored[i] == n for n, got in taken.items() for i in got)
            finally:
                for other in others:
                    await other.close()

    asyncio.run(scenario())


async def test_bad_leases_and_claims_are_refused_and_change_nothing(
    make_storage: StorageFactory,
) -> None:
    store = make_storage("jobs.db")
    await store.setup(SCHEMA)
    ids = await fill(store, 1)
    bad_leases: list[tuple[Any, str]] = [
        (lambda: Lease("", 1.0, 0.0), "owner"),
        (lambda: Lease("a", 0.0, 0.0), "duration"),
        (lambda: Lease("a", float("nan"), 0.0), "duration"),
        (lambda: Lease("a", 1.0, True), "now"),
    ]
    for bad, words in bad_leases:
        with pytest.raises(ValueError, match=words):
            bad()
    with pytest.raises(StorageError, match=r"Plain cannot be leased.*lease_owner"):
        await store.claim("Plain", None, lease("a"), limit=1)
    with pytest.raises(StorageError, match="limit must be a positive int"):
        await store.claim("Job", None, lease("a"), limit=0)
    with pytest.raises(StorageError, match="lease fields are set from the Lease"):
        await store.run(lambda s: s.insert_leased("Job", {"lease_owner": "x"}, lease("a")))
    with pytest.raises(StorageError, match="lease fields are set from the Lease"):
        await store.claim("Job", None, lease("a"), limit=1, values={"lease_until": 1})
    assert await owners(store) == {ids[0]: None}
    assert await store.count("Job") == 1


async def test_a_notification_wakes_the_listeners_of_the_same_database_only(
    make_storage: StorageFactory,
) -> None:
    one, same, other = make_storage("a.db"), make_storage("a.db"), make_storage("b.db")
    for store in (one, same, other):
        await store.setup(SCHEMA)
    heard: dict[str, int] = {"same": 0, "other": 0, "elsewhere": 0}

    def counter(name: str) -> Any:
        def wake() -> None:
            heard[name] += 1

        return wake

    listening = [
        await same.listen("jobs", counter("same")),
        await other.listen("jobs", counter("other")),
        await same.listen("elsewhere", counter("elsewhere")),
    ]
    await one.notify("jobs")

    async def heard_same() -> bool:
        return heard["same"] >= 1

    await eventually(heard_same, "the listener hearing the notification")
    await asyncio.sleep(0.2)  # time for a wrong delivery to arrive too
    assert heard["other"] == 0 and heard["elsewhere"] == 0
    await listening[0].close()
    before = heard["same"]
    await one.notify("jobs")
    await asyncio.sleep(0.2)
    assert heard["same"] == before  # closed: no more wake-ups
    for registration in listening[1:]:
        await registration.close()


async def test_one_leader_at_a_time(make_storage: StorageFactory) -> None:
    first, second = make_storage("a.db"), make_storage("a.db")
    await first.setup(SCHEMA)
    await second.setup(SCHEMA, install=False)
    a, b = first.leader("sweeper"), second.leader("sweeper")
    other = second.leader("poller")
    assert await a.try_lead() is True and a.held
    assert await b.try_lead() is False and not b.held
    assert await a.try_lead() is True  # keeps it
    assert await other.try_lead() is True  # another name: another leadership
    await a.resign()
    assert not a.held
    assert await b.try_lead() is True
    assert await a.try_lead() is False
    await second.close()  # closing gives the leaderships up
    assert await a.try_lead() is True
    await a.resign()
    await other.resign()


async def kill_holder_of(store: Storage, name: str) -> None:
    """Terminate the server process that holds leadership ``name``'s advisory lock, found as
    the server sees it (``pg_locks``: a bigint key is ``classid`` high, ``objid`` low)."""
    import asyncpg

    from storage.postgres.signals import lock_key

    assert isinstance(store, PostgresStorage)
    key = lock_key(store.schema_name, name) & 0xFFFF_FFFF_FFFF_FFFF
    admin = await asyncpg.connect(PG_URL)
    try:
        pids = await admin.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            key >> 32,
            key & 0xFFFF_FFFF,
        )
        assert len(pids) == 1, f"one holder of {name!r}'s lock, found {pids}"
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0]["pid"]) is True
    finally:
        await admin.close()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_leader_whose_connection_dies_loses_the_lead(
    make_storage: StorageFactory,
) -> None:
    first, second = make_storage("a.db"), make_storage("a.db")
    await first.setup(SCHEMA)
    await second.setup(SCHEMA, install=False)
    a, b = first.leader("sweeper"), second.leader("sweeper")
    assert await a.try_lead() is True
    assert await b.try_lead() is False
    await kill_holder_of(first, "sweeper")  # the connection dies, as with its process
    # The server releases the lock once its backend has seen the connection end: soon, but
    # not necessarily before b's next statement arrives (bounded wait).
    for _ in range(500):
        if await b.try_lead():
            break
        await asyncio.sleep(0.02)
    assert b.held is True
    assert await a.try_lead() is False and not a.held
    await b.resign()
