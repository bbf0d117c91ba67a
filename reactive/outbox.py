"""One committed stream for all processes: the controller's side of the outbox.

With ``Controller(..., outbox=True)`` every write transaction appends its published events to
the storage's outbox (:class:`storage.abc.Outbox`) in the same transaction, one
:class:`~storage.outbox.OutboxEntry` each: record type, record id, event type, and the event
in the wire form of :mod:`reactive.event_codec` as JSON text. The storage gives each row a
position (one total order, the same for every reader) and the record's version (see
:mod:`storage.outbox`).

Delivery (the contract of ``controller.mutations`` and ``controller.stream`` in outbox mode):
every process's subject is fed by one :class:`Follower`, which reads the outbox after its
cursor and publishes each row as an :class:`OutboxEvent` (a :class:`MutationEvent` with
``position`` and ``version``). So every process delivers the committed events of *all*
processes, each exactly once, in the outbox's order, and so in the same order as every other
process. The local process's own events come from the outbox too, never straight after its
commit: delivering them at once and the others' from the outbox would give each process
another order (its own events first), and could only be made exactly-once by remembering
which rows were its own. The price is latency: an event is delivered once it is final (on
PostgreSQL, once every older transaction ended), usually milliseconds after its commit, as on
any other process. ``DispatchResult.effects`` and side effects are unchanged: they are the
writing process's own, at commit.

A follower delivers what commits after it started, nothing committed before (its start and
the transactions to pass over are read in one snapshot: see ``Follower.start``).

Wake-ups: after a commit that appended rows, the writer wakes its own follower and asks the
storage to tell the others (LISTEN/NOTIFY on PostgreSQL, outside the transaction); a follower
also polls every ``poll`` seconds (the backstop), and looks again within milliseconds while
rows are committed but not final yet.

Readers and pruning: a follower registers as a *live* reader (a lease renewed when it stores
its cursor, about every second, and lapsing after :data:`LEASE` seconds: a process that died
stops holding rows back). :class:`OutboxReader` is a *durable* named reader whose cursor is
stored when the application commits it: a process that starts late replays from there.
Followers prune every :data:`PRUNE_EVERY` seconds: rows every registered reader is past are
deleted, and with a deleted record's delete event its version row (see :mod:`storage.outbox`).
Costs per write transaction: one statement more on PostgreSQL (the append), plus the coalesced
NOTIFY on another connection; per follower: one read statement per wake-up or poll, one
cursor store a second.

Why it is opt-in (``Controller(outbox=True)``), although issue 12 asks every process's streams
to deliver every process's events: it costs every write, whether or not anything subscribes.
Measured (``make bench``, ``pg_chain_outbox``, the chain on PostgreSQL in turns with and without
it, one run on the loaded 2-core machine): 27.5 statements per chain instead of 21.0 (+31%),
and 1.34x the plain chain's time. An application on one process, or one whose processes need
only their own events (the default: published at commit, in commit order, no delay), should
not pay that; one that runs several processes and subscribes to the streams turns it on, and
then gets the contract above. ``Controller.outbox`` says which one a controller runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from reactive.event_codec import event_from_json, event_to_json
from storage import MutationEvent
from storage.abc import Outbox
from storage.outbox import OutboxEntry, OutboxError, OutboxPosition, OutboxRow

__all__ = ["OutboxEvent", "OutboxReader"]

log = logging.getLogger("reactive.outbox")

LEASE = 60.0
"""Seconds a live reader (a process's follower) holds rows back without storing its cursor."""
STORE_EVERY = 1.0
"""Seconds between a follower's cursor stores (each renews its lease)."""
PRUNE_EVERY = 10.0
"""Seconds between a follower's prunes."""
BATCH = 1000
"""Rows a follower reads at once."""
MIN_GAP = 0.01
"""Seconds at least between two reads of a follower: wake-ups that come faster (a commit in
every process wakes every follower) are coalesced into one read."""
MAX_WAIT_PENDING = 0.05
"""Seconds at most between reads while committed rows wait behind the horizon (the
transaction holding it back may end without a commit that notifies anyone)."""


@attrs.frozen(eq=False)
class OutboxEvent(MutationEvent):
    """A committed :class:`MutationEvent` as the outbox delivers it, with its ``position`` (in
    the one order every process delivers; ``str(position)`` is a cursor to keep) and the
    record's ``version`` (1 for its first event, one more for each next: consumers that care
    about one record's order sort its events by it, which the position order need not follow
    on PostgreSQL). Equality is by position."""

    position: OutboxPosition = attrs.field(kw_only=True)
    version: int = attrs.field(kw_only=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutboxEvent) and other.position == self.position

    def __hash__(self) -> int:
        return hash(self.position)


def entries(events: Sequence[MutationEvent]) -> list[OutboxEntry]:
    """The outbox entries of a transaction's published events, in order."""
    return [
        OutboxEntry(
            e.record_name,
            json.dumps(e.record.get("id"), separators=(",", ":")),
            e.type,
            json.dumps(event_to_json(e), separators=(",", ":")),
        )
        for e in events
    ]


def decode(row: OutboxRow) -> OutboxEvent:
    """The event a stored row holds."""
    event = event_from_json(json.loads(row.payload))
    return OutboxEvent(
        event.record_name,
        event.type,
        event.record,
        event.old_record,
        event.keys,
        position=row.position,
        version=row.version,
    )


class Follower:
    """A process's live reader: reads the outbox after its cursor and publishes every final
    row, in order, exactly once (see the module)."""

    def __init__(
        self,
        backend: Outbox,
        publish: Callable[[list[OutboxEvent]], None],
        poll: float,
    ) -> None:
        self._backend = backend
        self._publish = publish
        self._poll = poll
        self.name = f"live-{uuid.uuid4().hex}"
        self.position = OutboxPosition(-1, 0)
        self._stored = self.position
        self._skip: frozenset[int] = frozenset()
        """Transactions after the start that had committed before this follower registered
        (not delivered; forgotten once the cursor is past the last of them)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], Any] | None = None
        self._next_store = 0.0
        self._next_prune = 0.0
        self._closing = False

    async def start(self) -> None:
        """Register, listen for wake-ups and start following. What commits from now on is
        delivered, nothing committed before: the follower reads after the last final row and
        passes over the transactions after it that had committed already (on PostgreSQL the
        horizon is the server's, so a transaction elsewhere may hold it below them)."""
        start = await self._backend.outbox_register(self.name, durable=False, lease=LEASE)
        self.position, self._skip = start.position, start.skip
        self._stored = self.position
        self._stop_listening = await self._backend.outbox_listen(self._wake.set)
        loop = asyncio.get_running_loop()
        self._next_store = loop.time() + STORE_EVERY
        self._next_prune = loop.time() + PRUNE_EVERY
        self._task = loop.create_task(self._run(), name=f"outbox follower {self.name}")

    def committed(self) -> None:
        """This process committed rows: read now, and tell the other processes."""
        self._wake.set()
        self._backend.outbox_notify()

    async def close(self) -> None:
        """Stop following (after the read in progress, never inside its transaction) and
        unregister (this process no longer holds rows back)."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        stop, self._stop_listening = self._stop_listening, None
        if stop is not None:
            await stop()
        try:
            await self._backend.outbox_unregister(self.name)
        except Exception as exc:  # the lease lapses anyway
            log.warning("could not unregister outbox reader %s: %s", self.name, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        retry = MIN_GAP
        last = loop.time()
        while not self._closing:
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            gap = last + MIN_GAP - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            if self._closing:
                return
            last = loop.time()
            self._wake.clear()
            try:
                full, pending = await self._step()
            except Exception:
                log.exception("reading the outbox failed; trying again in %.1f s", self._poll)
                delay = self._poll
                continue
            if full:
                delay = 0.0
            elif pending:
                # Rows are committed after the cursor but an older transaction still runs:
                # look again soon (it ends with a commit that may not notify anyone).
                delay, retry = retry, min(retry * 2, MAX_WAIT_PENDING, self._poll)
            else:
                delay, retry = self._poll, MIN_GAP

    async def _step(self) -> tuple[bool, bool]:
        batch = await self._backend.outbox_read(self.position, BATCH)
        if batch.rows:
            events = []
            for row in batch.rows:
                if row.position.tx in self._skip:
                    continue  # committed before this follower started
                try:
                    events.append(decode(row))
                except Exception:
                    log.exception("outbox row %s cannot be read; skipped", row.position)
            self.position = batch.rows[-1].position
            if self._skip and self.position.tx >= max(self._skip):
                self._skip = frozenset()
            if events:
                self._publish(events)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._next_store:
            self._next_store = now + STORE_EVERY
            try:
                await self._backend.outbox_store(self.name, self.position)
            except OutboxError:
                # The lease lapsed (this process stalled for LEASE seconds): rows it had not
                # read may be gone. Register again and say so; what was pruned is lost here.
                log.error(
                    "outbox reader %s had lapsed; registered again from %s (events between "
                    "may have been pruned and missed by this process)",
                    self.name,
                    self.position,
                )
                await self._backend.outbox_register(self.name, durable=False, lease=LEASE)
                await self._backend.outbox_store(self.name, self.position)
            self._stored = self.position
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            await self._backend.outbox_prune()
        return len(batch.rows) >= BATCH, batch.pending


class OutboxReader:
    """A named, durable reader of the outbox (``await controller.outbox_reader(name)``).

    A new name reads what commits from its first registration on, nothing committed before,
    like a process's stream: it starts after the last final row and passes over the
    transactions after it that had committed already (on PostgreSQL, while a transaction
    elsewhere on the server held the horizon below them). Those are stored with the name, so
    a later run starts where its stored cursor is (the last committed position of an earlier
    run) and passes over those of them still after it: every run from the same stored cursor
    reads the same rows. Rows it has not committed past are never
    pruned, so a process that starts late replays everything since its cursor. ``read``
    advances the reader in memory; ``commit`` stores the cursor; ``drop`` unregisters the
    name (its rows become prunable).

    >>> reader = await controller.outbox_reader("billing")
    >>> for event in await reader.read():
    ...     handle(event)
    >>> await reader.commit()
    """

    def __init__(
        self,
        backend: Outbox,
        name: str,
        position: OutboxPosition,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self._backend = backend
        self.name = name
        self.position = position
        """Where the reader stands: after the last event :meth:`read` returned."""
        self.committed = position
        """The cursor stored for this name (where a new run of it starts)."""
        self._skip = skip
        """Transactions committed before the name was first registered (not delivered)."""

    async def read(self, limit: int = BATCH) -> list[OutboxEvent]:
        """Up to ``limit`` committed events after :attr:`position`, in the outbox's order
        (only final ones: none can appear before them later); [] when there are none yet.
        Rows of the transactions passed over (see the class) are read but not returned, so
        the first reads of a new name may return fewer than ``limit`` (a read that found
        only such rows reads on)."""
        while True:
            batch = await self._backend.outbox_read(self.position, limit)
            if not batch.rows:
                return []
            self.position = batch.rows[-1].position
            skip = self._skip
            if skip and self.position.tx >= max(skip):
                self._skip = frozenset()
            events = [decode(row) for row in batch.rows if row.position.tx not in skip]
            if events:
                return events

    async def commit(self, position: OutboxPosition | str | None = None) -> None:
        """Store the cursor: ``position`` (an event's ``position`` or its string), or
        :attr:`position` when None. A process that opens this name later starts after it."""
        if position is None:
            position = self.position
        elif isinstance(position, str):
            position = OutboxPosition.parse(position)
        await self._backend.outbox_store(self.name, position)
        self.committed = position
        self.position = max(self.position, position)

    async def drop(self) -> None:
        """Unregister the name: its stored cursor is forgotten and its rows may be pruned."""
        if not await self._backend.outbox_unregister(self.name):
            raise OutboxError(f"outbox reader {self.name!r} is not registered")
