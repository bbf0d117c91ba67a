"""The outbox's SQLite statements (see :mod:`storage.sql.outbox` and :mod:`storage.outbox`).

SQLite write transactions are serial (``BEGIN IMMEDIATE`` takes the write lock before the body
runs, and it is held until commit), so a plain ``AUTOINCREMENT`` key given inside the write
transaction is commit order, never reused after a prune: ``tx`` is that key (one per row) and
``seq`` is 0. Every committed row is final at once (the horizon is above every row), and
register and prune need no lock of their own. Several processes on one file share the
stream the same way; with no signal between them, they find each other's rows by polling.

Statements cost about 10 us here, so an append is one upsert per event (its version) and one
``executemany`` of the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.outbox import OutboxEntry
from storage.sql.driver import Execute
from storage.sql.outbox import OUTBOX, READERS, SKIPS, VERSIONS, OutboxSQL

__all__ = ["SQLITE_OUTBOX"]

_VERSION = (
    f"INSERT INTO {VERSIONS} (record, record_id, version) VALUES (?, ?, 1) "
    "ON CONFLICT (record, record_id) DO UPDATE SET version = version + 1 RETURNING version"
)
_INSERT = (
    f"INSERT INTO {OUTBOX} (seq, record, record_id, version, type, payload) "
    "VALUES (0, ?, ?, ?, ?, ?)"
)


def _append(run: Execute, entries: Sequence[OutboxEntry]) -> None:
    rows = []
    for e in entries:
        (version,) = run(_VERSION, (e.record, e.record_id)).fetchone()
        rows.append((e.record, e.record_id, version, e.type, e.payload))
    for row in rows:
        run(_INSERT, row)


SQLITE_OUTBOX = OutboxSQL(
    create=(
        f"CREATE TABLE IF NOT EXISTS {OUTBOX} (tx INTEGER PRIMARY KEY AUTOINCREMENT, "
        "seq INTEGER NOT NULL, record TEXT NOT NULL, record_id TEXT NOT NULL, "
        "version INTEGER NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {VERSIONS} (record TEXT NOT NULL, record_id TEXT NOT NULL, "
        "version INTEGER NOT NULL, PRIMARY KEY (record, record_id))",
        f"CREATE TABLE IF NOT EXISTS {READERS} (name TEXT PRIMARY KEY, tx INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, durable INTEGER NOT NULL, lease REAL NOT NULL, "
        "seen_at REAL NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {SKIPS} (name TEXT NOT NULL, tx INTEGER NOT NULL, "
        "PRIMARY KEY (name, tx))",
    ),
    horizon="9223372036854775807",
    now="((julianday('now') - 2440587.5) * 86400.0)",
    lock=None,
    append=_append,
)
