"""Planning a write: the payload validated completely and encoded before the first statement
runs, so bad input changes nothing. Errors name the record and field at fault.

Every create and every update is planned the same way, in two steps:

- its :class:`Shape` (what each key is: a value field with its encoder, a relation, or a refused
  key; the INSERT or UPDATE of the value fields; how they read back) is worked out once per
  ``(kind, record, payload keys)`` and remembered in the storage's
  :class:`~storage.sql.cache.StatementCache` (bounded: it starts over at ``SHAPES_KEPT``);
- the payload is then read along its shape into a :class:`Plan` (one type for creates and
  updates): values encoded, relation items in payload order (an :class:`Item` is a reference
  by id or a nested create, with its ``&`` link fields). A payload of value fields only costs
  one encoder call per key and one list; nested creates are planned through their own shapes.

Refused keys are remembered too and raise when the payload reaches them, so a payload's first
error (in key order) is the one reported, as when every key was checked anew.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NoReturn

from storage.errors import InvalidDataError
from storage.schema import LINK_FIELDS_KEY, LinkType, RelationAttribute, Schema
from storage.sql.cache import SHAPES_KEPT, StatementCache
from storage.sql.dialect import Dialect
from storage.types import is_id

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Kind = Literal["create", "update"]
"""What a plan is for."""
Relations = list[tuple[RelationAttribute, "list[Item] | None"]]
"""A payload's relation attributes with their items (None: clear the relation)."""


class Shape:
    """What a payload of exactly these keys takes, worked out once per ``(kind, record, keys)``
    and remembered in the storage's :class:`StatementCache`: per key its ``step`` (the field's
    encoder, a :class:`Relation`, or a :class:`Refusal` that raises the key's error when the
    payload reaches it), the statement of the value fields (None without any), how each value
    field reads back (see ``Codecs.plain``; None when every one reads back as written)."""

    __slots__ = (
        "direct",
        "ends_only",
        "link",
        "name",
        "plains",
        "sql",
        "steps",
        "value_keys",
        "values_only",
        "whole",
    )

    def __init__(
        self,
        name: str,
        link: LinkType | None,
        steps: list[Any],
        value_keys: tuple[str, ...],
        sql: str | None,
        plains: list[Any] | None,
        direct: bool,
        whole: bool,
    ):
        self.name = name
        self.link = link
        self.steps = steps
        self.value_keys = value_keys
        self.values_only = len(value_keys) == len(steps)
        self.sql = sql
        self.plains = plains
        self.direct = direct
        """Nothing this shape holds displaces a link: every relation is to-one, not symmetric
        and not exclusive on the related side, and a link record's ends are not exclusive.
        Plain references then link with one INSERT each (see ``Plan.direct``)."""
        self.whole = whole
        """A link record's payload names both ends (checked after every key, as before)."""
        self.ends_only = link is not None and not value_keys and len(steps) == 2 and whole
        """A link record's create payload of its two ends and nothing else: two plain ids
        are the whole plan (see ``Planner.plan``), with no step to run per key."""


class Relation:
    """A step: the key is a relation attribute (``end``: a link record's source or target)."""

    __slots__ = ("attribute", "end")

    def __init__(self, attribute: RelationAttribute, end: bool):
        self.attribute = attribute
        self.end = end


class Refusal:
    """A step: the key is refused (``'id'``, an unknown name, a link end in an update);
    ``fail()`` raises the error naming it."""

    __slots__ = ("fail",)

    def __init__(self, fail: Callable[[], None]):
        self.fail = fail


class Plan:
    """A validated create or update payload: the value fields as given (``values``) and
    encoded (``params``, in the order of ``shape.value_keys``), relation items in payload
    order, a link record's ends (creates only). ``direct`` (creates): a ``shape.direct`` shape
    and a payload with no nested create and no link fields, whose references are plain ids:
    the record is one INSERT and each of its links one more, none displacing anything, so the
    create needs no savepoint (see ``Writer.create``)."""

    __slots__ = ("direct", "params", "relations", "shape", "source", "target", "values")

    def __init__(self, shape: Shape, values: Mapping[str, Any], params: list[Any]):
        self.shape = shape
        self.values = values
        self.params = params
        self.relations: Relations = _NO_RELATIONS  # a list of its own once one is planned
        # A link record's ends: the id a plain reference gives, else the Item (a nested create
        # or an id that is not a plain int).
        self.source: Item | int | None = None
        self.target: Item | int | None = None
        self.direct = True

    @property
    def encoded(self) -> Mapping[str, Any]:
        """The value fields by name, encoded."""
        if not self.params:
            return _NO_LINK_VALUES
        return dict(zip(self.shape.value_keys, self.params, strict=True))


class Item:
    """One related record in a payload: a reference by id, or a nested create."""

    __slots__ = ("link_values", "nested", "ref")

    def __init__(
        self,
        ref: Any = None,
        nested: Plan | None = None,
        link_values: Mapping[str, Any] | None = None,
    ):
        self.ref = ref
        self.nested = nested
        self.link_values: Mapping[str, Any] = (
            _NO_LINK_VALUES if link_values is None else link_values
        )


class Planner:
    """Validates and encodes payloads of one schema with one backend's codecs, one remembered
    :class:`Shape` per payload shape: planning a payload of a known shape is encoding its
    values and reading its relation items, nothing else."""

    __slots__ = ("_cache", "_dialect", "codecs", "schema")

    def __init__(self, schema: Schema, dialect: Dialect, cache: StatementCache) -> None:
        self.schema = schema
        self._dialect = dialect
        self.codecs = dialect.codecs
        self._cache = cache

    def encoders(self, name: str) -> dict[str, Any]:
        encoders = self._cache.encoders.get(name)
        if encoders is None:
            encoders = self._cache.encoders[name] = {
                f.name: self.codecs.encoders[f.type] for f in self.schema.fields(name).values()
            }
        return encoders

    def insert_sql(self, name: str, columns: tuple[str, ...]) -> str:
        """The dialect's ``INSERT`` of these columns, worked out once."""
        key = (name, columns)
        sql = self._cache.inserts.get(key)
        if sql is None:
            sql = self._cache.inserts[key] = self._dialect.insert(name, columns)
        return sql

    def update_sql(self, name: str, columns: tuple[str, ...]) -> str:
        """``UPDATE <name> SET <columns> = ? WHERE id = ?``, worked out once."""
        key = (name, columns)
        sql = self._cache.updates.get(key)
        if sql is None:
            quote = self._dialect.quote
            assignments = ", ".join(f"{quote(k)} = ?" for k in columns)
            sql = self._cache.updates[key] = f"UPDATE {quote(name)} SET {assignments} WHERE id = ?"
        return sql

    def plan(self, kind: Kind, name: str, data: Mapping[str, Any]) -> Plan:
        """The plan of a ``kind`` ("create" or "update") of ``name`` with ``data``, validated
        and encoded; a payload's first error in key order is raised."""
        # The remembered shape of the payload's keys (worked out on first sight), inline: this
        # is every write's path. Anything but a mapping is refused.
        if type(data) is not dict and not isinstance(data, Mapping):
            self._refuse_data(kind, name, data)
        keys = tuple(data)
        shape: Shape | None = self._cache.shapes.get((kind, name, keys))
        if shape is None:
            shape = self._shape(kind, name, keys)
        steps = shape.steps
        if shape.values_only:
            return Plan(shape, data, _encode(name, data, steps))
        if shape.ends_only and kind == "create":
            # A link between two records named by plain ids (a like): the ends are the plan.
            source, target = data["source"], data["target"]
            if type(source) is dict and type(target) is dict and len(source) == len(target) == 1:
                source_id, target_id = source.get("id"), target.get("id")
                if (
                    type(source_id) is int
                    and type(target_id) is int
                    and INT64_MIN <= source_id <= INT64_MAX
                    and INT64_MIN <= target_id <= INT64_MAX
                ):
                    plan = Plan(shape, _NO_LINK_VALUES, _NO_PARAMS)
                    plan.source, plan.target = source_id, target_id
                    plan.direct = shape.direct
                    return plan
        values: dict[str, Any] = {}
        plan = Plan(shape, values, [])
        params = plan.params
        relations: Relations = []
        direct = shape.direct
        for (key, value), step in zip(data.items(), steps):  # noqa: B905 (same keys)
            step_type = type(step)
            if step_type is Relation:
                attribute = step.attribute
                if step.end:
                    ref = value.get("id") if type(value) is dict and len(value) == 1 else None
                    if type(ref) is int and INT64_MIN <= ref <= INT64_MAX:
                        # a plain reference (as _item reads it): the id is the end
                        if key == "source":
                            plan.source = ref
                        else:
                            plan.target = ref
                        continue
                    item = self._item(name, attribute, value, allow_link_values=False)
                    if item is None:
                        raise InvalidDataError(
                            f"{kind} {name}: {key} must refer to a record", record=name, field=key
                        )
                    if item.nested is not None:
                        direct = False  # the end is created first: several statements
                    if key == "source":
                        plan.source = item
                    else:
                        plan.target = item
                    continue
                ref = value.get("id") if type(value) is dict and len(value) == 1 else None
                if direct and type(ref) is int and INT64_MIN <= ref <= INT64_MAX:
                    relations.append((attribute, [Item(ref)]))  # to-one, a plain reference
                    continue
                items = self._items(name, attribute, value)
                if items and (items[0].nested is not None or items[0].link_values):
                    direct = False  # a nested create or link fields: under a savepoint
                elif items and type(items[0].ref) is not int:
                    direct = False
                relations.append((attribute, items))
            elif step_type is Refusal:
                step.fail()
            else:
                values[key] = value
                params.append(None if value is None else step(name, key, value))
        if not shape.whole:
            raise InvalidDataError(
                f"{kind} {name}: a link record needs both 'source' and 'target'", record=name
            )
        plan.direct = direct
        if relations:
            plan.relations = relations
        return plan

    def _refuse_data(self, kind: Kind, name: str, data: Any) -> NoReturn:
        """Refuse a payload that is not a mapping (an unknown record first)."""
        self.schema.record(name)
        raise InvalidDataError(
            f"{kind} {name}: data must be a dict, got {type(data).__name__}", record=name
        )

    def _shape(self, kind: Kind, name: str, keys: tuple[str, ...]) -> Shape:
        """Work out (and remember) the :class:`Shape` of a payload of exactly these keys."""
        record_type = self.schema.record(name)  # raises for an unknown record
        shapes = self._cache.shapes
        if len(shapes) >= SHAPES_KEPT:
            shapes.clear()  # payload shapes come from callers: keep the memory bounded
        encoders = self.encoders(name)
        attributes = self.schema.attributes(name)
        steps: list[Any] = []
        value_keys: list[str] = []
        direct = True
        for key in keys:
            if key == "id":
                steps.append(Refusal(_refuse_id(kind, name)))
            elif key in encoders:
                steps.append(encoders[key])
                value_keys.append(key)
            elif key in attributes and attributes[key].via_link:
                attribute = attributes[key]
                steps.append(Relation(attribute, end=False))
                direct = direct and _links_directly(attribute)
            elif key in attributes and kind == "create":
                steps.append(Relation(attributes[key], end=True))
            elif key in attributes:
                steps.append(Refusal(_refuse_end(name, key)))
            else:
                steps.append(Refusal(_refuse_unknown(self.schema, name, key)))
        link = record_type if isinstance(record_type, LinkType) else None
        if link is not None and (link.source_is_exclusive or link.target_is_exclusive):
            direct = False  # a new link record displaces the one holding the exclusive slot
        columns = tuple(value_keys)
        sql: str | None = None
        if columns and kind == "update":
            sql = self.update_sql(name, columns)
        elif kind == "create" and link is None:
            sql = self.insert_sql(name, columns)
        fields = self.schema.fields(name)
        plains = [self.codecs.plain[fields[key].type] for key in columns]
        shape = Shape(
            name,
            link,
            steps,
            columns,
            sql,
            plains if any(plains) else None,
            direct,
            link is None or kind != "create" or ("source" in keys and "target" in keys),
        )
        shapes[(kind, name, keys)] = shape
        return shape

    def _items(self, name: str, attribute: RelationAttribute, value: Any) -> list[Item] | None:
        if value is None:
            return None
        if attribute.to_many:
            if isinstance(value, Mapping | str | bytes) or not isinstance(value, Sequence):
                raise InvalidDataError(
                    f"{name}.{attribute.name} holds many records: give a list, "
                    f"got {type(value).__name__}",
                    record=name,
                    field=attribute.name,
                )
            items = [self._item(name, attribute, v, allow_link_values=True) for v in value]
            return [i for i in items if i is not None]
        item = self._item(name, attribute, value, allow_link_values=True)
        return [item] if item is not None else None

    def _item(
        self, name: str, attribute: RelationAttribute, value: Any, allow_link_values: bool
    ) -> Item | None:
        if type(value) is dict and len(value) == 1:
            # The common case, a plain reference {"id": ...}: no copies, no scans.
            ref = value.get("id")
            if type(ref) is int and INT64_MIN <= ref <= INT64_MAX:
                return Item(ref=ref)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidDataError(
                f"{name}.{attribute.name} must be a record ({{'id': ...}} or a dict of fields to "
                f"create), got {type(value).__name__} {value!r}",
                record=name,
                field=attribute.name,
            )
        link_values: dict[str, Any] = {}
        if LINK_FIELDS_KEY in value:
            if not allow_link_values:
                raise InvalidDataError(
                    f"{name}.{attribute.name}: '&' is not allowed here",
                    record=name,
                    field=attribute.name,
                )
            raw = value[LINK_FIELDS_KEY]
            if not isinstance(raw, Mapping):
                raise InvalidDataError(
                    f"{name}.{attribute.name}['&'] must be a dict of link fields",
                    record=name,
                    field=attribute.name,
                )
            link_name = attribute.link.name
            link_fields = self.schema.fields(link_name)
            for key, v in raw.items():
                if key not in link_fields:
                    self.schema.field(link_name, key)
                link_values[key] = self.codecs.encode(link_name, key, link_fields[key].type, v)
        rest = {k: v for k, v in value.items() if k != LINK_FIELDS_KEY}
        if "id" in rest:
            # A whole record with an id (as read from find) is a reference to it: its other
            # keys are ignored, as the original framework does; a related record's fields
            # change through an update of that record, never through a reference.
            ref = rest["id"]
            if not is_id(ref):
                raise InvalidDataError(
                    f"{name}.{attribute.name}: id must be an int (64-bit) or str, got {ref!r}",
                    record=name,
                    field=attribute.name,
                )
            return Item(ref=ref, link_values=link_values)
        return Item(nested=self.plan("create", attribute.related, rest), link_values=link_values)


_NO_RELATIONS: Relations = []  # shared, never appended to: plans replace it with their own
_NO_PARAMS: list[Any] = []  # shared by plans with no value fields, never appended to
_NO_LINK_VALUES: Mapping[str, Any] = MappingProxyType({})


def _encode(name: str, data: Mapping[str, Any], encoders: list[Any]) -> list[Any]:
    """The column values of a payload of value fields (its shape's encoders, key by key).

    A plain loop: on CPython 3.11 it costs half a comprehension over ``zip(strict=True)``, and
    the shape was made from these very keys, so the lengths agree."""
    params: list[Any] = []
    for (key, value), encoder in zip(data.items(), encoders):  # noqa: B905
        params.append(None if value is None else encoder(name, key, value))
    return params


def _links_directly(attribute: RelationAttribute) -> bool:
    """Whether a new record links through ``attribute`` with one INSERT: to-one, not
    symmetric, and not exclusive on the related record's side (the new record's own side
    holds no link yet)."""
    link = attribute.link
    other_exclusive = (
        link.source_is_exclusive if attribute.other == "target" else link.target_is_exclusive
    )
    return not attribute.to_many and not attribute.symmetric and not other_exclusive


def _refuse_id(kind: Kind, name: str) -> Callable[[], None]:
    reason = "is assigned by the storage" if kind == "create" else "cannot be changed"

    def fail() -> None:
        raise InvalidDataError(f"{kind} {name}: 'id' {reason}", record=name, field="id")

    return fail


def _refuse_end(name: str, key: str) -> Callable[[], None]:
    def fail() -> None:
        raise InvalidDataError(
            f"update {name}: a link's {key} cannot be changed; delete the link record "
            "and create a new one",
            record=name,
            field=key,
        )

    return fail


def _refuse_unknown(schema: Schema, name: str, key: str) -> Callable[[], None]:
    def fail() -> None:
        schema.attribute(name, key)  # raises UnknownFieldError with the known names
        raise InvalidDataError(f"{name}: unknown field {key!r}", record=name, field=key)

    return fail
