"""The outbox on a SQL database (backend-neutral): tables, append, read, readers, prune.

What differs per database is an :class:`OutboxSQL` the backend's dialect carries
(``dialect.outbox``): the tables, the append (PostgreSQL: one statement for any number of
events; SQLite: statements are cheap, one per event), the *horizon* (below it every row is
final), the database clock, and how ``register`` and ``prune`` exclude each other.
Everything here runs inside a transaction the backend began, on its statement runner.

Tables (the backend's own: ``inspect()`` leaves them out, a model cannot name them):

- ``_interaqt_outbox(tx, seq, record, record_id, version, type, payload)``, key ``(tx, seq)``;
- ``_interaqt_outbox_version(record, record_id, version)``: each record's latest version; a
  prune deletes a record's row together with the record's delete event (while that event is
  its last), so there is one row per record that exists or whose delete is not pruned yet;
- ``_interaqt_outbox_reader(name, tx, seq, durable, lease, seen_at)``: readers and their
  stored cursors; ``seen_at`` is the database clock (seconds) of the last store;
- ``_interaqt_outbox_skip(name, tx)``: the transactions a reader passes over (its ``skip``,
  see :class:`~storage.outbox.OutboxStart`), stored at its registration so that every later
  registration of the name (a durable reader's next run) starts the same way; a prune
  forgets those its reader's cursor is past, and those of readers gone. Empty on SQLite.

Costs: an append is one statement on PostgreSQL; a read is one statement (final rows only,
plus at most one row saying whether others wait behind the horizon); storing a cursor one;
register three or four for a new reader (one finds the start and the transactions after it
that committed already: one row per transaction committed while the horizon was held back,
rarely more than a few; plus one insert per such transaction), three for a registered one;
unregister two; prune six (one of them deletes the version rows of the deleted records it prunes
the events of), and it is rare.

Register and prune exclude each other (PostgreSQL: a transaction-scoped advisory lock; SQLite:
write transactions are serial already). Otherwise a prune that had not seen a new reader could
delete, past every older reader, rows the new one starts before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.outbox import (
    START,
    OutboxBatch,
    OutboxEntry,
    OutboxError,
    OutboxPosition,
    OutboxRow,
    OutboxStart,
)
from storage.sql.driver import Execute

__all__ = ["OWN_TABLES", "OutboxSQL", "append", "prune", "read", "register", "store"]

OUTBOX = "_interaqt_outbox"
VERSIONS = "_interaqt_outbox_version"
READERS = "_interaqt_outbox_reader"
SKIPS = "_interaqt_outbox_skip"
OWN_TABLES = frozenset({OUTBOX, VERSIONS, READERS, SKIPS})
"""The outbox's tables: not the model's, left out of ``inspect()``."""
MAX_NAME = 200


@dataclass(frozen=True)
class OutboxSQL:
    """One database's outbox statements and expressions."""

    create: tuple[str, ...]
    """DDL creating the tables when missing."""
    horizon: str
    """An expression: every row whose ``tx`` is below it is final (no row can commit below
    it any more)."""
    now: str
    """An expression: the database clock in seconds (a reader's lease is measured on it)."""
    lock: str | None
    """A statement run first by register and prune so they exclude each other (None: write
    transactions are serial already)."""
    append: Callable[[Execute, Sequence[OutboxEntry]], None]
    """Append entries in order, each with its record's next version."""


def install(run: Execute, sql: OutboxSQL) -> None:
    if sql.lock is not None:
        run(sql.lock, ())  # two processes starting at once must not both create a table
    for statement in sql.create:
        run(statement, ())


def append(run: Execute, sql: OutboxSQL, entries: Sequence[OutboxEntry]) -> None:
    if entries:
        sql.append(run, entries)


def read(run: Execute, sql: OutboxSQL, after: OutboxPosition, limit: int) -> OutboxBatch:
    check_limit(limit)
    # Final rows only (a row not final yet is sent again at every read until it is, so
    # none is sent), and one more row at most to say whether rows wait behind the horizon.
    rows = run(
        f"SELECT * FROM (SELECT tx, seq, record, record_id, version, type, payload, 1 AS final "
        f"FROM {OUTBOX} WHERE (tx, seq) > (?, ?) AND tx < {sql.horizon} "
        f"ORDER BY tx, seq LIMIT ?) AS ready "
        f"UNION ALL SELECT * FROM (SELECT tx, seq, '', '', 0, '', '', 0 FROM {OUTBOX} "
        f"WHERE (tx, seq) > (?, ?) AND tx >= {sql.horizon} LIMIT 1) AS waiting",
        (after.tx, after.seq, limit, after.tx, after.seq),
    ).fetchall()
    ready: list[OutboxRow] = []
    pending = False
    for tx, seq, record, record_id, version, type_, payload, final in rows:
        if not final:
            pending = True
            continue
        ready.append(
            OutboxRow(OutboxPosition(tx, seq), record, record_id, int(version), type_, payload)
        )
    ready.sort(key=lambda row: row.position)  # a UNION ALL promises no order of its own
    return OutboxBatch(ready, pending)


def register(run: Execute, sql: OutboxSQL, name: str, durable: bool, lease: float) -> OutboxStart:
    check_name(name)
    if not lease > 0:
        raise OutboxError(f"an outbox reader's lease is a positive number of seconds: {lease!r}")
    if sql.lock is not None:
        run(sql.lock, ())
    found = run(f"SELECT tx, seq FROM {READERS} WHERE name = ?", (name,)).fetchone()
    if found is not None:
        run(
            f"UPDATE {READERS} SET seen_at = {sql.now}, lease = ? WHERE name = ?",
            (float(lease), name),
        )
        cursor = OutboxPosition(found[0], found[1])
        # The transactions it passes over that lie after its cursor still (stored when it
        # was registered): a run that resumes before them passes over them too.
        skipped = run(f"SELECT tx FROM {SKIPS} WHERE name = ? AND tx > ?", (name, cursor.tx))
        return OutboxStart(cursor, frozenset(int(tx) for (tx,) in skipped.fetchall()))
    # One statement, so one snapshot (READ COMMITTED takes one per statement): the last final
    # transaction (its last row is the start) and every transaction after it whose rows
    # this snapshot sees, i.e. committed already although not final (the horizon is the
    # server's: a transaction elsewhere may hold it back). The new reader skips those; any
    # other row after the start commits after this snapshot.
    found_txs = run(
        f"SELECT tx, max(seq), tx < {sql.horizon} FROM {OUTBOX} WHERE tx >= coalesce("
        f"(SELECT max(tx) FROM {OUTBOX} WHERE tx < {sql.horizon}), ?) GROUP BY tx",
        (START.tx,),
    ).fetchall()
    start, skip = START, set()
    for tx, seq, final in found_txs:
        if final:
            start = OutboxPosition(tx, seq)
        else:
            skip.add(int(tx))
    run(
        f"INSERT INTO {READERS} (name, tx, seq, durable, lease, seen_at) "
        f"VALUES (?, ?, ?, ?, ?, {sql.now})",
        (name, start.tx, start.seq, 1 if durable else 0, float(lease)),
    )
    run(f"DELETE FROM {SKIPS} WHERE name = ?", (name,))  # a reader of that name, gone
    for tx in sorted(skip):
        run(f"INSERT INTO {SKIPS} (name, tx) VALUES (?, ?)", (name, tx))
    return OutboxStart(start, frozenset(skip))


def store(run: Execute, sql: OutboxSQL, name: str, position: OutboxPosition) -> None:
    check_name(name)
    if not isinstance(position, OutboxPosition):
        raise OutboxError(f"an outbox cursor is an OutboxPosition, got {position!r}")
    cursor = run(
        f"UPDATE {READERS} SET tx = ?, seq = ?, seen_at = {sql.now} WHERE name = ?",
        (position.tx, position.seq, name),
    )
    if cursor.rowcount == 0:
        raise OutboxError(
            f"outbox reader {name!r} is not registered (dropped, or a live reader whose lease "
            "lapsed: rows it had not read may be pruned); register it again"
        )


def unregister(run: Execute, name: str) -> bool:
    check_name(name)
    run(f"DELETE FROM {SKIPS} WHERE name = ?", (name,))
    return bool(run(f"DELETE FROM {READERS} WHERE name = ?", (name,)).rowcount)


def prune(run: Execute, sql: OutboxSQL) -> int:
    if sql.lock is not None:
        run(sql.lock, ())
    run(f"DELETE FROM {READERS} WHERE durable = 0 AND seen_at + lease < {sql.now}", ())
    # Passed-over transactions matter only while their reader's cursor is before them.
    run(
        f"DELETE FROM {SKIPS} WHERE NOT EXISTS (SELECT 1 FROM {READERS} AS r "
        f"WHERE r.name = {SKIPS}.name AND r.tx < {SKIPS}.tx)",
        (),
    )
    least = run(f"SELECT tx, seq FROM {READERS} ORDER BY tx, seq LIMIT 1", ()).fetchone()
    bounds: tuple[int, ...]
    if least is None:
        prunable, bounds = f"tx < {sql.horizon}", ()
    else:
        prunable, bounds = f"(tx, seq) <= (?, ?) AND tx < {sql.horizon}", (least[0], least[1])
    # A deleted record's version row goes with its delete event: only while that event is
    # still its last one (the version matches), so a record re-created under the same id
    # meanwhile (its version row updated, or locked and then updated: PostgreSQL re-checks
    # the condition on the new row) keeps counting. Version rows are then O(live records).
    run(
        f"DELETE FROM {VERSIONS} WHERE (record, record_id, version) IN "
        f"(SELECT record, record_id, version FROM {OUTBOX} WHERE type = 'delete' AND {prunable})",
        bounds,
    )
    cursor = run(f"DELETE FROM {OUTBOX} WHERE {prunable}", bounds)
    return max(cursor.rowcount, 0)


def check_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise OutboxError(
            f"an outbox reader's name is a non-empty string of at most {MAX_NAME} characters, "
            f"got {name!r}"
        )


def check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise OutboxError(f"an outbox read's limit is a positive integer, got {limit!r}")
