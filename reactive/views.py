"""Views: filtered and merged entities and relations, records with no table of their own.

- A *filtered* view (``Entity("ActiveUser", base=user, match=...)``) holds the records of its
  base that satisfy its match, live. Its records are the base's (same ids, same fields).
- A *merged* view (``Entity("Customer", inputs=[person, company])``) holds the records of
  every input, with the value fields every input has (same name and type) and ``"__type"``,
  the input a record comes from. Its ids are ``"<input>:<id>"`` (``"Person:3"``): the inputs
  keep their own tables and id sequences, so their ids collide, and a view's id must name one
  record (the engine keys its caches, Transform and side effects by (record name, id)).

Contracts:

- Reads (``find``, ``find_one``, ``count``; :mod:`reactive.view_reads`) of a view are reads
  of its base (the match ANDed in: one statement, the base's indexes) or of each input
  (merged in Python: ``order_by`` on the common fields, ``None`` first when ascending;
  without it, input order then id order; ``limit``/``offset`` read at most
  ``offset + limit`` rows per input). A filtered view reads
  through its base's relation attributes too; a merged view offers its common fields only.
- Events. Every base event is turned into the view's, with no read: a create that matches is
  the view's ``create``; an update is the view's ``create`` when the record enters (its whole new
  value), ``delete`` when it leaves (its whole old value), ``update`` when it stays a member;
  a delete of a member is the view's ``delete``. An input's events are the merged view's (an
  update writing no common field is none). So an aggregate, a Transform or a StateMachine over
  a view follows it in O(1) per write, and side effects and streams may watch a view by name.
  Views of views chain. Membership is judged in Python on the event's own values, with the same
  semantics as the storage's SQL match (``None`` compares as in Python), which is why a
  filtered view's match may name only its base's own value fields and ``id``.
- Writes to a view are refused (write to its base or inputs).
- A view is never the end of a relation (relations join stored records): relate the base and
  filter, or declare a filtered relation and aggregate over it with ``record=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reactive.errors import ModelError, SetupError
from reactive.model import Entity, Relation, record_name
from storage import Field, FieldRef, MatchExp, MutationEvent, Record, Schema

TYPE_FIELD = "__type"
"""The field of a merged view's records naming the input each comes from."""

ALWAYS = MatchExp("and")  # the empty AND: every record
NEVER = MatchExp("or")  # the empty OR: none
LINK_ENDS = ("source", "target")  # a link record's ends, kept in a relation view's records


class View:
    """One compiled view: what it reads, the fields it offers, how events become its own."""

    def __init__(self, record: Entity | Relation, is_link: bool):
        self.name = record_name(record)
        self.is_link = is_link
        self.base: str | None = record_name(record.base) if record.base is not None else None
        self.inputs: tuple[str, ...] = tuple(record_name(i) for i in record.inputs or ())
        self.match: MatchExp | None = record.match
        self.fields: dict[str, Field] = {}
        self._test: Callable[[Mapping[str, Any]], bool] = lambda _: True

    @property
    def sources(self) -> tuple[str, ...]:
        """The records this view's records come from (its base, or its inputs)."""
        return (self.base,) if self.base is not None else self.inputs

    def bind(self, fields_of: Callable[[str], Mapping[str, Field]]) -> None:
        """Work out the view's fields from its sources' (``fields_of``: public value fields by
        record name, views included) and check its match against them."""
        if self.base is not None:
            self.fields = dict(fields_of(self.base))
            assert self.match is not None
            self._test = _compile(self.match, self.name, self.base, self.fields, self.is_link)
            return
        common: dict[str, Field] | None = None
        for name in self.inputs:
            fields = fields_of(name)
            if common is None:
                common = dict(fields)
            else:
                # Same name and type (one input's field may be non-null, another's not).
                common = {
                    k: f for k, f in common.items() if k in fields and fields[k].type == f.type
                }
        if not common and not self.is_link:
            raise SetupError(
                f"merged entity {self.name}: its inputs {', '.join(self.inputs)} have no value "
                "field in common (same name and type)"
            )
        self.fields = common or {}

    def holds(self, record: Mapping[str, Any]) -> bool:
        """Whether a record of the base satisfies this filtered view's match (in Python, as
        its events judge it)."""
        return self._test(record)

    # -- events ----------------------------------------------------------------------------

    def derive(self, event: MutationEvent) -> MutationEvent | None:
        """The view's event for one event of a source (None: the view does not change)."""
        if self.base is not None:
            return self._filtered(event)
        return self._merged(event)

    def _filtered(self, event: MutationEvent) -> MutationEvent | None:
        test = self._test
        if event.type == "create":
            return self._as(event, "create", event.record) if test(event.record) else None
        if event.type == "delete":
            return self._as(event, "delete", event.record) if test(event.record) else None
        old = event.old_record or {}
        new = event.merged
        was, now = test(old), test(new)
        if was and now:
            record = self._own(event.record)
            if len(record) == 1 and not self.is_link:
                return None  # only a computation's internal state was written: not the view's
            keys = tuple(k for k in event.keys or () if k in self.fields)
            return MutationEvent(self.name, "update", record, self._own(old), keys)
        if now:
            return self._as(event, "create", new)
        if was:
            return self._as(event, "delete", old)
        return None

    def _as(self, event: MutationEvent, kind: Any, record: Mapping[str, Any]) -> MutationEvent:
        return MutationEvent(self.name, kind, self._own(record))

    def _own(self, record: Mapping[str, Any]) -> Record:
        """``record`` limited to the view's fields (a base's hidden state stays out)."""
        fields = self.fields
        out = {k: v for k, v in record.items() if k in fields or k in ("id", TYPE_FIELD)}
        if self.is_link:
            for end in LINK_ENDS:
                if end in record:
                    out[end] = record[end]
        return out

    def _merged(self, event: MutationEvent) -> MutationEvent | None:
        source = event.record_name
        keys = None
        if event.type == "update":
            keys = tuple(k for k in event.keys or () if k in self.fields)
            if not keys and not any(k in self.fields for k in event.record if k != "id"):
                return None
        old = self._tagged(source, event.old_record) if event.old_record is not None else None
        return MutationEvent(self.name, event.type, self._tagged(source, event.record), old, keys)

    def _tagged(self, source: str, record: Mapping[str, Any]) -> Record:
        return {**self._own(record), "id": merged_id(source, record["id"]), TYPE_FIELD: source}


def has_merged_ids(name: str, views: Mapping[str, View]) -> bool:
    """Whether the records of view ``name`` have a merged view's ids (it is a merged view, or
    filters one)."""
    view = views[name]
    while view.base is not None and view.base in views:
        view = views[view.base]
    return view.base is None


def merged_id(source: str, record_id: Any) -> str:
    """The id of an input's record in a merged view."""
    return f"{source}:{record_id}"


def split_merged_id(value: Any, inputs: Sequence[str]) -> tuple[str, Any] | None:
    """(input, its id) named by a merged view's id; None when it names none of ``inputs``."""
    if not isinstance(value, str) or ":" not in value:
        return None
    source, raw = value.split(":", 1)
    if source not in inputs:
        return None
    return source, int(raw) if raw.lstrip("-").isdigit() else raw


def stored_record(name: str, record_id: Any, views: Mapping[str, View]) -> tuple[str, Any] | None:
    """The stored record behind record ``record_id`` of ``name`` (a view or a stored record
    type), as (record type, id): a filtered view's record is its base's (same id), a merged
    view's the input's its id names. None when a merged id names none of the inputs."""
    while name in views:
        view = views[name]
        if view.base is not None:
            name = view.base
            continue
        found = split_merged_id(record_id, view.inputs)
        if found is None:
            return None
        name, record_id = found
    return name, record_id


# -- membership in Python (the SQL match's semantics: storage.sql.match) -----------------------

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _compile(
    match: MatchExp, view: str, base: str, fields: Mapping[str, Field], is_link: bool
) -> Callable[[Mapping[str, Any]], bool]:
    """``match`` as a Python test of one record's values; a key that is not one of the base's
    own value fields (or ``id``) fails here, naming the view and the key."""
    if match.kind == "not":
        inner = _compile(match.children[0], view, base, fields, is_link)
        return lambda r: not inner(r)
    if match.kind in ("and", "or"):
        parts = [_compile(c, view, base, fields, is_link) for c in match.children]
        if match.kind == "and":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    key, op, value = match.key, match.op, match.value
    assert key is not None and op is not None
    if key != "id" and key not in fields:
        known = ", ".join(sorted(fields)) or "none"
        reach = " (a path through a relation would change with other records)" if "." in key else ""
        raise SetupError(
            f"filtered view {view}: match names {key!r}, which is not a value field of {base}"
            f"{reach}; it may name {base}'s own value fields and id ({known})"
        )
    if key != "id" and fields[key].type == "json" and op not in ("is null", "is not null"):
        raise SetupError(
            f"filtered view {view}: match on json field {key!r} may only test is null / "
            "is not null (json comparisons are the database's)"
        )
    return atom_test(key, op, value)


def atom_test(key: str, op: str, operand: Any) -> Callable[[Mapping[str, Any]], bool]:
    """One atom on a record's own values, as the database judges it (storage.sql.match)."""
    if isinstance(operand, FieldRef):
        other = operand.field
        if op in ("=", "!="):
            same: Callable[[Mapping[str, Any]], bool] = lambda r: bool(  # noqa: E731
                r.get(key) == r.get(other)
            )
            return same if op == "=" else lambda r: not same(r)
        compare_fields = _ORDER[op]
        return lambda r: (
            r.get(key) is not None
            and r.get(other) is not None
            and bool(compare_fields(r[key], r[other]))
        )
    if op == "between":
        low, high = operand
        return lambda r: r.get(key) is not None and bool(low <= r[key] <= high)
    if op == "contains":
        return lambda r: isinstance(r.get(key), str) and operand in r[key]
    if op == "is null":
        return lambda r: r.get(key) is None
    if op == "is not null":
        return lambda r: r.get(key) is not None
    if op == "=":
        return lambda r: r.get(key) is not None and bool(r.get(key) == operand)
    if op == "!=":
        return lambda r: r.get(key) is None or bool(r.get(key) != operand)
    if op in ("in", "not in"):
        values = tuple(operand)
        with_null = any(v is None for v in values)
        concrete = [v for v in values if v is not None]

        def member(r: Mapping[str, Any]) -> bool:
            v = r.get(key)
            return with_null if v is None else any(v == c for c in concrete)

        if op == "in":
            return member
        return lambda r: not member(r)
    if op == "like":
        pattern = _like(operand)
        return lambda r: isinstance(r.get(key), str) and pattern.fullmatch(r[key]) is not None
    compare = _ORDER[op]

    def ordered(r: Mapping[str, Any]) -> bool:
        v = r.get(key)
        return v is not None and bool(compare(v, operand))

    return ordered


# -- compiling the views of a model -------------------------------------------------------------


def compile_views(
    declared: Iterable[Entity | Relation],
    stored: Iterable[str],
    schema: Schema,
    hidden: Mapping[str, Iterable[str]],
) -> dict[str, View]:
    """Compile every view, in dependency order; a view's base or inputs must be declared
    (stored records or other views) and a merged entity's inputs must share a field."""
    known = set(stored)
    views: dict[str, View] = {}
    pending = list(declared)
    for record in pending:
        is_link = isinstance(record, Relation)
        kind = "relation" if is_link else "entity"
        for source in (*([record.base] if record.base is not None else []), *(record.inputs or [])):
            name = record_name(source)
            if name not in known and name not in {record_name(p) for p in pending}:
                raise SetupError(
                    f"{kind} view {record_name(record)}: its "
                    f"{'base' if record.base is not None else 'input'} {name!r} is not among "
                    "the controller's entities and relations"
                )
    done: set[str] = set(known)
    while pending:
        progress = False
        for record in list(pending):
            sources = [
                record_name(s) for s in ([record.base] if record.base else record.inputs or [])
            ]
            if not all(s in done for s in sources):
                continue
            view = View(record, isinstance(record, Relation))

            def fields_of(name: str) -> Mapping[str, Field]:
                if name in views:
                    return views[name].fields
                secret = set(hidden.get(name, ()))
                return {k: f for k, f in schema.fields(name).items() if k not in secret}

            view.bind(fields_of)
            views[view.name] = view
            done.add(view.name)
            pending.remove(record)
            progress = True
        if not progress:
            names = ", ".join(record_name(r) for r in pending)
            raise ModelError(f"views {names} are built on each other in a cycle")
    return views


def check_not_view_end(relations: Iterable[Relation], views: Iterable[str]) -> None:
    """Relations join stored records: a view as an end is refused, naming the relation."""
    for relation in relations:
        for side, end in (("source", relation.source), ("target", relation.target)):
            if record_name(end) in set(views):
                raise ModelError(
                    f"relation {relation.relation_name}: its {side} {record_name(end)} is a "
                    "view; relations join stored records (relate its base, and filter in the "
                    "aggregate or with a filtered relation)"
                )
