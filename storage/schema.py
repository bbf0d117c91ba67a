"""Declarative schema: record types with typed fields, links between them, indexes.

The engine derives a :class:`Schema` from its model and hands it to a storage backend, which
creates the tables. Nothing here is backend specific.

A *link* (``LinkType``) is a relation between two record types. It is a record type in its own
right: link records have an ``id``, fields of their own, and the two to-one attributes ``source``
and ``target``. Each endpoint record type also gains a *relation attribute* (``source_attr`` on
the source, ``target_attr`` on the target) through which reads, matches and nested writes reach the
records on the other side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import attrs

from storage.errors import SchemaError, UnknownFieldError, UnknownRecordError

FieldTypeName: TypeAlias = Literal["string", "number", "integer", "boolean", "json", "timestamp"]
Cardinality: TypeAlias = Literal["1:1", "1:n", "n:1", "n:n"]

FIELD_TYPES: tuple[str, ...] = ("string", "number", "integer", "boolean", "json", "timestamp")
CARDINALITIES: tuple[str, ...] = ("1:1", "1:n", "n:1", "n:n")
LINK_FIELDS_KEY = "&"
"""The pseudo-attribute under which a related record carries its link record's fields."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_FIELDS = frozenset({"id"})
_RESERVED_LINK_FIELDS = frozenset({"id", "source", "target"})


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SchemaError(
            f"{kind} name {name!r} is not valid: use letters, digits and '_', "
            "not starting with a digit"
        )


@attrs.frozen
class Field:
    """A typed value field of a record type. A field may hold ``None`` unless ``non_null``:
    then the database refuses a write that leaves it without a value (a NOT NULL column on
    PostgreSQL, a pair of triggers on SQLite, whose columns cannot change in place), and the
    write raises :class:`~storage.errors.NonNullViolationError`."""

    name: str
    type: FieldTypeName = "string"
    non_null: bool = False

    def __attrs_post_init__(self) -> None:
        _check_name("field", self.name)
        if self.type not in FIELD_TYPES:
            raise SchemaError(
                f"field {self.name!r} has unknown type {self.type!r}; "
                f"use one of {', '.join(FIELD_TYPES)}",
                field=self.name,
            )


def _tuple_of_names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _where_pairs(value: Any) -> tuple[tuple[str, Any], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((k, v) for k, v in items)


@attrs.frozen
class Index:
    """An index over one or more fields; ``unique=True`` makes it a unique constraint."""

    fields: tuple[str, ...] = attrs.field(converter=_tuple_of_names)
    unique: bool = False
    name: str | None = None
    where: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_where_pairs)
    """A partial index: only rows whose fields equal these values (``None``: is null) are
    indexed, so a unique one constrains only them. Values are strings, numbers or booleans."""

    def __attrs_post_init__(self) -> None:
        if not self.fields:
            raise SchemaError("an index needs at least one field")
        for field, value in self.where:
            if not isinstance(field, str) or not (
                value is None
                or isinstance(value, str | bool | int)
                or (isinstance(value, float) and math.isfinite(value))
            ):
                raise SchemaError(
                    f"index over {self.fields!r}: where {field!r} = {value!r} must compare a "
                    "field with a string, a finite number, a boolean or None"
                )
        if len(set(self.fields)) != len(self.fields):
            raise SchemaError(f"index over {self.fields!r} repeats a field")
        if self.name is not None:
            _check_name("index", self.name)


def _tuple_of_fields(value: Iterable[Field]) -> tuple[Field, ...]:
    return tuple(value)


def _tuple_of_indexes(value: Iterable[Index]) -> tuple[Index, ...]:
    return tuple(value)


@attrs.frozen
class RecordType:
    """A record type (an entity): a name and its value fields."""

    name: str
    fields: tuple[Field, ...] = attrs.field(default=(), converter=_tuple_of_fields)
    indexes: tuple[Index, ...] = attrs.field(default=(), converter=_tuple_of_indexes)

    def __attrs_post_init__(self) -> None:
        _check_name("record type", self.name)
        _check_fields(self.name, self.fields, _RESERVED_FIELDS)


@attrs.frozen
class LinkType:
    """A relation between ``source`` and ``target`` record types, stored as link records.

    ``cardinality`` reads ``<source side>:<target side>``: in ``User(posts) 1:n Post(author)``
    a user has many posts and a post has at most one author. The ``1`` side is exclusive: linking
    a record whose to-one slot is taken replaces the old link. ``symmetric`` links (same record
    type and attribute on both ends, ``n:n`` only) are seen from both endpoints through the one
    attribute. ``cascade=True`` deletes the targets when their source is deleted.
    """

    name: str
    source: str
    source_attr: str | None
    target: str
    target_attr: str | None
    cardinality: Cardinality = "n:n"
    fields: tuple[Field, ...] = attrs.field(default=(), converter=_tuple_of_fields)
    indexes: tuple[Index, ...] = attrs.field(default=(), converter=_tuple_of_indexes)
    symmetric: bool = False
    cascade: bool = False

    def __attrs_post_init__(self) -> None:
        _check_name("link type", self.name)
        if self.cardinality not in CARDINALITIES:
            raise SchemaError(
                f"link {self.name!r} has unknown cardinality {self.cardinality!r}; "
                f"use one of {', '.join(CARDINALITIES)}",
                record=self.name,
            )
        for attr in (self.source_attr, self.target_attr):
            if attr is not None:
                _check_name("relation attribute", attr)
        if self.symmetric:
            if self.source != self.target or self.source_attr != self.target_attr:
                raise SchemaError(
                    f"symmetric link {self.name!r} needs the same record type and attribute "
                    "on both ends",
                    record=self.name,
                )
            if self.cardinality != "n:n":
                raise SchemaError(
                    f"symmetric link {self.name!r} must be n:n, not {self.cardinality}",
                    record=self.name,
                )
        if self.cascade and self.cardinality not in ("1:1", "1:n"):
            raise SchemaError(
                f"link {self.name!r}: cascade deletes targets with their source, which needs "
                f"a single source per target (1:1 or 1:n), not {self.cardinality}",
                record=self.name,
            )
        _check_fields(self.name, self.fields, _RESERVED_LINK_FIELDS)

    @property
    def source_is_exclusive(self) -> bool:
        """Each target has at most one source (the source side is ``1``)."""
        return self.cardinality[0] == "1"

    @property
    def target_is_exclusive(self) -> bool:
        """Each source has at most one target (the target side is ``1``)."""
        return self.cardinality[2] == "1"


def _check_fields(owner: str, fields: tuple[Field, ...], reserved: frozenset[str]) -> None:
    seen: set[str] = set()
    for field in fields:
        if not isinstance(field, Field):
            raise SchemaError(f"{owner}: fields must be Field instances, got {field!r}")
        if field.name in reserved:
            raise SchemaError(
                f"{owner}.{field.name}: the name {field.name!r} is reserved",
                record=owner,
                field=field.name,
            )
        if field.name in seen:
            raise SchemaError(f"{owner} declares field {field.name!r} twice", record=owner)
        seen.add(field.name)


@attrs.frozen
class RelationAttribute:
    """How one record type reaches related records through a link.

    ``side`` is the column of the link row that holds *this* record's id (``"source"`` or
    ``"target"``; both for a symmetric link), ``other`` the column holding the related id.
    ``via_link=False`` marks the ``source``/``target`` attributes of a link record itself, which
    are plain columns of its own row.
    """

    name: str
    owner: str
    link: LinkType
    side: Literal["source", "target"]
    related: str
    to_many: bool
    via_link: bool = True

    @property
    def other(self) -> Literal["source", "target"]:
        return "target" if self.side == "source" else "source"

    @property
    def symmetric(self) -> bool:
        return self.link.symmetric and self.via_link


AnyRecordType: TypeAlias = RecordType | LinkType


class Schema:
    """A validated set of record and link types, with lookups used by every backend."""

    def __init__(self, records: Iterable[RecordType] = (), links: Iterable[LinkType] = ()):
        self.records: dict[str, AnyRecordType] = {}
        self.links: dict[str, LinkType] = {}
        self._touching: dict[str, list[LinkType]] = {}
        for record in records:
            if not isinstance(record, RecordType):
                raise SchemaError(f"records must be RecordType instances, got {record!r}")
            self._add(record)
        for link in links:
            if not isinstance(link, LinkType):
                raise SchemaError(f"links must be LinkType instances, got {link!r}")
            self._add(link)
            self.links[link.name] = link
        self._fields: dict[str, dict[str, Field]] = {
            name: {f.name: f for f in rt.fields} for name, rt in self.records.items()
        }
        self._attributes: dict[str, dict[str, RelationAttribute]] = {n: {} for n in self.records}
        for link in self.links.values():
            self._wire(link)
        for name, rt in self.records.items():
            self._check_indexes(name, rt.indexes)

    def _add(self, record: AnyRecordType) -> None:
        if record.name in self.records:
            raise SchemaError(f"record type {record.name!r} is declared twice", record=record.name)
        self.records[record.name] = record

    def _wire(self, link: LinkType) -> None:
        for end in (link.source, link.target):
            if end not in self.records:
                raise SchemaError(
                    f"link {link.name!r} refers to unknown record type {end!r}", record=link.name
                )
        attrs_of_link = self._attributes[link.name]
        attrs_of_link["source"] = RelationAttribute(
            "source", link.name, link, "target", link.source, to_many=False, via_link=False
        )
        attrs_of_link["target"] = RelationAttribute(
            "target", link.name, link, "source", link.target, to_many=False, via_link=False
        )
        if link.source_attr is not None:
            self._add_attribute(
                RelationAttribute(
                    link.source_attr,
                    link.source,
                    link,
                    "source",
                    link.target,
                    to_many=not link.target_is_exclusive,
                )
            )
        if link.target_attr is not None and not link.symmetric:
            self._add_attribute(
                RelationAttribute(
                    link.target_attr,
                    link.target,
                    link,
                    "target",
                    link.source,
                    to_many=not link.source_is_exclusive,
                )
            )

    def _add_attribute(self, attribute: RelationAttribute) -> None:
        owner = attribute.owner
        if attribute.name in self._fields[owner] or attribute.name in self._attributes[owner]:
            raise SchemaError(
                f"{owner}.{attribute.name} is declared twice (link {attribute.link.name!r} "
                "reuses a field or relation attribute name)",
                record=owner,
                field=attribute.name,
            )
        if attribute.name in ("id", LINK_FIELDS_KEY):
            raise SchemaError(
                f"{owner}.{attribute.name}: the name is reserved", record=owner, field="id"
            )
        self._attributes[owner][attribute.name] = attribute

    def _check_indexes(self, name: str, indexes: tuple[Index, ...]) -> None:
        fields = self._fields[name]
        for index in indexes:
            for field in index.fields:
                if field not in fields:
                    raise SchemaError(
                        f"index on {name} names unknown field {field!r}", record=name, field=field
                    )

    # -- lookups ---------------------------------------------------------------------------

    def record(self, name: str) -> AnyRecordType:
        """The record or link type called ``name``; :class:`UnknownRecordError` otherwise."""
        try:
            return self.records[name]
        except (KeyError, TypeError):
            raise UnknownRecordError(str(name), list(self.records)) from None

    def is_link(self, name: str) -> bool:
        return name in self.links

    def fields(self, name: str) -> Mapping[str, Field]:
        """The value fields of a record type, by name (``id`` not included)."""
        self.record(name)
        return self._fields[name]

    def field(self, record: str, name: str) -> Field:
        fields = self.fields(record)
        try:
            return fields[name]
        except KeyError:
            raise UnknownFieldError(record, name, list(fields)) from None

    def attributes(self, name: str) -> Mapping[str, RelationAttribute]:
        """The relation attributes of a record type, by name."""
        self.record(name)
        return self._attributes[name]

    def attribute(self, record: str, name: str) -> RelationAttribute:
        attributes = self.attributes(record)
        try:
            return attributes[name]
        except KeyError:
            known = [*self._fields[record], *attributes]
            raise UnknownFieldError(record, name, known) from None

    def links_touching(self, name: str) -> list[LinkType]:
        """Links whose source or target is the record type ``name`` (do not modify the list)."""
        found = self._touching.get(name)
        if found is None:
            found = [ln for ln in self.links.values() if name in (ln.source, ln.target)]
            self._touching[name] = found
        return found
