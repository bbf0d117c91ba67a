"""The model users declare: entities, properties, relations and dictionaries (attrs classes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from reactive.errors import ModelError

if TYPE_CHECKING:
    from reactive.computations import Computation

PropertyType: TypeAlias = Literal["string", "number", "integer", "boolean", "json", "timestamp"]
RelationType: TypeAlias = Literal["1:1", "1:n", "n:1", "n:n"]
_TYPES = ("string", "number", "integer", "boolean", "json", "timestamp")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(
            f"{kind} name {name!r} is not valid: use letters, digits and '_', not starting "
            "with a digit"
        )


def _list(value: Any) -> list[Any]:
    return list(value) if value is not None else []


@attrs.define(eq=False, kw_only=False)
class Property:
    """A value field of an entity or relation.

    ``default`` is a value or a zero-argument callable used when a create leaves the field out;
    ``computed(record)`` derives the value from the row's own fields on every write;
    ``computation`` (Count, Summation, StateMachine, ...) keeps it up to date reactively.
    ``index``/``unique`` ask storage for an index on the field. ``renamed_from`` names the
    field this one was called before: ``setup()`` renames the stored column and keeps its data.
    """

    name: str
    type: PropertyType = "string"
    default: Any = None
    computation: Computation | None = None
    computed: Callable[..., Any] | None = None
    index: bool = False
    unique: bool = False
    renamed_from: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_name("property", self.name)
        if self.type not in _TYPES:
            raise ModelError(
                f"property {self.name!r} has unknown type {self.type!r}; use one of "
                f"{', '.join(_TYPES)}"
            )
        if self.computed is not None and self.computation is not None:
            raise ModelError(f"property {self.name!r} cannot have both computed and computation")
        if self.computed is not None and not callable(self.computed):
            raise ModelError(f"property {self.name!r}: computed must be callable")

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


@attrs.define(eq=False)
class Entity:
    """A record type. ``computation`` may be a Transform (or Custom) that produces its records.
    ``renamed_from`` names the record type this one was called before (its table is renamed
    and keeps its rows)."""

    name: str
    properties: list[Property] = attrs.field(factory=list, converter=_list)
    computation: Computation | None = None
    renamed_from: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_name("entity", self.name)
        _check_properties(self.name, self.properties, ("id",))

    def property(self, name: str) -> Property:
        for prop in self.properties:
            if prop.name == name:
                return prop
        raise ModelError(f"{self.name} has no property {name!r}")


@attrs.define(eq=False)
class Relation:
    """A relation between two entities (or relations), stored as relation records.

    ``type`` reads ``<source side>:<target side>``: in ``Relation(user, "posts", post, "author",
    "1:n")`` a user has many posts and a post has one author. A relation whose source and target
    are the same with the same property on both ends is symmetric (``n:n`` only).
    ``renamed_from`` names the relation (its storage name) this one was called before.
    """

    source: Entity | Relation
    source_property: str
    target: Entity | Relation
    target_property: str
    type: RelationType
    name: str | None = None
    properties: list[Property] = attrs.field(factory=list, converter=_list)
    computation: Computation | None = None
    symmetric: bool = False
    cascade: bool = False
    renamed_from: str | None = None

    def __attrs_post_init__(self) -> None:
        for end in (self.source, self.target):
            if not isinstance(end, Entity | Relation):
                raise ModelError(f"relation ends must be Entity or Relation objects, got {end!r}")
        _check_name("relation property", self.source_property)
        _check_name("relation property", self.target_property)
        if self.type not in ("1:1", "1:n", "n:1", "n:n"):
            raise ModelError(f"relation type must be 1:1, 1:n, n:1 or n:n, got {self.type!r}")
        if self.name is None:
            self.name = (
                f"{self.source.name}_{self.source_property}_{self.target_property}_"
                f"{self.target.name}"
            )
        _check_name("relation", self.name)
        if self.source is self.target and self.source_property == self.target_property:
            self.symmetric = True
        if self.symmetric and self.type != "n:n":
            raise ModelError(f"symmetric relation {self.name} must be n:n, not {self.type}")
        _check_properties(self.name, self.properties, ("id", "source", "target"))

    @property
    def relation_name(self) -> str:
        assert self.name is not None
        return self.name

    def property(self, name: str) -> Property:
        for prop in self.properties:
            if prop.name == name:
                return prop
        raise ModelError(f"{self.name} has no property {name!r}")


@attrs.define(eq=False)
class Dictionary:
    """A global value, optionally kept by a computation (Count over an entity, ...).
    ``renamed_from`` names the dictionary this one was called before (its value is kept)."""

    name: str
    type: PropertyType = "json"
    default: Any = None
    computation: Computation | None = None
    renamed_from: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_name("dictionary", self.name)
        if self.type not in _TYPES:
            raise ModelError(f"dictionary {self.name!r} has unknown type {self.type!r}")

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


def _check_properties(owner: str, properties: list[Property], reserved: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for prop in properties:
        if not isinstance(prop, Property):
            raise ModelError(f"{owner}: properties must be Property objects, got {prop!r}")
        if prop.name in reserved:
            raise ModelError(f"{owner}.{prop.name}: the name {prop.name!r} is reserved")
        if prop.name in seen:
            raise ModelError(f"{owner} declares property {prop.name!r} twice")
        seen.add(prop.name)


Record: TypeAlias = Entity | Relation


def record_name(record: Entity | Relation | str) -> str:
    """The storage name of an entity, relation or record name."""
    if isinstance(record, str):
        return record
    if isinstance(record, Entity):
        return record.name
    if isinstance(record, Relation):
        return record.relation_name
    raise ModelError(f"expected an Entity, a Relation or a record name, got {record!r}")
