"""The Controller: the model compiled onto a storage, with dispatch, streams and side effects.

Streams. ``controller.mutations`` delivers committed events on the event loop, in one order;
``controller.stream(record, type)`` filters it. By default (one process) they are this
process's own events, published right after each commit, in commit order. With
``outbox=True`` they are the committed events of every process writing to the database, read
from the outbox (see :mod:`reactive.outbox`): each exactly once, in the same order in every
process, shortly after commit (also for this process's own events). The outbox costs one
statement per write transaction on PostgreSQL, so it is opt-in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar, cast

import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject

from reactive import evolution
from reactive.callables import adapt
from reactive.context import LookupWarnings, Match, RecordRef, TransactionContext
from reactive.engine import DICTIONARY_RECORD, Engine
from reactive.errors import ComputationError, ModelError, ReactiveError, describe
from reactive.interaction import (
    INTERACTION_EVENT,
    DispatchError,
    DispatchResult,
    Interaction,
    Rejected,
    check_conditions,
    validate_payload,
)
from reactive.manifest import MANIFEST_RECORD, MANIFEST_RECORD_TYPE
from reactive.migration_plan import MigrationPlan
from reactive.model import Dictionary, Entity, Relation, record_name
from reactive.outbox import Follower, OutboxEvent, OutboxReader, entries
from reactive.recompute import VerifyReport
from reactive.side_effects import (
    SIDE_EFFECT_RECORD,
    SIDE_EFFECT_RECORD_TYPE,
    RecordMutationSideEffect,
    SideEffectLeases,
    SideEffectQueue,
)
from reactive.view_reads import ViewReads
from storage import (
    FieldTypeError,
    InvalidDataError,
    MissingReferenceError,
    MutationEvent,
    NonNullViolationError,
    Record,
    Session,
    Storage,
    StorageError,
    UniqueViolationError,
)
from storage.abc import Outbox, OutboxSession

log = logging.getLogger("reactive.controller")
T = TypeVar("T")
MigrateMode: TypeAlias = Literal["safe", "apply"]

_UNPUBLISHED = frozenset({SIDE_EFFECT_RECORD, MANIFEST_RECORD})


class Controller:
    """The engine bound to one storage.

    >>> controller = Controller(SQLiteStorage("app.db"), entities=[...], relations=[...])
    >>> await controller.setup()
    >>> post = await controller.storage.create("Post", {"title": "hi"})

    Two names for two things: ``controller.storage`` is the facade users read and write
    through (:class:`ControllerStorage`: writes run the computations, publish events and start
    side effects); ``controller.backend`` is the storage backend it was given (the
    :class:`storage.Storage` passed as ``storage``), whose own writes run no computation: for
    setup, transactions and operations, not for application data.

    ``outbox=True`` makes ``mutations`` and ``stream`` the committed events of every process
    on the database, read from the storage's outbox (see :mod:`reactive.outbox`);
    ``outbox_poll`` is how often (seconds) a follower looks without a wake-up.
    """

    def __init__(
        self,
        storage: Storage,
        entities: Iterable[Entity] = (),
        relations: Iterable[Relation] = (),
        dictionaries: Iterable[Dictionary] = (),
        interactions: Iterable[Interaction] = (),
        side_effects: Iterable[RecordMutationSideEffect] = (),
        *,
        side_effect_concurrency: int = 64,
        side_effect_leases: SideEffectLeases | None = None,
        outbox: bool = False,
        outbox_poll: float = 1.0,
    ) -> None:
        if not isinstance(outbox, bool):
            raise ModelError(f"Controller(outbox=...) must be True or False, got {outbox!r}")
        if outbox and not isinstance(storage, Outbox):
            raise ModelError(
                f"Controller(outbox=True) needs a storage with an outbox (storage.abc.Outbox); "
                f"{type(storage).__name__} has none"
            )
        if (
            isinstance(outbox_poll, bool)
            or not isinstance(outbox_poll, int | float)
            or not 0 < outbox_poll <= 3600
        ):
            raise ModelError(
                f"Controller(outbox_poll=...) must be seconds in (0, 3600], got {outbox_poll!r}"
            )
        self.backend: Storage = storage
        """The storage backend given as ``storage`` (writes through it bypass the engine)."""
        self.engine = Engine(
            entities, relations, dictionaries, [SIDE_EFFECT_RECORD_TYPE, MANIFEST_RECORD_TYPE]
        )
        self.interactions: dict[str, Interaction] = {}
        for interaction in interactions:
            if interaction.name in self.interactions:
                raise ModelError(f"interaction {interaction.name!r} is declared twice")
            self.interactions[interaction.name] = interaction
        for handle in self.engine.handles:
            for trigger in handle.declared_triggers():
                if trigger.interaction is not None and trigger.interaction not in self.interactions:
                    known = ", ".join(sorted(self.interactions)) or "none"
                    raise ModelError(
                        f"{handle.name}: a trigger names interaction {trigger.interaction!r}, "
                        f"which is not among the controller's interactions (known: {known})"
                    )
        self.side_effects = SideEffectQueue(
            self, side_effects, side_effect_concurrency, side_effect_leases
        )
        self.side_effects.check([*self.engine.schema.records, *self.engine.views])
        self.storage = ControllerStorage(self)
        """The facade for application reads and writes (the same methods as ``ctx.storage``,
        async)."""
        self._lookup_warnings = LookupWarnings(self.engine)
        self._subject: Subject[MutationEvent] = _IsolatingSubject()
        self._ready = False
        self.outbox = outbox
        """Whether the streams are the outbox's: every process's events (see the module)."""
        self._outbox_poll = float(outbox_poll)
        self._follower: Follower | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def setup(self, install: bool = True, migrate: MigrateMode = "safe") -> None:
        """Create (``install=True``) or attach to the tables, write initial dictionary values,
        and run the side effects a previous process left pending (those no live process holds
        a lease on; see :class:`SideEffectLeases`).

        With ``install``, the database is brought to the declared model first, in one
        transaction (see :meth:`plan_migration`): new tables, columns and indexes, and a
        backfill of every added or changed computation from the stored data. Unsafe changes
        raise :class:`~reactive.MigrationError` and change nothing, unless
        ``migrate="apply"``, which applies them (dropping the data they name). Without
        ``install``, a database whose stored model differs from the declared one is refused
        (MigrationError): only ``setup()`` with ``install`` migrates."""
        if migrate not in ("safe", "apply"):
            raise ValueError(f"setup(migrate=...) must be 'safe' or 'apply', got {migrate!r}")
        if install:
            await evolution.bring_up_to_date(self, allow_destructive=migrate == "apply")
        else:
            await self.backend.setup(self.engine.schema, install)
            await evolution.check_current(self)
        await self._start_outbox()
        self._ready = True
        await self.side_effects.recover()

    # -- model evolution (reactive.evolution) ------------------------------------------------

    async def plan_migration(self) -> MigrationPlan:
        """What ``setup()`` would change to bring the database to the declared model: ``plan.
        changes`` (each with ``kind``, ``target``, ``safe``, ``action``, ``fix``) and
        ``str(plan)``. Reads only."""
        return await evolution.plan_migration(self)

    async def migrate(
        self, plan: MigrationPlan | None = None, allow_destructive: bool = False
    ) -> MigrationPlan:
        """Apply ``plan`` (a fresh one when None) in one transaction; with
        ``allow_destructive`` its unsafe changes too. Then the controller is set up (as by
        ``setup()``). Returns the plan applied."""
        if plan is None:
            plan = await evolution.plan_migration(self)
        await evolution.migrate(self, plan, allow_destructive)
        if not self._ready:
            await self._start_outbox()
            self._ready = True
            await self.side_effects.recover()
        return plan

    async def recompute(self, target: str | None = None, *, batch_size: int = 1000) -> list[str]:
        """Recompute from the stored data: every computation, or ``"Record.field"`` or a
        dictionary's name (with whatever reads it), in batches of ``batch_size`` host records,
        each its own transaction. Returns the computations recomputed, in order."""
        return await evolution.recompute(self, target, batch_size)

    async def verify(self, *, batch_size: int = 1000) -> VerifyReport:
        """Recompute every computation without writing and report the stored values that
        differ (``report.ok``, ``report.differences``), in read transactions of
        ``batch_size`` host records each; a stored state that is not one of its
        StateMachine's declared states is a difference too."""
        return await evolution.verify(self, batch_size)

    async def close(self) -> None:
        """Stop side effects (pending ones resume at the next setup) and close the storage."""
        await self.side_effects.close()
        follower, self._follower = self._follower, None
        if follower is not None:
            await follower.close()
        self._subject.on_completed()
        await self.backend.close()

    async def drain(self) -> None:
        """Wait until every side effect triggered so far has finished (or been parked)."""
        await self.side_effects.drain()

    # -- streams -----------------------------------------------------------------------------

    @property
    def mutations(self) -> reactivex.Observable[MutationEvent]:
        """Every committed mutation event, in commit order, delivered on the event loop.

        With ``outbox=True``: the committed events of every process, each an
        :class:`OutboxEvent` (with ``position`` and ``version``), in the outbox's order, the
        same in every process (see the module)."""
        return self._subject

    def stream(
        self, record: RecordRef, type: str | None = None
    ) -> reactivex.Observable[MutationEvent]:
        """Committed events of one record type (and optionally one event type)."""
        name = record_name(record)
        if name not in self.engine.schema.records and name not in self.engine.views:
            raise ModelError(f"stream: unknown record {name!r}")
        if type is not None and type not in ("create", "update", "delete"):
            raise ModelError(f"stream: type must be create, update or delete, got {type!r}")

        def wanted(event: MutationEvent) -> bool:
            return event.record_name == name and (type is None or event.type == type)

        return self._subject.pipe(ops.filter(wanted))

    async def outbox_reader(self, name: str) -> OutboxReader:
        """The durable outbox reader ``name`` (``outbox=True`` only): registered on first use
        and kept across processes and restarts, it starts after its stored cursor (see
        :class:`OutboxReader`)."""
        if not self.outbox or not isinstance(self.backend, Outbox):
            raise ModelError("outbox_reader needs Controller(..., outbox=True)")
        if not self._ready:
            raise ModelError("outbox_reader: await controller.setup() first")
        start = await self.backend.outbox_register(name, durable=True)
        return OutboxReader(self.backend, name, start.position, start.skip)

    async def _start_outbox(self) -> None:
        backend = self.backend
        if not self.outbox or self._follower is not None or not isinstance(backend, Outbox):
            return
        await backend.outbox_install()
        follower = Follower(backend, self._publish_outbox, self._outbox_poll)
        await follower.start()
        self._follower = follower

    def _publish_outbox(self, events: list[OutboxEvent]) -> None:
        self._publish(events)

    # -- transactions ------------------------------------------------------------------------

    async def transact(
        self, body: Callable[[TransactionContext], T], user: Any = None
    ) -> tuple[T, list[MutationEvent]]:
        """Run ``body(ctx)`` as one transaction with computations; publish and start side effects
        after commit. Returns the body's result and the committed events."""
        return await self._transact(body, user, True)

    async def _transact(
        self, body: Callable[[TransactionContext], T], user: Any, want_events: bool
    ) -> tuple[T, list[MutationEvent]]:
        public = self.engine.public_event
        follower = self._follower

        def unit(session: Session) -> tuple[T, list[MutationEvent], Any]:
            ctx = TransactionContext(self.engine, session, self, user, self._lookup_warnings)
            result = body(ctx)
            if ctx.error is not None:
                # A computation failed and the body caught the error: its write and the
                # derived values are half done, so the transaction must not commit.
                raise ctx.error
            events = [e for e in session.events if e.record_name not in _UNPUBLISHED]
            intents = self.side_effects.write_intents(session, events, public)
            if follower is not None and events:
                # Last in the body, outside any savepoint: a body run again (a retried
                # transaction) appends its events once, with the write that caused them.
                events = [public(e) for e in events]
                cast(OutboxSession, session).outbox_append(entries(events))
            return result, events, intents

        result, events, intents = await self.backend.run(unit)
        if follower is not None:
            # The events reach subscribers from the outbox, in its order, in every process.
            if events:
                follower.committed()
            self.side_effects.after_commit(events, intents)
            return result, events
        # Subscribers and side effects see events without computations' internal state;
        # nobody needs them when nothing listens and the caller does not ask.
        if want_events or self._subject.observers or self.side_effects.effects:
            events = [public(e) for e in events]
            self._publish(events)
            self.side_effects.after_commit(events, intents)
        return result, events

    def _publish(self, events: Sequence[MutationEvent]) -> None:
        if not self._subject.observers:
            return
        for event in events:
            try:
                self._subject.on_next(event)
            except Exception:
                log.exception(
                    "a mutations subscriber raised on %s %s; the write is committed",
                    event.type,
                    event.record_name,
                )

    # -- interactions ------------------------------------------------------------------------

    async def dispatch(
        self,
        interaction: Interaction | str,
        user: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> DispatchResult:
        """Validate and run an interaction; errors come back in ``result.error``."""
        found = self._interaction(interaction)
        if isinstance(found, DispatchResult):
            return found

        def body(ctx: TransactionContext) -> Any:
            checked = validate_payload(found, payload, ctx)
            event = {"interaction_name": found.name, "user": user, "payload": checked}
            check_conditions(found, event, ctx)
            record = ctx.create(INTERACTION_EVENT, event)
            if found.resolve is None:
                return {"id": record["id"]}
            resolve = adapt(found.resolve, 1, f"interaction {found.name} resolve")
            try:
                return resolve(record, ctx)
            except (ReactiveError, StorageError):
                raise  # a write made by resolve failed: reported as that failure
            except Exception as exc:
                raise Rejected(
                    DispatchError(
                        "resolve_error",
                        f"{found.name}: resolve raised {type(exc).__name__}: {exc}",
                        found.name,
                        {},
                        exc,
                    )
                ) from exc

        try:
            data, events = await self.transact(body, user)
        except Rejected as rejected:
            return DispatchResult(rejected.error)
        except ComputationError as exc:
            # A computation that wrote bad data reports the data's code (a Transform creating a
            # duplicate is not_unique); any other failure of it is a computation_error.
            cause = exc.cause
            code = _data_error_code(cause) if isinstance(cause, StorageError) else None
            return DispatchResult(
                DispatchError(
                    code or "computation_error",
                    str(exc),
                    found.name,
                    {"computation": exc.computation},
                    exc,
                )
            )
        except (StorageError, ReactiveError) as exc:
            return DispatchResult(
                DispatchError(_error_code(exc), describe(exc), found.name, {}, exc)
            )
        return DispatchResult(None, data, events)

    def _interaction(self, interaction: Interaction | str) -> Interaction | DispatchResult:
        name = interaction if isinstance(interaction, str) else interaction.name
        found = self.interactions.get(name)
        if found is None or (isinstance(interaction, Interaction) and found is not interaction):
            return DispatchResult(
                DispatchError(
                    "unknown_interaction",
                    f"unknown interaction {name!r} (known: {', '.join(sorted(self.interactions))})",
                    name,
                )
            )
        return found


class _IsolatingSubject(Subject[MutationEvent]):
    """A Subject whose subscribers cannot break each other: an exception raised by one is
    logged and the event still reaches the rest (and the raising one stays subscribed)."""

    def _on_next_core(self, value: MutationEvent) -> None:
        with self.lock:
            observers = self.observers.copy()
        for observer in observers:
            try:
                observer.on_next(value)
            except Exception:
                log.exception(
                    "a mutations subscriber raised on %s %s; the write is committed",
                    value.type,
                    value.record_name,
                )


# Stable codes for what was wrong with the data a dispatch wrote; other errors are named after
# their class (they are the application's own faults, answered 500 by the server).
_DATA_ERROR_CODES: tuple[tuple[type[StorageError], str], ...] = (
    (FieldTypeError, "invalid_value"),
    (InvalidDataError, "invalid_value"),
    (MissingReferenceError, "missing_reference"),
    (UniqueViolationError, "not_unique"),
    (NonNullViolationError, "missing_value"),
)


def _data_error_code(exc: BaseException) -> str | None:
    for kind, code in _DATA_ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return None


def _error_code(exc: Exception) -> str:
    code = _data_error_code(exc)
    if code is not None:
        return code
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class ControllerStorage:
    """``controller.storage``: async reads and writes; writes run the computations, publish
    their events and start side effects exactly like a dispatch."""

    def __init__(self, controller: Controller):
        self._controller = controller

    async def _write(self, body: Callable[[TransactionContext], T]) -> T:
        result, _ = await self._controller._transact(body, None, False)
        return result

    async def create(self, name: RecordRef, data: Mapping[str, Any]) -> Record:
        """Create a record; returns it with its ``id``."""
        return await self._write(lambda ctx: ctx.storage.create(name, data))

    async def update(self, name: RecordRef, match: Match, data: Mapping[str, Any]) -> list[Record]:
        """Update every matching record; returns their new values."""
        return await self._write(lambda ctx: ctx.storage.update(name, match, data))

    async def delete(self, name: RecordRef, match: Match) -> list[Record]:
        """Delete every matching record; returns what was deleted."""
        return await self._write(lambda ctx: ctx.storage.delete(name, match))

    async def find(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        rec = record_name(name)
        query = self._controller.engine.public_query(rec, attribute_query)
        if rec in self._controller.engine.views:
            return await self._views(lambda v: v.find(rec, match, query, order_by, limit, offset))
        return await self._controller.backend.find(rec, match, query, order_by, limit, offset)

    async def find_one(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        rec = record_name(name)
        query = self._controller.engine.public_query(rec, attribute_query)
        if rec in self._controller.engine.views:
            return await self._views(lambda v: v.find_one(rec, match, query, order_by))
        return await self._controller.backend.find_one(rec, match, query, order_by)

    async def count(self, name: RecordRef, match: Match = None) -> int:
        rec = record_name(name)
        if rec in self._controller.engine.views:
            return await self._views(lambda v: v.count(rec, match))
        return await self._controller.backend.count(rec, match)

    async def _views(self, read: Callable[[ViewReads], T]) -> T:
        """A read of a view (filtered or merged), in a read transaction of its own."""
        views = self._controller.engine.views
        return await self._controller.backend.run(
            lambda session: read(ViewReads(views, session.find, session.count)), write=False
        )

    async def get_dict(self, name: str) -> Any:
        """A dictionary's value (its default when never set)."""
        return await self._controller.backend.run(
            lambda session: TransactionContext(
                self._controller.engine, session, self._controller
            ).storage.get_dict(name),
            write=False,
        )

    async def set_dict(self, name: str, value: Any) -> None:
        """Set a dictionary's value; computations depending on it run."""
        await self._write(lambda ctx: ctx.storage.set_dict(name, value))


__all__ = ["DICTIONARY_RECORD", "INTERACTION_EVENT", "Controller", "ControllerStorage"]
