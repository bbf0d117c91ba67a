"""The outbox (``Controller(..., outbox=True)``) in one process, on both backends.

- the streams deliver every committed event once, from the outbox, with increasing positions
  and per-record versions 1, 2, 3, ...; failed writes deliver and store nothing;
- two controllers on one database (two storages: two connections or pools) deliver the same
  events in the same order, their own and the other's, each once;
- a durable reader replays from its stored cursor after a restart, across prunes;
- bad input (names, limits, positions, options) is refused with an error naming it.

Pruning and readers under any interleaving are tested on the storage primitives
(``tests/storage/test_outbox.py``); the multi-process test (real processes, PostgreSQL) is
``test_outbox_processes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import pytest

import reactive as r
from storage.abc import Outbox
from storage.outbox import OutboxError, OutboxPosition
from tests.conftest import StorageFactory

WAIT = 15.0
Make = Callable[..., Awaitable[r.Controller]]


def model() -> tuple[list[r.Entity], list[r.Dictionary], list[r.Interaction]]:
    def positive(item: dict[str, Any]) -> bool:
        if item["n"] is not None and item["n"] < 0:
            raise ValueError("negative")
        return True

    item = r.Entity("Item", [r.Property("n", "number"), r.Property("tag")])
    total = r.Dictionary(
        "items",
        "number",
        computation=r.Count(record=item, callback=positive, attribute_query=["n"]),
    )
    add = r.Interaction(
        "Add",
        r.Payload([r.PayloadItem("n", "number", required=True)]),
        resolve=lambda ev, ctx: ctx.storage.create("Item", {"n": ev["payload"]["n"]}),
    )
    return [item], [total], [add]


@pytest.fixture
async def make(make_storage: StorageFactory, db_path: str) -> AsyncIterator[Make]:
    """``await make(path=None, **controller_options)``: an outbox controller on the test's
    database (the same path: the same database, through another storage)."""
    made: list[r.Controller] = []

    async def factory(path: str | None = None, **options: Any) -> r.Controller:
        entities, dictionaries, interactions = model()
        options.setdefault("outbox", True)
        options.setdefault("outbox_poll", 0.2)
        controller = r.Controller(
            make_storage(path or db_path),
            entities,
            dictionaries=dictionaries,
            interactions=interactions,
            **options,
        )
        made.append(controller)
        await controller.setup()
        return controller

    yield factory
    for controller in reversed(made):
        await controller.close()


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def read_n(reader: r.OutboxReader, n: int, limit: int = 1000) -> list[r.OutboxEvent]:
    """The next ``n`` events of ``reader`` (bounded wait: on PostgreSQL a transaction
    elsewhere on the server may hold the horizon back for a moment)."""
    got: list[r.OutboxEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while len(got) < n:
        if loop.time() > deadline:
            raise AssertionError(f"read {len(got)} of {n} events")
        batch = await reader.read(limit=min(limit, n - len(got)))
        got += batch
        if not batch:
            await asyncio.sleep(0.01)
    return got


async def settle() -> None:
    """Long enough for a follower to deliver anything more (several polls of 0.2 s)."""
    await asyncio.sleep(0.6)


def collect(into: list[r.OutboxEvent]) -> Callable[[r.MutationEvent], None]:
    """A mutations subscriber appending to ``into``: with the outbox on, ``mutations`` delivers
    :class:`reactive.OutboxEvent` (typed as its base, :class:`reactive.MutationEvent`)."""

    def append(event: r.MutationEvent) -> None:
        into.append(cast(r.OutboxEvent, event))

    return append


def shape(events: Sequence[r.MutationEvent]) -> list[tuple[str, str, Any]]:
    return [(e.record_name, e.type, e.record) for e in events]


async def test_stream_delivers_each_committed_event_once_in_outbox_order(make: Make) -> None:
    c = await make()
    seen: list[r.OutboxEvent] = []
    updates: list[r.MutationEvent] = []
    c.mutations.subscribe(collect(seen))
    c.stream("Item", "update").subscribe(updates.append)

    committed: list[r.MutationEvent] = []
    a = await c.dispatch("Add", payload={"n": 1})
    committed += a.effects
    item_id = a.data["id"]
    for n in range(2, 5):

        def set_n(ctx: r.TransactionContext, n: int = n) -> list[dict[str, Any]]:
            return ctx.storage.update("Item", {"id": item_id}, {"n": n})

        _, events = await c.transact(set_n)
        committed += events
    _, events = await c.transact(lambda ctx: ctx.storage.delete("Item", {"id": item_id}))
    committed += events

    await until(lambda: len(seen) >= len(committed), "every committed event")
    await settle()

    assert shape(seen) == shape(committed)  # every event, once, in commit order here
    assert all(isinstance(e, r.OutboxEvent) for e in seen)
    positions = [e.position for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    mine = [e.version for e in seen if e.record_name == "Item"]
    assert mine == [1, 2, 3, 4, 5]  # create, three updates, delete of one record
    assert [e.record["n"] for e in updates] == [2, 3, 4]
    assert all(e.position == OutboxPosition.parse(str(e.position)) for e in seen)


async def test_failed_writes_append_nothing(make: Make) -> None:
    c = await make()
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)
    reader = await c.outbox_reader("audit")

    with pytest.raises(r.ComputationError):
        await c.storage.create("Item", {"n": -1})
    refused = await c.dispatch("Add", payload={"n": -5})
    assert refused.error is not None and refused.error.code == "computation_error"
    ok = await c.dispatch("Add", payload={"n": 7})
    assert ok.error is None

    await until(lambda: len(seen) >= len(ok.effects), "the committed dispatch's events")
    await settle()
    assert shape(seen) == shape(ok.effects)
    replay = await read_n(reader, len(ok.effects))
    assert shape(replay) == shape(ok.effects)  # the outbox holds nothing of the failed writes
    assert await reader.read() == []


async def test_two_controllers_on_one_database_deliver_the_same_sequence(make: Make) -> None:
    first = await make()
    second = await make()  # the same database through another storage (connection or pool)
    got: dict[str, list[r.OutboxEvent]] = {"first": [], "second": []}
    first.mutations.subscribe(collect(got["first"]))
    second.mutations.subscribe(collect(got["second"]))

    async def writes(c: r.Controller, tag: str) -> int:
        events = 0
        for n in range(15):

            def create(ctx: r.TransactionContext, n: int = n) -> dict[str, Any]:
                return ctx.storage.create("Item", {"n": n, "tag": tag})

            _, committed = await c.transact(create)
            events += len(committed)
        return events

    total = sum(await asyncio.gather(writes(first, "a"), writes(second, "b")))
    await until(lambda: len(got["first"]) >= total and len(got["second"]) >= total, "both streams")
    await settle()
    assert len(got["first"]) == total  # none twice, the own ones included
    assert [e.position for e in got["first"]] == [e.position for e in got["second"]]
    tags = [e.record["tag"] for e in got["first"] if e.record_name == "Item"]
    assert sorted(tags) == ["a"] * 15 + ["b"] * 15
    # The count's row changed 30 times: its versions are 1..30 whichever storage wrote. (The
    # count's values are issue 12's atomic deltas, not the outbox's: two storages on
    # PostgreSQL may lose an update of it until then.)
    versions = [e.version for e in got["first"] if e.record_name != "Item"]
    assert sorted(versions) == list(range(1, 31))


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_notify_wakes_an_idle_follower_of_another_storage(make: Make) -> None:
    """The listening follower polls once an hour here, so only the writer's NOTIFY (sent after
    its commit, on its own storage's listening connection) can bring the event in time."""
    writer = await make()
    idle = await make(outbox_poll=3600)
    got: list[r.MutationEvent] = []
    idle.stream("Item", "create").subscribe(got.append)
    await asyncio.sleep(0.3)  # the idle follower has made its first read and waits an hour
    await writer.storage.create("Item", {"n": 1, "tag": "woken"})
    await until(lambda: len(got) == 1, "the other storage's follower to be woken")
    assert got[0].record["tag"] == "woken"


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_follower_is_woken_after_its_listening_connection_was_killed(
    make: Make,
) -> None:
    """The follower listens through the storage's listeners, which reopen a dropped
    connection and LISTEN again: after the server killed it (``pg_terminate_backend``), an
    event committed elsewhere still wakes a follower that would otherwise look once an hour.
    The listening connections are found as the server sees them (``pg_stat_activity``: the
    schema's outbox channel), not through the storage's internals."""
    import asyncpg

    from storage import PostgresStorage
    from storage.postgres.signals import channel_name
    from tests.conftest import PG_URL

    writer = await make()
    idle = await make(outbox_poll=3600)
    got: list[r.MutationEvent] = []
    idle.stream("Item", "create").subscribe(got.append)
    await writer.storage.create("Item", {"n": 0, "tag": "before"})
    await until(lambda: len(got) == 1, "the first event")

    assert isinstance(idle.backend, PostgresStorage)
    assert isinstance(writer.backend, PostgresStorage)
    assert idle.backend.schema_name == writer.backend.schema_name
    channel = channel_name(idle.backend.schema_name, "outbox")
    admin = await asyncpg.connect(PG_URL)
    try:

        async def listening() -> set[int]:
            """The server processes LISTENing on the schema's outbox channel (one per
            storage: the writer's and the idle one's)."""
            rows = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN %' AND strpos(query, $1) > 0",
                channel,
            )
            return {row["pid"] for row in rows}

        old = await listening()
        assert len(old) == 2
        for pid in old:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(new := await listening()) != 2 or new & old:
            assert loop.time() < deadline, f"the listening connections were not reopened: {new}"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()

    await asyncio.sleep(0.2)  # the reopening's wake-up read is done (it found nothing new)
    assert [e.record["tag"] for e in got] == ["before"]
    for n in range(1, 4):
        await writer.storage.create("Item", {"n": n, "tag": f"after {n}"})
    await until(lambda: len(got) == 4, "events after the reconnection to wake the follower")
    assert [e.record["tag"] for e in got] == ["before", "after 1", "after 2", "after 3"]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_new_follower_delivers_only_what_commits_after_it_started(make: Make) -> None:
    """The horizon is server-wide: a transaction of another connection (another schema,
    another application) that took its id first holds it below rows committed here since. A
    follower that starts then delivers what commits from then on, never those rows."""
    import asyncpg

    from tests.conftest import PG_URL

    first = await make()
    got_first: list[r.OutboxEvent] = []
    first.mutations.subscribe(collect(got_first))

    async def creates(c: r.Controller, tag: str, n: int) -> int:
        events = 0
        for i in range(n):

            def create(ctx: r.TransactionContext, i: int = i) -> dict[str, Any]:
                return ctx.storage.create("Item", {"n": i, "tag": tag})

            _, committed = await c.transact(create)
            events += len(committed)
        return events

    held = await asyncpg.connect(PG_URL)
    try:
        transaction = held.transaction()
        await transaction.start()
        await held.fetchval("SELECT pg_current_xact_id()")  # an id: the horizon stays below it
        before = await creates(first, "before", 4)
        second = await make()  # its follower starts while the "before" rows are not final
        got: list[r.OutboxEvent] = []
        second.mutations.subscribe(collect(got))
        after = await creates(first, "after", 3) + await creates(second, "after", 3)
        await asyncio.sleep(0.3)  # both followers looked while the horizon was held back
        assert got == []
        await transaction.rollback()
    finally:
        await held.close()

    await until(lambda: len(got_first) >= before + after, "the first stream")
    await until(lambda: len(got) >= after, "the second stream")
    await settle()
    assert len(got_first) == before + after
    assert [e.position for e in got] == [e.position for e in got_first][before:]
    assert {e.record["tag"] for e in got if e.record_name == "Item"} == {"after"}
    assert [e.record["tag"] for e in got_first if e.record_name == "Item"] == ["before"] * 4 + [
        "after"
    ] * 6


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_new_durable_reader_reads_only_what_commits_after_it_and_resumes_alike(
    make: Make,
) -> None:
    """Like a process's stream, a new durable name reads nothing committed before it was
    first opened, although a transaction elsewhere held the horizon below those rows; a later
    opening from the same stored cursor (another process here) reads the same events."""
    import asyncpg

    from tests.conftest import PG_URL

    writer = await make()
    held = await asyncpg.connect(PG_URL)
    try:
        transaction = held.transaction()
        await transaction.start()
        await held.fetchval("SELECT pg_current_xact_id()")  # an id: the horizon stays below it
        for n in range(3):
            await writer.storage.create("Item", {"n": n, "tag": "before"})
        first = await writer.outbox_reader("billing")
        for n in range(3, 5):
            await writer.storage.create("Item", {"n": n, "tag": "after"})
        await transaction.rollback()
    finally:
        await held.close()

    got = await read_n(first, 4)  # two items, each with its count's update
    assert [e.record.get("tag") for e in got if e.record_name == "Item"] == ["after"] * 2
    await settle()
    assert await first.read() == []
    again = await (await make()).outbox_reader("billing")  # nothing committed: from the start
    assert [e.position for e in await read_n(again, 4)] == [e.position for e in got]
    assert await again.read() == []


async def test_durable_reader_replays_from_its_stored_cursor(make: Make, db_path: str) -> None:
    writer = await make()
    late = await writer.outbox_reader("late")
    for n in range(6):
        await writer.storage.create("Item", {"n": n})
    head = await read_n(late, 5)  # one item and a half: create, count, create, count, create
    assert [e.record_name for e in head] == ["Item", "_Dictionary_"] * 2 + ["Item"]
    await late.commit(head[2].position)  # consumed only the first two events and one more
    for n in range(6, 9):
        await writer.storage.create("Item", {"n": n})
    assert isinstance(writer.backend, Outbox)
    await writer.backend.outbox_prune()

    # A later process (another controller, another storage) opens the same name.
    again = await make()
    late2 = await again.outbox_reader("late")
    assert late2.position == head[2].position
    rest = await read_n(late2, 18 - 3, limit=4)
    await settle()
    assert await late2.read() == []
    assert [e.position for e in rest][:2] == [head[3].position, head[4].position]
    assert [e.record["n"] for e in rest if e.record_name == "Item"] == [2, 3, 4, 5, 6, 7, 8]
    assert len(rest) == 18 - 3

    # Not committed: a third opening starts from the stored cursor again.
    late3 = await again.outbox_reader("late")
    assert late3.position == head[2].position
    await late3.commit(rest[-1].position)
    await late3.drop()
    with pytest.raises(OutboxError, match="'late' is not registered"):
        await late3.drop()
    with pytest.raises(OutboxError, match="'late' is not registered"):
        await late3.commit()


async def test_the_followers_prune_rows_once_every_registered_reader_is_past_them(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' followers (two storages) and a durable reader: the followers' own
    periodic prunes delete nothing the durable reader has not committed past, and everything
    once it has."""
    import reactive.outbox as outbox_module

    monkeypatch.setattr(outbox_module, "STORE_EVERY", 0.05)
    monkeypatch.setattr(outbox_module, "PRUNE_EVERY", 0.1)
    first, second = await make(), await make()
    billing = await first.outbox_reader("billing")
    got: dict[str, list[r.MutationEvent]] = {"first": [], "second": []}
    first.mutations.subscribe(got["first"].append)
    second.mutations.subscribe(got["second"].append)
    for n in range(5):
        await (first if n % 2 else second).storage.create("Item", {"n": n})
    await until(lambda: len(got["first"]) == len(got["second"]) == 10, "both streams")
    assert isinstance(first.backend, Outbox)
    backend = first.backend

    async def stored_rows() -> int:
        return len((await backend.outbox_read(OutboxPosition(-1, 0), 1000)).rows)

    await asyncio.sleep(0.5)  # several prunes of both followers, both past every row
    assert await stored_rows() == 10  # held back by the durable reader
    events = await read_n(billing, 10)
    await billing.commit(events[3].position)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while await stored_rows() != 6:
        assert loop.time() < deadline, "the rows before the reader's cursor were not pruned"
        await asyncio.sleep(0.05)
    await billing.commit()
    while await stored_rows() != 0:
        assert loop.time() < deadline, "the rows every reader is past were not pruned"
        await asyncio.sleep(0.05)
    await first.storage.create("Item", {"n": 99})  # the stream goes on after the prunes
    await until(lambda: len(got["first"]) == len(got["second"]) == 12, "both streams again")


async def test_bad_input_is_refused_with_the_thing_at_fault(
    make: Make, make_storage: StorageFactory, tmp_path: Any
) -> None:
    c = await make()
    for bad in ("", 3, "x" * 201):
        with pytest.raises(OutboxError, match="reader's name"):
            await c.outbox_reader(bad)  # type: ignore[arg-type]
    reader = await c.outbox_reader("r")
    for limit in (0, -1, True, 1.5):
        with pytest.raises(OutboxError, match="limit"):
            await reader.read(limit=limit)  # type: ignore[arg-type]
    for text in ("1", "a:b", "1:-2", ""):
        with pytest.raises(OutboxError, match="tx:seq"):
            await reader.commit(text)
    assert reader.committed == reader.position  # nothing stored by the refused commits

    plain = await make(path=str(tmp_path / "plain.db"), outbox=False)
    with pytest.raises(r.ModelError, match="outbox=True"):
        await plain.outbox_reader("r")
    for option, value in (("outbox", "yes"), ("outbox_poll", 0), ("outbox_poll", True)):
        with pytest.raises(r.ModelError, match=option):
            r.Controller(make_storage(str(tmp_path / "x.db")), **{option: value})  # type: ignore[arg-type]

    class NoOutbox:
        """A storage without the outbox face."""

    with pytest.raises(r.ModelError, match="NoOutbox has none"):
        r.Controller(NoOutbox(), outbox=True)  # type: ignore[arg-type]
