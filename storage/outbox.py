"""The outbox: committed events of every process, in one total order (values; see
:class:`storage.abc.Outbox` for the operations).

A write transaction appends one :class:`OutboxEntry` per event it publishes, in the same
transaction as the write (a rolled-back or retried transaction leaves none behind). Each stored
row gets an :class:`OutboxPosition` and the record's ``version``:

- **Position** ``(tx, seq)``: ``seq`` numbers the rows of one transaction; ``tx`` orders the
  transactions. On PostgreSQL ``tx`` is the writing transaction's id (``pg_current_xact_id()``,
  an ``xid8`` as a ``bigint``), and a reader reads only rows whose ``tx`` is below the horizon
  ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction below it has ended, so no row
  can appear behind a reader's cursor later (a reader following a ``bigserial`` missed 25% of
  7,200 events from 8 writers, because sequence values commit out of order; this one missed
  none). On SQLite write transactions are serial, so ``tx`` is an ``AUTOINCREMENT`` row id
  given inside the write lock: commit order, and every committed row is final at once.
  The order is total and the same for every reader, but on PostgreSQL it is not commit order:
  a transaction that got its id first and committed last comes first.
- **Version**: the number of events of that record (``record``, ``record_id``) so far, counted
  in one row per record that the appending transaction updates atomically. Two transactions
  that change one record take turns on its row lock, so its versions follow the order in which
  the changes really happened (which ``tx`` order need not): consumers order per record by it.
  The version rows are the counters themselves, so they stay while their record may get
  events: one small row per record that has had an event and was not deleted (O(records),
  not O(events)). A record's row is pruned with its ``delete`` event (once every reader is
  past it, and only while that event is the record's last); a record created later under the
  same id counts from 1 again, after that delete in every reader's order.

The payload is the engine's wire form of the event (JSON text); storage never reads it.
"""

from __future__ import annotations

import re

import attrs

from storage.errors import StorageError

__all__ = [
    "OutboxBatch",
    "OutboxEntry",
    "OutboxError",
    "OutboxPosition",
    "OutboxRow",
    "OutboxStart",
]

_POSITION = re.compile(r"^(-?[0-9]+):([0-9]+)$")


class OutboxError(StorageError):
    """A misuse of the outbox: an unknown or dropped reader, a malformed position, a bad
    reader name or batch size."""


@attrs.frozen(order=True)
class OutboxPosition:
    """Where an outbox row stands in the one total order (compare positions with ``<``).

    ``str(position)`` is ``"tx:seq"``; :meth:`parse` reads it back, so a consumer may keep a
    position wherever it keeps its own state."""

    tx: int
    seq: int

    def __str__(self) -> str:
        return f"{self.tx}:{self.seq}"

    @classmethod
    def parse(cls, text: str) -> OutboxPosition:
        """The position ``str(position)`` wrote; a malformed one raises :class:`OutboxError`."""
        found = _POSITION.match(text) if isinstance(text, str) else None
        if found is None:
            raise OutboxError(f"an outbox position is 'tx:seq' (two integers), got {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))


START = OutboxPosition(-1, 0)
"""Before every row."""


@attrs.frozen
class OutboxStart:
    """Where a reader starts (what ``outbox_register`` returns).

    ``position`` is its cursor: the stored one of a registered reader, else the last final
    row. ``skip`` holds the transactions (``tx``) after ``position`` whose rows had already
    committed when the reader was first registered (on PostgreSQL, rows committed while an
    older transaction anywhere on the server held the horizon below them). A reader that
    delivers only what commits from its registration on passes over the rows of those
    transactions; rows of other transactions after ``position`` committed after it
    registered. Transactions, not rows: a transaction's rows commit together. The skip is
    stored with the reader, so registering a name again returns those of them still after
    its stored cursor (a durable reader that resumes before them passes over them too: every
    run from one stored cursor reads the same rows). Empty on SQLite (every committed row
    is final at once)."""

    position: OutboxPosition
    skip: frozenset[int] = frozenset()


@attrs.frozen
class OutboxEntry:
    """One event a transaction appends: its record type, the record's id (as JSON text, the
    key of the record's version), the event type and the payload (JSON text)."""

    record: str
    record_id: str
    type: str
    payload: str


@attrs.frozen
class OutboxRow:
    """One stored event, as a reader gets it."""

    position: OutboxPosition
    record: str
    record_id: str
    version: int
    type: str
    payload: str


@attrs.frozen
class OutboxBatch:
    """What one read returned: ``rows`` after the cursor, in order, all of them final (no row
    can appear before the last of them any more); ``pending`` says that committed rows after
    them exist that are not final yet (an older transaction is still running), so the reader
    should look again soon rather than wait for a wake-up."""

    rows: list[OutboxRow]
    pending: bool
