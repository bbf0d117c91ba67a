"""Engine benchmarks: the guide's chain without HTTP, a growing Count, and a Summation.

- ``chain``: one dispatch creates a Greeting and its TTSCall; a durable create side effect on
  TTSCall writes ``initialized``, ``processing``, ``completed`` events; a StateMachine folds them
  into the call's ``status``; Customs fold ``external_id`` and ``response_data`` (targets found by
  ``external_id``); ``Greeting.voice_url`` derives from its completed call. Time to all completed,
  verified.
- ``count_growth``: one Post, likes created one at a time; cost per like around M likes.
- ``summation``: one Order, K items; ``total`` = WeightedSummation of price * quantity.
Each is followed by a plain-sqlite3 floor that writes the same rows in the same run.

The workloads take the storage to run on (not yet set up; the controller closes it), so
``benchmarks/pg_chain.py`` runs the same models on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactive as r
from benchmarks.common import Timer, floor_connection, report, scaled
from storage import SQLiteStorage, Storage

# -- the chain model -------------------------------------------------------------------------


def chain_model() -> tuple[list[r.Entity], list[r.Relation], list[r.Interaction]]:
    event = r.Entity(
        "TTSEvent",
        [
            r.Property("event_type"),
            r.Property("entity_id", "number"),
            r.Property("external_id", index=True),
            r.Property("data", "json"),
        ],
    )

    def by_external_id(ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.find_one("TTSCall", {"external_id": ev.record["external_id"]})

    def on(event_type: str) -> r.Trigger:
        return r.Trigger(event, "create", fields={"event_type": event_type})

    pending = r.StateNode("pending")
    processing = r.StateNode("processing")
    completed = r.StateNode("completed")
    failed = r.StateNode("failed")
    status = r.StateMachine(
        states=[pending, processing, completed, failed],
        transfers=[
            r.StateTransfer(pending, processing, on("processing"), by_external_id),
            r.StateTransfer(pending, completed, on("completed"), by_external_id),
            r.StateTransfer(processing, completed, on("completed"), by_external_id),
            r.StateTransfer(pending, failed, on("failed"), by_external_id),
            r.StateTransfer(processing, failed, on("failed"), by_external_id),
        ],
        initial_state=pending,
    )
    call = r.Entity(
        "TTSCall",
        [
            r.Property("request_params", "json"),
            r.Property("status", computation=status),
            r.Property(
                "external_id",
                index=True,
                computation=r.Custom(
                    lambda last, ev: ev.record["external_id"],
                    triggers=[on("initialized")],
                    compute_target=lambda ev: {"id": ev.record["entity_id"]},
                ),
            ),
            r.Property(
                "response_data",
                "json",
                computation=r.Custom(
                    lambda last, ev: ev.record["data"],
                    triggers=[on("completed")],
                    compute_target=by_external_id,
                ),
            ),
        ],
    )

    def greeting_of(ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.find_one("Greeting", {"tts_calls.id": ev.record["id"]})

    greeting = r.Entity(
        "Greeting",
        [
            r.Property("text"),
            r.Property(
                "voice_url",
                computation=r.Custom(
                    lambda last, ev: (ev.merged.get("response_data") or {}).get("url"),
                    # response_data is written by the completed event, after status moved.
                    triggers=[
                        r.Trigger(
                            call, "update", keys=["response_data"], fields={"status": "completed"}
                        )
                    ],
                    compute_target=greeting_of,
                ),
            ),
        ],
        computation=r.Transform(
            r.INTERACTION_EVENT,
            lambda ev: (
                {
                    "text": ev["payload"]["text"],
                    "tts_calls": [{"request_params": {"text": ev["payload"]["text"]}}],
                }
                if ev["interaction_name"] == "Greet"
                else None
            ),
        ),
    )
    calls = r.Relation(greeting, "tts_calls", call, "greeting", "1:n")
    greet = r.Interaction("Greet", r.Payload([r.PayloadItem("text", required=True)]))
    return [greeting, call, event], [calls], [greet]


async def tts_side_effect(event: r.MutationEvent, controller: r.Controller) -> None:
    # A synchronous API: the integration writes the whole sequence at once, in one transaction.
    call_id = event.record["id"]
    external_id = f"task-{call_id}"
    sequence = (
        ("initialized", None),
        ("processing", None),
        ("completed", {"url": f"https://cdn.example/{call_id}.mp3"}),
    )

    def write(ctx: r.TransactionContext) -> None:
        for event_type, data in sequence:
            ctx.storage.create(
                "TTSEvent",
                {
                    "event_type": event_type,
                    "entity_id": call_id,
                    "external_id": external_id,
                    "data": data,
                },
            )

    await controller.transact(write)


async def run_chain(
    storage: Storage, n: int, timer: Callable[[], Timer] = Timer, *, outbox: bool = False
) -> float:
    """Seconds for ``n`` chains on ``storage`` (``timer`` times the chains alone). With
    ``outbox``, the controller writes the outbox and the timed part lasts until its own
    stream has delivered every event of the chains (one subscriber)."""
    entities, relations, interactions = chain_model()
    controller = r.Controller(
        storage,
        entities,
        relations,
        interactions=interactions,
        side_effects=[
            r.RecordMutationSideEffect("tts", "TTSCall", tts_side_effect, on=("create",))
        ],
        outbox=outbox,
    )
    await controller.setup()
    delivered: list[r.MutationEvent] = []
    if outbox:
        controller.mutations.subscribe(delivered.append)
        # A reader registered before the chains holds their rows against pruning, so the
        # outbox can say afterwards how many events they committed.
        start = (await controller.outbox_reader("bench")).position
    with timer() as t:
        for i in range(n):
            result = await controller.dispatch("Greet", {"id": 1}, {"text": f"hello {i}"})
            assert result.error is None, result.error
        await controller.drain()
        if outbox:
            # Every event the chains committed (the dispatches' and the side effect's
            # writes): the outbox's own count of them, then wait until all are delivered.
            reader_total = await _outbox_total(controller, start)
            for _ in range(3000):
                if len(delivered) >= reader_total:
                    break
                await asyncio.sleep(0.002)
            assert len(delivered) == reader_total, (len(delivered), reader_total)
    done = await controller.storage.count("TTSCall", {"status": "completed"})
    urls = await controller.storage.count("Greeting", r_match_not_null("voice_url"))
    pending = await controller.side_effects.pending()
    await controller.close()
    assert done == n and urls == n and not pending, (done, urls, len(pending))
    return t.seconds


async def _outbox_total(controller: r.Controller, start: r.OutboxPosition) -> int:
    """How many rows the outbox holds after ``start``, once all are final."""
    backend: Any = controller.backend
    for _ in range(3000):
        batch = await backend.outbox_read(start, 1_000_000)
        if not batch.pending:
            break
        await asyncio.sleep(0.002)
    return len(batch.rows)


def r_match_not_null(field: str) -> Any:
    from storage import MatchExp

    return MatchExp.atom(field, "is not null")


def chain_floor(path: Path, n: int) -> float:
    """The same rows in plain sqlite3: the dispatch, the event sequence, the intent removal."""
    conn = floor_connection(path)
    conn.executescript(
        """
        CREATE TABLE i (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, user TEXT, payload TEXT);
        CREATE TABLE g (id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT, voice_url TEXT, src, idx);
        CREATE TABLE c (id INTEGER PRIMARY KEY AUTOINCREMENT, params TEXT, status TEXT,
                        state TEXT, external_id TEXT, response TEXT);
        CREATE INDEX c_ext ON c(external_id);
        CREATE TABLE l (id INTEGER PRIMARY KEY AUTOINCREMENT, source, target);
        CREATE INDEX l_t ON l(target);
        CREATE TABLE e (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT, entity_id, ext TEXT,
                        data TEXT);
        CREATE TABLE s (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, event TEXT);
        """
    )
    with Timer() as t:
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO i (name, user, payload) VALUES (?, ?, ?)",
                ("Greet", '{"id":1}', f'{{"text":"hello {i}"}}'),
            )
            g = conn.execute("INSERT INTO g (text) VALUES (?)", (f"hello {i}",)).lastrowid
            c = conn.execute(
                "INSERT INTO c (params, status, state) VALUES (?, 'pending', 'pending')",
                ('{"text":"x"}',),
            ).lastrowid
            conn.execute("INSERT INTO l (source, target) VALUES (?, ?)", (g, c))
            s = conn.execute("INSERT INTO s (name, event) VALUES ('tts', '{}')").lastrowid
            conn.execute("COMMIT")
            ext = f"task-{c}"
            conn.execute("BEGIN IMMEDIATE")  # the sync integration writes all three at once
            for kind in ("initialized", "processing", "completed"):
                conn.execute(
                    "INSERT INTO e (type, entity_id, ext, data) VALUES (?, ?, ?, ?)",
                    (kind, c, ext, None),
                )
                if kind == "initialized":
                    conn.execute("UPDATE c SET external_id = ? WHERE id = ?", (ext, c))
                else:
                    row = conn.execute("SELECT id FROM c WHERE external_id = ?", (ext,)).fetchone()
                    conn.execute(
                        "UPDATE c SET status = ?, state = ? WHERE id = ?", (kind, kind, row[0])
                    )
                    if kind == "completed":
                        conn.execute("UPDATE c SET response = ? WHERE id = ?", ('{"url":"u"}', c))
                        gid = conn.execute(
                            "SELECT source FROM l WHERE target = ?", (c,)
                        ).fetchone()[0]
                        conn.execute("UPDATE g SET voice_url = ? WHERE id = ?", ("u", gid))
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM s WHERE id = ?", (s,))
            conn.execute("COMMIT")
    conn.close()
    return t.seconds


# -- count growth ----------------------------------------------------------------------------


async def likes_controller(storage: Storage) -> tuple[r.Controller, str]:
    """The count workloads' model on ``storage``, set up: users like posts (an n:n relation),
    ``Post.likes`` a Count of them. Returns the controller and the like relation's name."""
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("likes", "number", computation=r.Count(property="liked_by")),
        ],
    )
    likes = r.Relation(post, "liked_by", user, "liked", "n:n")
    controller = r.Controller(storage, [user, post], [likes])
    await controller.setup()
    return controller, likes.relation_name


async def run_count_growth(
    storage: Storage, marks: list[int], window: int
) -> list[tuple[int, float, float, float]]:
    """Per mark M: (M, seconds of the window's likes on the post, median like on the post,
    median like on a new post liked in turns with it).

    The second post has fewer likes than the window, and its likes are taken in turns with the
    big post's, so both medians see the same moment of this shared machine: their ratio shows
    what M itself costs."""
    controller, link = await likes_controller(storage)
    the_post = await controller.storage.create("Post", {"title": "p"})
    fan = await controller.storage.create("User", {"name": "fan"})

    async def like(post_id: int) -> float:
        with Timer() as t:
            await controller.storage.create(
                link, {"source": {"id": post_id}, "target": {"id": fan["id"]}}
            )
        return t.seconds

    # Warm the code paths and statement caches on another post, so that the first window
    # measures a like at M likes, not the first likes ever written.
    warm_up = await controller.storage.create("Post", {"title": "warm-up"})
    for _ in range(window):
        await like(warm_up["id"])
    results: list[tuple[int, float, float, float]] = []
    created = 0
    for mark in marks:
        # grow to just below the mark, then time `window` likes around it
        while created < mark - window // 2:
            await like(the_post["id"])
            created += 1
        small = await controller.storage.create("Post", {"title": f"small {mark}"})
        big_likes: list[float] = []
        small_likes: list[float] = []
        for _ in range(window):
            big_likes.append(await like(the_post["id"]))
            small_likes.append(await like(small["id"]))
        created += window
        results.append(
            (
                mark,
                sum(big_likes),
                statistics.median(big_likes),
                statistics.median(small_likes),
            )
        )
    final = await controller.storage.find_one("Post", {"id": the_post["id"]}, ["likes"])
    await controller.close()
    assert final is not None and final["likes"] == created, (final, created)
    return results


def count_floor(path: Path, n: int) -> float:
    conn = floor_connection(path)
    conn.executescript("""
        CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, likes);
        CREATE TABLE l (id INTEGER PRIMARY KEY AUTOINCREMENT, source, target);
        INSERT INTO p (likes) VALUES (0);
    """)
    with Timer() as t:
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO l (source, target) VALUES (1, 1)")
            conn.execute("UPDATE p SET likes = likes + 1 WHERE id = 1")
            conn.execute("COMMIT")
    conn.close()
    return t.seconds


# -- summation -------------------------------------------------------------------------------


async def run_summation(storage: Storage, k: int, timer: Callable[[], Timer] = Timer) -> float:
    """Seconds for ``k`` items on one order on ``storage`` (``timer`` times the items alone)."""
    item = r.Entity("Item", [r.Property("price", "number"), r.Property("quantity", "number")])
    order = r.Entity(
        "Order",
        [
            r.Property(
                "total",
                "number",
                computation=r.WeightedSummation(
                    property="items",
                    callback=lambda i: (i["quantity"], i["price"]),
                    attribute_query=["price", "quantity"],
                ),
            ),
        ],
    )
    items = r.Relation(order, "items", item, "order", "1:n")
    controller = r.Controller(storage, [item, order], [items])
    await controller.setup()
    the_order = await controller.storage.create("Order", {})
    expected = 0
    with timer() as t:
        for i in range(k):
            price, quantity = 1 + i % 7, 1 + i % 3
            expected += price * quantity
            await controller.storage.create(
                "Item", {"price": price, "quantity": quantity, "order": {"id": the_order["id"]}}
            )
    final = await controller.storage.find_one("Order", {"id": the_order["id"]}, ["total"])
    await controller.close()
    assert final is not None and final["total"] == expected, (final, expected)
    return t.seconds


def summation_floor(path: Path, k: int) -> float:
    conn = floor_connection(path)
    conn.executescript("""
        CREATE TABLE o (id INTEGER PRIMARY KEY AUTOINCREMENT, total);
        CREATE TABLE i (id INTEGER PRIMARY KEY AUTOINCREMENT, price, quantity);
        CREATE TABLE l (id INTEGER PRIMARY KEY AUTOINCREMENT, source, target, contribution);
        INSERT INTO o (total) VALUES (0);
    """)
    with Timer() as t:
        for n in range(k):
            conn.execute("BEGIN IMMEDIATE")
            i = conn.execute(
                "INSERT INTO i (price, quantity) VALUES (?, ?)", (1 + n % 7, 1 + n % 3)
            ).lastrowid
            conn.execute(
                "INSERT INTO l (source, target, contribution) VALUES (1, ?, ?)",
                (i, (1 + n % 7) * (1 + n % 3)),
            )
            conn.execute(
                "UPDATE o SET total = total + ? WHERE id = 1", ((1 + n % 7) * (1 + n % 3),)
            )
            conn.execute("COMMIT")
    conn.close()
    return t.seconds


RUNS = 5


def interleaved(
    engine: Callable[[int], float], floor: Callable[[int], float]
) -> tuple[float, float]:
    """Median seconds of RUNS engine runs and RUNS floor runs, taken in turns on new files:
    this machine has slow spells of seconds, and turns put both sides in the same ones."""
    engine_runs, floor_runs = [], []
    for i in range(RUNS):
        engine_runs.append(engine(i))
        floor_runs.append(floor(i))
    return statistics.median(engine_runs), statistics.median(floor_runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = scaled(1000)
        seconds, floor = interleaved(
            lambda i: asyncio.run(run_chain(SQLiteStorage(str(root / f"chain{i}.db")), n)),
            lambda i: chain_floor(root / f"chain_floor{i}.db", n),
        )
        report("chain", n, seconds, ratio_to_sqlite3=round(seconds / floor, 2), runs=RUNS)
        report("chain_sqlite3_floor", n, floor, runs=RUNS)

        window = max(10, scaled(200))
        marks = [m for m in (scaled(100), scaled(1000), scaled(10000)) if m >= window // 2]
        # RUNS runs, each on a new database; per mark the run with the lowest median like.
        # Medians, because a WAL checkpoint lands in some window or other whatever M is.
        runs = [
            asyncio.run(run_count_growth(SQLiteStorage(str(root / f"count{i}.db")), marks, window))
            for i in range(RUNS)
        ]
        growth = [min(per_mark, key=lambda m: m[2]) for per_mark in zip(*runs, strict=True)]
        floor = count_floor(root / "count_floor.db", window)
        first_median = growth[0][2]
        for mark, secs, median, small_median in growth:
            report(
                "count_growth",
                window,
                secs,
                likes_so_far=mark,
                median_like_us=round(median * 1e6, 1),
                cost_ratio_to_first=round(median / first_median, 2),
                # The same figure measured in turns with a post of few likes (see
                # run_count_growth): what M costs, free of the machine's slow spells.
                cost_ratio_to_small_post=round(median / small_median, 2),
                ratio_to_sqlite3=round(secs / floor, 2),
                runs=len(runs),
            )
        report("count_sqlite3_floor", window, floor)

        k = scaled(1000)
        seconds, floor = interleaved(
            lambda i: asyncio.run(run_summation(SQLiteStorage(str(root / f"sum{i}.db")), k)),
            lambda i: summation_floor(root / f"sum_floor{i}.db", k),
        )
        report("summation", k, seconds, ratio_to_sqlite3=round(seconds / floor, 2), runs=RUNS)
        report("summation_sqlite3_floor", k, floor, runs=RUNS)


if __name__ == "__main__":
    main()
