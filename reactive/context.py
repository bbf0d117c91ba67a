"""One write transaction of the engine: the context handed to computations and callbacks.

Users meet it as ``ctx``: ``ctx.storage`` is the synchronous face of the controller's storage
(the same methods as ``controller.storage``, run inside the current transaction; every write
through it runs the computations that depend on it before it returns), ``ctx.user``,
``ctx.controller``, ``ctx.events`` and ``ctx.savepoint()``.

The context is also the one home of the engine's own reads and writes (computation handles,
dispatch, recomputation and ``ctx.storage`` all go through it), so that its caches are used and
kept right:

- reads: :meth:`~TransactionContext.snapshot`, :meth:`~TransactionContext.get`,
  :meth:`~TransactionContext.find_one`, :meth:`~TransactionContext.dictionary_row` (each with
  its memory), ``find`` and ``count`` (the session's own: nothing to remember);
- writes, one verb per act: :meth:`~TransactionContext.create`,
  :meth:`~TransactionContext.update`, :meth:`~TransactionContext.delete` (mutation events; the
  computations run before they return), :meth:`~TransactionContext.apply_deltas` (an
  aggregate's running totals, added in the database), and for bookkeeping that is not data
  (a computation's per-item state, the manifest) :meth:`~TransactionContext.create_internal`,
  :meth:`~TransactionContext.update_internal`, :meth:`~TransactionContext.delete_internal`
  (no event; the caches forget what they touch). The engine's writes skip the checks of user
  writes (computed and internal fields); ``ctx.storage`` makes those checks first.

Costs: a record read by several computations in one transaction is read once (snapshots, kept
current by the transaction's events); an equality look-up is asked of the database once per
transaction until an event could change its answer; an update of a record whose snapshot is
held costs one statement and no read. ``ctx.session`` (the storage session) is left to the bulk
statements of recomputation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from reactive.engine import DICTIONARY_RECORD, Engine
from reactive.errors import ComputationError, CycleError, ModelError, describe
from reactive.model import HARD_DELETION_PROPERTY, Entity, Relation, record_name
from reactive.view_reads import ViewReads
from storage import Derived, MatchExp, MutationEvent, Record, Session, StorageError

Match = MatchExp | Mapping[str, Any] | None
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None)})
# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_SEQUENCES = (list, tuple)
_ENDS = frozenset({"source", "target"})
_NOTHING: AbstractContextManager[None] = nullcontext()  # reusable: enters and exits as nothing
RecordRef = Entity | Relation | str
Computed = Sequence[tuple[str, Callable[..., Any]]]

log = logging.getLogger("reactive.engine")


class LookupWarnings:
    """Warns once per (record, field) when code inside a transaction looks records up by
    fields no index starts with: every such look-up is a full scan (declare ``Property(...,
    index=True)``). Run-time memory, so the controller owns it, not the frozen model; bounded
    (match shapes may come from callers)."""

    LIMIT = 4096

    def __init__(self, model: Engine) -> None:
        self._model = model
        self._noted: set[tuple[str, str]] = set()
        self._checked: set[tuple[str, ...]] = set()

    def check(self, name: str, match: Mapping[str, Any]) -> None:
        """Note one look-up of ``name`` by the fields of ``match``."""
        shape = (name, *match)
        if shape in self._checked:
            return
        if len(self._checked) >= self.LIMIT:
            self._checked.clear()
        self._checked.add(shape)
        field = self._model.unindexed_lookup(name, match)
        if field is None or (name, field) in self._noted:
            return
        self._noted.add((name, field))
        log.warning(
            "%s is looked up by %s inside a transaction without an index: every look-up "
            "scans the table; declare Property(%r, index=True)",
            name,
            ", ".join(k for k in match if k != "id" and "." not in k),
            field,
        )


class TransactionContext:
    """State of one write transaction: the storage session, the caches, propagation depth, the
    first error. Made by the controller for every transaction; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        session: Session,
        controller: Any = None,
        user: Any = None,
        lookups: LookupWarnings | None = None,
    ):
        self.engine = engine
        self.session = session
        self.schema = engine.schema
        self.controller = controller
        self.user = user
        self.depth = 0
        self.trail: list[str] = []
        self.error: BaseException | None = None
        self._lookup_warnings = lookups
        # Reads with nothing to remember (a list may change with any write): the session's own,
        # or through the views when the model has some.
        self.views: ViewReads | None = None
        if engine.views:
            self.views = ViewReads(engine.views, session.find, session.count)
            self.find = self.views.find
            self.count = self.views.count
        else:
            self.find = session.find
            self.count = session.count
        # Snapshots of records deleted in this transaction: one storage delete removes links
        # and records together, so a computation reacting to a link's deletion reads the
        # record that went with it from here.
        self.deleted: dict[tuple[str, Any], Record] = {}
        # Records created in this transaction (of the types aggregates read as items), kept
        # current by their update events: an aggregate reading an item the same write
        # created finds it here without a query.
        self.fresh: dict[tuple[str, Any], Record] = {}
        # Full snapshots read through snapshot(), replaced (never mutated: events hold them as
        # old_record) by the transaction's update events and dropped by its deletes.
        self._snapshots: dict[tuple[str, Any], Record] = {}
        # Keys of the snapshots read with a row lock (held until the transaction ends, or the
        # savepoint it was taken in rolls back); only kept where locks mean anything.
        self._locked: set[tuple[str, Any]] = set()
        self._locks_rows = session.locks_rows
        # The record type whose records a look-up reads locked (see finding_hosts), or None.
        self._host_finds: str | None = None
        self._dictionary_ids: dict[str, Any] = {}
        # find_one answers for equalities on own fields, per record name: dropped by any event
        # that could change them (see _forget_lookups).
        self._lookups: dict[str, dict[Any, Record | None]] = {}
        self._batches: list[tuple[Sequence[MutationEvent], int]] = []

    @property
    def storage(self) -> EngineStorage:
        """Reads and writes inside this transaction (the same methods as
        ``controller.storage``, synchronous)."""
        # A new face per access, not an attribute: a context that points at its own storage
        # face is a reference cycle, and one per transaction keeps the garbage collector busy.
        return EngineStorage(self)

    @property
    def events(self) -> list[MutationEvent]:
        """Every mutation event of the transaction so far, in the order they happened."""
        return self.session.events

    def propagate(self, events: Sequence[MutationEvent]) -> None:
        """Push events to the computations that derive from them, depth-first."""
        engine = self.engine
        if engine.view_sources:
            events = self._with_views(events)
        routes = engine.routes
        fresh = self.fresh
        items = engine.item_records
        snapshots = self._snapshots
        lookups = self._lookups
        for event in events:
            if lookups and event.record_name in lookups:
                self._forget_lookups(event)
            key = (event.record_name, event.record["id"])
            if event.type == "create":
                if event.record_name in items:
                    fresh[key] = dict(event.record)
            elif event.type == "update":
                if key in fresh:
                    fresh[key].update(event.record)
                snapshot = snapshots.get(key)
                if snapshot is not None:
                    snapshots[key] = {**snapshot, **event.record}
            else:
                self.deleted[key] = event.record
                fresh.pop(key, None)
                snapshots.pop(key, None)
        dep_locks = engine.dep_locks
        if dep_locks:
            # The data_deps dictionaries of the aggregates these events reach, locked before
            # any computation locks a row of its own: every write takes them first, so a
            # write and a change of the dictionary never wait for each other in a cycle.
            for event in events:
                for name in dep_locks.get((event.record_name, event.type), ()):
                    self.dictionary_row(name, lock=True)
        if engine.deep_locks and self._locks_rows:
            self._lock_deeper(events)
        for index, event in enumerate(events):
            subject = routes.get((event.record_name, event.type))
            if subject is None:
                continue
            self.depth += 1
            if self.depth > Engine.MAX_DEPTH:
                raise CycleError(self.trail, Engine.MAX_DEPTH)
            self._batches.append((events, index))
            try:
                subject.on_next((event, self))
            finally:
                self._batches.pop()
                self.depth -= 1
            if self.error is not None:
                raise self.error
            if len(self.trail) > 200:
                del self.trail[:100]

    def _lock_deeper(self, events: Sequence[MutationEvent]) -> None:
        """Share-lock (``SELECT ... FOR SHARE``) the deeper records that ``events`` link items
        to or unlink them from, through a relation a deep attribute_query path goes through,
        and keep what was read as their snapshots (see :mod:`reactive.handles.deep`).

        Taken before any computation locks a row, so that a write and a change of that
        deeper record wait for each other in one order: a change of the record made first
        (uncommitted) is waited for and then read as committed; one made later waits for this
        transaction, and its re-evaluation of the record's items sees this link (or its
        absence). The snapshots replace any held ones, so the handlers read the locked value,
        not one read before. One statement per deeper record type the events reach."""
        deep_locks = self.engine.deep_locks
        wanted: dict[str, set[Any]] = {}
        for event in events:
            ends = deep_locks.get(event.record_name)
            if ends is None or event.type == "update":
                continue
            for column, record in ends:
                ref = event.record.get(column)
                record_id = ref.get("id") if isinstance(ref, Mapping) else None
                if record_id is not None and (record, record_id) not in self.deleted:
                    wanted.setdefault(record, set()).add(record_id)
        for record, ids in wanted.items():
            match = MatchExp.atom("id", "in", sorted(ids))
            rows = self.session.snapshots(record, match, lock=True, share=True)
            for row in rows:
                self._snapshots[(record, row["id"])] = row

    def _with_views(self, events: Sequence[MutationEvent]) -> Sequence[MutationEvent]:
        """``events`` with the events of the views they change (see :mod:`reactive.views`),
        each beside its cause: after it, or before it for a delete (a view's member leaves
        before its record goes). The view events join the transaction's events (committed,
        published and seen by side effects like any); O(views of the record) per event."""
        sources = self.engine.view_sources
        if not any(e.record_name in sources for e in events):
            return events
        out: list[MutationEvent] = []
        for event in events:
            derived: list[MutationEvent] = []
            pending = [event]
            while pending:
                cause = pending.pop()
                for view in sources.get(cause.record_name, ()):
                    found = view.derive(cause)
                    if found is not None:
                        derived.append(found)
                        pending.append(found)
            if event.type == "delete":
                out.extend(derived)
                out.append(event)
            else:
                out.append(event)
                out.extend(derived)
            self.session.events.extend(derived)
        return out

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: if the block raises, its writes (and the computations they
        ran) are undone and the exception re-raised. Use this rather than the storage session's
        own savepoint, so that the context's caches forget what was undone.

        Run every write that may fail *expectedly* (a duplicate refused by a unique index that
        the caller catches and goes on) inside one: on PostgreSQL a failed statement aborts the
        whole transaction unless a savepoint around it is rolled back."""
        try:
            with self.session.savepoint():
                yield
        except BaseException:
            self.fresh.clear()
            self._snapshots.clear()
            self._locked.clear()  # PostgreSQL lets go of the row locks taken inside it
            self._lookups.clear()
            self._dictionary_ids.clear()
            raise

    def later_in_write(self) -> Sequence[MutationEvent]:
        """Events of the storage write being propagated that come after the current one.

        One storage write happens whole before its events are handled, so a handler reading
        the database sees the state after all of them; this tells it what had not happened yet
        at its own event (a link created later in the same update, say)."""
        if not self._batches:
            return ()
        events, index = self._batches[-1]
        return events[index + 1 :]

    # -- reads ---------------------------------------------------------------------------------

    def snapshot(self, name: str, record_id: Any, lock: bool = False) -> Record | None:
        """The full stored value snapshot of one record (hidden fields included), or None.

        Read from the database once per transaction, then kept current by the transaction's
        own events: a chain of computations on one record reads it once. The dict is shared:
        treat it as read-only.

        ``lock=True``: read it with a row lock held to the end of the transaction (``SELECT
        ... FOR UPDATE`` on PostgreSQL), so that no other transaction changes it before what
        is derived from it is written; read again when the held snapshot was read without
        one. Where write transactions are exclusive (SQLite) it is a plain read."""
        key = (name, record_id)
        found = self._snapshots.get(key)
        if lock and self._locks_rows and key not in self._locked:
            found = None
        if found is None:
            lock = lock and self._locks_rows
            found = self.session.snapshot(name, record_id, lock)
            if found is not None:
                # Keyed by the stored id: events carry it, so updates find the entry.
                stored = (name, found["id"])
                self._snapshots[stored] = found
                if lock:
                    self._locked.add(stored)
                    self._locked.add(key)
        return found

    def get(self, name: str, record_id: Any, fields: Sequence[str]) -> Record | None:
        """One record with (at least) the named value fields and its ``id``, or None.
        Answered from memory when this transaction created the record or holds its snapshot
        (that dict itself: treat it as read-only), else one read."""
        key = (name, record_id)
        held = self.fresh.get(key) or self._snapshots.get(key)
        if held is not None:
            for field in fields:  # (a loop, not all() over a generator: every item read)
                if field not in held:
                    return self.session.get(name, record_id, fields)
            return held
        return self.session.get(name, record_id, fields)

    def find_one(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None. A look-up by equalities on the record's own
        fields (ids only) is asked of the database once per transaction, then answered from
        memory until one of the transaction's events could change the answer (a record of that
        type created or deleted, or a matched field written): a computation finding its target
        by ``external_id`` on every event of a call asks once."""
        if self.views is not None and name in self.engine.views:
            return self.views.find_one(name, match, attribute_query, order_by)
        if type(match) is dict:
            if self._lookup_warnings is not None:
                self._lookup_warnings.check(name, match)
            if attribute_query is None and order_by is None:
                return self._lookup(name, match)
        if attribute_query is None and order_by is None:
            return self._find_id(name, match)
        return self.session.find_one(name, match, attribute_query, order_by)

    def _find_id(self, name: str, match: Match) -> Record | None:
        """``{"id": ...}`` of the first match (in id order, as ``find_one``). The row is read
        whole in the same statement and remembered as its snapshot: a record looked up is
        usually read next (a computation's target), which then costs no statement. Inside
        :meth:`finding_hosts` for ``name`` the row is read locked (and kept as locked), so the
        target's locked read that follows costs no statement either."""
        lock = self._host_finds == name and self._locks_rows
        rows = self.session.snapshots(name, match, limit=1, lock=lock)
        if not rows:
            return None
        row = rows[0]
        key = (name, row["id"])
        if lock:
            self._snapshots[key] = row
            self._locked.add(key)
        else:
            self._snapshots.setdefault(key, row)
        return {"id": row["id"]}

    def finding_hosts(self, name: str | None) -> AbstractContextManager[None]:
        """While it is open, a look-up (``find_one`` without ``attribute_query``) of records
        of ``name`` reads the row it finds with a row lock (PostgreSQL: ``FOR UPDATE``), as
        the host read that follows it would. For a computation's ``compute_target``: the
        records it names are locked next anyway, so the look-up becomes the lock, one statement
        instead of two. A record it finds and does not name stays locked to the end of the
        transaction. Where write transactions are exclusive (SQLite) nothing changes.
        (A small class, not a generator: it is opened around every ``compute_target`` call;
        where reads take no row locks it is a shared no-op.)"""
        return _HostFinds(self, name) if self._locks_rows else _NOTHING

    def _lookup(self, name: str, match: dict[str, Any]) -> Record | None:
        # Remembered when every key is the id or an own field and every value a plain scalar
        # (hashable, so the match is a key); one loop, no generators (every look-up's path).
        fields = self.schema.fields(name)
        types: list[type] = []
        for field, value in match.items():
            kind = type(value)
            if kind not in _PLAIN_VALUES or (field != "id" and field not in fields):
                return self._find_id(name, match)
            types.append(kind)
        if not types:
            return self._find_id(name, match)
        # With the value types: 1, 1.0 and True are equal keys, not equal matches.
        key = (tuple(match.items()), tuple(types))
        known = self._lookups.setdefault(name, {})
        if key in known:
            found = known[key]
            return None if found is None else dict(found)
        found = self._find_id(name, match)
        known[key] = None if found is None else dict(found)
        return found

    def _forget_lookups(self, event: MutationEvent) -> None:
        known = self._lookups[event.record_name]
        if event.type != "update":
            known.clear()  # a new record may match; a deleted one must not be found
            return
        written = event.record
        for key in [key for key in known if any(field in written for field, _ in key[0])]:
            del known[key]

    def dictionary_row(self, name: str, lock: bool = False) -> Record | None:
        """The row holding dictionary ``name`` (``id``, ``key``, ``value``, ``state``), or None.
        Read once per transaction, then kept current like any snapshot; ``lock`` as for
        :meth:`snapshot` (a row not there yet is not locked: its creation is, by the unique
        key)."""
        record_id = self._dictionary_ids.get(name)
        if record_id is not None:
            found = self.snapshot(DICTIONARY_RECORD, record_id, lock)
            if found is not None:
                return found
        columns = list(self.schema.fields(DICTIONARY_RECORD))  # all of them: a full snapshot
        row = self.session.find_one(DICTIONARY_RECORD, {"key": name}, columns)
        if row is not None:
            self._snapshots[(DICTIONARY_RECORD, row["id"])] = row
            self._dictionary_ids[name] = row["id"]
            if lock and self._locks_rows:
                return self.snapshot(DICTIONARY_RECORD, row["id"], True)
        return row

    # -- writes (the engine's: no user-write checks) ------------------------------------------

    def create(self, name: str, data: Mapping[str, Any]) -> Record:
        """Create a record (with nested records and links): defaults, initial values of
        computed properties and ``computed`` fields filled in; returns it with its ``id``."""
        result = self.session.create(name, self._prepare_create(name, data))
        self.propagate(result.events)
        record = result.record
        assert record is not None
        return record

    def update(self, name: str, match: Match, data: Mapping[str, Any]) -> list[Record]:
        """Update every matching record; returns their new values.

        A record type with ``computed`` properties gets the computed values the update changes
        in the same statement, so one record gives one event whose ``record`` and ``keys``
        include them. An update by id of a record whose snapshot this transaction holds (the
        computations' own writes) costs one statement and no read."""
        if type(data) is not dict and isinstance(data, Mapping):
            data = dict(data)
        engine = self.engine
        if (
            engine.hard_deletion
            and name in engine.hard_deletion
            and data.get(HARD_DELETION_PROPERTY)
        ):
            # The hard-deletion property set true: the record goes instead (delete events).
            return self.delete(name, match)
        info = engine.records.get(name)
        computed: Computed = ()
        if info is not None:
            computed = info.computed
            relations = info.relations
            if relations and type(data) is dict and not relations.isdisjoint(data):
                data = self._prepare_update(name, data)  # records and links it creates
        if type(match) is dict and len(match) == 1 and type(data) is dict:
            record_id = match.get("id")
        else:
            record_id = None
        if type(record_id) is int:
            old = self._snapshots.get((name, record_id))
            if old is not None and self._locks_rows and not self._is_locked(name, old):
                # Read unlocked earlier in this transaction: another may have changed the row
                # since. Read it again, locked (below, or in the storage's own update).
                old = None
            if computed and old is None:
                # One read, not kept: one user write per record is the common case, and a kept
                # snapshot costs every later event. Locked: the computed values are derived
                # from it, and no other writer may change it before they are written.
                old = self.session.snapshot(name, record_id, True)
            if old is not None:
                if not computed:
                    return self._write_one(name, old, data, (), True)
                return self._write_computed(name, computed, [old], data)
        if computed and type(data) is dict:
            olds = self.session.snapshots(name, match, lock=True)
            if olds:
                return self._write_computed(name, computed, olds, data)
            # Nothing matched: the storage's own update still checks the data, writes nothing.
        result = self.session.update(name, match, data)
        self.propagate(result.events)
        return result.records

    def apply_deltas(
        self,
        name: str,
        record_id: Any,
        deltas: Mapping[str, int | float],
        derived: Mapping[str, Derived],
    ) -> Record | None:
        """Add ``deltas`` to running totals of one record and set the ``derived`` fields from
        the new totals, atomically in the database (``session.apply_deltas``: one statement,
        nothing lost to a concurrent transaction); the update event propagates like any.
        Returns the record's new values, or None when it does not exist (or all deltas are
        0). A record this transaction deleted is not touched at all."""
        if (name, record_id) in self.deleted:
            return None
        result = self.session.apply_deltas(name, record_id, deltas, derived)
        if not result.records:
            return None
        info = self.engine.records.get(name)
        if info is not None and info.computed:
            return self._with_computed_after_deltas(name, result.records[0])
        self.propagate(result.events)
        return result.records[0]

    def _with_computed_after_deltas(self, name: str, record: Record) -> Record:
        """The ``computed`` properties of a record whose totals ``apply_deltas`` just changed:
        worked out from its new values and written to the same row (which the deltas' UPDATE
        holds locked), in the same event as the totals, as an ``update`` gives them."""
        events = self.session.events
        deltas_event = events[-1]
        info = self.engine.records[name]
        record = dict(record)
        changes: dict[str, Any] = {}
        for prop, compute in info.computed:
            try:
                value = compute(record, self)
            except Exception as exc:
                raise ComputationError(f"{name}.{prop} (computed)", describe(exc), exc) from exc
            if record.get(prop) != value:
                changes[prop] = record[prop] = value
        if not changes:
            self.propagate([deltas_event])
            return record
        written = self.session.update_record(name, record, changes)
        stored = written.records[0]
        if any(stored.get(key) is not value for key, value in changes.items()):
            self._after_update(name, written.records)  # stored otherwise (a tuple as a list)
        # One event for the whole change, as an update with computed values gives.
        (computed_event,) = written.events
        merged = MutationEvent(
            name,
            "update",
            {**deltas_event.record, **computed_event.record},
            deltas_event.old_record,
            (*(deltas_event.keys or ()), *(computed_event.keys or ())),
        )
        # (By identity: events are values, and an equal one may have happened before.)
        events[:] = [
            merged if event is deltas_event else event
            for event in events
            if event is not computed_event
        ]
        self.propagate([merged])
        return {**stored}

    def delete(self, name: str, match: Match) -> list[Record]:
        """Delete every matching record (with its links and cascades); returns what was
        deleted."""
        result = self.session.delete(name, match)
        self.propagate(result.events)
        return result.records

    def create_internal(self, name: str, values: Mapping[str, Any]) -> Any:
        """Bookkeeping: create one record without an event; returns its id."""
        record_id = self.session.insert_internal(name, values)
        self._lookups.pop(name, None)
        return record_id

    def update_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        """Bookkeeping: write fields of one record without an event (a computation's
        per-item state, a recomputed value)."""
        self.session.write_internal(name, record_id, values)
        self.forget(name)

    def delete_internal(self, name: str, record_id: Any) -> None:
        """Bookkeeping: delete one record (without links) without an event."""
        self.session.delete_internal(name, record_id)
        self.forget(name)

    def set_dictionary(self, name: str, value: Any, state: Any) -> None:
        """Write dictionary ``name``'s value (and its computation's ``state`` unless None)."""
        row = self.dictionary_row(name)
        data: dict[str, Any] = {"value": value}
        if state is not None:
            data["state"] = state
        if row is None:
            self.create(DICTIONARY_RECORD, {"key": name, **data})
        else:
            self.update(DICTIONARY_RECORD, {"id": row["id"]}, data)  # a held snapshot

    def _is_locked(self, name: str, snapshot: Record) -> bool:
        return (name, snapshot["id"]) in self._locked

    def forget(self, name: str) -> None:
        """Drop what the caches hold of record type ``name``: after a bulk statement made
        through the session (recomputation), behind the context's back."""
        for key in [key for key in self._snapshots if key[0] == name]:
            del self._snapshots[key]  # rare; the id may be spelled as a str
        self._lookups.pop(name, None)
        if name == DICTIONARY_RECORD:
            self._dictionary_ids.clear()

    def _written(self, name: str, data: dict[str, Any]) -> Mapping[str, Any]:
        """The value fields of ``data``: what the computed properties may read."""
        fields = self.schema.fields(name)
        if data.keys() <= fields.keys():
            return data
        return {key: value for key, value in data.items() if key in fields}

    def _write_one(
        self, name: str, old: Record, values: Mapping[str, Any], computed: Computed, settled: bool
    ) -> list[Record]:
        """Update one record whose full snapshot ``old`` this transaction holds. ``settled``:
        ``values`` hold its ``computed`` fields, all worked out without a failure (see
        _with_computed)."""
        result = self.session.update_record(name, old, values)
        if computed:
            record = result.records[0]
            # Stored exactly as given (the same objects read back): the computed values worked
            # out from them stand. Otherwise (a tuple stored as a list, say) work them out again.
            if settled:
                for key, value in values.items():
                    if record.get(key) is not value:
                        settled = False
                        break
            if not settled:
                self._after_update(name, result.records)
        self.propagate(result.events)
        return result.records

    def _write_computed(
        self, name: str, computed: Computed, olds: list[Record], data: dict[str, Any]
    ) -> list[Record]:
        """Write ``data`` to the records whose snapshots are ``olds``, each with the computed
        values the write changes. All rows are written before any event propagates (one
        storage write, as ``session.update`` does it), together or not at all: one UPDATE per
        record."""
        written = self._written(name, data)
        planned = [self._with_computed(name, computed, old, written, data) for old in olds]
        if len(olds) == 1 and not planned[0][1]:
            return self._write_one(name, olds[0], planned[0][0], computed, True)
        records: list[Record] = []
        events: list[MutationEvent] = []
        # Several rows (or a computation that failed) happen whole; a failing computation
        # raises in _after_update, after the rows are written: undone too.
        with self.savepoint():
            for old, (values, _) in zip(olds, planned, strict=True):
                result = self.session.update_record(name, old, values)
                records.extend(result.records)
                events.extend(result.events)
            self._after_update(name, records)
        self.propagate(events)
        return records

    def _with_computed(
        self,
        name: str,
        computed: Computed,
        old: Record,
        written: Mapping[str, Any],
        values: Mapping[str, Any],
    ) -> tuple[dict[str, Any], bool]:
        """``values`` plus the ``computed`` fields that the value fields ``written`` change,
        so that one statement (and one event) writes both; and whether a computation failed.
        Worked out from the values as given, in declaration order (as on create: a computed
        property sees those declared before it as they will be); _after_update checks them
        against the values as stored and corrects the rare difference (a tuple stored as a
        list, say), and reports a computation that fails."""
        merged = {**old, **written}
        out = dict(values)
        failed = False
        for prop, compute in computed:
            try:
                value = compute(merged, self)
            except StorageError as exc:
                # A statement it made failed: report it now, make none after it (on PostgreSQL
                # the transaction is aborted until it rolls back).
                raise ComputationError(f"{name}.{prop} (computed)", describe(exc), exc) from exc
            except Exception:
                failed = True  # _after_update computes it again from the stored values, reports
                continue
            if merged.get(prop) != value:
                out[prop] = merged[prop] = value
        return out, failed

    def _after_update(self, name: str, records: list[Record]) -> None:
        info = self.engine.records.get(name)
        if info is None or not info.computed:
            return
        for record in records:
            changes = {}
            for prop, compute in info.computed:
                try:
                    value = compute(record, self)
                except Exception as exc:
                    raise ComputationError(f"{name}.{prop} (computed)", describe(exc), exc) from exc
                if record.get(prop) != value:
                    changes[prop] = value
            if changes:
                result = self.session.update(name, {"id": record["id"]}, changes)
                self.propagate(result.events)

    # -- preparing a payload (defaults, initial values; callbacks get this context) ------------

    def _prepare_create(self, name: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Fill defaults, initial values of computed properties and ``computed`` fields, for the
        record and for every nested record created with it."""
        info = self.engine.records.get(name)
        if info is None or (type(data) is not dict and not isinstance(data, Mapping)):
            return dict(data) if isinstance(data, Mapping) else data
        if info.is_link and not info.properties:
            for key, value in data.items():
                if key not in _ENDS or type(value) is not dict or "id" not in value:
                    break
            else:
                return dict(data)  # a link record between existing records: nothing to fill in
        out = dict(data)
        for prop_name, handle, make, default in info.fills:
            if handle is not None:
                out.update(handle.initial(data, self))
            elif prop_name not in out:
                out[prop_name] = default if make is None else make()
        for prop_name, compute in info.computed:
            try:
                out[prop_name] = compute(out, self)
            except Exception as exc:
                raise ComputationError(
                    f"{name}.{prop_name} (computed)", describe(exc), exc
                ) from exc
        relations = info.relations
        if relations and not relations.isdisjoint(data):
            # Only a payload naming a relation attribute creates records with it.
            self._prepare_nested(name, data, out)
        return out

    def _prepare_update(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Prepare the records and links an update's payload creates (defaults, initial
        values); the updated record's own fields are left as given."""
        out = dict(data)
        self._prepare_nested(name, data, out)
        return out

    def _prepare_nested(self, name: str, data: Mapping[str, Any], out: dict[str, Any]) -> None:
        attributes = self.schema.attributes(name)
        records = self.engine.records
        for key, value in data.items():
            attribute = attributes.get(key)
            if attribute is None or value is None:
                continue
            link_info = records.get(attribute.link.name)
            if not attribute.via_link:
                if isinstance(value, Mapping) and "id" not in value:
                    out[key] = self._prepare_create(attribute.related, value)
                continue
            items = value if isinstance(value, _SEQUENCES) else [value]
            prepared = []
            for item in items:
                if isinstance(item, Mapping):
                    item = dict(item)
                    link_data = item.pop("&", None)
                    if "id" not in item:
                        item = self._prepare_create(attribute.related, item)
                    if link_info is not None and (link_info.properties or link_data):
                        item["&"] = self._prepare_create(attribute.link.name, link_data or {})
                prepared.append(item)
            out[key] = prepared if isinstance(value, _SEQUENCES) else prepared[0]


class _HostFinds:
    """:meth:`TransactionContext.finding_hosts`: sets the record type on entry, puts the
    outer one back on exit."""

    __slots__ = ("_ctx", "_name", "_outer")

    def __init__(self, ctx: TransactionContext, name: str | None) -> None:
        self._ctx = ctx
        self._name = name
        self._outer: str | None = None

    def __enter__(self) -> None:
        ctx = self._ctx
        self._outer, ctx._host_finds = ctx._host_finds, self._name

    def __exit__(self, *exc: object) -> None:
        self._ctx._host_finds = self._outer


class EngineStorage:
    """``ctx.storage``: reads and writes inside the current transaction, with the checks of
    user writes (computed properties and a computation's internal state cannot be written);
    writes run computations. Everything goes through the context (its caches)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TransactionContext):
        self._ctx = ctx

    def create(self, name: RecordRef, data: Mapping[str, Any]) -> Record:
        """Create a record (with nested records and links); returns it with its ``id``."""
        rec = record_name(name)
        _check_not_view(self._ctx.engine, rec, "create")
        _check_user_payload(self._ctx.engine, rec, data)
        return self._ctx.create(rec, data)

    def update(self, name: RecordRef, match: Match, data: Mapping[str, Any]) -> list[Record]:
        """Update every matching record; returns their new values."""
        rec = record_name(name)
        _check_not_view(self._ctx.engine, rec, "update")
        self._ctx.engine.check_writable(rec, data)
        return self._ctx.update(rec, match, data)

    def delete(self, name: RecordRef, match: Match) -> list[Record]:
        """Delete every matching record (with its links); returns what was deleted."""
        rec = record_name(name)
        _check_not_view(self._ctx.engine, rec, "delete")
        return self._ctx.delete(rec, match)

    def find(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Matching records; without ``attribute_query`` each is just ``{"id": ...}``."""
        rec = record_name(name)
        query = self._ctx.engine.public_query(rec, attribute_query)
        return self._ctx.find(rec, match, query, order_by, limit, offset)

    def find_one(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        rec = record_name(name)
        if attribute_query is not None:
            attribute_query = self._ctx.engine.public_query(rec, attribute_query)
        return self._ctx.find_one(rec, match, attribute_query, order_by)

    def count(self, name: RecordRef, match: Match = None) -> int:
        """How many records match."""
        return self._ctx.count(record_name(name), match)

    def savepoint(self) -> AbstractContextManager[None]:
        """``with ctx.storage.savepoint(): ...``: undo the block's writes if it raises."""
        return self._ctx.savepoint()

    def get_dict(self, name: str) -> Any:
        """A dictionary's value (its default when never set)."""
        dictionary = _dictionary(self._ctx.engine, name)
        row = self._ctx.dictionary_row(name)
        return dictionary.default_value() if row is None else row["value"]

    def set_dict(self, name: str, value: Any) -> None:
        """Set a dictionary's value (not allowed for a computed dictionary)."""
        dictionary = _dictionary(self._ctx.engine, name)
        if dictionary.computation is not None:
            raise ModelError(f"dictionary {name!r} is computed and cannot be set directly")
        self._ctx.set_dictionary(name, value, None)


def _dictionary(engine: Engine, name: str) -> Any:
    try:
        return engine.dictionaries[name]
    except KeyError:
        known = ", ".join(sorted(engine.dictionaries)) or "none"
        raise ModelError(f"unknown dictionary {name!r} (known: {known})") from None


def _check_not_view(engine: Engine, name: str, verb: str) -> None:
    view = engine.views.get(name)
    if view is not None:
        raise ModelError(
            f"cannot {verb} {name}: it is a view of {', '.join(view.sources)} (no records of "
            f"its own); {verb} {' or '.join(view.sources)} instead"
        )


def _check_user_payload(engine: Engine, name: str, data: Mapping[str, Any]) -> None:
    info = engine.records.get(name)
    if info is None or not (info.hidden or info.computed) or not isinstance(data, Mapping):
        return
    for key in data:
        if key in info.hidden:
            raise ModelError(f"{name}.{key} is internal state of a computation")
        if any(key == p for p, _ in info.computed):
            raise ModelError(f"{name}.{key} is computed from the record's own fields")
