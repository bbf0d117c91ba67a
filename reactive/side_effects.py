"""Record mutation side effects: the place for I/O, run after commit.

Create side effects are durable: an intent row is written in the same transaction as the
record, and removed when the handler finishes. A controller that starts on the same database runs
the intents left pending (at-least-once; each run carries a stable idempotency key). A handler
that raises is retried with exponential backoff and full jitter, then parked as *dead* with its
error: visible through :class:`SideEffectQueue` and re-runnable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from reactive.callables import positional_arity
from reactive.errors import ModelError
from reactive.event_codec import event_from_json, event_to_json
from reactive.model import Entity, Relation, record_name
from storage import Field, Index, MutationEvent, RecordType, SQLiteSession

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
    ],
    [Index(("status",))],
)


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


class SideEffectQueue:
    """Schedules, retries, parks and re-runs side effects for one controller."""

    def __init__(
        self,
        controller: Controller,
        effects: Iterable[RecordMutationSideEffect],
        concurrency: int = 64,
    ):
        self._controller = controller
        self.effects = list(effects)
        names = [e.name for e in self.effects]
        if len(set(names)) != len(names):
            raise ModelError(f"side effect names must be unique: {names}")
        self._by_route: dict[tuple[str, str], list[RecordMutationSideEffect]] = {}
        for effect in self.effects:
            for kind in effect.on:
                self._by_route.setdefault((effect.record_name, kind), []).append(effect)
        self._by_name = {e.name: e for e in self.effects}
        self._tasks: set[asyncio.Task[None]] = set()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._closed = False
        self._done: list[Any] = []
        self._flush_scheduled = False

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
        session: SQLiteSession,
        events: list[MutationEvent],
        public: Callable[[MutationEvent], MutationEvent] = lambda e: e,
    ) -> dict[int, list[tuple[RecordMutationSideEffect, Any]]]:
        """Store an intent for every create side effect the events trigger (same transaction).

        Returns, per event position, the (side effect, intent id) pairs."""
        intents: dict[int, list[tuple[RecordMutationSideEffect, Any]]] = {}
        if not self._by_route:
            return intents
        for position, event in enumerate(events):
            if event.type != "create":
                continue
            for effect in self._by_route.get((event.record_name, "create"), ()):
                intent_id = session.insert_internal(
                    SIDE_EFFECT_RECORD,
                    {
                        "name": effect.name,
                        "key": effect.idempotency_key(event),
                        "status": "pending",
                        "attempts": 0,
                        "event": event_to_json(public(event)),
                    },
                )
                intents.setdefault(position, []).append((effect, intent_id))
        return intents

    # -- after commit ------------------------------------------------------------------------

    def after_commit(
        self,
        events: list[MutationEvent],
        intents: dict[int, list[tuple[RecordMutationSideEffect, Any]]],
    ) -> None:
        if not self._by_route:
            return
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
            return
        task = asyncio.get_running_loop().create_task(self._run(effect, event, intent_id, attempts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                log.warning("side effect %s attempt %d failed: %s", effect.name, attempts, error)
                if attempts >= effect.max_attempts:
                    await self._park(effect, event, intent_id, key, attempts, error)
                    return
                if intent_id is not None:
                    await self._record_attempt(intent_id, attempts, error)
                cap = min(effect.max_backoff, effect.backoff * 2 ** (attempts - 1))
                await asyncio.sleep(random.uniform(0, cap))
                continue
            if intent_id is not None:
                self._complete(intent_id)
            return

    def _complete(self, intent_id: Any) -> None:
        """Remove a finished intent. Completions arriving in the same loop turn share one
        transaction; one lost in a crash only means the handler runs again (at-least-once)."""
        self._done.append(intent_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other handlers finishing in this turn join the batch
        self._flush_scheduled = False
        done, self._done = self._done, []
        if done:

            def remove(session: SQLiteSession) -> None:
                for intent_id in done:
                    session.delete_internal(SIDE_EFFECT_RECORD, intent_id)

            await self._controller.backend.run(remove)

    async def _record_attempt(self, intent_id: Any, attempts: int, error: str) -> None:
        await self._controller.backend.run(
            lambda s: s.write_internal(
                SIDE_EFFECT_RECORD, intent_id, {"attempts": attempts, "last_error": error}
            )
        )

    async def _park(
        self,
        effect: RecordMutationSideEffect,
        event: MutationEvent,
        intent_id: Any,
        key: str,
        attempts: int,
        error: str,
    ) -> None:
        log.error(
            "side effect %s parked as dead after %d attempts: %s", effect.name, attempts, error
        )
        values = {"status": "dead", "attempts": attempts, "last_error": error}

        def park(session: SQLiteSession) -> None:
            if intent_id is not None:
                session.write_internal(SIDE_EFFECT_RECORD, intent_id, values)
            else:
                session.insert_internal(
                    SIDE_EFFECT_RECORD,
                    {"name": effect.name, "key": key, "event": event_to_json(event), **values},
                )

        await self._controller.backend.run(park)

    # -- recovery, queries, re-runs ----------------------------------------------------------

    async def recover(self) -> int:
        """Start every pending intent left by an earlier process; returns how many."""
        rows = await self._rows("pending")
        for row in rows:
            effect = self._by_name.get(row.name)
            if effect is None:
                log.error("pending side effect %s is no longer declared; left pending", row.name)
                continue
            self._start(effect, row.event, row.id, row.attempts)
        return len(rows)

    async def pending(self) -> list[SideEffectRecord]:
        """Side effects stored as pending (running now, waiting for a retry, or left by a crash)."""
        return await self._rows("pending")

    async def dead(self) -> list[SideEffectRecord]:
        """Side effects that exhausted their attempts, with their last error."""
        return await self._rows("dead")

    async def rerun(self, record_id: Any) -> None:
        """Run a dead side effect again (its attempts start from zero)."""
        rows = [r for r in await self._rows("dead") if r.id == record_id]
        if not rows:
            raise LookupError(f"no dead side effect with id {record_id!r}")
        row = rows[0]
        effect = self._by_name.get(row.name)
        if effect is None:
            raise LookupError(f"side effect {row.name!r} is no longer declared")
        await self._controller.backend.run(
            lambda s: s.write_internal(
                SIDE_EFFECT_RECORD, record_id, {"status": "pending", "attempts": 0}
            )
        )
        self._start(effect, row.event, record_id, 0)

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
            )
            for r in rows
        ]

    async def drain(self) -> None:
        """Wait until every side effect started so far (and its retries) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop: running handlers are cancelled; their intents stay pending for the next start."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._done:  # finished handlers whose intents were not removed yet
            self._flush_scheduled = True
            await self._flush()
