"""Recomputation from the stored data: one per computation kind, shared by the migration
backfill, ``controller.recompute()`` and ``controller.verify()``.

Each :class:`Recomputation` can *write* (bring the stored values to what they should be) and
*check* (report every stored value that differs, writing nothing); both run the same code, the
one the incremental engine runs per item (a handle's own contribution function), over every
item at once:

- Count, Summation, Average over related records without a callback, on number fields: SQL
  aggregates (``session.write_related_totals``): one ``UPDATE host SET (value, total, count) =
  (SELECT ...)`` per id range. With a callback (Count with a callback, WeightedSummation,
  Every, Any) or a non-number field: every item's contribution in Python, summed per host.
  The hidden running totals are written too, so later incremental steps start from the right
  base (Average's sum and count, Every/Any's counters).
- Dictionary aggregates: the same over every record of their source.
- Transform: every source record's derived rows are brought to what the callback returns now,
  in place (a row keeps its id while its source and position stay), surplus rows deleted, rows
  of sources that no longer exist deleted. These writes run the computations that depend on
  the derived records, like any write.
- Transform over ``event_deps``: its records are history (one per past event), tied to no
  source: nothing is derived again, nothing checked (it is listed in ``report.skipped``).
- ``computed=`` properties: recomputed from each row.
- StateMachine: history cannot be replayed. Rows without a state (added to a model with
  existing records) or in a state the machine no longer has get the initial state (or
  ``initial(record)``) and its value. ``check`` reports every row (or dictionary) whose stored
  state is not one of the declared states; which declared state is right it cannot judge
  (the machine stays in ``report.skipped``).
- Custom on triggers: likewise history: rows without a value get ``initial`` (without a
  state, the initial state); not checked.
- Custom on ``data_deps``: a function of the current data, recomputed and checked like an
  aggregate (its ``compute`` run again per host, the dependencies read once per batch); with
  ``state`` it is history, filled in and skipped like a Custom on triggers.

Concurrent writers (PostgreSQL, several connections or processes). A recomputation that
writes locks what it writes before it reads what it sums: the host rows of its id range (a
property aggregate) or the dictionary's row, with ``SELECT ... FOR UPDATE`` (a no-op on SQLite,
whose write transaction holds the whole file). Under READ COMMITTED every later statement then
sees what each writer that had touched those rows committed, and a writer that has not yet
applied its delta waits and applies it on top of the recomputed value, so none is counted
twice or lost. SERIALIZABLE would not do this: PostgreSQL checks serializability only among
SERIALIZABLE transactions, and the engine's writers run READ COMMITTED.

Costs: one pass over the items of each computation (SQL: one statement per id range). Writes
here emit no mutation events except the Transform's (values recomputed are bookkeeping, not
user changes); nothing is published and no side effect starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from reactive import deps
from reactive.computations import StateNode
from reactive.custom_deps import OwnFieldsDep, RecordsDep, RelatedDep
from reactive.engine import DICTIONARY_RECORD, Engine
from reactive.errors import ComputationError
from reactive.handles.aggregate import DictionaryAggregate, PropertyAggregate
from reactive.handles.custom_deps import DataDepsHandle
from reactive.handles.state_machine import CustomHandle, StateMachineHandle
from reactive.handles.transform import EventTransformHandle, TransformHandle
from reactive.model import record_name
from reactive.views import has_merged_ids
from storage import MatchExp
from storage.migration import RelatedTotals

if TYPE_CHECKING:
    from reactive.context import TransactionContext

IdRange = tuple[Any, Any]
# Field types whose stored values SQL sums as the engine does (an "integer" type, where the
# storage has one, too): any other type goes through the per-item Python reading.
_SQL_NUMBERS = ("number", "integer")
Key = tuple[str, str]  # (record, field): "*" any field, "#rows" which rows exist


@attrs.frozen
class Difference:
    """A stored value that differs from its recomputation. For a dictionary ``record`` is
    ``"_Dictionary_"`` (where dictionaries are stored) and ``id`` the dictionary's name; for a
    Transform's missing or surplus row ``field`` is ``"*"`` and the whole row is ``expected`` or
    ``stored``."""

    record: str
    id: Any
    field: str
    stored: Any
    expected: Any


@attrs.frozen
class VerifyReport:
    """What :meth:`Controller.verify` found: ``ok`` when nothing differs; ``differences``
    (each a :class:`Difference`); ``skipped``: computations whose values depend on the
    history of events (StateMachine, Custom, a Transform over ``event_deps``) and cannot be
    recomputed from the data."""

    differences: list[Difference]
    skipped: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        if self.ok:
            return "verify: every recomputable value matches the stored data"
        lines = [f"verify: {len(self.differences)} difference(s)"]
        lines.extend(
            f"  {d.record} {d.id!r}.{d.field}: stored {d.stored!r}, expected {d.expected!r}"
            for d in self.differences
        )
        return "\n".join(lines)


def same(stored: Any, expected: Any) -> bool:
    """Equal as the engine would keep them: numbers within rounding (sums in another order),
    booleans and None exactly."""
    if isinstance(expected, bool) or isinstance(stored, bool) or expected is None:
        return stored == expected and type(stored) is type(expected)
    if isinstance(expected, int | float) and isinstance(stored, int | float):
        return math.isclose(stored, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(stored == expected)


def _summable(engine: Engine, record: str, field: str) -> bool:
    """Whether SQL sums ``record.field`` as the engine does: ids and number fields."""
    return field == "id" or engine.schema.field(record, field).type in _SQL_NUMBERS


def _in_range(key: str, id_range: IdRange | None) -> MatchExp | None:
    if id_range is None:
        return None
    return MatchExp.atom(key, ">=", id_range[0]) & MatchExp.atom(key, "<", id_range[1])


def stored_sources(engine: Engine, name: str) -> list[str]:
    """The stored records a record or view reads (itself when stored)."""
    view = engine.views.get(name)
    if view is None:
        return [name]
    return [s for source in view.sources for s in stored_sources(engine, source)]


class Recomputation:
    """One computation's recomputation. ``batch_record``: the record whose id ranges split the
    work into transactions (None: one transaction)."""

    key: str = ""
    batch_record: str | None = None
    recomputable = True  # False: history-dependent (initial values only)
    checked = True  # False: check() has nothing to judge (Custom)
    outputs: frozenset[Key] = frozenset()
    inputs: frozenset[Key] = frozenset()

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        raise NotImplementedError

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        """Every stored value (of the hosts in ``id_range``, every one when None) that
        differs from its recomputation; writes nothing."""
        return []

    def finish(self, ctx: TransactionContext) -> None:
        """Work after the last batch (one transaction)."""

    def check_finish(self, ctx: TransactionContext) -> list[Difference]:
        """What :meth:`check` finds beyond the batches (one read transaction)."""
        return []


class _PropertyAggregate(Recomputation):
    def __init__(self, handle: PropertyAggregate, engine: Engine):
        self.h = handle
        self.key = f"{handle.host_record}.{handle.target}"
        self.batch_record = handle.host_record
        attribute = handle.bound_attribute()
        # Over a filtered relation the links are read through the view (its match ANDed in).
        self.link = handle.links
        stored = attribute.link.name
        self.related = attribute.related
        self.outputs = frozenset({(handle.host_record, handle.target)})
        self.inputs = frozenset(
            {(stored, "#rows")}
            | {(self.related, f) for f in handle.fields}
            | {(stored, f) for f in handle.link_fields}
            | ({(stored, f) for f in engine.views[handle.view].fields} if handle.view else set())
            | _deep_inputs(handle)
        )
        self.spec = None if handle.view else self._sql_spec(engine)

    def _sql_spec(self, engine: Engine) -> RelatedTotals | None:
        fold, attribute = self.h.fold, self.h.bound_attribute()
        if fold.callback is not None:
            return None
        value: tuple[Any, str] | None = None
        if fold.path is not None:
            if len(fold.path) == 1:
                kind, record, field = "item", self.related, fold.path[0]
            else:
                kind, record, field = "link", self.link, fold.path[1]
            if not _summable(engine, record, field):
                return None  # json numbers, booleans...: the Python reading decides
            value = (kind, field)
        return RelatedTotals(
            self.h.host_record,
            self.link,
            attribute.side,
            self.related,
            symmetric=attribute.symmetric,
            value=value,
        )

    def _outputs(self) -> dict[str, Any]:
        mean = self.h.decl.kind == "Average"
        return {
            self.h.target: "mean" if mean else "total",
            self.h.total_field: "total",
            self.h.count_field: "count",
        }

    def totals(self, ctx: TransactionContext, id_range: IdRange | None) -> dict[Any, Any]:
        """``{host id: (total, count)}`` for the hosts with items in the range."""
        if self.spec is not None:
            return ctx.session.related_totals(self.spec, id_range)
        h, attribute = self.h, self.h.bound_attribute()
        match: MatchExp | None = None
        if id_range is not None:
            lo, hi = id_range
            sides = ("source", "target") if attribute.symmetric else (attribute.side,)
            for side in sides:
                one = MatchExp.atom(f"{side}.id", ">=", lo) & MatchExp.atom(f"{side}.id", "<", hi)
                match = one if match is None else match | one
        out: dict[Any, list[Any]] = {}
        dep_values = deps.values(h.deps, ctx, lock=False)  # verify() reads in a read-only one
        for host_id, related, row in h.items(ctx, match, id_range):
            entry = out.setdefault(host_id, [0, 0])
            entry[0] += h.contribution(related, row, ctx, dep_values)
            entry[1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}

    def _compare(
        self, ctx: TransactionContext, id_range: IdRange | None
    ) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
        """(host id, stored, expected) for every host whose stored values differ."""
        h = self.h
        totals = self.totals(ctx, id_range)
        fields = [h.target, h.total_field, h.count_field]
        hosts = ctx.find(h.host_record, _in_range("id", id_range), fields)
        out = []
        for host in hosts:
            # A host that never had an item holds no running totals (None): the same as 0.
            host[h.total_field] = host[h.total_field] or 0
            host[h.count_field] = host[h.count_field] or 0
            total, count = totals.get(host["id"], (0, 0))
            expected = {
                h.target: h.fold.value(total, count),
                h.total_field: total,
                h.count_field: count,
            }
            if not all(same(host[f], expected[f]) for f in fields):
                out.append((host["id"], host, expected))
        return out

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        if ctx.session.locks_rows:  # the hosts first, then the items (see the module)
            ctx.session.snapshots(self.h.host_record, _in_range("id", id_range), lock=True)
        if self.spec is not None:
            ctx.session.write_related_totals(self.spec, self._outputs(), id_range)
            ctx.forget(self.h.host_record)  # written behind the context's caches
            return
        for host_id, _, expected in self._compare(ctx, id_range):
            ctx.update_internal(self.h.host_record, host_id, expected)

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        return [
            Difference(self.h.host_record, host_id, field, stored[field], value)
            for host_id, stored, expected in self._compare(ctx, id_range)
            for field, value in expected.items()
            if not same(stored[field], value)
        ]


def _deep_inputs(handle: PropertyAggregate | DictionaryAggregate) -> set[Key]:
    """What an aggregate reads beyond its items: the records and links of its deep paths and
    the dictionaries of its data deps."""
    out: set[Key] = {(DICTIONARY_RECORD, name) for name in handle.deps.values()}
    for path in handle.deep:
        out |= {(path.link, "#rows")} | {(path.record, f) for f in path.fields}
    return out


class _DictionaryAggregate(Recomputation):
    def __init__(self, handle: DictionaryAggregate, engine: Engine):
        self.h = handle
        self.key = handle.target
        self.outputs = frozenset({(DICTIONARY_RECORD, handle.target)})
        # Over a view: what it reads is its stored sources' (a view has no rows of its own).
        sources = stored_sources(engine, handle.source)
        self.inputs = frozenset(
            {(s, "#rows") for s in sources}
            | {(s, f) for s in sources for f in handle.fields}
            | _deep_inputs(handle)
        )
        fold = handle.fold
        self.sql = (
            handle.source not in engine.views
            and fold.callback is None
            and (
                fold.path is None
                or (len(fold.path) == 1 and _summable(engine, handle.source, fold.path[0]))
            )
        )

    def expected(self, ctx: TransactionContext) -> tuple[Any, dict[str, Any]]:
        h = self.h
        if self.sql:
            field = None if h.fold.path is None else h.fold.path[0]
            total, count = ctx.session.record_totals(h.source, field)
        else:
            total, count = 0, 0
            dep_values = deps.values(h.deps, ctx, lock=False)
            for record in h.records(ctx):
                total += h.contribution(record, ctx, dep_values)
                count += 1
        return h.fold.value(total, count), {"total": total, "count": count}

    def _differs(self, ctx: TransactionContext) -> tuple[Any, Any, Any, Any] | None:
        value, state = self.expected(ctx)
        row = ctx.dictionary_row(self.h.target) or {}
        stored_state = row.get("state") or {}
        if same(row.get("value"), value) and all(
            same(stored_state.get(k), v) for k, v in state.items()
        ):
            return None
        return row.get("value"), value, stored_state, state

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        ctx.dictionary_row(self.h.target, lock=True)  # before the records (see the module)
        found = self._differs(ctx)
        if found is not None:
            ctx.set_dictionary(self.h.target, found[1], found[3])

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        found = self._differs(ctx)
        if found is None:
            return []
        stored, value, stored_state, state = found
        out = []
        if not same(stored, value):
            out.append(Difference(DICTIONARY_RECORD, self.h.target, "value", stored, value))
        if not all(same(stored_state.get(k), v) for k, v in state.items()):
            out.append(Difference(DICTIONARY_RECORD, self.h.target, "state", stored_state, state))
        return out


class _Transform(Recomputation):
    def __init__(self, handle: TransformHandle, engine: Engine):
        self.h = handle
        self.key = handle.output
        sources = stored_sources(engine, handle.source)
        # Batched by id ranges of the source, or of the stored base of a filtered view (its
        # ids); a merged view's ids are no range: one transaction.
        self.batch_record = sources[0]
        if handle.source in engine.views and has_merged_ids(handle.source, engine.views):
            self.batch_record = None
        self.outputs = frozenset({(handle.output, "*")})
        self.inputs = frozenset(
            {(s, "#rows") for s in sources} | {(s, f) for s in sources for f in handle.watched}
        )

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        for source in ctx.find(self.h.source, _in_range("id", id_range)):
            self.h.refresh(source["id"], ctx)
        if id_range is None:
            self.finish(ctx)

    def _orphans(self, ctx: TransactionContext) -> list[dict[str, Any]]:
        h = self.h
        sources = {s["id"] for s in ctx.find(h.source)}
        rows = ctx.find(h.output, MatchExp.atom(h.source_field, "is not null"), ["*"])
        return [r for r in rows if r[h.source_field] not in sources]

    def finish(self, ctx: TransactionContext) -> None:
        orphans = [r["id"] for r in self._orphans(ctx)]
        if orphans:
            ctx.storage.delete(self.h.output, MatchExp.atom("id", "in", orphans))

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        h = self.h
        out: list[Difference] = []
        fields = list(ctx.schema.fields(h.output))
        stored_fields = set(fields)
        for source in ctx.find(h.source, _in_range("id", id_range)):
            expected = h.derived_rows(source["id"], ctx)
            stored = ctx.find(
                h.output, {h.source_field: source["id"]}, fields, {h.index_field: "asc"}
            )
            by_index = {r[h.index_field]: r for r in stored}
            for index, row in enumerate(expected):
                found = by_index.pop(index, None)
                if found is None:
                    out.append(Difference(h.output, None, "*", None, row))
                    continue
                # Only stored value fields are compared: a row's nested relation values
                # (``{"donor": {"id": 1}}``, nested creates) are links, not fields of the row.
                out.extend(
                    Difference(h.output, found["id"], k, found.get(k), v)
                    for k, v in row.items()
                    if k in stored_fields and not same(found.get(k), v)
                )
            out.extend(Difference(h.output, r["id"], "*", r, None) for r in by_index.values())
        if id_range is None:
            out.extend(self.check_finish(ctx))
        return out

    def check_finish(self, ctx: TransactionContext) -> list[Difference]:
        return [Difference(self.h.output, r["id"], "*", r, None) for r in self._orphans(ctx)]


class _EventTransform(Recomputation):
    """A Transform over events: its records are what past events produced; there is nothing
    to recompute them from, so nothing is written or checked."""

    recomputable = False
    checked = False

    def __init__(self, handle: EventTransformHandle):
        self.key = handle.output
        self.outputs = frozenset({(handle.output, "*")})

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        return None


class _Computed(Recomputation):
    def __init__(self, record: str, prop: str, compute: Callable[..., Any]):
        self.record, self.prop, self.compute = record, prop, compute
        self.key = f"{record}.{prop}"
        self.batch_record = record
        self.outputs = frozenset({(record, prop)})
        self.inputs = frozenset({(record, "*")})

    def _compare(
        self, ctx: TransactionContext, id_range: IdRange | None
    ) -> list[tuple[Any, Any, Any]]:
        fields = list(ctx.schema.fields(self.record))
        out = []
        for row in ctx.find(self.record, _in_range("id", id_range), fields):
            value = self.compute(row, ctx)
            if not same(row[self.prop], value):
                out.append((row["id"], row[self.prop], value))
        return out

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        for row_id, _, value in self._compare(ctx, id_range):
            ctx.update_internal(self.record, row_id, {self.prop: value})

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        return [
            Difference(self.record, row_id, self.prop, stored, value)
            for row_id, stored, value in self._compare(ctx, id_range)
        ]


class _HistoryDependent(Recomputation):
    """A StateMachine or Custom: its values follow past events; only initial values are
    filled in; a StateMachine's stored states are checked against its declared ones."""

    recomputable = False
    checked = False

    def __init__(self, handle: StateMachineHandle | CustomHandle):
        self.key = f"{handle.host}.{handle.target}" if handle.host else handle.target
        self.batch_record = handle.host
        self.outputs = frozenset({(handle.host or DICTIONARY_RECORD, handle.target)})


class _StateMachine(_HistoryDependent):
    checked = True

    def __init__(self, handle: StateMachineHandle):
        super().__init__(handle)
        self.h = handle

    def _node(self, record: Mapping[str, Any], ctx: TransactionContext) -> StateNode:
        decl = self.h.decl
        if decl.initial is None:
            return decl.initial_state
        chosen = decl.initial(record)
        name = chosen.name if isinstance(chosen, StateNode) else chosen
        for state in decl.states:
            if state.name == name:
                return state
        raise ComputationError(
            self.h.name, f"initial(record) returned {chosen!r}, which is not one of its states"
        )

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        """The history cannot be replayed, but every stored state must be a declared one:
        each row (or the dictionary) in no state or in another is a difference whose
        ``expected`` is the list of the declared state names."""
        h = self.h
        names = [s.name for s in h.decl.states]
        if h.host is None:
            row = ctx.dictionary_row(h.target)
            state = ((row or {}).get("state") or {}).get("state")
            if state in names:
                return []
            return [Difference(DICTIONARY_RECORD, h.target, "state", state, names)]
        match = MatchExp.atom(h.state_field, "is null") | MatchExp.atom(
            h.state_field, "not in", names
        )
        scope = _in_range("id", id_range)
        rows = ctx.session.find(h.host, match if scope is None else match & scope, [h.state_field])
        return [Difference(h.host, r["id"], h.target, r[h.state_field], names) for r in rows]

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        h = self.h
        names = [s.name for s in h.decl.states]
        if h.host is None:
            row = ctx.dictionary_row(h.target)
            state = ((row or {}).get("state") or {}).get("state")
            if row is None or state not in names:
                node = h.decl.initial_state
                value = h.value_of(node, None, None, ctx)
                ctx.set_dictionary(h.target, value, {"state": node.name})
            return
        match = MatchExp.atom(h.state_field, "is null") | MatchExp.atom(
            h.state_field, "not in", names
        )
        scope = _in_range("id", id_range)
        if scope is not None:
            match = match & scope
        fields = list(ctx.schema.fields(h.host))
        for row in ctx.find(h.host, match, fields):
            node = self._node(row, ctx)
            value = h.value_of(node, None, None, ctx)
            ctx.update_internal(h.host, row["id"], {h.target: value, h.state_field: node.name})


class _Custom(_HistoryDependent):
    def __init__(self, handle: CustomHandle):
        super().__init__(handle)
        self.h = handle

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        h = self.h
        if h.host is None:
            h.install(ctx)
            return
        initial = h.initial_value()
        if initial is None:
            return
        match = MatchExp.atom(h.target, "is null")
        scope = _in_range("id", id_range)
        for row in ctx.find(h.host, match if scope is None else match & scope):
            ctx.update_internal(h.host, row["id"], {h.target: h.initial_value()})
        if h.has_state:
            match = MatchExp.atom(h.state_field, "is null")
            for row in ctx.find(h.host, match if scope is None else match & scope):
                ctx.update_internal(h.host, row["id"], {h.state_field: h.decl.initial_state()})


class _CustomDeps(Recomputation):
    """A Custom over data_deps: ``compute`` run again with the current dependencies (read
    once per batch), per host; with state, only missing values and states are filled in."""

    def __init__(self, handle: DataDepsHandle, engine: Engine):
        self.h = handle
        self.key = f"{handle.host}.{handle.target}" if handle.host else handle.target
        self.batch_record = handle.host
        self.recomputable = self.checked = not handle.has_state
        self.outputs = frozenset({(handle.host or DICTIONARY_RECORD, handle.target)})
        inputs: set[Key] = set()
        for dep in handle.deps.values():
            if isinstance(dep, RecordsDep):
                for source in stored_sources(engine, handle_record(dep)):
                    inputs.add((source, "#rows"))
                    inputs.update((source, f) for f in dep.fields or ["*"])
            elif isinstance(dep, deps.DictionaryDep):
                inputs.add((DICTIONARY_RECORD, dep.dictionary))
            elif isinstance(dep, OwnFieldsDep) and handle.host is not None:
                inputs.update((handle.host, f) for f in dep.fields)
            elif isinstance(dep, RelatedDep):
                for key, attribute in handle.attributes.items():
                    if handle.deps[key] is dep:
                        inputs.add((attribute.link.name, "#rows"))
                        inputs.update((attribute.related, f) for f in dep.fields)
        self.inputs = frozenset(inputs)

    def _compare(
        self, ctx: TransactionContext, id_range: IdRange | None
    ) -> list[tuple[Any, Any, Any]]:
        """(host id or dictionary name, stored, expected) for every value that differs."""
        h = self.h
        if h.host is None:
            row = ctx.dictionary_row(h.target)
            stored = (row or {}).get("value")
            value = h.evaluate(None, stored, None, ctx)
            return [] if row is not None and same(stored, value) else [(h.target, stored, value)]
        shared = h.global_values(ctx)
        fields = list(ctx.schema.fields(h.host))
        out = []
        for row in ctx.find(h.host, _in_range("id", id_range), fields, {"id": "asc"}):
            value = h.evaluate(row, row[h.target], None, ctx, shared)
            if not same(row[h.target], value):
                out.append((row["id"], row[h.target], value))
        return out

    def write(self, ctx: TransactionContext, id_range: IdRange | None = None) -> None:
        h = self.h
        if h.has_state:
            if h.host is None:
                h.install(ctx)
                return
            match = MatchExp.atom(h.state_field, "is null")
            scope = _in_range("id", id_range)
            for row in ctx.find(h.host, match if scope is None else match & scope):
                ctx.update_internal(
                    h.host,
                    row["id"],
                    {h.target: h.initial_value(), h.state_field: h.decl.initial_state()},
                )
            return
        for key, _, value in self._compare(ctx, id_range):
            if h.host is None:
                ctx.set_dictionary(h.target, value, None)
            else:
                ctx.update_internal(h.host, key, {h.target: value})

    def check(self, ctx: TransactionContext, id_range: IdRange | None = None) -> list[Difference]:
        h = self.h
        record = h.host or DICTIONARY_RECORD
        field = h.target if h.host else "value"
        return [
            Difference(record, key, field, stored, value)
            for key, stored, value in self._compare(ctx, id_range)
        ]


def handle_record(dep: RecordsDep) -> str:
    """The record a RecordsDep reads."""
    return record_name(dep.record)


def recomputations(engine: Engine) -> dict[str, Recomputation]:
    """Every computation of the model by key: ``"Record.field"``, a dictionary's name, or a
    Transform's output record — in the order the engine declares them."""
    out: dict[str, Recomputation] = {}
    for handle in engine.handles:
        rec: Recomputation
        if isinstance(handle, PropertyAggregate):
            rec = _PropertyAggregate(handle, engine)
        elif isinstance(handle, DictionaryAggregate):
            rec = _DictionaryAggregate(handle, engine)
        elif isinstance(handle, TransformHandle):
            rec = _Transform(handle, engine)
        elif isinstance(handle, EventTransformHandle):
            rec = _EventTransform(handle)
        elif isinstance(handle, StateMachineHandle):
            rec = _StateMachine(handle)
        elif isinstance(handle, CustomHandle):
            rec = _Custom(handle)
        elif isinstance(handle, DataDepsHandle):
            rec = _CustomDeps(handle, engine)
        else:  # pragma: no cover - every handle kind is listed above
            continue
        out[rec.key] = rec
    for name, info in engine.records.items():
        for prop, compute in info.computed:
            rec = _Computed(name, prop, compute)
            out[rec.key] = rec
    return out


def _feeds(a: Recomputation, b: Recomputation) -> bool:
    """Whether ``b`` reads what ``a`` writes."""
    if a is b:
        return False
    for record, field in a.outputs:
        for other_record, other_field in b.inputs:
            if record == other_record and (field == other_field or "*" in (field, other_field)):
                return True
    return False


def ordered(all_: Mapping[str, Recomputation], keys: Iterable[str]) -> list[Recomputation]:
    """The recomputations of ``keys`` plus every recomputable one that reads what they write
    (transitively), ordered so that each runs after those it reads from (declaration order
    where they feed each other in a loop)."""
    chosen = {k: all_[k] for k in keys if k in all_}
    grew = True
    while grew:
        grew = False
        for key, rec in all_.items():
            if (
                key not in chosen
                and rec.recomputable
                and any(_feeds(c, rec) for c in chosen.values())
            ):
                chosen[key] = rec
                grew = True
    # History-dependent ones first: they only fill initial values, which others may read.
    pending = [r for r in all_.values() if r.key in chosen]
    pending.sort(key=lambda r: r.recomputable)
    out: list[Recomputation] = []
    while pending:
        ready = [r for r in pending if not any(_feeds(p, r) for p in pending if p is not r)]
        step = ready[0] if ready else pending[0]
        out.append(step)
        pending.remove(step)
    return out


def fill_defaults(ctx: TransactionContext, fields: Iterable[tuple[str, str]]) -> None:
    """Give the existing rows of each new ``(record, field)`` the property's default."""
    for record, field in fields:
        prop = ctx.engine.records[record].properties.get(field)
        if prop is None or prop.default is None:
            continue
        for row in ctx.find(record, MatchExp.atom(field, "is null")):
            ctx.update_internal(record, row["id"], {field: prop.default_value()})


__all__ = ["Difference", "Recomputation", "VerifyReport"]
