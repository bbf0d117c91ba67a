"""The outbox's storage primitives (``storage.abc.Outbox``) on both backends.

Hypothesis drives interleavings of appends (transactions of several events over a few
records), reads of several named readers, cursor stores, reopenings (a reader registered again
starts at its stored cursor) and prunes, against a model of where each reader stands:

- every read returns the next rows of the one sequence, in order (a prefix of them on
  PostgreSQL, where a transaction elsewhere on the server may hold the horizon back);
- after a prune every row some registered reader has not stored its cursor past is still
  there, and on SQLite exactly those are;
- each record's versions are 1, 2, 3, ... in append order, however the events of a
  transaction interleave records.

Plus: a rolled-back transaction appends nothing; a live reader whose lease lapsed is forgotten
by the next prune (its rows no longer held back) and storing its cursor is refused; storing
for an unknown reader is refused; ``inspect()`` leaves the outbox's tables out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Schema, Storage
from storage.abc import Outbox, OutboxSession
from storage.outbox import OutboxEntry, OutboxError, OutboxPosition, OutboxRow, OutboxStart
from tests.conftest import PG_URL, scratch_storage

START = OutboxPosition(-1, 0)
READERS = ("a", "b", "c")
RECORDS = ("R1", "R2", "R3")


async def open_outbox(store: Storage) -> Outbox:
    await store.setup(Schema([]))
    assert isinstance(store, Outbox)
    await store.outbox_install()
    return store


async def append(store: Storage, entries: list[OutboxEntry]) -> None:
    def body(session: Any) -> None:
        assert isinstance(session, OutboxSession)
        session.outbox_append(entries)

    await store.run(body)


async def final_rows(outbox: Outbox, after: OutboxPosition = START) -> list[OutboxRow]:
    """Every row after ``after``, once each is final (on PostgreSQL a transaction elsewhere on
    the server may hold the horizon back for a moment; bounded wait)."""
    for _ in range(1000):
        batch = await outbox.outbox_read(after, 10_000)
        if not batch.pending:
            return batch.rows
        await asyncio.sleep(0.01)
    raise AssertionError("rows stayed behind the horizon for 10 s")


async def every_row(outbox: Outbox) -> list[str]:
    return [row.payload for row in await final_rows(outbox)]


def entry(record: str, payload: str) -> OutboxEntry:
    return OutboxEntry("Thing", record, "update", payload)


transactions = st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), transactions),
        st.tuples(st.just("read"), st.sampled_from(READERS), st.integers(1, 4)),
        st.tuples(st.just("store"), st.sampled_from(READERS)),
        st.tuples(st.just("reopen"), st.sampled_from(READERS)),
        st.tuples(st.just("prune")),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
async def test_readers_and_prunes_under_any_interleaving(
    backend: str, ops: list[tuple[Any, ...]]
) -> None:
    async with scratch_storage(backend) as store:
        outbox = await open_outbox(store)
        sqlite = backend == "sqlite"
        log: list[str] = []  # payloads in append order (one writer: the outbox order too)
        versions: dict[str, list[int]] = {r: [] for r in RECORDS}
        position = {n: (await outbox.outbox_register(n, durable=True)).position for n in READERS}
        at = {n: 0 for n in READERS}  # how far into log each reader has read
        stored = dict(at)
        stored_position = dict(position)
        first_reads = 0
        for op in ops:
            if op[0] == "append":
                batch = [entry(rec, uuid.uuid4().hex) for rec in op[1]]
                await append(store, batch)
                log += [e.payload for e in batch]
            elif op[0] == "read":
                name, limit = op[1], op[2]
                got = await outbox.outbox_read(position[name], limit)
                payloads = [row.payload for row in got.rows]
                assert payloads == log[at[name] : at[name] + len(payloads)]
                if sqlite:
                    assert len(payloads) == min(limit, len(log) - at[name])
                    assert got.pending is False
                for row in got.rows:
                    if at[name] == first_reads:  # the first time any reader reads this row
                        versions[row.record_id].append(row.version)
                        first_reads += 1
                    at[name] += 1
                if got.rows:
                    position[name] = got.rows[-1].position
            elif op[0] == "store":
                await outbox.outbox_store(op[1], position[op[1]])
                stored[op[1]], stored_position[op[1]] = at[op[1]], position[op[1]]
            elif op[0] == "reopen":
                again = (await outbox.outbox_register(op[1], durable=True)).position
                assert again == stored_position[op[1]]
                position[op[1]], at[op[1]] = again, stored[op[1]]
            else:
                await outbox.outbox_prune()
                kept = await every_row(outbox)
                oldest = min(stored.values())
                # Every row a reader has not stored its cursor past is kept (a prune on
                # PostgreSQL may keep more: rows that were not final yet when it ran).
                assert kept == log[len(log) - len(kept) :]
                assert len(kept) >= len(log) - oldest
                if sqlite:
                    assert kept == log[oldest:]
        for record, seen in versions.items():
            assert seen == list(range(1, len(seen) + 1)), record


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(transactions, min_size=1, max_size=8))
async def test_versions_count_each_records_events_in_append_order(
    backend: str, batches: list[list[str]]
) -> None:
    async with scratch_storage(backend) as store:
        outbox = await open_outbox(store)
        for batch in batches:
            await append(store, [entry(rec, rec) for rec in batch])
        await every_row(outbox)
        rows = (await outbox.outbox_read(START, 1000)).rows
        assert [row.record_id for row in rows] == [rec for batch in batches for rec in batch]
        counted: Counter[str] = Counter()
        for row in rows:
            counted[row.record_id] += 1
            assert row.version == counted[row.record_id]
        positions = [row.position for row in rows]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_rolled_back_transactions_append_nothing(make_storage: Any) -> None:
    store = make_storage("outbox")
    outbox = await open_outbox(store)

    def failing(session: Any) -> None:
        session.outbox_append([entry("R1", "lost")])
        raise RuntimeError("the body failed after appending")

    with pytest.raises(RuntimeError, match="failed after appending"):
        await store.run(failing)
    await append(store, [entry("R1", "kept")])
    rows = await final_rows(outbox)
    assert [(row.payload, row.version) for row in rows] == [("kept", 1)]
    await append(store, [])  # nothing to append: no statement, no row
    assert len(await final_rows(outbox)) == 1


async def test_a_lapsed_live_reader_stops_holding_rows_back(make_storage: Any) -> None:
    store = make_storage("outbox")
    outbox = await open_outbox(store)
    await outbox.outbox_register("dead", durable=False, lease=0.05)
    await outbox.outbox_register("alive", durable=False, lease=60)
    await append(store, [entry("R1", "one"), entry("R2", "two")])
    rows = await final_rows(outbox)
    assert await outbox.outbox_prune() == 0  # both readers stand before the rows
    await outbox.outbox_store("alive", rows[-1].position)
    await asyncio.sleep(0.2)  # "dead" stores nothing for longer than its lease
    assert await outbox.outbox_prune() == 2
    with pytest.raises(OutboxError, match="'dead' is not registered"):
        await outbox.outbox_store("dead", rows[-1].position)
    with pytest.raises(OutboxError, match="'ghost' is not registered"):
        await outbox.outbox_store("ghost", START)
    assert await outbox.outbox_unregister("alive") is True
    assert await outbox.outbox_unregister("alive") is False
    with pytest.raises(OutboxError, match="lease"):
        await outbox.outbox_register("bad", durable=False, lease=0)


async def test_no_reader_prunes_every_final_row_and_new_readers_start_after_them(
    make_storage: Any,
) -> None:
    store = make_storage("outbox")
    outbox = await open_outbox(store)
    await append(store, [entry("R1", "one")])
    await final_rows(outbox)
    fresh = (await outbox.outbox_register("fresh", durable=True)).position
    assert await final_rows(outbox, fresh) == []  # it reads what commits from now on
    await append(store, [entry("R1", "two")])
    assert [row.payload for row in await final_rows(outbox, fresh)] == ["two"]
    assert await outbox.outbox_prune() == 1  # "one": before the only reader
    await outbox.outbox_unregister("fresh")
    assert await outbox.outbox_prune() == 1
    assert await final_rows(outbox) == []
    assert not any(name.startswith("_interaqt_outbox") for name in await store.inspect())


@pytest.mark.parametrize("durable", [False, True], ids=["live", "durable"])
async def test_a_new_reader_starts_after_everything_committed_before_it(
    make_storage: Any, backend: str, durable: bool
) -> None:
    """``outbox_register`` returns the last final row and, read in the same snapshot, the
    transactions after it that had committed: together, everything committed before the
    registration. On PostgreSQL a transaction of another connection (it could be another
    schema's, another application's) holds the server-wide horizon below the rows committed
    after it took its id; on SQLite every committed row is final, so nothing is skipped.
    The skip is stored with the reader: registering the name again (another process, a
    durable reader's next run) starts the same way until its cursor is stored past it."""
    import asyncpg

    store = make_storage("outbox")
    outbox = await open_outbox(store)
    await append(store, [entry("R1", "old")])
    [old] = await final_rows(outbox)
    held = await asyncpg.connect(PG_URL) if backend == "postgres" else None
    try:
        if held is not None:
            await held.execute("BEGIN")
            await held.fetchval("SELECT pg_current_xact_id()")  # the horizon stays below it
        await append(store, [entry("R1", "one"), entry("R2", "two")])
        await append(store, [entry("R1", "three")])
        fresh = await outbox.outbox_register("fresh", durable=durable)
        again = await outbox.outbox_register("fresh", durable=durable)
        await append(store, [entry("R2", "four")])
    finally:
        if held is not None:
            await held.execute("ROLLBACK")
            await held.close()
    rows = await final_rows(outbox, fresh.position)
    assert [row.payload for row in rows if row.position.tx not in fresh.skip] == ["four"]
    assert again == fresh  # registered already: its stored cursor and skip
    if backend == "postgres":
        assert fresh.position == old.position
        assert [row.payload for row in rows] == ["one", "two", "three", "four"]
        assert fresh.skip == {row.position.tx for row in rows[:3]}
        assert len(fresh.skip) == 2
    else:
        assert fresh.skip == frozenset()
        three = [row for row in await final_rows(outbox) if row.payload == "three"]
        assert fresh.position == three[0].position  # the last row committed before it
        assert [row.payload for row in rows] == ["four"]
    other = await open_outbox(make_storage("outbox"))  # another process: the same schema
    assert await other.outbox_register("fresh", durable=durable) == fresh
    await outbox.outbox_store("fresh", rows[0].position)  # in a skipped one (PostgreSQL)
    past = OutboxStart(
        rows[0].position, frozenset(t for t in fresh.skip if t > rows[0].position.tx)
    )
    assert await other.outbox_register("fresh", durable=durable) == past
    await outbox.outbox_store("fresh", rows[-1].position)
    assert await other.outbox_register("fresh", durable=durable) == OutboxStart(rows[-1].position)
    await outbox.outbox_prune()
    assert await outbox.outbox_unregister("fresh") is True
    newer = await other.outbox_register("fresh", durable=durable)  # a new reader of that name
    assert newer.skip == frozenset()  # the name's old skip is forgotten with it
    assert await final_rows(other, newer.position) == []


async def version_rows(store: Storage) -> int:
    """Rows of the per-record version table (the backend's own table: read through the
    storage's transaction, as the outbox's statements are)."""
    count: int = await store._transaction(  # type: ignore[attr-defined]
        False,
        lambda d: d.execute("SELECT count(*) FROM _interaqt_outbox_version", ()).fetchone()[0],
    )
    return int(count)


async def test_a_prune_forgets_deleted_records_versions_with_their_delete_event(
    make_storage: Any,
) -> None:
    """Version rows are the per-record counters: they stay while the record lives, and go
    with its delete event once every reader is past it (so they are O(live records))."""
    store = make_storage("outbox")
    outbox = await open_outbox(store)
    reader = (await outbox.outbox_register("r", durable=True)).position

    def change(record: str, type_: str = "update") -> OutboxEntry:
        return OutboxEntry("Thing", record, type_, f"{record} {type_}")

    await append(store, [change("R1", "create"), change("R2", "create"), change("R3", "create")])
    await append(store, [change("R1"), change("R1", "delete"), change("R2", "delete")])
    await append(store, [change("R2", "create")])  # R2 is created again under its id
    rows = await final_rows(outbox, reader)
    assert [(r.record_id, r.type, r.version) for r in rows] == [
        ("R1", "create", 1),
        ("R2", "create", 1),
        ("R3", "create", 1),
        ("R1", "update", 2),
        ("R1", "delete", 3),
        ("R2", "delete", 2),
        ("R2", "create", 3),
    ]
    assert await version_rows(store) == 3
    assert await outbox.outbox_prune() == 0  # the reader stands before every row
    assert await version_rows(store) == 3

    await outbox.outbox_store("r", rows[-1].position)
    assert await outbox.outbox_prune() == 7
    # R1's delete was its last event: its row is gone. R2's delete was not (it was created
    # again): its row keeps counting. R3 lives.
    assert await version_rows(store) == 2
    await append(store, [change("R1", "create"), change("R2"), change("R3")])
    again = await final_rows(outbox, rows[-1].position)
    assert [(r.record_id, r.version) for r in again] == [("R1", 1), ("R2", 4), ("R3", 2)]
    assert await version_rows(store) == 3
