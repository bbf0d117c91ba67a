"""The compiled model: storage schema, computation handles, and the event routes between them.

Inside a transaction, every mutation event is pushed synchronously through a reactivex
``Subject`` per (record, event type); the handles that derive from that record are its
subscribers. Their writes produce new events, pushed the same way: propagation is depth-first and
finishes before the write that started it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

import attrs
from reactivex.subject import Subject

from reactive.callables import adapt
from reactive.computations import (
    Computation,
    Custom,
    StateMachine,
    Transform,
    _Aggregate,
)
from reactive.errors import ComputationError, ModelError, SetupError, describe
from reactive.handles.aggregate import DictionaryAggregate, PropertyAggregate
from reactive.handles.base import Handle
from reactive.handles.custom_deps import DataDepsHandle
from reactive.handles.state_machine import CustomHandle, StateMachineHandle
from reactive.handles.transform import EventTransformHandle, TransformHandle
from reactive.interaction import INTERACTION_EVENT as INTERACTION_EVENT
from reactive.model import DICTIONARY_RECORD as DICTIONARY_RECORD
from reactive.model import (
    HARD_DELETION_PROPERTY,
    Dictionary,
    Entity,
    NonNullConstraint,
    Property,
    Relation,
    UniqueConstraint,
    record_name,
)
from reactive.views import TYPE_FIELD, View, check_not_view_end, compile_views, has_merged_ids
from storage import Field, Index, LinkType, MutationEvent, RecordType, Schema

# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_SEQUENCES = (list, tuple)
_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenMap(dict[_K, _V]):
    """A read-only mapping of the compiled model: every mutating method raises ``TypeError``.

    A ``dict`` underneath, not a ``types.MappingProxyType``: its look-ups are on every write's
    path (a route, a record's info, per event), and a proxy's ``get`` calls the dict's ``get``
    by name (measured: a few hundred machine instructions more per call under CPython 3.11)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a mapping of the compiled model is read-only (the model is frozen)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


SYSTEM_RECORDS = [
    RecordType(
        INTERACTION_EVENT,
        [Field("interaction_name"), Field("user", "json"), Field("payload", "json")],
        [Index(("interaction_name",))],
    ),
    RecordType(
        DICTIONARY_RECORD,
        [Field("key"), Field("value", "json"), Field("state", "json")],
        [Index(("key",), unique=True)],
    ),
]


class RouteSubject(Subject[tuple[MutationEvent, Any]]):
    """The in-transaction stream of one (record, event type): ``(event, ctx)`` pairs.

    The engine's handles are attached as plain callables and called in order, without the
    locking and observer wrappers a general Subject needs: one transaction runs at a time, on
    one thread, and this is the innermost loop of every write. Observers subscribed the
    reactivex way still see every event, after the handles."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: list[Callable[[tuple[MutationEvent, Any]], None]] = []

    def attach(self, handler: Callable[[tuple[MutationEvent, Any]], None]) -> None:
        self.handlers.append(handler)

    def on_next(self, value: tuple[MutationEvent, Any]) -> None:
        for handler in self.handlers:
            handler(value)
        if self.observers:
            super().on_next(value)


class RecordInfo:
    """What the engine needs to know about one record type when writing it (frozen once the
    model is compiled)."""

    __slots__ = (
        "computed",
        "fills",
        "hidden",
        "is_link",
        "name",
        "owned",
        "properties",
        "relations",
    )

    def __init__(
        self,
        name: str,
        properties: Iterable[Property],
        is_link: bool,
        owned: Mapping[str, Handle],
        hidden: Iterable[str],
        relations: Iterable[str],
    ):
        self.name = name
        self.is_link = is_link
        self.properties: Mapping[str, Property] = FrozenMap({p.name: p for p in properties})
        self.owned: Mapping[str, Handle] = FrozenMap(dict(owned))
        # What a create fills in, per property in declaration order: its handle's initial
        # values, or (no handle) its default, made by the default's callable when it is one
        # (read once, as ``computed`` is: every create reads it).
        self.fills: tuple[tuple[str, Handle | None, Callable[[], Any] | None, Any], ...] = tuple(
            (p.name, self.owned.get(p.name), p.default if callable(p.default) else None, p.default)
            for p in self.properties.values()
        )
        self.computed: tuple[tuple[str, Callable[..., Any]], ...] = tuple(
            (p.name, adapt(p.computed, 1, f"{name}.{p.name} computed"))
            for p in self.properties.values()
            if p.computed is not None
        )
        self.hidden: frozenset[str] = frozenset(hidden)
        # Its relation attributes: only a payload naming one creates records with it.
        self.relations: frozenset[str] = frozenset(relations)


class Engine:
    """The model compiled for one controller: a frozen value.

    It holds the storage schema, the computation handles (bound to the schema), the routes from
    (record, event type) to the handles, and what writes need to know per record type. It keeps
    no state of any transaction and none between transactions: the run-time side of a write is
    :class:`~reactive.context.TransactionContext`. Setting an attribute after compilation raises
    ``AttributeError``; its mappings are read-only (:class:`FrozenMap`; a route's subject still
    accepts reactivex subscribers: observing is not state of the model). Compiling costs one
    pass over the model (two bindings of the handles); nothing here runs per write but
    look-ups."""

    MAX_DEPTH = 100

    entities: tuple[Entity, ...]
    relations: tuple[Relation, ...]
    dictionaries: Mapping[str, Dictionary]
    extra_records: tuple[RecordType, ...]
    records: Mapping[str, RecordInfo]
    handles: tuple[Handle, ...]
    schema: Schema
    item_records: frozenset[str]
    leading_fields: Mapping[str, frozenset[str]]
    routes: Mapping[tuple[str, str], RouteSubject]
    dep_locks: Mapping[tuple[str, str], tuple[str, ...]]
    deep_locks: Mapping[str, tuple[tuple[str, str], ...]]
    views: Mapping[str, View]
    view_sources: Mapping[str, tuple[View, ...]]
    hard_deletion: frozenset[str]

    def __init__(
        self,
        entities: Iterable[Entity],
        relations: Iterable[Relation],
        dictionaries: Iterable[Dictionary],
        extra_records: Iterable[RecordType] = (),
    ):
        init = partial(object.__setattr__, self)
        entities, relations = list(entities), list(relations)
        declared_views: list[Entity | Relation] = [
            *(e for e in entities if e.is_view),
            *(r for r in relations if r.is_view),
        ]
        init("entities", tuple(e for e in entities if not e.is_view))
        init("relations", tuple(r for r in relations if not r.is_view))
        init("dictionaries", FrozenMap({d.name: d for d in dictionaries}))
        init("extra_records", tuple(extra_records))
        self._check_names(declared_views)
        owned: dict[str, dict[str, Handle]] = {}
        handles = tuple(self._create_handles(owned))
        for handle in handles:
            if isinstance(handle, DataDepsHandle):
                handle.check_dictionaries(self.dictionaries)
        init("handles", handles)
        for handle in handles:  # data_deps name dictionaries of this model (reactive.deps)
            if isinstance(handle, PropertyAggregate | DictionaryAggregate):
                handle.resolve_deps(self.dictionaries, DICTIONARY_RECORD)
        # Handles need the schema (relation attributes) to know their hidden fields; those
        # fields never change attributes, so bind against a first schema, then build the final.
        # Views are bound with the schema: handles over a view see its fields like a record's.
        preliminary = self._schema([], [])
        stored = list(preliminary.records)
        views = compile_views(declared_views, stored, preliminary, {})
        _aggregates_over_views(handles, views)
        for handle in handles:
            handle.bind(_with_views(preliminary, views))
        hidden = [pair for h in handles for pair in h.hidden_fields()]
        indexes = [pair for h in handles for pair in h.indexes()]
        schema = self._schema(hidden, indexes)
        init("schema", schema)
        hidden_of: dict[str, set[str]] = {}
        for record, field in hidden:
            hidden_of.setdefault(record, set()).add(field.name)
        views = compile_views(declared_views, stored, schema, hidden_of)
        init("views", FrozenMap(views))
        sources: dict[str, list[View]] = {}
        for view in views.values():
            for source in view.sources:
                sources.setdefault(source, []).append(view)
        init("view_sources", FrozenMap({k: tuple(v) for k, v in sources.items()}))
        bound = _with_views(schema, views)
        for handle in handles:
            handle.bind(bound)
        records = {
            e.name: RecordInfo(
                e.name,
                e.properties,
                False,
                owned.get(e.name, {}),
                hidden_of.get(e.name, ()),
                schema.attributes(e.name),
            )
            for e in self.entities
        }
        for r in self.relations:
            name = r.relation_name
            records[name] = RecordInfo(
                name,
                r.properties,
                True,
                owned.get(name, {}),
                hidden_of.get(name, ()),
                schema.attributes(name),
            )
        init("records", FrozenMap(records))
        init(
            "hard_deletion",
            frozenset(
                name for name, info in records.items() if HARD_DELETION_PROPERTY in info.properties
            ),
        )
        # Records whose values aggregates read as items: created ones are kept in memory for
        # the rest of their transaction (see TransactionContext.fresh).
        init(
            "item_records",
            frozenset(
                h.attribute.related
                for h in handles
                if isinstance(h, PropertyAggregate) and h.attribute is not None and h.reads_items
            ),
        )
        # The first field of every index, per record: a look-up by none of them scans.
        init(
            "leading_fields",
            FrozenMap(
                {
                    name: frozenset(index.fields[0] for index in record.indexes)
                    for name, record in schema.records.items()
                }
            ),
        )
        _check_dep_sources(handles)
        routes: dict[tuple[str, str], RouteSubject] = {}
        for handle in handles:
            for route in handle.routes():
                routes.setdefault(route, RouteSubject()).attach(_observer(handle))
        init("routes", FrozenMap(routes))
        # (record, event type) -> the dictionaries read as data_deps by the aggregates that
        # follow it: a write locks their rows before any computation runs (see
        # TransactionContext.propagate), so every write takes them first.
        dep_locks: dict[tuple[str, str], list[str]] = {}
        for handle in handles:
            if isinstance(handle, PropertyAggregate | DictionaryAggregate) and handle.deps:
                for route in handle.routes():
                    if route[0] != DICTIONARY_RECORD:
                        names = dep_locks.setdefault(route, [])
                        names.extend(n for n in handle.deps.values() if n not in names)
        init(
            "dep_locks",
            FrozenMap({k: tuple(sorted(v)) for k, v in dep_locks.items()}),
        )
        # link -> (the link column holding the deeper record's id, the deeper record) of every
        # deep attribute_query path going through it: a write creating or deleting such a link
        # reads the deeper record share-locked before any computation runs (see
        # TransactionContext.propagate and reactive.handles.deep).
        deep_locks: dict[str, list[tuple[str, str]]] = {}
        for handle in handles:
            if isinstance(handle, PropertyAggregate | DictionaryAggregate):
                if not handle.fold.needs_item:
                    continue
                for path in handle.deep:
                    if path.fields:
                        ends = deep_locks.setdefault(path.link, [])
                        if (path.other, path.record) not in ends:
                            ends.append((path.other, path.record))
        init("deep_locks", FrozenMap({k: tuple(v) for k, v in deep_locks.items()}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the compiled model is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"the compiled model is frozen: cannot delete {name!r}")

    # -- compile -----------------------------------------------------------------------------

    def _check_names(self, views: list[Entity | Relation]) -> None:
        seen: dict[str, str] = {}
        system = {r.name for r in SYSTEM_RECORDS} | {r.name for r in self.extra_records}
        for kind, name in [
            *(("entity", e.name) for e in self.entities),
            *(("relation", r.relation_name) for r in self.relations),
            *(("view", record_name(v)) for v in views),
        ]:
            if name in system:
                raise ModelError(f"{kind} name {name!r} is reserved for a system record")
            if name in seen:
                raise ModelError(f"{kind} {name!r} is declared twice (also as {seen[name]})")
            seen[name] = kind
        for relation in self.relations:
            for end in (relation.source, relation.target):
                if record_name(end) not in seen:
                    raise ModelError(
                        f"relation {relation.relation_name} refers to {record_name(end)!r}, "
                        "which is not among the controller's entities and relations"
                    )
        check_not_view_end(self.relations, [record_name(v) for v in views])

    def _create_handles(self, owned: dict[str, dict[str, Handle]]) -> list[Handle]:
        dictionary_handles: list[Handle] = []
        for dictionary in self.dictionaries.values():
            if dictionary.computation is not None:
                dictionary_handles.append(
                    _dictionary_handle(
                        dictionary.computation, dictionary.name, dictionary.type == "integer"
                    )
                )
        owners: list[Entity | Relation] = [*self.entities, *self.relations]
        record_handles: list[Handle] = []
        for owner in owners:
            if owner.computation is not None:
                if not isinstance(owner.computation, Transform):
                    raise ModelError(
                        f"{record_name(owner)}: an entity or relation computation must be a "
                        f"Transform, got {type(owner.computation).__name__}"
                    )
                transform = owner.computation
                record_handles.append(
                    EventTransformHandle(transform, record_name(owner))
                    if transform.event_deps is not None
                    else TransformHandle(transform, record_name(owner))
                )
        property_handles: list[Handle] = []
        for owner in owners:
            host = record_name(owner)
            for prop in owner.properties:
                if prop.computation is None:
                    continue
                handle = _property_handle(prop, host)
                owned.setdefault(host, {})[prop.name] = handle
                property_handles.append(handle)
        return [*dictionary_handles, *record_handles, *property_handles]

    def _schema(self, hidden: list[tuple[str, Field]], indexes: list[tuple[str, Index]]) -> Schema:
        extra_fields: dict[str, list[Field]] = {}
        for record, field in hidden:
            if field.name not in {f.name for f in extra_fields.get(record, [])}:
                extra_fields.setdefault(record, []).append(field)
        extra_indexes: dict[str, list[Index]] = {}
        for record, index in indexes:
            extra_indexes.setdefault(record, []).append(index)

        def fields_of(name: str, properties: list[Property]) -> list[Field]:
            return [Field(p.name, p.type) for p in properties] + extra_fields.get(name, [])

        def indexes_of(name: str, properties: list[Property]) -> list[Index]:
            own = [Index((p.name,), unique=p.unique) for p in properties if p.index or p.unique]
            return own + extra_indexes.get(name, [])

        def entity_indexes(entity: Entity) -> list[Index]:
            own = indexes_of(entity.name, entity.properties)
            own += [
                Index(
                    c.fields,
                    unique=True,
                    name=c.name or f"{entity.name}_{'_'.join(c.fields)}_unique",
                    where=c.where or {},
                )
                for c in entity.constraints
                if isinstance(c, UniqueConstraint)
            ]
            return own

        def entity_fields(entity: Entity) -> list[Field]:
            non_null = {c.field for c in entity.constraints if isinstance(c, NonNullConstraint)}
            return [
                attrs.evolve(f, non_null=True) if f.name in non_null else f
                for f in fields_of(entity.name, entity.properties)
            ]

        records = [RecordType(e.name, entity_fields(e), entity_indexes(e)) for e in self.entities]
        for system in [*SYSTEM_RECORDS, *self.extra_records]:
            records.append(
                RecordType(
                    system.name,
                    [*system.fields, *extra_fields.get(system.name, [])],
                    [*system.indexes, *extra_indexes.get(system.name, [])],
                )
            )
        links = [
            LinkType(
                r.relation_name,
                record_name(r.source),
                r.source_property,
                record_name(r.target),
                r.target_property,
                r.type,
                fields_of(r.relation_name, r.properties),
                indexes_of(r.relation_name, r.properties),
                symmetric=r.symmetric,
                cascade=r.cascade,
            )
            for r in self.relations
        ]
        return Schema(records, links)

    # -- questions about the model (pure: no transaction, no state) ---------------------

    def public_query(self, name: str, query: Any) -> Any:
        """``query`` with every ``"*"`` limited to the fields users declared: a computation's
        internal state stays out of reads unless asked for by name."""
        view = self.views.get(name)
        if view is not None and view.base is not None:
            return self.public_query(view.base, query)  # a filtered view reads its base
        if not isinstance(query, _SEQUENCES) or name not in self.schema.records:
            return query
        out: list[Any] = []
        attributes = self.schema.attributes(name)
        for item in query:
            if item == "*":
                hidden = self.records[name].hidden if name in self.records else set()
                out.extend(f for f in self.schema.fields(name) if f not in hidden)
            elif isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
                attribute = attributes.get(item[0])
                if item[0] == "&" or attribute is None:
                    out.append(item)
                else:
                    nested = self.public_query(attribute.related, item[1])
                    out.append((item[0], self._link_query(attribute.link.name, nested)))
            else:
                out.append(item)
        return out

    def _link_query(self, link: str, nested: Any) -> Any:
        if not isinstance(nested, list):
            return nested
        return [
            ("&", self.public_query(link, list(i[1])))
            if isinstance(i, list | tuple) and len(i) == 2 and i[0] == "&"
            else i
            for i in nested
        ]

    def unindexed_lookup(self, name: str, fields: Iterable[str]) -> str | None:
        """The first of ``fields`` (own fields a look-up of ``name`` matches on) when no index
        of ``name`` starts with any of them: such a look-up scans the table. None otherwise."""
        leading = self.leading_fields.get(name)
        if leading is None:
            return None
        named = [f for f in fields if f != "id" and "." not in f]
        if not named or leading.intersection(named):
            return None
        return named[0]

    def public_event(self, event: MutationEvent) -> MutationEvent:
        """``event`` without computations' internal state fields (what subscribers see)."""
        info = self.records.get(event.record_name)
        if info is None or not info.hidden:
            return event
        hidden = info.hidden

        def strip(record: Mapping[str, Any] | None) -> Any:
            if record is None:
                return None
            return {k: v for k, v in record.items() if k not in hidden}

        keys = event.keys
        if keys is not None:
            keys = tuple(k for k in keys if k not in hidden)
        return MutationEvent(
            event.record_name, event.type, strip(event.record), strip(event.old_record), keys
        )

    def check_writable(self, name: str, data: Mapping[str, Any]) -> None:
        """Refuse user writes to computed properties and internal state."""
        info = self.records.get(name)
        if info is None or not isinstance(data, Mapping):
            return
        for key in data:
            handle = info.owned.get(key)
            if handle is not None:
                raise ModelError(
                    f"{name}.{key} is computed by {handle.name} and cannot be written directly"
                )
            if key in info.hidden:
                raise ModelError(f"{name}.{key} is internal state of a computation")
            if any(key == p for p, _ in info.computed):
                raise ModelError(f"{name}.{key} is computed from the record's own fields")


def _aggregates_over_views(handles: Iterable[Handle], views: Mapping[str, View]) -> None:
    """Point each property aggregate over a filtered relation (``record=`` a view) at the
    stored relation under it; its items are the view's link records."""
    for handle in handles:
        if isinstance(handle, TransformHandle) and handle.source in views:
            if has_merged_ids(handle.source, views):
                handle.source_id_type = "string"  # ids like "Customer:1"
            continue
        if not isinstance(handle, PropertyAggregate) or handle.decl.record is None:
            continue
        name = record_name(handle.decl.record)
        view = views.get(name)
        if view is None:
            continue
        under = view
        while under.base is not None and under.base in views:
            under = views[under.base]
        if not view.is_link or under.base is None:
            raise SetupError(
                f"{handle.name}: record={name} is a merged view; a property aggregate runs "
                "over one relation (or a filtered view of one)"
                if view.is_link
                else f"{handle.name}: record={name} is an entity view; on a property, record= "
                "must be a relation (or a filtered view of one)"
            )
        handle.view, handle.view_link = name, under.base


def _check_dep_sources(handles: Iterable[Handle]) -> None:
    """Refuse an aggregate whose ``data_deps`` name a dictionary kept by a computation that
    follows the same records as the aggregate: one write would move the dictionary and the
    items at once, and the recount on the dictionary's change would meet items whose own
    events are still pending (counted twice)."""
    by_dictionary = {
        h.target: h for h in handles if h.host is None and not isinstance(h, TransformHandle)
    }
    for handle in handles:
        if not isinstance(handle, PropertyAggregate | DictionaryAggregate) or not handle.deps:
            continue
        own = {record for record, _ in handle.routes() if record != handle.dictionary_record}
        for alias, name in handle.deps.items():
            keeper = by_dictionary.get(name)
            if keeper is None:
                continue
            shared = sorted(own & {record for record, _ in keeper.routes()})
            if shared:
                raise ModelError(
                    f"{handle.name}: data_deps[{alias!r}] is dictionary {name!r}, which "
                    f"{keeper.name} derives from {', '.join(shared)}, as this aggregate reads "
                    "them: a write there would change both at once, which data_deps do not "
                    "support (depend on a dictionary set by other events)"
                )


def _with_views(schema: Schema, views: Mapping[str, View]) -> Schema:
    """``schema`` with every view as a record type of its fields: what handles bind against
    (a view has no table; storage never sees this schema)."""
    if not views:
        return schema
    plain = [r for r in schema.records.values() if not isinstance(r, LinkType)]
    extra = [
        RecordType(
            v.name,
            [*v.fields.values(), *([Field(TYPE_FIELD)] if has_merged_ids(v.name, views) else [])],
        )
        for v in views.values()
    ]
    return Schema([*plain, *extra], schema.links.values())


def _property_handle(prop: Property, host: str) -> Handle:
    computation = prop.computation
    if isinstance(computation, _Aggregate):
        if prop.default is not None:
            raise ModelError(
                f"{host}.{prop.name} has both a default and a {computation.kind}: the "
                "computation gives the value"
            )
        return PropertyAggregate(computation, host, prop.name)
    if isinstance(computation, StateMachine):
        return StateMachineHandle(computation, host, prop.name)
    if isinstance(computation, Custom):
        if computation.data_deps is not None:
            return DataDepsHandle(computation, host, prop.name)
        return CustomHandle(computation, host, prop.name)
    raise ModelError(f"{host}.{prop.name}: {type(computation).__name__} cannot compute a property")


def _dictionary_handle(computation: Computation, name: str, integer: bool) -> Handle:
    if isinstance(computation, _Aggregate):
        return DictionaryAggregate(computation, name, integer)
    if isinstance(computation, StateMachine):
        return StateMachineHandle(computation, None, name)
    if isinstance(computation, Custom):
        if computation.data_deps is not None:
            return DataDepsHandle(computation, None, name)
        return CustomHandle(computation, None, name)
    raise ModelError(f"dictionary {name}: {type(computation).__name__} cannot compute it")


def _observer(handle: Handle) -> Callable[[tuple[MutationEvent, Any]], None]:
    """Run a handle for one event, capturing its failure on the context rather than raising
    through the Subject (which must keep every subscription for the next transaction)."""

    def on_next(item: tuple[MutationEvent, Any]) -> None:
        event, ctx = item
        if ctx.error is not None:
            return
        ctx.trail.append(handle.name)
        try:
            handle.on_event(event, ctx)
        except ComputationError as exc:
            ctx.error = exc
        except Exception as exc:
            error = ComputationError(handle.name, describe(exc), exc)
            error.__cause__ = exc
            ctx.error = error

    return on_next
