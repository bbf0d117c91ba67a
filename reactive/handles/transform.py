"""Transform: records of the host entity/relation derived from records of a source
(:class:`TransformHandle`), or from mutation events (:class:`EventTransformHandle`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from reactive.callables import adapt
from reactive.computations import Transform, Trigger
from reactive.errors import ComputationError, SetupError
from reactive.handles.base import Handle, Route
from reactive.handles.triggers import TriggerIndex, check_trigger
from reactive.model import record_name
from reactive.views import stored_record
from storage import Field, Index, MutationEvent, Schema

# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_SEQUENCES = (list, tuple)

if TYPE_CHECKING:
    from reactive.context import TransactionContext


class TransformHandle(Handle):
    """Keeps the derived records of each source record: created with it, updated in place (same
    ids, by position in the callback's result), deleted with it."""

    def __init__(self, decl: Transform, output: str):
        self.decl = decl
        self.output = output
        assert decl.record is not None and decl.callback is not None
        self.source = record_name(decl.record)
        self.name = f"{output} (Transform of {self.source})"
        self.callback = adapt(decl.callback, 1, f"{self.name} callback")
        self.source_field = f"_{output}_bound_source"
        # The type of the source's ids: "string" over a merged view ("Customer:1"), set by the
        # engine before the schema is built.
        self.source_id_type: Literal["number", "string"] = "number"
        self.index_field = f"_{output}_bound_index"
        self.query: list[str] = ["*"]
        if decl.attribute_query is not None:
            if not all(isinstance(i, str) for i in decl.attribute_query):
                raise SetupError(
                    f"{self.name}: attribute_query may name fields of {self.source} only; "
                    "read related records in the callback through ctx.storage"
                )
            # "id" is always read (the callback's source carries it): naming it is allowed.
            self.query = [f for f in decl.attribute_query if f != "id"]

    def bind(self, schema: Schema) -> None:
        fields = schema.fields(self.source)
        for field in self.query:
            if field != "*" and field not in fields:
                raise SetupError(f"{self.name}: {self.source} has no field {field!r}")
        self.watched = list(fields) if "*" in self.query else self.query

    def hidden_fields(self) -> list[tuple[str, Field]]:
        return [
            (self.output, Field(self.source_field, self.source_id_type)),
            (self.output, Field(self.index_field, "number")),
        ]

    def indexes(self) -> list[tuple[str, Index]]:
        return [(self.output, Index((self.source_field,)))]

    def routes(self) -> list[Route]:
        return [(self.source, "create"), (self.source, "update"), (self.source, "delete")]

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        source_id = event.record["id"]
        if event.type == "create":
            for index, row in enumerate(self.derived_rows(source_id, ctx, event)):
                ctx.create(
                    self.output, {**row, self.source_field: source_id, self.index_field: index}
                )
        elif event.type == "delete":
            ctx.delete(self.output, {self.source_field: source_id})
        elif self._watched_changed(event):
            self.refresh(source_id, ctx)

    def _watched_changed(self, event: MutationEvent) -> bool:
        old = event.old_record or {}
        return any(k in event.record and old.get(k) != event.record[k] for k in self.watched)

    def derived_rows(
        self,
        source_id: Any,
        ctx: TransactionContext,
        event: MutationEvent | None = None,
        source: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """What the callback derives from one source record now (ids left out); ``source``:
        the source record as the callback gets it, when the caller read it already."""
        if source is None:
            if event is not None and all(f in event.record for f in self.watched):
                # A create event carries every field the engine wrote: no need to read it back.
                source = {"id": source_id, **{f: event.record[f] for f in self.watched}}
            else:
                source = ctx.find_one(self.source, {"id": source_id}, self.query)
        if source is None:
            return []
        result = self.callback(source, ctx)
        return _rows(result, self.name)

    def refresh(self, source_id: Any, ctx: TransactionContext) -> None:
        """Bring one source's derived records to what the callback gives now: updated in place
        by position, created, surplus deleted.

        The source is read with a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL): two
        transactions refreshing one source's records take turns, and the second derives from
        what the first committed. A view (filtered or merged entity) has no row of its own:
        the stored row behind the source (a filtered view's base record, a merged view's
        input record) is locked first, then the source is read through the view, so a
        concurrent write that moves it into or out of the view, or changes it, waits for this
        transaction (or committed before the read)."""
        rows: list[dict[str, Any]]
        views = ctx.engine.views
        if self.source in views:
            behind = stored_record(self.source, source_id, views)
            if behind is not None:
                ctx.snapshot(behind[0], behind[1], lock=True)
            rows = self.derived_rows(source_id, ctx)
        else:
            held = ctx.snapshot(self.source, source_id, lock=True)
            if held is None:
                rows = []
            else:
                source = {"id": held["id"], **{f: held.get(f) for f in self.watched}}
                rows = self.derived_rows(source_id, ctx, source=source)
        fields = [k for k in ctx.schema.fields(self.output)]
        existing = ctx.find(
            self.output, {self.source_field: source_id}, fields, order_by={self.index_field: "asc"}
        )
        by_index = {r[self.index_field]: r for r in existing}
        for index, row in enumerate(rows):
            current = by_index.pop(index, None)
            if current is None:
                ctx.create(
                    self.output, {**row, self.source_field: source_id, self.index_field: index}
                )
                continue
            changes = {k: v for k, v in row.items() if k not in current or current[k] != v}
            if changes:
                # What the callback returns is checked like a user's write (it may not name
                # computed fields); the derived record's own bookkeeping fields stay out of it.
                ctx.storage.update(self.output, {"id": current["id"]}, changes)
        for surplus in by_index.values():
            ctx.delete(self.output, {"id": surplus["id"]})


def _rows(result: Any, owner: str) -> list[dict[str, Any]]:
    """What a Transform callback returned (a dict, a list of dicts, or None) as rows to write,
    without ``id`` (the storage gives it)."""
    items = result if isinstance(result, _SEQUENCES) else [result]
    rows: list[dict[str, Any]] = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise ComputationError(
                owner, f"callback must return a dict, a list of dicts or None, got {item!r}"
            )
        rows.append({k: v for k, v in item.items() if k != "id"})
    return rows


class EventTransformHandle(Handle):
    """A Transform over ``event_deps``: each mutation event that matches one of its triggers
    gives ``callback(event, ctx)``'s records, created once and never followed afterwards.

    The records are history (append-only as far as the engine goes): they carry no source and
    no bookkeeping field, and neither a later change nor a deletion of what the event was about
    touches them. The callback gets the event as subscribers see it (computations' internal
    fields left out). An event matching several triggers runs the callback once. Cost per event
    on a subscribed route: the trigger index look-up; per matching event, the callback and one
    create (with its own propagation) per returned record."""

    def __init__(self, decl: Transform, output: str):
        assert decl.event_deps is not None and decl.callback is not None
        self.decl = decl
        self.output = output
        self.name = f"{output} (Transform of events)"
        self.callback = adapt(decl.callback, 1, f"{self.name} callback")
        self.triggers: list[tuple[str, Trigger]] = []
        self._by_route: dict[Route, TriggerIndex[Trigger]] = {}

    def bind(self, schema: Schema) -> None:
        self.triggers = [
            (check_trigger(t, schema, self.name), t) for t in self.decl.event_deps or ()
        ]
        by_route: dict[Route, list[tuple[Trigger, Trigger]]] = {}
        for name, trigger in self.triggers:
            by_route.setdefault((name, trigger.type), []).append((trigger, trigger))
        self._by_route = {route: TriggerIndex(entries) for route, entries in by_route.items()}

    def routes(self) -> list[Route]:
        return list(dict.fromkeys((name, t.type) for name, t in self.triggers))

    def declared_triggers(self) -> list[Trigger]:
        return list(self.decl.event_deps or ())

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        index = self._by_route.get((event.record_name, event.type))
        if index is None or not index.matching(event):
            return
        result = self.callback(ctx.engine.public_event(event), ctx)
        for row in _rows(result, self.name):
            ctx.create(self.output, row)
