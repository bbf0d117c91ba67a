"""Planning a write: the payload validated completely and encoded before the first statement
runs, so bad input changes nothing.

A :class:`CreatePlan` holds a create's encoded values and its relation items in payload order;
an :class:`Item` is one related record (a reference by id or a nested create). Updates plan to
``(values, relations)``. Errors name the record and field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storage.errors import InvalidDataError
from storage.schema import LINK_FIELDS_KEY, LinkType, RelationAttribute, Schema
from storage.sql.cache import StatementCache
from storage.sql.codecs import Codecs
from storage.types import is_id

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Relations = list[tuple[RelationAttribute, "list[Item] | None"]]
"""A payload's relation attributes with their items (None: clear the relation)."""


class CreatePlan:
    """A validated create payload: encoded values and relation items, in payload order."""

    __slots__ = ("name", "relations", "source", "target", "values")

    def __init__(self, name: str):
        self.name = name
        self.values: dict[str, Any] = {}
        self.relations: list[tuple[RelationAttribute, list[Item] | None]] = []
        self.source: Item | None = None
        self.target: Item | None = None


class Item:
    """One related record in a payload: a reference by id, or a nested create."""

    __slots__ = ("link_values", "nested", "ref")

    def __init__(
        self,
        ref: Any = None,
        nested: CreatePlan | None = None,
        link_values: dict[str, Any] | None = None,
    ):
        self.ref = ref
        self.nested = nested
        self.link_values = link_values or {}


class Planner:
    """Validates and encodes payloads of one schema with one backend's codecs."""

    def __init__(self, schema: Schema, codecs: Codecs, cache: StatementCache) -> None:
        self.schema = schema
        self.codecs = codecs
        self._cache = cache

    def encoders(self, name: str) -> dict[str, Any]:
        encoders = self._cache.encoders.get(name)
        if encoders is None:
            encoders = self._cache.encoders[name] = {
                f.name: self.codecs.encoders[f.type] for f in self.schema.fields(name).values()
            }
        return encoders

    def create(self, name: str, data: Mapping[str, Any]) -> CreatePlan:
        record_type = self.schema.record(name)
        if type(data) is not dict and not isinstance(data, Mapping):
            raise InvalidDataError(
                f"create {name}: data must be a dict, got {type(data).__name__}", record=name
            )
        plan = CreatePlan(name)
        attributes = self.schema.attributes(name)
        encoders = self.encoders(name)
        values = plan.values
        for key, value in data.items():
            if key == "id":
                raise InvalidDataError(
                    f"create {name}: 'id' is assigned by the storage", record=name, field="id"
                )
            encoder = encoders.get(key)
            if encoder is not None:
                values[key] = None if value is None else encoder(name, key, value)
            elif key in attributes:
                attribute = attributes[key]
                if not attribute.via_link:
                    item = self._item(name, attribute, value, allow_link_values=False)
                    if item is None:
                        raise InvalidDataError(
                            f"create {name}: {key} must refer to a record", record=name, field=key
                        )
                    if key == "source":
                        plan.source = item
                    else:
                        plan.target = item
                else:
                    plan.relations.append((attribute, self._items(name, attribute, value)))
            else:
                self.schema.attribute(name, key)  # raises UnknownFieldError with the known names
        if isinstance(record_type, LinkType) and (plan.source is None or plan.target is None):
            raise InvalidDataError(
                f"create {name}: a link record needs both 'source' and 'target'", record=name
            )
        return plan

    def update(self, name: str, data: Mapping[str, Any]) -> tuple[dict[str, Any], Relations]:
        self.schema.record(name)
        if not isinstance(data, Mapping):
            raise InvalidDataError(
                f"update {name}: data must be a dict, got {type(data).__name__}", record=name
            )
        fields = self.schema.fields(name)
        attributes = self.schema.attributes(name)
        values: dict[str, Any] = {}
        relations: Relations = []
        for key, value in data.items():
            if key == "id":
                raise InvalidDataError(
                    f"update {name}: 'id' cannot be changed", record=name, field="id"
                )
            if key in fields:
                values[key] = self.codecs.encode(name, key, fields[key].type, value)
            elif key in attributes and attributes[key].via_link:
                relations.append((attributes[key], self._items(name, attributes[key], value)))
            elif key in attributes:
                raise InvalidDataError(
                    f"update {name}: a link's {key} cannot be changed; delete the link record "
                    "and create a new one",
                    record=name,
                    field=key,
                )
            else:
                self.schema.attribute(name, key)
        return values, relations

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
            if len(rest) != 1:
                raise InvalidDataError(
                    f"{name}.{attribute.name}: a reference {{'id': ...}} cannot carry other "
                    f"fields ({', '.join(k for k in rest if k != 'id')}); update the related "
                    "record separately",
                    record=name,
                    field=attribute.name,
                )
            ref = rest["id"]
            if not is_id(ref):
                raise InvalidDataError(
                    f"{name}.{attribute.name}: id must be an int (64-bit) or str, got {ref!r}",
                    record=name,
                    field=attribute.name,
                )
            return Item(ref=ref, link_values=link_values)
        return Item(nested=self.create(attribute.related, rest), link_values=link_values)
