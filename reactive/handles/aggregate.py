"""Count, Summation, WeightedSummation, Average, Every, Any: incremental aggregates.

Two forms:
- on a Property (``property="likes"``): over the host's related records; the running totals are
  hidden fields of the host, each link stores its item's contribution.
- on a Dictionary (``record=Entity``): over every record of an entity or relation; the totals
  live with the dictionary, each record stores its contribution.

A change costs O(1) in the number of items: the delta of one contribution. Contributions are
not stored: callbacks are deterministic functions of the item, so the old contribution is
recomputed from the event's old snapshot (links are deleted before the records they join, so the
related record is still readable when its link goes).

Beyond the items (see :mod:`reactive.deps` and :mod:`reactive.handles.deep`): with
``data_deps`` a change of a dictionary they read re-evaluates every item under the old and the
new value and applies the differences (O(hosts x items) reads, as the original's recount; the
item changes stay O(1), under the current value); with a deep path, a change of the deeper
record or of the item's link to it re-evaluates the items concerned (O(items linked)).

Property aggregates apply their deltas atomically: ``ctx.apply_deltas`` (``Session.
apply_deltas``) adds the delta to the host's hidden total and count and sets the value from the
new totals in one ``UPDATE ... RETURNING``, so transactions adding to one host at once, on any
number of connections or processes, lose nothing (the database adds under its row lock; a read in
Python and a write back lost most of them). No read of the host precedes it. The update event
carries the host before (totals: the new ones minus the delta) and after.

Numbers, the rule. Contributions are ints or floats (anything else counts 0). Int totals are
exact: a total that would leave 64 bits is refused (:func:`check_total`'s ComputationError, the
whole write rolled back, nothing stored); a delta that is itself beyond 64 bits (a
WeightedSummation's product) is checked against the host's total first and, when the total fits,
applied in two halves. A float for an ``integer`` target is refused before anything is written.
Float totals add as the database adds them: SQLite in doubles (as Python did), PostgreSQL in
``numeric``, exactly on the decimal reprs of the floats, read back as the nearest float (so a
float total may differ from a double sum in the last digit; ``verify()`` compares floats with a
relative tolerance of 1e-9). A float total that would not be finite is refused.

Dictionary aggregates keep their totals in the JSON ``state`` of the dictionary's row, so they
add in Python (exactly as described above) from a row they hold locked: the first change in a
transaction locks the row and reads it afresh (``ctx.dictionary_row(lock=True)``), and every
change writes the new value and totals back. A concurrent transaction changing the same
dictionary waits for the lock, then reads what this one committed: nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reactive import deps
from reactive.callables import adapt
from reactive.computations import _Aggregate
from reactive.errors import ComputationError, ModelError, SetupError
from reactive.handles.base import Handle, Route
from reactive.handles.deep import DeepPath, split_deep
from reactive.handles.folds import Fold, check_total
from reactive.model import Dictionary, record_name
from storage import (
    LINK_FIELDS_KEY,
    Derived,
    Field,
    MatchExp,
    MutationEvent,
    RelationAttribute,
    Schema,
    TotalRangeError,
)

if TYPE_CHECKING:
    from reactive.context import TransactionContext

_INT64 = (-(2**63), 2**63 - 1)


def _split_query(decl: _Aggregate, name: str) -> tuple[list[str], list[str] | None, list[DeepPath]]:
    """The item's own fields, the link fields (under '&'; None when '&' is not named) and the
    deep paths (``("author", ["status"])``, see :mod:`reactive.handles.deep`) that the
    attribute query names. ``"id"`` is left out of the first two: an item and its link are
    always read with their id, which never changes."""
    fields: list[str] = []
    link_fields: list[str] | None = None
    deep: list[DeepPath] = []
    for item in decl.attribute_query or []:
        path = split_deep(item)
        if path is not None:
            deep.append(path)
            continue
        if isinstance(item, str):
            if item != "id":
                fields.append(item)
        elif (
            isinstance(item, tuple | list)
            and len(item) == 2
            and item[0] == LINK_FIELDS_KEY
            and all(isinstance(f, str) for f in item[1])
        ):
            link_fields = [*(link_fields or []), *(f for f in item[1] if f != "id")]
        else:
            raise ModelError(
                f"{name}: attribute_query may name fields of the item, link fields under "
                "'&' and fields of one to-one relation of the item ((attribute, [fields])); "
                f"{item!r} is none of these (a path goes at most one relation further)"
            )
    return fields, link_fields, deep


def _callback(decl: _Aggregate, name: str) -> tuple[Any, dict[str, deps.DictionaryDep]]:
    """The aggregate's callback adapted to ``(item, ctx)`` (``(item, deps, ctx)`` with
    ``data_deps``), and its checked data dependencies."""
    declared = deps.check_data_deps(decl.data_deps, name)
    if declared and decl.callback is None:
        raise ModelError(
            f"{name}: data_deps feed the callback, and {decl.kind} has none here; declare "
            "callback=lambda item, deps: ... (a Summation or Average takes none: use "
            "WeightedSummation)"
        )
    if decl.callback is None:
        return None, declared
    base = 2 if declared else 1
    what = f"{name} callback" + (" (it has data_deps: (item, deps))" if declared else "")
    return adapt(decl.callback, base, what), declared


def _deep_items(paths: list[DeepPath], record: Mapping[str, Any]) -> dict[str, Any]:
    """The deep values of ``record`` as read with the paths' queries (None: no record)."""
    out: dict[str, Any] = {}
    for path in paths:
        found = record.get(path.attribute)
        out[path.attribute] = path.value(found) if isinstance(found, Mapping) else None
    return out


def _changed(event: MutationEvent, fields: list[str]) -> bool:
    if not fields or event.old_record is None:
        return False
    if "*" in fields:
        return any(event.old_record.get(k) != v for k, v in event.record.items() if k != "id")
    return any(f in event.record and event.old_record.get(f) != event.record[f] for f in fields)


class PropertyAggregate(Handle):
    """An aggregate over the host's related records (``property=`` form)."""

    def __init__(self, decl: _Aggregate, host: str, prop: str):
        self.decl = decl
        self.host = host
        self.host_record: str = host
        self.target = prop
        self.name = f"{host}.{prop} ({decl.kind})"
        callback, self.data_deps = _callback(decl, self.name)
        self.fold = Fold(decl, callback, bool(self.data_deps))
        self.fields, link_fields, self.deep = _split_query(decl, self.name)
        # {alias: dictionary name} once resolved against the model (resolve_deps).
        self.deps: dict[str, str] = {}
        self.dictionary_record = ""
        # The callback gets item["&"] when the query names '&', even with nothing but its id.
        self.wants_link = link_fields is not None
        self.link_fields = link_fields or []
        self.total_field = f"_{prop}_bound_total"
        self.count_field = f"_{prop}_bound_count"
        self.attribute: RelationAttribute | None = None
        self.integer = False  # the target is an "integer" property (known once bound)
        # The target as the database derives it from the running totals on every delta.
        self.derived = {prop: Derived(self.fold.kind, self.total_field, self.count_field)}
        # record= a filtered relation (a view): its stored link, set by the engine before bind;
        # the items are then the view's link records, followed through the view's events.
        self.view: str | None = None
        self.view_link: str | None = None
        self.links = ""  # the record whose events are the links: the relation, or its view
        self.related = ""  # the items' record (known once bound)

    # -- declaration ------------------------------------------------------------------------

    def bind(self, schema: Schema) -> None:
        self.attribute = self._find_attribute(schema)
        self.links = self.view or self.attribute.link.name
        self.related = self.attribute.related
        target = schema.fields(self.host_record).get(self.target)
        self.integer = target is not None and target.type == "integer"
        related_fields = schema.fields(self.attribute.related)
        if "*" in self.fields:
            self.fields = list(related_fields)
        for field in self.fields:
            if field not in related_fields:
                raise SetupError(
                    f"{self.name}: attribute_query names {field!r}, which "
                    f"{self.attribute.related} does not have"
                )
        link_fields = schema.fields(self.attribute.link.name)
        for field in self.link_fields:
            if field not in link_fields:
                raise SetupError(
                    f"{self.name}: attribute_query names link field {field!r}, which "
                    f"{self.attribute.link.name} does not have"
                )
        for path in self.deep:
            path.bind(schema, self.attribute.related, self.name, self.attribute.link.name)

    def resolve_deps(self, dictionaries: Mapping[str, Dictionary], record: str) -> None:
        """Check ``data_deps`` against the model's dictionaries (``record``: where their
        values live, whose events tell a change)."""
        self.deps = deps.resolve(self.data_deps, dictionaries, self.name)
        self.dictionary_record = record

    def _find_attribute(self, schema: Schema) -> RelationAttribute:
        decl = self.decl
        attributes = schema.attributes(self.host_record)
        if decl.property is not None:
            attribute = attributes.get(decl.property)
            if attribute is None or not attribute.via_link:
                raise SetupError(
                    f"{self.name}: property={decl.property!r} is not a relation attribute of "
                    f"{self.host_record} (it has: {', '.join(sorted(attributes)) or 'none'})"
                )
            return attribute
        assert decl.record is not None
        link_name = self.view_link or record_name(decl.record)
        if link_name not in schema.links:
            raise SetupError(f"{self.name}: on a property, record= must be a Relation")
        candidates = [a for a in attributes.values() if a.via_link and a.link.name == link_name]
        if decl.direction is not None:
            candidates = [a for a in candidates if a.side == decl.direction or a.symmetric]
        if len(candidates) != 1:
            raise SetupError(
                f"{self.name}: {self.host_record} is not exactly one end of {link_name}; "
                "use property= or direction="
            )
        return candidates[0]

    def hidden_fields(self) -> list[tuple[str, Field]]:
        return [
            (self.host_record, Field(self.total_field, "number")),
            (self.host_record, Field(self.count_field, "number")),
        ]

    def routes(self) -> list[Route]:
        attribute = self.bound_attribute()
        link = self.links
        routes: list[Route] = [(link, "create"), (link, "delete")]
        if self.link_fields:
            routes.append((link, "update"))
        if self.fields and self.fold.needs_item:
            routes.append((attribute.related, "update"))
        return routes + _extra_routes(self.deep, self.deps, self.dictionary_record, self.fold)

    def initial(self, data: Mapping[str, Any], ctx: TransactionContext) -> dict[str, Any]:
        if self.target in data:
            raise ModelError(
                f"{self.host_record}.{self.target} is computed by {self.name} and cannot be given"
            )
        return {self.target: self.fold.initial()}

    def bound_attribute(self) -> RelationAttribute:
        """The relation attribute of the host this aggregate runs over (after bind)."""
        if self.attribute is None:
            raise SetupError(f"{self.name}: not bound to a schema")
        return self.attribute

    # -- run time ---------------------------------------------------------------------------

    def ends(self, link_row: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        """(host id, related id) for each host end of a link row."""
        attribute = self.bound_attribute()
        source, target = link_row["source"]["id"], link_row["target"]["id"]
        if attribute.symmetric:
            return [(source, target)] if source == target else [(source, target), (target, source)]
        if attribute.side == "source":
            return [(source, target)]
        return [(target, source)]

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        name = event.record_name
        if name == self.dictionary_record:
            self._dep_changed(event, ctx)
            return
        if name == self.links:
            if event.type == "create":
                self._link_changed(event.record, 1, ctx)
            elif event.type == "delete":
                self._link_changed(event.record, -1, ctx)
            elif self.fold.needs_item and _changed(event, self.link_fields):
                self._link_fields_changed(event, ctx)
        elif event.type == "update" and name == self.related and _changed(event, self.fields):
            self._related_changed(event, ctx)
        if self.deep and self.fold.needs_item:
            for item_id, old, new in _deep_changes(self.deep, event, ctx):
                related = self._related(item_id, ctx)
                if related is None:
                    continue
                for link_row in self._links_of(item_id, ctx):
                    for host_id, other_id in self.ends(link_row):
                        if other_id != item_id:
                            continue
                        delta = self.contribution({**related, **new}, link_row, ctx) - (
                            self.contribution({**related, **old}, link_row, ctx)
                        )
                        self._apply(host_id, delta, 0, ctx)

    def _dep_changed(self, event: MutationEvent, ctx: TransactionContext) -> None:
        """A dictionary of ``data_deps`` changed: every item's contribution under the old
        value and the new one, the difference applied per host. O(hosts x related): one
        read of every link and item, a write per host whose value moves."""
        found = _dep_values(self.deps, event, ctx)
        if found is None:
            return
        old, new = found
        deltas: dict[Any, float] = {}
        for host_id, related, row in self.items(ctx):
            delta = self.contribution(related, row, ctx, new) - self.contribution(
                related, row, ctx, old
            )
            if delta:
                deltas[host_id] = deltas.get(host_id, 0) + delta
        for host_id, delta in deltas.items():
            self._apply(host_id, delta, 0, ctx)

    def items(
        self, ctx: TransactionContext, match: Any = None, id_range: Any = None
    ) -> list[tuple[Any, Mapping[str, Any] | None, Mapping[str, Any]]]:
        """(host id, related record, link row) of every item (of the links ``match``
        selects; of the hosts in ``id_range``) as stored now: what a whole recount reads."""
        links = ctx.find(self.links, match, ["source", "target", *self.link_fields])
        items: dict[Any, Any] = {}
        if self.reads_items:
            ids = {end for row in links for _, end in self.ends(row)}
            where = None if len(ids) > 5000 else MatchExp.atom("id", "in", sorted(ids))
            query = [*self.fields, *(p.query() for p in self.deep)]
            for record in ctx.find(self.bound_attribute().related, where, query):
                items[record["id"]] = {**record, **_deep_items(self.deep, record)}
        out: list[tuple[Any, Mapping[str, Any] | None, Mapping[str, Any]]] = []
        for row in links:
            for host_id, related_id in self.ends(row):
                if id_range is not None and not id_range[0] <= host_id < id_range[1]:
                    continue
                related = items.get(related_id) if self.reads_items else {"id": related_id}
                out.append((host_id, related, row))
        return out

    def _link_changed(self, row: Mapping[str, Any], sign: int, ctx: TransactionContext) -> None:
        for host_id, related_id in self.ends(row):
            value = self.contribution(self._related(related_id, ctx), row, ctx)
            self._apply(host_id, sign * value, sign, ctx)

    def _link_fields_changed(self, event: MutationEvent, ctx: TransactionContext) -> None:
        old_row, new_row = event.old_record or {}, event.merged
        for host_id, related_id in self.ends(new_row):
            related = self._related(related_id, ctx)
            delta = self.contribution(related, new_row, ctx) - self.contribution(
                related, old_row, ctx
            )
            self._apply(host_id, delta, 0, ctx)

    def _related_changed(self, event: MutationEvent, ctx: TransactionContext) -> None:
        related_id = event.record["id"]
        old_related, new_related = event.old_record or {}, event.merged
        if self.deep:  # the deep values as at this event: an update leaves them as they are
            now = {p.attribute: p.of_item(related_id, ctx) for p in self.deep}
            old_related, new_related = {**old_related, **now}, {**new_related, **now}
        for link_row in self._links_of(related_id, ctx):
            for host_id, other_id in self.ends(link_row):
                if other_id != related_id:
                    continue
                delta = self.contribution(new_related, link_row, ctx) - self.contribution(
                    old_related, link_row, ctx
                )
                self._apply(host_id, delta, 0, ctx)

    def _links_of(self, related_id: Any, ctx: TransactionContext) -> list[Mapping[str, Any]]:
        """The links of the related record ``related_id`` as at the current event."""
        attribute = self.bound_attribute()
        link = self.links
        query = ["source", "target", *self.link_fields]
        sides = ("source", "target") if attribute.symmetric else (attribute.other,)
        # The links as they were at this event: the same update may re-link the record after
        # writing its fields (those link events follow, and account for themselves).
        later = [e for e in ctx.later_in_write() if e.record_name == link]
        created_later = {e.record["id"] for e in later if e.type == "create"}
        rows: dict[Any, Mapping[str, Any]] = {}
        for side in sides:
            for row in ctx.find(link, {side: {"id": related_id}}, query):
                if row["id"] not in created_later:
                    rows.setdefault(row["id"], row)
        for e in later:
            if e.type == "delete" and related_id in (
                e.record["source"]["id"],
                e.record["target"]["id"],
            ):
                rows.setdefault(e.record["id"], e.record)
        return list(rows.values())

    @property
    def reads_items(self) -> bool:
        """Whether a contribution needs the related record's fields (or deep values)."""
        return self.fold.needs_item and bool(self.fields or self.deep)

    def _related(self, related_id: Any, ctx: TransactionContext) -> Mapping[str, Any] | None:
        if not self.reads_items:
            return {"id": related_id}
        related = self.bound_attribute().related
        found = ctx.get(related, related_id, self.fields)
        if found is None:
            # Deleted in the same write as the link (its links go first in the events).
            found = ctx.deleted.get((related, related_id))
        if found is None or not self.deep:
            return found
        return {**found, **{p.attribute: p.of_item(related_id, ctx) for p in self.deep}}

    def contribution(
        self,
        related: Mapping[str, Any] | None,
        link_row: Mapping[str, Any],
        ctx: TransactionContext,
        dep_values: Mapping[str, Any] | None = None,
    ) -> float:
        """One item's share of the totals: the related record (None: gone; with its deep
        values under their attributes) through a link row, under ``dep_values`` (the data
        deps' current values when None); the same function the incremental steps and the
        recomputation use."""
        if not self.fold.needs_item:
            return 1
        if related is None:
            return 0
        item: dict[str, Any] = {"id": related.get("id")}
        for field in self.fields:
            item[field] = related.get(field)
        for path in self.deep:
            item[path.attribute] = related.get(path.attribute)
        if self.wants_link:
            item[LINK_FIELDS_KEY] = {
                "id": link_row.get("id"),
                **{f: link_row.get(f) for f in self.link_fields},
            }
        if self.deps and dep_values is None:
            dep_values = deps.values(self.deps, ctx)
        return self.fold.contribution(item, ctx, dep_values)

    def _apply(self, host_id: Any, delta: float, count_delta: int, ctx: TransactionContext) -> None:
        if delta == 0 and count_delta == 0:
            return
        if type(delta) is int and not _INT64[0] <= delta <= _INT64[1]:
            # A delta beyond 64 bits (a WeightedSummation's product) cannot be sent as one.
            # Refused when the total would leave 64 bits; otherwise it goes in two halves,
            # each within 64 bits, the total between them too (halfway between two totals
            # that fit): two update events, the last one with the right total.
            current = ctx.get(self.host_record, host_id, [self.total_field])
            if current is None:
                return
            total = (current[self.total_field] or 0) + delta
            check_total(self.name, self._target_name(), total, self.integer)
            half = delta // 2
            self._apply(host_id, half, count_delta, ctx)
            self._apply(host_id, delta - half, 0, ctx)
            return
        if self.integer and type(delta) is float:
            # Refused before anything is written; the message names the total it would be.
            current = ctx.get(self.host_record, host_id, [self.total_field])
            if current is None:
                return  # the host is gone
            total = (current[self.total_field] or 0) + delta
            check_total(self.name, self._target_name(), total, True)
        try:
            ctx.apply_deltas(
                self.host_record,
                host_id,
                {self.total_field: delta, self.count_field: count_delta},
                self.derived,
            )
        except TotalRangeError as exc:
            target = self._target_name()
            check_total(self.name, target, exc.total, self.integer)
            raise ComputationError(self.name, f"{target}: {exc}") from exc

    def _target_name(self) -> str:
        """``Record.property``, as a refusal names it (only worked out for one)."""
        return f"{self.host_record}.{self.target}"


class DictionaryAggregate(Handle):
    """An aggregate over every record of an entity or relation (``record=`` on a Dictionary).

    Every contribution is computed from the event itself (create and delete events carry the
    record, update events its old and merged values), so a change costs no read but the
    dictionary's own row (and, with deep paths, the item's deep values; with data deps, the
    dependencies' rows)."""

    def __init__(self, decl: _Aggregate, dictionary: str, integer: bool = False):
        if decl.record is None:
            raise SetupError(f"{decl.kind} on dictionary {dictionary!r} needs record=")
        self.decl = decl
        self.target = dictionary
        self.integer = integer  # the dictionary is declared "integer"
        self.source = record_name(decl.record)
        self.name = f"{dictionary} ({decl.kind} over {self.source})"
        callback, self.data_deps = _callback(decl, self.name)
        self.fold = Fold(decl, callback, bool(self.data_deps))
        self.fields, link_fields, self.deep = _split_query(decl, self.name)
        if link_fields is not None:
            raise SetupError(f"{self.name}: '&' link fields only exist on property aggregates")
        self.deps: dict[str, str] = {}
        self.dictionary_record = ""

    def bind(self, schema: Schema) -> None:
        fields = schema.fields(self.source)
        if "*" in self.fields:
            self.fields = list(fields)
        for field in self.fields:
            if field not in fields and field not in ("source", "target"):
                raise SetupError(
                    f"{self.name}: attribute_query names {field!r}, which {self.source} lacks"
                )
        for path in self.deep:
            path.bind(schema, self.source, self.name, None)

    def resolve_deps(self, dictionaries: Mapping[str, Dictionary], record: str) -> None:
        """Check ``data_deps`` against the model's dictionaries (``record``: where their
        values live, whose events tell a change)."""
        self.deps = deps.resolve(self.data_deps, dictionaries, self.name, self.target)
        self.dictionary_record = record

    def routes(self) -> list[Route]:
        routes: list[Route] = [(self.source, "create"), (self.source, "delete")]
        if self.fields and self.fold.needs_item:
            routes.append((self.source, "update"))
        return routes + _extra_routes(self.deep, self.deps, self.dictionary_record, self.fold)

    def install(self, ctx: TransactionContext) -> None:
        if ctx.dictionary_row(self.target) is None:
            ctx.set_dictionary(self.target, self.fold.initial(), {"total": 0, "count": 0})

    def contribution(
        self,
        record: Mapping[str, Any],
        ctx: TransactionContext,
        dep_values: Mapping[str, Any] | None = None,
    ) -> float:
        """One record's share of the totals (with its deep values under their attributes),
        under ``dep_values`` (the data deps' current values when None)."""
        if not self.fold.needs_item:
            return 1
        item = {"id": record.get("id"), **{f: record.get(f) for f in self.fields}}
        for path in self.deep:
            item[path.attribute] = record.get(path.attribute)
        if self.deps and dep_values is None:
            dep_values = deps.values(self.deps, ctx)
        return self.fold.contribution(item, ctx, dep_values)

    def records(self, ctx: TransactionContext) -> list[Mapping[str, Any]]:
        """Every record of the source as stored now (with deep values): what a whole recount
        reads."""
        query = [*self.fields, *(p.query() for p in self.deep)]
        return [{**r, **_deep_items(self.deep, r)} for r in ctx.find(self.source, None, query)]

    def _with_deep(self, record: Mapping[str, Any], ctx: TransactionContext) -> Mapping[str, Any]:
        if not self.deep or not self.fold.needs_item:
            return record
        return {**record, **{p.attribute: p.of_item(record["id"], ctx) for p in self.deep}}

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        name = event.record_name
        if name == self.dictionary_record:
            self._dep_changed(event, ctx)
            return
        if name == self.source:
            if event.type == "create":
                self._apply(self.contribution(self._with_deep(event.record, ctx), ctx), 1, ctx)
            elif event.type == "delete":
                record = self._with_deep(event.record, ctx)
                self._apply(-self.contribution(record, ctx), -1, ctx)
            elif _changed(event, self.fields):
                old = self.contribution(self._with_deep(event.old_record or {}, ctx), ctx)
                new = self.contribution(self._with_deep(event.merged, ctx), ctx)
                if new != old:
                    self._apply(new - old, 0, ctx)
        if self.deep and self.fold.needs_item:
            for item_id, old_deep, new_deep in _deep_changes(self.deep, event, ctx):
                found = _at_event(self.source, item_id, self.fields, ctx)
                if found is None:
                    continue
                item = self._with_deep(found, ctx)
                delta = self.contribution({**item, **new_deep}, ctx) - self.contribution(
                    {**item, **old_deep}, ctx
                )
                if delta:
                    self._apply(delta, 0, ctx)

    def _dep_changed(self, event: MutationEvent, ctx: TransactionContext) -> None:
        """A dictionary of ``data_deps`` changed: every record's contribution under the old
        value and the new one, the difference applied. O(records) reads, one write."""
        found = _dep_values(self.deps, event, ctx)
        if found is None:
            return
        old, new = found
        delta: float = 0
        for record in self.records(ctx):
            delta += self.contribution(record, ctx, new) - self.contribution(record, ctx, old)
        if delta:
            self._apply(delta, 0, ctx)

    def _apply(self, delta: float, count_delta: int, ctx: TransactionContext) -> None:
        row = ctx.dictionary_row(self.target, lock=True)  # locked: no concurrent write is lost
        state = (row or {}).get("state") or {}
        total = state.get("total", 0) + delta
        count = state.get("count", 0) + count_delta
        check_total(self.name, f"dictionary {self.target}", total, self.integer)
        ctx.set_dictionary(
            self.target, self.fold.value(total, count), {"total": total, "count": count}
        )


def _extra_routes(
    deep: list[DeepPath], dep_names: Mapping[str, str], dictionary_record: str, fold: Fold
) -> list[Route]:
    """The routes of deep paths (the deeper record's updates, the links to it) and of data
    deps (the dictionaries' rows)."""
    routes: list[Route] = []
    if fold.needs_item:
        for path in deep:
            routes += [(path.link, "create"), (path.link, "delete")]
            if path.fields:
                routes.append((path.record, "update"))
    if dep_names:
        routes += [(dictionary_record, "create"), (dictionary_record, "update")]
    return list(dict.fromkeys(routes))


def _deep_changes(
    paths: list[DeepPath], event: MutationEvent, ctx: TransactionContext
) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """(item id, old deep values, new deep values) of every item whose deep value ``event``
    changes: a deeper record's update (its linked items), a link to one created or deleted
    (its item); the values as at the event (see :mod:`reactive.handles.deep`)."""
    out: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for path in paths:
        name = event.record_name
        if name == path.link and event.type in ("create", "delete"):
            row = event.record
            item_id, deeper_id = row[path.side]["id"], row[path.other]["id"]
            if event.type == "create":
                old = path.of_item(item_id, ctx, without=row["id"])
                new = path.of_item(item_id, ctx)
            else:
                old = path.deeper(deeper_id, ctx)
                new = path.of_item(item_id, ctx)
            if old != new:
                out.append((item_id, {path.attribute: old}, {path.attribute: new}))
        elif name == path.record and event.type == "update" and path.changed(event):
            old_value = path.value(event.old_record)
            new_value = path.value(event.merged)
            for item_id in path.items_of(event.record["id"], ctx):
                out.append((item_id, {path.attribute: old_value}, {path.attribute: new_value}))
    return out


def _at_event(
    name: str, record_id: Any, fields: list[str], ctx: TransactionContext
) -> Mapping[str, Any] | None:
    """Record ``record_id`` of ``name`` if it exists as at the current event (not created
    later in the write; or deleted later), else None."""
    later = [
        e for e in ctx.later_in_write() if e.record_name == name and e.record["id"] == record_id
    ]
    if any(e.type == "create" for e in later):
        return None
    for e in later:
        if e.type == "delete":
            return e.record
    return ctx.get(name, record_id, fields)


def _dep_values(
    dep_names: Mapping[str, str], event: MutationEvent, ctx: TransactionContext
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(old, new) values of the data deps when ``event`` (on the dictionaries' record)
    changes one of them; None when it changes none."""
    key = event.merged.get("key")
    aliases = [alias for alias, name in dep_names.items() if name == key]
    if not aliases or not isinstance(key, str):
        return None
    if event.type == "update":
        if not _changed(event, ["value"]):
            return None
        before = (event.old_record or {}).get("value")
    else:
        before = ctx.engine.dictionaries[key].default_value()
    after = event.merged.get("value")
    if before == after and type(before) is type(after):
        return None
    new = deps.values(dep_names, ctx)
    new.update({alias: after for alias in aliases})
    old = {**new, **{alias: before for alias in aliases}}
    return old, new
