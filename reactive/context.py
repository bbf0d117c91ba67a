"""One write transaction of the engine: the context handed to computations and callbacks.

``ctx.storage`` is the synchronous face of the controller's storage: the same methods as
``controller.storage``, run inside the current transaction, and every write through it runs the
computations that depend on it before it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from reactive.engine import DICTIONARY_RECORD, Engine
from reactive.errors import ComputationError, CycleError, ModelError, describe
from reactive.model import Entity, Relation, record_name
from storage import MatchExp, MutationEvent, Record, Session

if TYPE_CHECKING:
    from reactive.handles.base import Handle

Match = MatchExp | Mapping[str, Any] | None
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None)})
RecordRef = Entity | Relation | str


class TransactionContext:
    """State of one write transaction: the storage session, propagation depth, the first error."""

    def __init__(self, engine: Engine, session: Session, controller: Any = None, user: Any = None):
        self.engine = engine
        self.session = session
        self.schema = engine.schema
        self.controller = controller
        self.user = user
        self.depth = 0
        self.trail: list[str] = []
        self.error: BaseException | None = None
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
        routes = self.engine.routes
        fresh = self.fresh
        items = self.engine.item_records
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

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: if the block raises, its writes (and the computations they
        ran) are undone and the exception re-raised. Use this rather than the storage session's
        own savepoint, so that the context's caches forget what was undone."""
        try:
            with self.session.savepoint():
                yield
        except BaseException:
            self.fresh.clear()
            self._snapshots.clear()
            self._lookups.clear()
            raise

    def snapshot(self, name: str, record_id: Any) -> Record | None:
        """The full stored value snapshot of one record (hidden fields included), or None.

        Read from the database once per transaction, then kept current by the transaction's
        own events: a chain of computations on one record reads it once. The dict is shared:
        treat it as read-only."""
        found = self._snapshots.get((name, record_id))
        if found is None:
            found = self.session.snapshot(name, record_id)
            if found is not None:
                # Keyed by the stored id: events carry it, so updates find the entry.
                self._snapshots[(name, found["id"])] = found
        return found

    def _lookup_one(self, name: str, match: dict[str, Any]) -> Record | None:
        """``find_one(name, match)`` (ids only) for equalities on the record's own fields:
        asked of the database once per transaction, then answered from memory until one of
        the transaction's events could change the answer (a record of that type created or
        deleted, or a matched field written). A computation finding its target by
        ``external_id`` on every event of a call asks once."""
        fields = self.schema.fields(name)
        try:
            items = tuple(match.items())
            hash(items)
        except TypeError:
            items = ()
        cacheable = bool(items) and all(
            (key == "id" or key in fields) and type(value) in _PLAIN_VALUES for key, value in items
        )
        if not cacheable:
            return self.session.find_one(name, match)
        # With the value types: 1, 1.0 and True are equal keys, not equal matches.
        key = (items, tuple(type(value) for _, value in items))
        known = self._lookups.setdefault(name, {})
        if key in known:
            found = known[key]
            return None if found is None else dict(found)
        found = self.session.find_one(name, match)
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

    def later_in_write(self) -> Sequence[MutationEvent]:
        """Events of the storage write being propagated that come after the current one.

        One storage write happens whole before its events are handled, so a handler reading
        the database sees the state after all of them; this tells it what had not happened yet
        at its own event (a link created later in the same update, say)."""
        if not self._batches:
            return ()
        events, index = self._batches[-1]
        return events[index + 1 :]

    # -- writes made by computations (no user-write checks) -----------------------------------

    def write_owned(
        self, name: str, old: Record, values: Mapping[str, Any], handle: Handle | None = None
    ) -> None:
        """Write computed values of one record whose full snapshot ``old`` was just read."""
        info = self.engine.records.get(name)
        settled = False
        if info is not None and info.computed:
            values, failed = self._with_computed(info.computed, old, values, values)
            settled = not failed
        self._write_one(name, old, values, settled)

    def _write_one(
        self, name: str, old: Record, values: Mapping[str, Any], settled: bool
    ) -> list[Record]:
        """Update one record; ``settled``: ``values`` hold its computed fields, all worked out
        without a failure (see _with_computed)."""
        result = self.session.update_record(name, old, values)
        record = result.records[0]
        # Stored exactly as given (the same objects read back): the computed values worked out
        # from them stand. Otherwise (a tuple stored as a list, say) work them out again.
        if settled:
            for key, value in values.items():
                if record.get(key) is not value:
                    settled = False
                    break
        if not settled:
            self._after_update(name, result.records)
        self.propagate(result.events)
        return result.records

    def _update_matching(
        self, name: str, computed: list[tuple[str, Any]], match: Match, data: Mapping[str, Any]
    ) -> list[Record]:
        """A user's update of a record type with ``computed`` properties: each matched record
        gets the computed values the update changes in the same statement, so one record gives
        one event whose ``record`` and ``keys`` include them. All rows are written before any
        event propagates (one storage write, as ``session.update`` does it); the rows are
        written together or not at all. Costs one read of the matched snapshots (none for a
        record this transaction already read by id) and one UPDATE per record."""
        record_id = match.get("id") if type(match) is dict and len(match) == 1 else None
        if type(record_id) is int:
            # A snapshot this transaction holds already, else one read (not kept: one user
            # write per record is the common case, and a kept one costs every later event).
            found = self._snapshots.get((name, record_id)) or self.session.snapshot(name, record_id)
            olds = [] if found is None else [found]
        else:
            olds = self.session.snapshots(name, match)
        if not olds:
            # Nothing matched: the storage's own update still checks the data, writes nothing.
            return self.session.update(name, match, data).records
        fields = self.schema.fields(name)
        written = data  # the value fields of data: what the computed properties may read
        if not data.keys() <= fields.keys():
            written = {key: value for key, value in data.items() if key in fields}
        planned = [self._with_computed(computed, old, written, data) for old in olds]
        if len(olds) == 1 and not planned[0][1]:
            return self._write_one(name, olds[0], planned[0][0], True)
        records: list[Record] = []
        events: list[MutationEvent] = []
        # Several rows happen whole; a failing computation raises in _after_update, after the
        # rows are written: undone too.
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
        computed: list[tuple[str, Any]],
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
            except Exception:
                failed = True  # _after_update computes it again from the stored values, reports
                continue
            if merged.get(prop) != value:
                out[prop] = merged[prop] = value
        return out, failed

    def create_owned(self, name: str, data: Mapping[str, Any]) -> Record:
        prepared = self.engine.prepare_create(name, data, self)
        result = self.session.create(name, prepared)
        self.propagate(result.events)
        record = result.record
        assert record is not None
        return record

    def write_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        """Bookkeeping without an event (a computation's per-item state)."""
        self.session.write_internal(name, record_id, values)
        for key in [key for key in self._snapshots if key[0] == name]:
            del self._snapshots[key]  # rare; the id may be spelled as a str
        self._lookups.pop(name, None)

    def dictionary_row(self, name: str) -> Record | None:
        """The row holding dictionary ``name`` (``id``, ``key``, ``value``, ``state``), or None.
        Read once per transaction, then kept current like any snapshot."""
        record_id = self._dictionary_ids.get(name)
        if record_id is not None:
            found = self.snapshot(DICTIONARY_RECORD, record_id)
            if found is not None:
                return found
        columns = list(self.schema.fields(DICTIONARY_RECORD))  # all of them: a full snapshot
        row = self.session.find_one(DICTIONARY_RECORD, {"key": name}, columns)
        if row is not None:
            self._snapshots[(DICTIONARY_RECORD, row["id"])] = row
            self._dictionary_ids[name] = row["id"]
        return row

    def write_dictionary(self, name: str, value: Any, state: Any) -> None:
        row = self.dictionary_row(name)
        data: dict[str, Any] = {"value": value}
        if state is not None:
            data["state"] = state
        if row is None:
            result = self.session.create(DICTIONARY_RECORD, {"key": name, **data})
        else:
            result = self.session.update_record(DICTIONARY_RECORD, row, data)  # a full snapshot
        self.propagate(result.events)

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


class EngineStorage:
    """``ctx.storage``: reads and writes inside the current transaction; writes run computations."""

    def __init__(self, ctx: TransactionContext):
        self._ctx = ctx

    def create(self, name: RecordRef, data: Mapping[str, Any]) -> Record:
        """Create a record (with nested records and links); returns it with its ``id``."""
        rec = record_name(name)
        ctx = self._ctx
        _check_user_payload(ctx.engine, rec, data)
        return ctx.create_owned(rec, data)

    def update(self, name: RecordRef, match: Match, data: Mapping[str, Any]) -> list[Record]:
        """Update every matching record; returns their new values."""
        rec = record_name(name)
        ctx = self._ctx
        engine = ctx.engine
        engine.check_writable(rec, data)
        prepared = engine.prepare_update(rec, data, ctx)
        info = engine.records.get(rec)
        if info is not None and info.computed and type(prepared) is dict:  # data was a Mapping
            return ctx._update_matching(rec, info.computed, match, prepared)
        result = ctx.session.update(rec, match, prepared)
        ctx.propagate(result.events)
        return result.records

    def delete(self, name: RecordRef, match: Match) -> list[Record]:
        """Delete every matching record (with its links); returns what was deleted."""
        ctx = self._ctx
        result = ctx.session.delete(record_name(name), match)
        ctx.propagate(result.events)
        return result.records

    def find(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        rec = record_name(name)
        query = self._ctx.engine.public_query(rec, attribute_query)
        return self._ctx.session.find(rec, match, query, order_by, limit, offset)

    def find_one(
        self,
        name: RecordRef,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        rec = record_name(name)
        if type(match) is dict:
            self._ctx.engine.note_lookup(rec, match)
            if attribute_query is None and order_by is None:
                return self._ctx._lookup_one(rec, match)
        query = self._ctx.engine.public_query(rec, attribute_query)
        return self._ctx.session.find_one(rec, match, query, order_by)

    def count(self, name: RecordRef, match: Match = None) -> int:
        return self._ctx.session.count(record_name(name), match)

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
        self._ctx.write_dictionary(name, value, None)


def _dictionary(engine: Engine, name: str) -> Any:
    try:
        return engine.dictionaries[name]
    except KeyError:
        known = ", ".join(sorted(engine.dictionaries)) or "none"
        raise ModelError(f"unknown dictionary {name!r} (known: {known})") from None


def _check_user_payload(engine: Engine, name: str, data: Mapping[str, Any]) -> None:
    info = engine.records.get(name)
    if info is None or not (info.hidden or info.computed) or not isinstance(data, Mapping):
        return
    for key in data:
        if key in info.hidden:
            raise ModelError(f"{name}.{key} is internal state of a computation")
        if any(key == p for p, _ in info.computed):
            raise ModelError(f"{name}.{key} is computed from the record's own fields")
