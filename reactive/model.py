"""The model users declare: entities, properties, relations and dictionaries (attrs classes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from reactive.errors import ModelError
from storage import MatchExp
from storage.match import to_match

if TYPE_CHECKING:
    from reactive.computations import Computation

_UNSET: Any = None  # a relation view's ends and type come from its base or inputs

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


DICTIONARY_RECORD = "_Dictionary_"
"""Where dictionary values live: ``key``, ``value`` (and the computation's ``state``)."""


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


def _match(value: Any) -> MatchExp | None:
    if value is None:
        return None
    try:
        return to_match(value)
    except Exception as exc:  # a MatchError: say which declaration it belongs to
        raise ModelError(f"match must be a MatchExp or a dict of equalities: {exc}") from None


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ModelError(f"UniqueConstraint fields must be a list of property names, got {value!r}")
    return tuple(value)


@attrs.frozen
class UniqueConstraint:
    """No two records of the entity hold the same values of ``fields`` (enforced by a unique
    index in the database, on both backends; a violating write raises ``UniqueViolationError``
    naming the constraint and its fields, and changes nothing). As in SQL, records with a None
    in one of the fields never collide. ``name`` defaults to ``<Entity>_<field>_..._unique``."""

    fields: tuple[str, ...] = attrs.field(converter=_names)
    name: str | None = None
    where: dict[str, Any] | None = None
    """A partial constraint: only records whose properties equal these values (``None``: is
    null) are constrained, e.g. ``where={"deleted": False}``. Values are strings, numbers or
    booleans."""

    def __attrs_post_init__(self) -> None:
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ModelError(
                f"UniqueConstraint needs distinct property names, got {list(self.fields)}"
            )
        if self.name is not None:
            _check_name("constraint", self.name)
        if self.where is not None and not isinstance(self.where, dict):
            raise ModelError(
                f"UniqueConstraint {list(self.fields)}: where must be a dict of property "
                f"values, got {self.where!r}"
            )


@attrs.frozen
class NonNullConstraint:
    """Every record of the entity holds a value for ``field``: the database refuses a write
    that leaves it None (a create without it and without a default, an update to None) and
    the write raises ``NonNullViolationError`` naming the entity and field, changing nothing.
    Enforced on both backends (a NOT NULL column on PostgreSQL, triggers on SQLite).

    The field may be computed: its value (a computation's initial value, what ``computed``
    returns) is checked like any other, so a computation that yields None fails the write
    that caused it. Adding the constraint to stored rows that hold no value is refused by
    ``setup()``; a new non-null property on a table with rows needs a ``default``."""

    field: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.field, str):
            raise ModelError(f"NonNullConstraint takes one property name, got {self.field!r}")


Constraint: TypeAlias = UniqueConstraint | NonNullConstraint


def _constraints(value: Any) -> list[Constraint]:
    items = list(value)
    for item in items:
        if not isinstance(item, UniqueConstraint | NonNullConstraint):
            raise ModelError(
                f"constraints must be UniqueConstraint or NonNullConstraint objects, got {item!r}"
            )
    return items


@attrs.define(eq=False)
class Entity:
    """A record type. ``computation`` may be a Transform (or Custom) that produces its records.
    ``renamed_from`` names the record type this one was called before (its table is renamed
    and keeps its rows).

    Two kinds of entity are *views* with no table of their own (see :mod:`reactive.views`):

    - filtered: ``Entity("ActiveUser", base=user, match=MatchExp.atom("status", "=",
      "active"))`` — the records of ``base`` that match, live;
    - merged: ``Entity("Customer", inputs=[person, company])`` — the records of every input,
      with the fields they have in common.

    A view declares no properties, computation or rename of its own.

    ``constraints`` lists :class:`UniqueConstraint` and :class:`NonNullConstraint` objects
    over the entity's properties."""

    name: str
    properties: list[Property] = attrs.field(factory=list, converter=_list)
    computation: Computation | None = None
    renamed_from: str | None = None
    base: Entity | None = None
    match: MatchExp | None = attrs.field(default=None, converter=_match)
    inputs: list[Entity] | None = None
    constraints: list[Constraint] = attrs.field(factory=list, converter=_constraints)

    def __attrs_post_init__(self) -> None:
        _check_name("entity", self.name)
        _check_properties(self.name, self.properties, ("id",))
        _check_view(self, Entity, "entity")
        known = {p.name for p in self.properties}
        for constraint in self.constraints:
            if self.is_view:
                raise ModelError(
                    f"{self.name}: a view declares no constraints (declare them on its base)"
                )
            fields: tuple[str, ...]
            if isinstance(constraint, NonNullConstraint):
                label, fields = "non-null constraint", (constraint.field,)
            else:
                label = f"unique constraint {constraint.name or list(constraint.fields)}"
                fields = (*constraint.fields, *(constraint.where or {}))
            for field in fields:
                if field not in known:
                    raise ModelError(
                        f"{self.name}: {label} names {field!r}, which is not a property of "
                        f"{self.name} ({', '.join(sorted(known)) or 'none'})"
                    )

    @property
    def is_view(self) -> bool:
        """Whether this entity is a filtered or merged view (no table of its own)."""
        return self.base is not None or self.inputs is not None

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

    A relation may be a view, like an entity: ``Relation(name="CloseFriendship",
    base=friendship, match=...)`` (its link records that match) or ``Relation(name="Tie",
    inputs=[friendship, colleague])`` (the link records of every input, which must join the
    same ends). A view takes its ends and type from its base (or first input), needs a
    ``name``, and adds no relation attribute to its ends: aggregate over it with ``record=``.
    """

    source: Entity | Relation = _UNSET
    source_property: str = _UNSET
    target: Entity | Relation = _UNSET
    target_property: str = _UNSET
    type: RelationType = _UNSET
    name: str | None = None
    properties: list[Property] = attrs.field(factory=list, converter=_list)
    computation: Computation | None = None
    symmetric: bool = False
    cascade: bool = False
    renamed_from: str | None = None
    base: Relation | None = None
    match: MatchExp | None = attrs.field(default=None, converter=_match)
    inputs: list[Relation] | None = None

    @property
    def is_view(self) -> bool:
        """Whether this relation is a filtered or merged view (no table of its own)."""
        return self.base is not None or self.inputs is not None

    def __attrs_post_init__(self) -> None:
        if self.is_view:
            self._inherit_ends()
        missing = [
            n
            for n in ("source", "source_property", "target", "target_property", "type")
            if getattr(self, n) is None
        ]
        if missing:
            raise ModelError(f"relation {self.name or '?'} needs {', '.join(missing)}")
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
        _check_view(self, Relation, "relation")

    def _inherit_ends(self) -> None:
        label = f"relation {self.name or '?'}"
        if self.name is None:
            raise ModelError(f"{label}: a relation view (base= or inputs=) needs a name")
        first: Any = self.base
        if first is None and self.inputs:
            first = self.inputs[0]
        if not isinstance(first, Relation):
            raise ModelError(
                f"{label}: base= and inputs= take Relation objects, got {first!r} "
                "(inputs=[] has no records to merge)"
            )
        for key in ("source_property", "target_property"):
            if getattr(self, key) is not None:
                raise ModelError(
                    f"{label}.{key}: a relation view adds no relation attribute to its ends "
                    "(aggregate over it with record=)"
                )
        for key in ("source", "target", "type"):
            own, inherited = getattr(self, key), getattr(first, key)
            if own is not None and own is not inherited and own != inherited:
                raise ModelError(
                    f"{label}.{key}: a relation view takes {key} from "
                    f"{first.relation_name} ({_label(inherited)}), not {_label(own)}"
                )
            setattr(self, key, inherited)
        for other in self.inputs or ():
            if other.source is not first.source or other.target is not first.target:
                raise ModelError(
                    f"{label}: merged relations must join the same ends; "
                    f"{other.relation_name} joins {_label(other.source)} and "
                    f"{_label(other.target)}, {first.relation_name} joins "
                    f"{_label(first.source)} and {_label(first.target)}"
                )
        self.source_property = first.source_property
        self.target_property = first.target_property
        self.symmetric = first.symmetric

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


def _label(value: Any) -> str:
    return record_name(value) if isinstance(value, Entity | Relation) else repr(value)


def _check_view(record: Entity | Relation, kind: type, label: str) -> None:
    """A view's declaration: base with match, or inputs; nothing stored of its own."""
    name = record.name
    if record.match is not None and record.base is None:
        raise ModelError(f"{label} {name}: match= filters a base; give base= too")
    if record.base is None and record.inputs is None:
        return
    if record.base is not None and record.inputs is not None:
        raise ModelError(
            f"{label} {name}: base= (a filtered view) and inputs= (a merged view) "
            "exclude each other"
        )
    if record.base is not None:
        if not isinstance(record.base, kind):
            raise ModelError(f"{label} {name}: base must be a {kind.__name__}, got {record.base!r}")
        if record.match is None:
            raise ModelError(
                f"{label} {name}: a filtered view needs match= (which records "
                f"of {_label(record.base)} it holds)"
            )
    else:
        inputs = record.inputs
        if isinstance(inputs, str) or not isinstance(inputs, list | tuple) or not inputs:
            raise ModelError(
                f"{label} {name}: inputs= must be a non-empty list of "
                f"{kind.__name__} objects, got {inputs!r}"
            )
        for item in inputs:
            if not isinstance(item, kind):
                raise ModelError(
                    f"{label} {name}: inputs must be {kind.__name__} objects, got {item!r}"
                )
        if len({id(i) for i in inputs}) != len(inputs):
            raise ModelError(f"{label} {name}: inputs name the same {label} twice")
        record.inputs = list(inputs)  # type: ignore[assignment]  # checked just above
    for what, present in (
        ("properties", bool(record.properties)),
        ("computation", record.computation is not None),
        ("renamed_from", record.renamed_from is not None),
    ):
        if present:
            raise ModelError(
                f"{label} {name}: a view has no {what} of its own (its records "
                "are those of its base or inputs; declare them there)"
            )


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

HARD_DELETION_PROPERTY = "_isDeleted_"
"""The name of the hard-deletion property (the original framework's, so ported patterns match)."""


def HardDeletionProperty(computation: Computation | None = None) -> Property:
    """The property that deletes its record: when a write (typically a StateMachine moving to
    :data:`~reactive.DELETED_STATE`) gives it a true value, the record is deleted instead of
    updated, with the usual delete events (its links first) and everything that follows them.
    While the record exists it reads False. For example::

        HardDeletionProperty(StateMachine(
            states=[NON_DELETED_STATE, DELETED_STATE],
            transfers=[StateTransfer(NON_DELETED_STATE, DELETED_STATE, trigger, target)],
            initial_state=NON_DELETED_STATE,
        ))
    """
    return Property(HARD_DELETION_PROPERTY, "boolean", computation=computation)


def record_name(record: Entity | Relation | str) -> str:
    """The storage name of an entity, relation or record name."""
    if isinstance(record, str):
        return record
    if isinstance(record, Entity):
        return record.name
    if isinstance(record, Relation):
        return record.relation_name
    raise ModelError(f"expected an Entity, a Relation or a record name, got {record!r}")
