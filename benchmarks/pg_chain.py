"""The engine benchmarks of :mod:`benchmarks.chain` on PostgreSQL, each beside a hand-written floor.

Workloads (the models and checks of ``benchmarks/chain.py``, run on ``PostgresStorage``):
- ``pg_chain``: the guide's chain (dispatch, durable side effect writing three events, the
  StateMachine and Customs) to all completed, verified; with ``statements_per_chain``: the SQL
  statements the engine sent per chain while timed, BEGIN/COMMIT included, counted on the
  driver adapter (its asyncpg connection and its prepared statements' runs;
  ``prepares_per_chain``: statements it had to parse first; ``transactions_per_chain``: its
  BEGINs; ``round_trips_per_chain``: the times it waited for the server, a BEGIN sent with
  the statement after it sharing that statement's trip).
- ``pg_count_growth``: likes one at a time on one post, timed in a window around each mark.
- ``pg_summation``: K items on one order, ``total`` a WeightedSummation.
- ``pg_chain_outbox``: ``pg_chain`` with ``Controller(outbox=True)``, timed until the
  controller's own stream has delivered every event from the outbox; taken in turns with
  ``pg_chain`` (``ratio_to_pg_chain``: its seconds over the plain chain's). Its statements
  include the follower's reads, cursor stores and the NOTIFYs (every statement on every
  connection of the storage: the listening one too); ``plain_statements_per_chain`` is the
  plain chain's count from the same turns. The appends are one statement per write
  transaction that has events.
Each ``pg_*_floor`` line is the same rows written by hand through the same driver (asyncpg, its
prepared statements, one transaction per unit as the engine commits them) on tables shaped as
the engine's; ``ratio_to_floor`` is engine seconds over floor seconds. Engine and floor runs
take turns (median of RUNS each), each in a fresh PostgreSQL schema dropped afterwards.

Server: ``INTERAQT_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
The counting adapter reaches into the backend's pool (``_pool``, ``open_one``) and wraps each
connection's ``raw`` and ``run_prepared``: a benchmark's instrument, kept here and never
imported by the library.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from benchmarks.chain import run_chain, run_count_growth, run_summation
from benchmarks.common import Timer, report, scaled
from storage import PostgresStorage

URL = os.environ.get("INTERAQT_TEST_PG", "").strip() or "postgresql://postgres@127.0.0.1:5432/test"
RUNS = 3
T = TypeVar("T")
Sent = tuple[int, int, int, int]
"""Statements, BEGINs, prepares and round trips counted while a run was timed."""


# -- counting the statements sent -------------------------------------------------------------


class Count:
    """Statements sent (one per statement run, ``executemany`` one per row), of them BEGINs,
    prepares (a Parse/Describe before a statement's first run), and round trips (a BEGIN sent
    with the next statement shares its trip; an ``executemany`` is one)."""

    def __init__(self) -> None:
        self.statements = 0
        self.begins = 0
        self.prepares = 0
        self.trips = 0

    def snapshot(self) -> Sent:
        return self.statements, self.begins, self.prepares, self.trips


class _Counted:
    """An asyncpg connection (or prepared statement) that counts what it sends to ``count``;
    everything else passes through."""

    def __init__(self, inner: Any, count: Count) -> None:
        self._inner = inner
        self._count = count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _sent(self, sql: Any = "") -> None:
        self._count.statements += 1
        self._count.trips += 1
        if isinstance(sql, str) and sql.lstrip().upper().startswith("BEGIN"):
            self._count.begins += 1
            if ";" in sql:  # "BEGIN ...; SAVEPOINT sp1": two statements, one simple query
                self._count.statements += 1

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._sent(args[0] if args else "")
        return self._inner.execute(*args, **kwargs)

    def fetch(self, *args: Any, **kwargs: Any) -> Any:
        self._sent()
        return self._inner.fetch(*args, **kwargs)

    def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        self._sent()
        return self._inner.fetchval(*args, **kwargs)

    def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        self._sent()
        return self._inner.fetchrow(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        rows = list(args[-1])
        self._count.statements += len(rows)
        self._count.trips += 1
        return self._inner.executemany(*args[:-1], rows, **kwargs)

    async def prepare(self, *args: Any, **kwargs: Any) -> _Counted:
        self._count.prepares += 1
        self._count.trips += 1
        return _Counted(await self._inner.prepare(*args, **kwargs), self._count)


def _counted_run(run: Any, count: Count) -> Any:
    """A connection's ``run_prepared`` (one run of a prepared statement) that counts it."""

    def counted(statement: Any, params: Any) -> Any:
        count.statements += 1
        count.trips += 1
        return run(statement, params)

    return counted


def _counted_run_after(run_after: Any, count: Count, pipelined: bool) -> Any:
    """A connection's ``run_prepared_after`` (a BEGIN, then a run: one round trip when
    ``pipelined``, else two) that counts them."""

    def counted(first: str, statement: Any, params: Any) -> Any:
        count.statements += 2
        count.begins += 1
        count.trips += 1 if pipelined else 2
        return run_after(first, statement, params)

    return counted


def _counted_run_behind(run_behind: Any, count: Count) -> Any:
    """A connection's ``run_prepared_behind`` (a held statement, then a run such as the
    COMMIT, in one round trip) that counts them."""

    def counted(messages: bytes, statement: Any, params: Any) -> Any:
        count.statements += 2
        count.trips += 1
        return run_behind(messages, statement, params)

    return counted


def _count_on(connection: Any, count: Count) -> None:
    connection.raw = _Counted(connection.raw, count)
    connection.run_prepared = _counted_run(connection.run_prepared, count)
    connection.run_prepared_after = _counted_run_after(
        connection.run_prepared_after, count, connection.pipelined
    )
    if connection.run_prepared_behind is not None:
        connection.run_prepared_behind = _counted_run_behind(connection.run_prepared_behind, count)


class CountingPostgres(PostgresStorage):
    """PostgresStorage whose every pooled connection counts its statements in ``tally``
    (those sent on its asyncpg connection, and its prepared statements' runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = Count()

    async def _connect(self) -> None:
        if self._pool is not None:
            return
        await super()._connect()
        pool: Any = self._pool
        for connection in pool._idle:
            _count_on(connection, self.tally)
        open_one = pool.open_one

        async def counted_open_one() -> Any:
            connection = await open_one()
            _count_on(connection, self.tally)
            return connection

        pool.open_one = counted_open_one


class CountingTimer(Timer):
    """A :class:`Timer` that also keeps what ``count`` grew by while it ran."""

    def __init__(self, count: Count) -> None:
        self._count = count
        self.sent = (0, 0, 0, 0)

    def __enter__(self) -> CountingTimer:
        self._at_start = self._count.snapshot()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        statements, begins, prepares, trips = self._count.snapshot()
        s0, b0, p0, t0 = self._at_start
        self.sent = (statements - s0, begins - b0, prepares - p0, trips - t0)


# -- schemas -------------------------------------------------------------------------------------


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _schema() -> str:
    return f"bench_{uuid.uuid4().hex[:12]}"


async def _engine(run: Callable[[CountingPostgres], Awaitable[T]]) -> T:
    """``run`` on a CountingPostgres in a fresh schema, dropped afterwards."""
    schema = _schema()
    try:
        return await run(CountingPostgres(URL, schema=schema))
    finally:
        await _drop(schema)


async def _floor(
    tables: str, run: Callable[[Any, Callable[[], Timer]], Awaitable[float]]
) -> tuple[float, Sent]:
    """``run(connection, timer)`` on a counting asyncpg connection in a fresh schema holding
    ``tables``, dropped afterwards: its seconds and the statements it sent while timed."""
    schema = _schema()
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"; {tables}')
        count = Count()
        timer = CountingTimer(count)
        seconds = await run(_Counted(conn, count), lambda: timer)
        return seconds, timer.sent
    finally:
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


# -- floors: the same rows through asyncpg, one transaction per unit -----------------------------

_ID = "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"  # as the engine begins a write
_CHAIN_TABLES = f"""
CREATE TABLE i ({_ID}, name text, "user" text, payload text);
CREATE TABLE g ({_ID}, text text, voice_url text);
CREATE TABLE c ({_ID}, params text, status text, state text, external_id text, response text);
CREATE INDEX c_ext ON c(external_id);
CREATE TABLE l ({_ID}, source bigint NOT NULL REFERENCES g(id),
                target bigint NOT NULL REFERENCES c(id));
CREATE INDEX l_t ON l(target);
CREATE TABLE e ({_ID}, type text, entity_id numeric, ext text, data text);
CREATE TABLE s ({_ID}, name text, event text);
"""


async def chain_floor(conn: Any, n: int, timer: Callable[[], Timer]) -> float:
    """The rows of ``benchmarks.chain.chain_floor``: the dispatch, the event sequence, the
    intent removal; three transactions per chain."""
    with timer() as t:
        for i in range(n):
            await conn.execute(_BEGIN)
            await conn.execute(
                'INSERT INTO i (name, "user", payload) VALUES ($1, $2, $3)',
                "Greet",
                '{"id":1}',
                f'{{"text":"hello {i}"}}',
            )
            g = await conn.fetchval("INSERT INTO g (text) VALUES ($1) RETURNING id", f"hello {i}")
            c = await conn.fetchval(
                "INSERT INTO c (params, status, state) VALUES ($1, 'pending', 'pending') "
                "RETURNING id",
                '{"text":"x"}',
            )
            await conn.execute("INSERT INTO l (source, target) VALUES ($1, $2)", g, c)
            s = await conn.fetchval("INSERT INTO s (name, event) VALUES ('tts', '{}') RETURNING id")
            await conn.execute("COMMIT")
            ext = f"task-{c}"
            await conn.execute(_BEGIN)  # the sync integration writes all three at once
            for kind in ("initialized", "processing", "completed"):
                await conn.execute(
                    "INSERT INTO e (type, entity_id, ext, data) VALUES ($1, $2, $3, $4)",
                    kind,
                    c,
                    ext,
                    None,
                )
                if kind == "initialized":
                    await conn.execute("UPDATE c SET external_id = $1 WHERE id = $2", ext, c)
                else:
                    row = await conn.fetchval("SELECT id FROM c WHERE external_id = $1", ext)
                    await conn.execute(
                        "UPDATE c SET status = $1, state = $1 WHERE id = $2", kind, row
                    )
                    if kind == "completed":
                        await conn.execute(
                            "UPDATE c SET response = $1 WHERE id = $2", '{"url":"u"}', c
                        )
                        gid = await conn.fetchval("SELECT source FROM l WHERE target = $1", c)
                        await conn.execute("UPDATE g SET voice_url = $1 WHERE id = $2", "u", gid)
            await conn.execute("COMMIT")
            await conn.execute(_BEGIN)
            await conn.execute("DELETE FROM s WHERE id = $1", s)
            await conn.execute("COMMIT")
    done = await conn.fetchval("SELECT count(*) FROM g WHERE voice_url IS NOT NULL")
    assert done == n, (done, n)
    return t.seconds


_COUNT_TABLES = f"""
CREATE TABLE p ({_ID}, likes numeric);
CREATE TABLE u ({_ID});
CREATE TABLE l ({_ID}, source bigint NOT NULL REFERENCES p(id),
                target bigint NOT NULL REFERENCES u(id));
INSERT INTO p (likes) VALUES (0);
INSERT INTO u DEFAULT VALUES;
"""


async def count_floor(conn: Any, n: int, timer: Callable[[], Timer]) -> float:
    """The rows of ``benchmarks.chain.count_floor``: per like a link and the counter, one
    transaction."""
    with timer() as t:
        for _ in range(n):
            await conn.execute(_BEGIN)
            await conn.execute("INSERT INTO l (source, target) VALUES (1, 1)")
            await conn.execute("UPDATE p SET likes = likes + 1 WHERE id = 1")
            await conn.execute("COMMIT")
    likes = await conn.fetchval("SELECT likes FROM p WHERE id = 1")
    assert likes == n, (likes, n)
    return t.seconds


_SUM_TABLES = f"""
CREATE TABLE o ({_ID}, total numeric);
CREATE TABLE i ({_ID}, price numeric, quantity numeric);
CREATE TABLE l ({_ID}, source bigint NOT NULL REFERENCES o(id),
                target bigint NOT NULL REFERENCES i(id), contribution numeric);
INSERT INTO o (total) VALUES (0);
"""


async def summation_floor(conn: Any, k: int, timer: Callable[[], Timer]) -> float:
    """The rows of ``benchmarks.chain.summation_floor``: per item the item, its link with its
    contribution and the total, one transaction."""
    expected = 0
    with timer() as t:
        for n in range(k):
            price, quantity = 1 + n % 7, 1 + n % 3
            expected += price * quantity
            await conn.execute(_BEGIN)
            i = await conn.fetchval(
                "INSERT INTO i (price, quantity) VALUES ($1, $2) RETURNING id", price, quantity
            )
            await conn.execute(
                "INSERT INTO l (source, target, contribution) VALUES (1, $1, $2)",
                i,
                price * quantity,
            )
            await conn.execute("UPDATE o SET total = total + $1 WHERE id = 1", price * quantity)
            await conn.execute("COMMIT")
    total = await conn.fetchval("SELECT total FROM o WHERE id = 1")
    assert total == expected, (total, expected)
    return t.seconds


# -- one-trip ideals: each unit's transaction in one round trip ---------------------------------
# What no engine whose transaction body waits for each statement's answer can beat: the floor's
# rows with BEGIN, the writes and COMMIT sent as one simple query (constants in the text, no
# answers needed in between), so a unit costs one round trip and one durable commit. The
# side-by-side with the original reports them as the ceiling of its ratios.


async def count_one_trip(conn: Any, n: int, timer: Callable[[], Timer]) -> float:
    """:func:`count_floor`'s rows, one round trip per like."""
    unit = (
        f"{_BEGIN}; INSERT INTO l (source, target) VALUES (1, 1); "
        "UPDATE p SET likes = likes + 1 WHERE id = 1; COMMIT"
    )
    with timer() as t:
        for _ in range(n):
            await conn.execute(unit)
    likes = await conn.fetchval("SELECT likes FROM p WHERE id = 1")
    assert likes == n, (likes, n)
    return t.seconds


async def summation_one_trip(conn: Any, k: int, timer: Callable[[], Timer]) -> float:
    """:func:`summation_floor`'s rows, one round trip per item (the link takes the item's id
    from a data-modifying CTE instead of an answer)."""
    expected = 0
    with timer() as t:
        for n in range(k):
            price, quantity = 1 + n % 7, 1 + n % 3
            expected += price * quantity
            await conn.execute(
                f"{_BEGIN}; WITH i AS (INSERT INTO i (price, quantity) "
                f"VALUES ({price}, {quantity}) RETURNING id) "
                f"INSERT INTO l (source, target, contribution) "
                f"SELECT 1, id, {price * quantity} FROM i; "
                f"UPDATE o SET total = total + {price * quantity} WHERE id = 1; COMMIT"
            )
    total = await conn.fetchval("SELECT total FROM o WHERE id = 1")
    assert total == expected, (total, expected)
    return t.seconds


# -- the runs ------------------------------------------------------------------------------------


def _per(sent: Sent, n: int, unit: str) -> dict[str, float]:
    """What was sent, per unit (chain, like, item)."""
    statements, begins, prepares, trips = sent
    return {
        f"statements_per_{unit}": round(statements / n, 2),
        f"round_trips_per_{unit}": round(trips / n, 2),
        f"transactions_per_{unit}": round(begins / n, 2),
        f"prepares_per_{unit}": round(prepares / n, 2),
    }


async def _timed_engine(
    workload: Callable[[CountingPostgres, Callable[[], Timer]], Awaitable[float]],
) -> tuple[float, Sent]:
    """Seconds of one engine run, and the statements it sent while timed."""
    timers: list[CountingTimer] = []

    async def run(store: CountingPostgres) -> float:
        def timer() -> Timer:
            timers.append(CountingTimer(store.tally))
            return timers[-1]

        return await workload(store, timer)

    seconds = await _engine(run)
    return seconds, timers[-1].sent


Run = Callable[[], Awaitable[tuple[float, Sent]]]


async def _turns(engine: Run, floor: Run) -> tuple[tuple[float, Sent], tuple[float, Sent]]:
    """The median of RUNS engine runs and of RUNS floor runs taken in turns (this machine has
    slow spells; turns put both sides in the same ones), each with what it sent."""
    engine_runs: list[tuple[float, Sent]] = []
    floor_runs: list[tuple[float, Sent]] = []
    for _ in range(RUNS):
        engine_runs.append(await engine())
        floor_runs.append(await floor())
    return sorted(engine_runs)[RUNS // 2], sorted(floor_runs)[RUNS // 2]


async def main() -> None:
    n = scaled(200)
    (seconds, sent), (floor, floor_sent) = await _turns(
        lambda: _timed_engine(lambda store, timer: run_chain(store, n, timer)),
        lambda: _floor(_CHAIN_TABLES, lambda conn, timer: chain_floor(conn, n, timer)),
    )
    ratio = round(seconds / floor, 2)
    report("pg_chain", n, seconds, ratio_to_floor=ratio, **_per(sent, n, "chain"), runs=RUNS)
    report("pg_chain_floor", n, floor, **_per(floor_sent, n, "chain"), runs=RUNS)

    window = max(10, scaled(200))
    marks = [m for m in (scaled(100), scaled(1000)) if m >= window // 2] or [window // 2]
    growth: list[list[tuple[int, float, float, float]]] = []
    floors: list[tuple[float, Sent]] = []
    for _ in range(RUNS):  # in turns, as _turns
        growth.append(await _engine(lambda store: run_count_growth(store, marks, window)))
        floors.append(
            await _floor(_COUNT_TABLES, lambda conn, timer: count_floor(conn, window, timer))
        )
    floor, floor_sent = sorted(floors)[RUNS // 2]
    for per_mark in zip(*growth, strict=True):
        secs = statistics.median(m[1] for m in per_mark)
        report(
            "pg_count_growth",
            window,
            secs,
            likes_so_far=per_mark[0][0],
            median_like_us=round(statistics.median(m[2] for m in per_mark) * 1e6, 1),
            # a like at M likes over a like on a post of few likes, timed in turns with it
            cost_ratio_to_small_post=round(statistics.median(m[2] / m[3] for m in per_mark), 2),
            ratio_to_floor=round(secs / floor, 2),
            runs=RUNS,
        )
    report("pg_count_floor", window, floor, **_per(floor_sent, window, "like"), runs=RUNS)

    (plain, plain_sent), (outbox, outbox_sent) = await _turns(
        lambda: _timed_engine(lambda store, timer: run_chain(store, n, timer)),
        lambda: _timed_engine(lambda store, timer: run_chain(store, n, timer, outbox=True)),
    )
    report(
        "pg_chain_outbox",
        n,
        outbox,
        ratio_to_pg_chain=round(outbox / plain, 2),
        **_per(outbox_sent, n, "chain"),
        plain_statements_per_chain=round(plain_sent[0] / n, 2),
        runs=RUNS,
    )

    k = scaled(500)
    (seconds, sent), (floor, floor_sent) = await _turns(
        lambda: _timed_engine(lambda store, timer: run_summation(store, k, timer)),
        lambda: _floor(_SUM_TABLES, lambda conn, timer: summation_floor(conn, k, timer)),
    )
    ratio = round(seconds / floor, 2)
    report("pg_summation", k, seconds, ratio_to_floor=ratio, **_per(sent, k, "item"), runs=RUNS)
    report("pg_summation_floor", k, floor, **_per(floor_sent, k, "item"), runs=RUNS)


if __name__ == "__main__":
    asyncio.run(main())
