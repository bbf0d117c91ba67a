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

from reactive.callables import adapt
from reactive.computations import _Aggregate
from reactive.errors import ComputationError, ModelError, SetupError
from reactive.handles.base import Handle, Route
from reactive.handles.folds import Fold, check_total
from reactive.model import record_name
from storage import (
    LINK_FIELDS_KEY,
    Derived,
    Field,
    MutationEvent,
    RelationAttribute,
    Schema,
    TotalRangeError,
)

if TYPE_CHECKING:
    from reactive.context import TransactionContext

_INT64 = (-(2**63), 2**63 - 1)


def _split_query(decl: _Aggregate) -> tuple[list[str], list[str] | None]:
    """The item's own fields and the link fields (under '&'; None when '&' is not named) that
    the attribute query names. ``"id"`` is left out of both: an item and its link are always
    read with their id, which never changes."""
    fields: list[str] = []
    link_fields: list[str] | None = None
    for item in decl.attribute_query or []:
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
            raise SetupError(
                f"{decl.kind}: attribute_query may name fields of the item and link fields "
                f"under '&' only; {item!r} reaches further, and changes there would not "
                "re-evaluate the item"
            )
    return fields, link_fields


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
        callback = adapt(decl.callback, 1, f"{self.name} callback") if decl.callback else None
        self.fold = Fold(decl, callback)
        self.fields, link_fields = _split_query(decl)
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

    # -- declaration ------------------------------------------------------------------------

    def bind(self, schema: Schema) -> None:
        self.attribute = self._find_attribute(schema)
        self.links = self.view or self.attribute.link.name
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
        return routes

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
        if event.record_name == self.links:
            if event.type == "create":
                self._link_changed(event.record, 1, ctx)
            elif event.type == "delete":
                self._link_changed(event.record, -1, ctx)
            elif self.fold.needs_item and _changed(event, self.link_fields):
                self._link_fields_changed(event, ctx)
        elif event.type == "update" and _changed(event, self.fields):
            self._related_changed(event, ctx)

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
        attribute = self.bound_attribute()
        related_id = event.record["id"]
        old_related, new_related = event.old_record or {}, event.merged
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
        for link_row in rows.values():
            for host_id, other_id in self.ends(link_row):
                if other_id != related_id:
                    continue
                delta = self.contribution(new_related, link_row, ctx) - self.contribution(
                    old_related, link_row, ctx
                )
                self._apply(host_id, delta, 0, ctx)

    @property
    def reads_items(self) -> bool:
        """Whether a contribution needs the related record's fields."""
        return self.fold.needs_item and bool(self.fields)

    def _related(self, related_id: Any, ctx: TransactionContext) -> Mapping[str, Any] | None:
        if not self.reads_items:
            return {"id": related_id}
        related = self.bound_attribute().related
        found = ctx.get(related, related_id, self.fields)
        if found is None:
            # Deleted in the same write as the link (its links go first in the events).
            return ctx.deleted.get((related, related_id))
        return found

    def contribution(
        self,
        related: Mapping[str, Any] | None,
        link_row: Mapping[str, Any],
        ctx: TransactionContext,
    ) -> float:
        """One item's share of the totals: the related record (None: gone) through a link row
        (the same function the incremental steps and the recomputation use)."""
        if not self.fold.needs_item:
            return 1
        if related is None:
            return 0
        item: dict[str, Any] = {"id": related.get("id")}
        for field in self.fields:
            item[field] = related.get(field)
        if self.wants_link:
            item[LINK_FIELDS_KEY] = {
                "id": link_row.get("id"),
                **{f: link_row.get(f) for f in self.link_fields},
            }
        return self.fold.contribution(item, ctx)

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
    dictionary's own row."""

    def __init__(self, decl: _Aggregate, dictionary: str, integer: bool = False):
        if decl.record is None:
            raise SetupError(f"{decl.kind} on dictionary {dictionary!r} needs record=")
        self.decl = decl
        self.target = dictionary
        self.integer = integer  # the dictionary is declared "integer"
        self.source = record_name(decl.record)
        self.name = f"{dictionary} ({decl.kind} over {self.source})"
        callback = adapt(decl.callback, 1, f"{self.name} callback") if decl.callback else None
        self.fold = Fold(decl, callback)
        self.fields, link_fields = _split_query(decl)
        if link_fields is not None:
            raise SetupError(f"{self.name}: '&' link fields only exist on property aggregates")

    def bind(self, schema: Schema) -> None:
        fields = schema.fields(self.source)
        if "*" in self.fields:
            self.fields = list(fields)
        for field in self.fields:
            if field not in fields and field not in ("source", "target"):
                raise SetupError(
                    f"{self.name}: attribute_query names {field!r}, which {self.source} lacks"
                )

    def routes(self) -> list[Route]:
        routes: list[Route] = [(self.source, "create"), (self.source, "delete")]
        if self.fields and self.fold.needs_item:
            routes.append((self.source, "update"))
        return routes

    def install(self, ctx: TransactionContext) -> None:
        if ctx.dictionary_row(self.target) is None:
            ctx.set_dictionary(self.target, self.fold.initial(), {"total": 0, "count": 0})

    def contribution(self, record: Mapping[str, Any], ctx: TransactionContext) -> float:
        """One record's share of the totals."""
        if not self.fold.needs_item:
            return 1
        item = {"id": record.get("id"), **{f: record.get(f) for f in self.fields}}
        return self.fold.contribution(item, ctx)

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        if event.type == "create":
            self._apply(self.contribution(event.record, ctx), 1, ctx)
        elif event.type == "delete":
            self._apply(-self.contribution(event.record, ctx), -1, ctx)
        elif _changed(event, self.fields):
            old = self.contribution(event.old_record or {}, ctx)
            new = self.contribution(event.merged, ctx)
            if new != old:
                self._apply(new - old, 0, ctx)

    def _apply(self, delta: float, count_delta: int, ctx: TransactionContext) -> None:
        row = ctx.dictionary_row(self.target, lock=True)  # locked: no concurrent write is lost
        state = (row or {}).get("state") or {}
        total = state.get("total", 0) + delta
        count = state.get("count", 0) + count_delta
        check_total(self.name, f"dictionary {self.target}", total, self.integer)
        ctx.set_dictionary(
            self.target, self.fold.value(total, count), {"total": total, "count": count}
        )
