"""Record mutation side effects: the place for I/O, run after commit.

Create side effects are durable: an intent row is written in the same transaction as the
record, and removed when the handler finishes. Each run carries a stable idempotency key
(at-least-once). A handler that raises is retried with exponential backoff and full jitter, then
parked as *dead* with its error: visible through :class:`SideEffectQueue` and re-runnable.

Leases (several processes on one database). Every intent is owned by at most one queue at a
time: ``lease_owner`` (unique per queue: host, pid, random) and ``lease_until`` (seconds since
the epoch on the *database's* clock where it has one, PostgreSQL's ``clock_timestamp()`` read
inside each statement; on SQLite, whose processes share one host, the queue's ``clock``). The
lease arithmetic is the storage's (:mod:`storage.lease`); this module never names a backend.

- Written leased: an intent is inserted already leased to the process that wrote it (one
  INSERT in the writing transaction), which runs it after the commit. With
  ``SideEffectLeases(run_here=False)`` it is inserted unowned instead, nothing runs here, and
  after the commit a wake-up (:meth:`storage.abc.Storage.notify`: a NOTIFY sent from a
  dedicated connection, never inside the transaction, coalesced) tells the claiming processes.
- Renewed: the owner renews the leases it holds (one UPDATE per batch of 500 every
  ``renew_every``); an intent whose renewal matches nothing was taken over and is let go.
- Claimed: a queue takes intents nobody owns or whose lease expired (their process died, or
  closed and released them) with :meth:`storage.abc.Storage.claim`, in batches (500, or the
  room ``max_held`` leaves): one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING`` on PostgreSQL, so claimers never wait for nor double-take each other's rows;
  SQLite's single writer makes the same statement atomic (after a read that finds nothing free
  in the usual case, taking no write lock). It claims at setup, at every wake-up (LISTEN on a
  dedicated connection; in-process on SQLite), when room frees up after a full claim, and every
  ``reclaim_every`` seconds (the backstop: a notification is a hint, and an expiry announces
  nothing). A process that dies keeps its intents for at most ``duration`` seconds; then the
  next claim anywhere runs them again, with the same idempotency key.
- Fenced: the owner's writes (attempt counts, removal, parking) match ``lease_owner``: a queue
  that lost a lease changes nothing of an intent another now owns. A graceful close releases
  its leases and wakes the others.
- Everywhere: ``pending()``, ``dead()`` and ``rerun(id)`` read and write the shared table, so any
  process sees and re-runs any process's intents (``rerun`` leases to the caller, or, with
  ``run_here=False``, leaves the intent unowned and wakes the claimers).

What the guarantee is: while an intent's lease holds, no other process starts it; a handler
that outlives its lease (a process stalled past ``duration``) may run twice, which the
idempotency key covers (at-least-once).

Failure paths. Every way a run can end is one of: done (intent removed), a retry (backoff, or
a lease left to expire so that a reclaim runs it again), or dead (parked). A storage error while
recording an attempt, removing a finished intent or parking a dead one never ends the run
silently: the run still retries, the removal and the parking are retried with backoff until the
storage takes them (the lease is renewed meanwhile). Each failure is logged once (a warning or
an error); retries of bookkeeping are logged at debug level.

Costs: one INSERT per create side effect (in the writing transaction), one DELETE per finished
intent (batched into one transaction per loop turn), one UPDATE per held batch of 500 intents
every ``renew_every``, one claim statement per claiming round (on SQLite a SELECT first, and no
write when nothing is free), and on PostgreSQL two dedicated connections per process (LISTEN,
and NOTIFY when ``run_here=False`` or at close) besides the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from reactive.callables import positional_arity
from reactive.errors import ModelError
from reactive.event_codec import event_from_json, event_to_json
from reactive.model import Entity, Relation, record_name
from storage import (
    Field,
    Index,
    Lease,
    Listening,
    MatchExp,
    MutationEvent,
    RecordType,
    Session,
)

if TYPE_CHECKING:
    from reactive.controller import Controller

log = logging.getLogger("reactive.side_effects")

SIDE_EFFECT_RECORD = "_SideEffect_"
SIDE_EFFECT_RECORD_TYPE = RecordType(
    SIDE_EFFECT_RECORD,
    [
        Field("name"),
        Field("key"),
        Field("status"),
        Field("attempts", "number"),
        Field("last_error"),
        Field("event", "json"),
        Field("lease_owner"),
        Field("lease_until", "number"),
    ],
    [Index(("status",))],
)
SIDE_EFFECT_CHANNEL = "side_effects"
"""The wake-up channel (see :meth:`storage.abc.Storage.notify`): intents nobody owns were
committed or released."""
_BATCH = 500  # intents per statement (renewals, removals) and per claiming transaction
_MAX_INTERVAL = 3600.0


def _on(value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if item not in ("create", "update", "delete"):
            raise ModelError(f"side effect on= takes create, update, delete; got {item!r}")
    return items


@attrs.define(eq=False)
class RecordMutationSideEffect:
    """Run ``content(event, controller)`` (async) after commit, once per matching event.

    ``content`` may take a third argument, a :class:`SideEffectRun` with the stable
    ``idempotency_key`` and the attempt number. A handler that raises is retried up to
    ``max_attempts`` times, waiting a random time up to ``backoff * 2**(attempt-1)`` seconds
    (capped at ``max_backoff``) in between.
    """

    name: str
    record: Entity | Relation | str
    content: Callable[..., Awaitable[Any]]
    on: tuple[str, ...] = attrs.field(default=("create", "update", "delete"), converter=_on)
    max_attempts: int = 5
    backoff: float = 0.05
    max_backoff: float = 30.0
    _with_run: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not callable(self.content):
            raise ModelError(f"side effect {self.name!r}: content must be an async function")
        if self.max_attempts < 1:
            raise ModelError(f"side effect {self.name!r}: max_attempts must be at least 1")
        arity = positional_arity(self.content)
        self._with_run = arity is None or arity >= 3

    @property
    def record_name(self) -> str:
        return record_name(self.record)

    def idempotency_key(self, event: MutationEvent) -> str:
        """Stable across retries and restarts: side effect, record and (for creates) its id."""
        base = f"{self.name}:{event.record_name}:{event.record.get('id')}"
        return base if event.type == "create" else f"{base}:{event.type}"


@attrs.frozen
class SideEffectRun:
    """What a handler knows about its run."""

    name: str
    idempotency_key: str
    attempt: int


@attrs.frozen
class SideEffectRecord:
    """A pending or dead side effect, as the query API shows it."""

    id: Any
    name: str
    key: str
    status: str
    attempts: int
    last_error: str | None
    event: MutationEvent
    lease_owner: str | None = None
    lease_until: float | None = None


def _interval(name: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None:
            return
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not 0 < value <= _MAX_INTERVAL:
            raise ModelError(
                f"SideEffectLeases.{name} must be a number of seconds above 0 and at most "
                f"{_MAX_INTERVAL:g}, got {value!r}"
            )

    return check


@attrs.frozen
class SideEffectLeases:
    """How a queue owns the intents it runs (see the module docstring).

    ``duration``: seconds an intent stays owned without a renewal; a process that dies holds
    its intents this long before another takes them over. ``renew_every``: seconds between
    renewals (default a third of ``duration``; must be shorter). ``reclaim_every``: seconds
    between looks for intents whose lease expired while this process runs (the backstop of
    the wake-ups). ``clock``: seconds since the epoch, the lease clock on databases without
    one of their own (SQLite: inject a fake one in tests; processes sharing the file need
    clocks that agree to well within ``duration``); on PostgreSQL the server's clock is used
    and this one is ignored. ``run_here``: False for a process that writes intents and hands
    them to the others (inserted unowned, announced after commit; it runs and claims none).
    ``max_held``: the most intents this queue holds at once through claims (None: batches of
    500); a bound spreads a backlog over the claiming processes.
    """

    duration: float = attrs.field(default=30.0, validator=_interval("duration"))
    renew_every: float | None = attrs.field(default=None, validator=_interval("renew_every"))
    reclaim_every: float = attrs.field(default=10.0, validator=_interval("reclaim_every"))
    clock: Callable[[], float] = time.time
    run_here: bool = True
    max_held: int | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.run_here, bool):
            raise ModelError(
                f"SideEffectLeases.run_here must be True or False, got {self.run_here!r}"
            )
        if self.max_held is not None and (
            isinstance(self.max_held, bool)
            or not isinstance(self.max_held, int)
            or self.max_held < 1
        ):
            raise ModelError(
                f"SideEffectLeases.max_held must be a positive int or None, got {self.max_held!r}"
            )
        if self.renew_every is not None and self.renew_every >= self.duration:
            raise ModelError(
                f"SideEffectLeases.renew_every ({self.renew_every:g} s) must be shorter than "
                f"duration ({self.duration:g} s), or a held lease expires between renewals"
            )
        if not callable(self.clock):
            raise ModelError(f"SideEffectLeases.clock must be a function, got {self.clock!r}")

    @property
    def renew_interval(self) -> float:
        return self.renew_every if self.renew_every is not None else self.duration / 3


def _owner_id() -> str:
    """Unique per queue: the host and pid say where it runs, the random part tells apart two
    queues of one process (and a pid reused after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


def _batches(ids: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


class SideEffectQueue:
    """Schedules, retries, parks and re-runs side effects for one controller, holding leases
    on the intents it runs (see the module docstring)."""

    def __init__(
        self,
        controller: Controller,
        effects: Iterable[RecordMutationSideEffect],
        concurrency: int = 64,
        leases: SideEffectLeases | None = None,
    ):
        self._controller = controller
        self.effects = list(effects)
        names = [e.name for e in self.effects]
        if len(set(names)) != len(names):
            raise ModelError(f"side effect names must be unique: {names}")
        if leases is not None and not isinstance(leases, SideEffectLeases):
            raise ModelError(f"side effect leases must be SideEffectLeases, got {leases!r}")
        self.leases = leases or SideEffectLeases()
        #: This queue's lease owner id: ``host:pid:random``.
        self.owner = _owner_id()
        self._by_route: dict[tuple[str, str], list[RecordMutationSideEffect]] = {}
        for effect in self.effects:
            for kind in effect.on:
                self._by_route.setdefault((effect.record_name, kind), []).append(effect)
        self._by_name = {e.name: e for e in self.effects}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._semaphore = asyncio.Semaphore(concurrency)
        self._closed = False
        self._held: set[Any] = set()  # intents this queue owns and is answerable for
        self._done: list[Any] = []
        self._flush_scheduled = False
        self._flush_failures = 0
        self._wakeup = asyncio.Event()  # set: claim now (a notification, or room freed)
        self._more = False  # the last claim was full: more intents may be free
        self._listening: Listening | None = None

    def check(self, known_records: Iterable[str]) -> None:
        known = set(known_records)
        for effect in self.effects:
            if effect.record_name not in known:
                raise ModelError(
                    f"side effect {effect.name!r} watches unknown record {effect.record_name!r}"
                )

    # -- inside the write transaction --------------------------------------------------------

    def write_intents(
        self,
        session: Session,
        events: list[MutationEvent],
        public: Callable[[MutationEvent], MutationEvent] = lambda e: e,
    ) -> dict[int, list[tuple[RecordMutationSideEffect, Any]]]:
        """Store an intent for every create side effect the events trigger (same transaction),
        leased to this queue.

        Returns, per event position, the (side effect, intent id) pairs."""
        intents: dict[int, list[tuple[RecordMutationSideEffect, Any]]] = {}
        if not self._by_route:
            return intents
        lease = None
        for position, event in enumerate(events):
            if event.type != "create":
                continue
            for effect in self._by_route.get((event.record_name, "create"), ()):
                values = {
                    "name": effect.name,
                    "key": effect.idempotency_key(event),
                    "status": "pending",
                    "attempts": 0,
                    "event": event_to_json(public(event)),
                }
                if not self.leases.run_here:
                    # Left to the processes that claim: no owner, and nothing runs here.
                    session.insert_internal(SIDE_EFFECT_RECORD, values)
                    continue
                if lease is None:
                    lease = self._lease()
                intent_id = session.insert_leased(SIDE_EFFECT_RECORD, values, lease)
                intents.setdefault(position, []).append((effect, intent_id))
        return intents

    def _lease(self) -> Lease:
        """A lease of this queue from now: on the database's clock where it has one (the
        queue's ``clock`` is read, and used, only where it has none)."""
        return Lease(self.owner, self.leases.duration, self.leases.clock())

    # -- after commit ------------------------------------------------------------------------

    def after_commit(
        self,
        events: list[MutationEvent],
        intents: dict[int, list[tuple[RecordMutationSideEffect, Any]]],
    ) -> None:
        if not self._by_route:
            return
        if not self.leases.run_here and any(
            event.type == "create" and (event.record_name, "create") in self._by_route
            for event in events
        ):
            # Committed intents nobody owns yet: wake the claiming processes (after the
            # commit, coalesced, never inside the transaction).
            self._wake_claimers()
        for position, event in enumerate(events):
            if event.type == "create":
                for effect, intent_id in intents.get(position, ()):
                    self._start(effect, event, intent_id, 0)
            else:
                for effect in self._by_route.get((event.record_name, event.type), ()):
                    self._start(effect, event, None, 0)

    def _start(
        self, effect: RecordMutationSideEffect, event: MutationEvent, intent_id: Any, attempts: int
    ) -> None:
        if self._closed:
            return  # its lease expires and another process (or the next start) runs it
        if intent_id is not None:
            self._held.add(intent_id)
        self._spawn(self._run(effect, event, intent_id, attempts), intent_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], intent_id: Any = None) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._unexpected_end(t, intent_id))

    def _unexpected_end(self, task: asyncio.Task[None], intent_id: Any) -> None:
        """The last guard: a task ended by an exception its own code did not handle (a bug).
        It is logged here, once, and its intent is let go, so that its lease expires and a
        reclaim runs it again."""
        if task.cancelled() or task.exception() is None:
            return
        if intent_id is not None:
            self._held.discard(intent_id)
        log.error(
            "side effect task ended unexpectedly; intent %r is left to be reclaimed once its "
            "lease expires",
            intent_id,
            exc_info=task.exception(),
        )

    async def _run(
        self, effect: RecordMutationSideEffect, event: MutationEvent, intent_id: Any, attempts: int
    ) -> None:
        key = effect.idempotency_key(event)
        while True:
            attempts += 1
            try:
                async with self._semaphore:
                    if effect._with_run:
                        outcome = effect.content(
                            event, self._controller, SideEffectRun(effect.name, key, attempts)
                        )
                    else:
                        outcome = effect.content(event, self._controller)
                    if inspect.isawaitable(outcome):
                        await outcome
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if attempts >= effect.max_attempts:
                    await self._park(effect, event, intent_id, key, attempts, error)
                    return
                note = ""
                if intent_id is not None:
                    try:
                        kept = await self._record_attempt(intent_id, attempts, error)
                    except Exception as record_error:
                        # The retry still happens; the stored count catches up at the next
                        # write (a restart counts from the last stored attempt).
                        note = f" (the attempt could not be recorded: {record_error})"
                    else:
                        if not kept:
                            self._let_go(effect, intent_id, "recording an attempt")
                            return
                cap = min(effect.max_backoff, effect.backoff * 2 ** (attempts - 1))
                log.warning(
                    "side effect %s attempt %d failed, will retry: %s%s",
                    effect.name,
                    attempts,
                    error,
                    note,
                )
                await asyncio.sleep(random.uniform(0, cap))
                continue
            if intent_id is not None:
                self._complete(intent_id)
            return

    def _let_go(self, effect: RecordMutationSideEffect, intent_id: Any, doing: str) -> None:
        self._held.discard(intent_id)
        log.warning(
            "side effect %s: lease on intent %r was lost (another process owns it now) while %s; "
            "this process leaves it to that owner",
            effect.name,
            intent_id,
            doing,
        )

    def _complete(self, intent_id: Any) -> None:
        """Remove a finished intent. Completions arriving in the same loop turn share one
        transaction; one lost in a crash only means the handler runs again (at-least-once)."""
        self._done.append(intent_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._flush())

    async def _flush(self, delay: float = 0.0) -> None:
        # Let the other handlers finishing in this turn join the batch (or back off).
        await asyncio.sleep(delay)
        self._flush_scheduled = False
        done, self._done = self._done, []
        if not done:
            return
        removed = 0
        left = done  # the slices not removed yet
        try:
            # One fenced DELETE per slice of the batch, each a transaction of its own: a lone
            # statement needs no BEGIN/COMMIT on PostgreSQL, and a slice lost in a crash only
            # means its handlers run again.
            backend = self._controller.backend
            while left:
                batch, rest = left[:_BATCH], left[_BATCH:]
                match = (
                    self._fence(batch[0])
                    if len(batch) == 1
                    else MatchExp.atom("id", "in", batch) & {"lease_owner": self.owner}
                )
                removed += await backend.delete_internal_where(SIDE_EFFECT_RECORD, match)
                self._held.difference_update(batch)
                left = rest
        except Exception as exc:
            # The handlers finished; only the removal failed. Kept held (renewed) and retried.
            self._done = left + self._done
            self._flush_failures += 1
            wait = min(30.0, 0.05 * 2 ** min(self._flush_failures, 10))
            if self._flush_failures == 1:
                log.warning(
                    "could not remove %d finished side effect intents, retrying: %s",
                    len(left),
                    exc,
                )
            else:
                log.debug("removing finished intents failed again: %s", exc)
            if not self._closed and not self._flush_scheduled:
                self._flush_scheduled = True
                self._spawn(self._flush(wait))
            return
        self._flush_failures = 0
        self._held.difference_update(done)
        if self._more:
            self._wake()  # room freed here while intents wait: claim them now
        if removed < len(done):
            log.info(
                "%d finished side effect intents had passed to another process (lease lost); "
                "that owner removes them",
                len(done) - removed,
            )

    def _fence(self, intent_id: Any) -> dict[str, Any]:
        """The match of one intent while this queue owns it: writes through it are fenced."""
        return {"id": intent_id, "lease_owner": self.owner}

    async def _record_attempt(self, intent_id: Any, attempts: int, error: str) -> bool:
        """Store the attempt count; False when the lease is no longer this queue's."""
        values = {"attempts": attempts, "last_error": error}
        written = await self._controller.backend.run(
            lambda s: s.write_internal_where(SIDE_EFFECT_RECORD, self._fence(intent_id), values)
        )
        return bool(written)

    async def _park(
        self,
        effect: RecordMutationSideEffect,
        event: MutationEvent,
        intent_id: Any,
        key: str,
        attempts: int,
        error: str,
    ) -> None:
        """Store the side effect as dead, retrying (with backoff, lease renewed) until the
        storage takes it: a dead side effect is never only in memory for long."""
        values = {
            "status": "dead",
            "attempts": attempts,
            "last_error": error,
            "lease_owner": None,
            "lease_until": None,
        }

        def park(session: Session) -> int:
            if intent_id is not None:
                return session.write_internal_where(
                    SIDE_EFFECT_RECORD, self._fence(intent_id), values
                )
            session.insert_internal(
                SIDE_EFFECT_RECORD,
                {"name": effect.name, "key": key, "event": event_to_json(event), **values},
            )
            return 1

        failures = 0
        while True:
            try:
                parked = await self._controller.backend.run(park)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.error(
                        "side effect %s is dead after %d attempts (%s) but could not be parked, "
                        "retrying: %s",
                        effect.name,
                        attempts,
                        error,
                        exc,
                    )
                else:
                    log.debug("parking %s failed again: %s", effect.name, exc)
                cap = min(effect.max_backoff, effect.backoff * 2 ** min(failures, 20))
                await asyncio.sleep(random.uniform(cap / 2, cap))
                continue
            break
        if not parked:
            self._let_go(effect, intent_id, "parking it as dead")
            return
        self._held.discard(intent_id)
        if failures:
            log.info("side effect %s parked as dead (after %d failed tries)", effect.name, failures)
        else:
            log.error(
                "side effect %s parked as dead after %d attempts: %s", effect.name, attempts, error
            )

    # -- leases: renewal and reclaim ---------------------------------------------------------

    async def renew(self) -> int:
        """Extend the lease of every intent this queue holds; returns how many it still holds.

        An intent another process took over meanwhile (this one was held up past its lease) is
        let go: its owner decides now, and this queue's writes to it are fenced."""
        held = list(self._held)
        if not held:
            return 0
        lease = self._lease()

        def body(session: Session) -> tuple[int, set[Any]]:
            renewed = 0
            for batch in _batches(held):
                renewed += session.write_leased(
                    SIDE_EFFECT_RECORD,
                    MatchExp.atom("id", "in", batch) & {"lease_owner": self.owner},
                    {},
                    lease,
                )
            if renewed == len(held):
                return renewed, set()
            mine = {
                row["id"]
                for batch in _batches(held)
                for row in session.find(
                    SIDE_EFFECT_RECORD,
                    MatchExp.atom("id", "in", batch) & {"lease_owner": self.owner},
                )
            }
            return renewed, set(held) - mine

        renewed, lost = await self._controller.backend.run(body)
        # Intents finished and removed while the renewal ran (its transaction interleaves with
        # the removal's on a backend that runs several at once) were not lost.
        lost &= self._held
        if lost:
            self._held.difference_update(lost)
            log.warning(
                "leases on %d side effect intents were lost (this process was held up past "
                "their lease); their new owners run them",
                len(lost),
            )
        return renewed

    async def reclaim(self, limit: int | None = None) -> int:
        """Take over pending intents of declared side effects that nobody owns or whose lease
        expired (their process died), at most ``limit`` (default: a batch of 500, or the room
        ``max_held`` leaves), and start them; returns how many.

        One claim statement through the storage (:meth:`storage.abc.Storage.claim`): of
        several processes claiming at once each intent goes to exactly one, on the database's
        clock (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, ``clock_timestamp()``)."""
        if self._closed or not self._by_name or not self.leases.run_here:
            return 0
        room = self._room() if limit is None else limit
        if room <= 0:
            self._more = True  # claimed again once intents held here finish
            return 0
        names = sorted(self._by_name)
        open_ = MatchExp.atom("status", "=", "pending") & MatchExp.atom("name", "in", names)
        rows = await self._controller.backend.claim(
            SIDE_EFFECT_RECORD,
            open_,
            self._lease(),
            limit=room,
            fields=["name", "attempts", "event"],
        )
        self._more = len(rows) == room
        for row in rows:
            if row["id"] in self._held:
                continue  # still running here after its lease lapsed: the claim renewed it
            effect = self._by_name[row["name"]]
            attempts = int(row["attempts"] or 0)
            try:
                event = event_from_json(row["event"])
            except Exception as exc:
                # Unreadable: it can never run; parked as dead with the reason.
                self._held.add(row["id"])
                unreadable = f"the stored event cannot be read: {type(exc).__name__}: {exc}"
                placeholder = MutationEvent(effect.record_name, "create", {})
                self._spawn(
                    self._park(effect, placeholder, row["id"], "", attempts, unreadable),
                    row["id"],
                )
                continue
            self._start(effect, event, row["id"], attempts)
        return len(rows)

    def _room(self) -> int:
        """How many intents a claim may take now (see ``SideEffectLeases.max_held``)."""
        if self.leases.max_held is None:
            return _BATCH
        return min(_BATCH, self.leases.max_held - len(self._held))

    async def _claim_rounds(self) -> int:
        """Claim until nothing more is free (or no room is left); returns how many."""
        total = 0
        while True:
            claimed = await self.reclaim()
            total += claimed
            if not claimed or not self._more:
                return total

    async def _claim_forever(self) -> None:
        """Claim at every wake-up (a notification, room freed here) and at least every
        ``reclaim_every`` seconds (the backstop: a notification is only a hint, and expired
        leases announce nothing). A failure is logged once per streak."""
        failures = 0
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.leases.reclaim_every)
            self._wakeup.clear()
            try:
                await self._claim_rounds()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("side effect leases: claiming failed, will retry: %s", exc)
                else:
                    log.debug("side effect leases: claiming failed again: %s", exc)
            else:
                failures = 0

    def _wake(self) -> None:
        """A notification, or room freed here: claim now rather than at the next round."""
        self._wakeup.set()

    def _wake_claimers(self) -> None:
        """Tell every claiming process (this one too) that intents nobody owns were committed."""
        self._spawn(self._notify())

    async def _notify(self) -> None:
        try:
            await self._controller.backend.notify(SIDE_EFFECT_CHANNEL)
        except Exception as exc:  # a hint only: the claimers' polling finds the intents
            log.debug("side effect notification not sent: %s", exc)

    async def _every(
        self, interval: Callable[[], float], work: Callable[[], Awaitable[int]]
    ) -> None:
        """Run ``work`` every ``interval()`` seconds until close; a failure is logged once per
        streak and the next round tries again."""
        failures = 0
        while not self._closed:
            await asyncio.sleep(interval())
            try:
                await work()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("side effect leases: %s failed, will retry: %s", work.__name__, exc)
                else:
                    log.debug("side effect leases: %s failed again: %s", work.__name__, exc)
            else:
                failures = 0

    # -- recovery, queries, re-runs ----------------------------------------------------------

    async def recover(self) -> int:
        """Start the lease renewal and reclaim loops, and start every pending intent nobody owns
        or whose lease expired (left by a process that stopped); returns how many.

        Intents another live process holds are left to it; if that process dies, the reclaim
        loop takes them over once their lease expires."""
        if not self._by_name or not self.leases.run_here or self._closed:
            return 0
        if not self._loops:
            loop = asyncio.get_running_loop()
            self._loops = [
                loop.create_task(self._every(lambda: self.leases.renew_interval, self.renew)),
                loop.create_task(self._claim_forever()),
            ]
            try:
                self._listening = await self._controller.backend.listen(
                    SIDE_EFFECT_CHANNEL, self._wake
                )
            except Exception as exc:
                log.warning(
                    "side effects: cannot listen for notifications (claiming every %g s "
                    "instead): %s",
                    self.leases.reclaim_every,
                    exc,
                )
        undeclared = await self._controller.backend.find(
            SIDE_EFFECT_RECORD,
            MatchExp.atom("status", "=", "pending")
            & MatchExp.atom("name", "not in", sorted(self._by_name)),
            ["name"],
        )
        for name in sorted({row["name"] for row in undeclared}):
            log.error("pending side effect %s is no longer declared; left pending", name)
        return await self._claim_rounds()

    async def pending(self) -> list[SideEffectRecord]:
        """Side effects stored as pending (running now, waiting for a retry, or left by a crash)."""
        return await self._rows("pending")

    async def dead(self) -> list[SideEffectRecord]:
        """Side effects that exhausted their attempts, with their last error."""
        return await self._rows("dead")

    async def rerun(self, record_id: Any) -> None:
        """Run a dead side effect again (its attempts start from zero), leased to this queue."""
        rows = [r for r in await self._rows("dead") if r.id == record_id]
        if not rows:
            raise LookupError(f"no dead side effect with id {record_id!r}")
        row = rows[0]
        effect = self._by_name.get(row.name)
        if effect is None:
            raise LookupError(f"side effect {row.name!r} is no longer declared")
        dead = {"id": record_id, "status": "dead"}
        again = {"status": "pending", "attempts": 0}
        if self.leases.run_here:
            lease = self._lease()
            taken = await self._controller.backend.run(
                lambda s: s.write_leased(SIDE_EFFECT_RECORD, dead, again, lease)
            )
        else:  # left to the claiming processes, as this process's new intents are
            taken = await self._controller.backend.run(
                lambda s: s.write_internal_where(SIDE_EFFECT_RECORD, dead, again)
            )
        if not taken:
            raise LookupError(f"side effect {record_id!r} is no longer dead (re-run elsewhere)")
        if self.leases.run_here:
            self._start(effect, row.event, record_id, 0)
        else:
            self._wake_claimers()

    async def _rows(self, status: str) -> list[SideEffectRecord]:
        rows = await self._controller.backend.find(
            SIDE_EFFECT_RECORD, {"status": status}, ["*"], order_by={"id": "asc"}
        )
        return [
            SideEffectRecord(
                r["id"],
                r["name"],
                r["key"],
                r["status"],
                int(r["attempts"] or 0),
                r["last_error"],
                event_from_json(r["event"]),
                r["lease_owner"],
                r["lease_until"],
            )
            for r in rows
        ]

    async def drain(self) -> None:
        """Wait until every side effect started so far (and its retries) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop: running handlers are cancelled; their intents stay pending, and their leases
        are released so that another process (or the next start) runs them at once."""
        self._closed = True
        listening, self._listening = self._listening, None
        if listening is not None:
            try:
                await listening.close()
            except Exception as exc:
                log.debug("side effects: closing the listener failed: %s", exc)
        tasks = [*self._loops, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._done:  # finished handlers whose intents were not removed yet
            await self._flush()
        held = list(self._held)
        self._held.clear()
        if not held:
            return
        released = {"lease_owner": None, "lease_until": None}
        try:
            await self._controller.backend.run(
                lambda s: [
                    s.write_internal_where(
                        SIDE_EFFECT_RECORD,
                        MatchExp.atom("id", "in", batch) & {"lease_owner": self.owner},
                        released,
                    )
                    for batch in _batches(held)
                ]
            )
        except Exception as exc:
            log.warning(
                "could not release %d side effect leases at close (they expire in %g s): %s",
                len(held),
                self.leases.duration,
                exc,
            )
            return
        # Released intents are free now: wake the processes that claim (after the commit).
        await self._notify()
