"""The outbox's PostgreSQL statements (see :mod:`storage.sql.outbox` and :mod:`storage.outbox`).

- ``tx`` is ``pg_current_xact_id()`` as a ``bigint`` (an ``xid8`` is epoch and xid in 64
  bits), the writing transaction's id: the same for every row it appends.
- The horizon is ``pg_snapshot_xmin(pg_current_snapshot())``: the oldest transaction still
  running (any database of the server; a long transaction holds the stream back, so keep
  ``idle_in_transaction_session_timeout`` set). Every row below it is final.
- An append is **one statement** whatever the number of events: the entries travel as arrays
  (``unnest``; one prepared text for every batch size), the version rows are upserted in
  record order (``ON CONFLICT ... DO UPDATE ... + n`` for a record with n events) and the
  outbox rows inserted from the versions returned, all in one ``WITH``.
- Register and prune take a transaction-scoped advisory lock of their own (keys derived from
  ``'interaqt.outbox'`` and the schema, so other schemas and other advisory locks don't wait).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.outbox import OutboxEntry
from storage.sql.driver import Execute
from storage.sql.outbox import OUTBOX, READERS, SKIPS, VERSIONS, OutboxSQL

__all__ = ["POSTGRES_OUTBOX"]

_APPEND = f"""WITH e AS (
  SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                       $7::int[]) AS e(seq, record, record_id, type, payload, n, k)
), v AS (
  INSERT INTO {VERSIONS} AS o (record, record_id, version)
  SELECT DISTINCT record, record_id, n FROM e ORDER BY record, record_id
  ON CONFLICT (record, record_id) DO UPDATE SET version = o.version + EXCLUDED.version
  RETURNING record, record_id, version
)
INSERT INTO {OUTBOX} (tx, seq, record, record_id, version, type, payload)
SELECT pg_current_xact_id()::text::bigint, e.seq, e.record, e.record_id, v.version - e.n + e.k,
       e.type, e.payload
FROM e JOIN v USING (record, record_id)"""


def _append(run: Execute, entries: Sequence[OutboxEntry]) -> None:
    # n: how many events this transaction appends for the record; k: this one's rank among
    # them (1-based). The upsert adds n to the stored version, so this event's version is
    # the new version - n + k.
    totals: dict[tuple[str, str], int] = {}
    ranks: list[int] = []
    for entry in entries:
        key = (entry.record, entry.record_id)
        totals[key] = totals.get(key, 0) + 1
        ranks.append(totals[key])
    run(
        _APPEND,
        (
            list(range(len(entries))),
            [e.record for e in entries],
            [e.record_id for e in entries],
            [e.type for e in entries],
            [e.payload for e in entries],
            [totals[(e.record, e.record_id)] for e in entries],
            ranks,
        ),
    )


POSTGRES_OUTBOX = OutboxSQL(
    create=(
        f"CREATE TABLE IF NOT EXISTS {OUTBOX} (tx bigint NOT NULL, seq integer NOT NULL, "
        "record text NOT NULL, record_id text NOT NULL, version bigint NOT NULL, "
        "type text NOT NULL, payload text NOT NULL, PRIMARY KEY (tx, seq))",
        f"CREATE TABLE IF NOT EXISTS {VERSIONS} (record text NOT NULL, record_id text NOT NULL, "
        "version bigint NOT NULL, PRIMARY KEY (record, record_id))",
        f"CREATE TABLE IF NOT EXISTS {READERS} (name text PRIMARY KEY, tx bigint NOT NULL, "
        "seq integer NOT NULL, durable integer NOT NULL, lease double precision NOT NULL, "
        "seen_at double precision NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {SKIPS} (name text NOT NULL, tx bigint NOT NULL, "
        "PRIMARY KEY (name, tx))",
    ),
    horizon="pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    now="extract(epoch from clock_timestamp())::double precision",
    lock="SELECT pg_advisory_xact_lock(hashtext('interaqt.outbox'), hashtext(current_schema()))",
    append=_append,
)
