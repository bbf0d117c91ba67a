"""``MatchExp``: a composable filter over records.

    MatchExp.atom("author.name", "=", "ada") & ~MatchExp.atom("score", "<", 3)

Keys are field names or dotted paths through relation attributes (``"author.name"``,
``"tags.&.weight"`` for a link's own fields). Wherever a match is accepted, a plain dict
``{"field": value}`` means the AND of equalities. Paths are checked against the schema when the
match is used, so a typo fails with an error naming the record and the path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import attrs

from storage.errors import MatchError

OPERATORS: tuple[str, ...] = (
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "like",
    "is null",
    "is not null",
    "between",
    "contains",
    "exist",
)
_LIST_OPERATORS = frozenset({"in", "not in"})
_NULL_OPERATORS = frozenset({"is null", "is not null"})
_ORDER_OPERATORS = frozenset({"<", "<=", ">", ">="})
REFERABLE_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">="})
"""The operators whose operand may be a :class:`FieldRef` (another field of the same record)."""


@attrs.frozen(eq=True)
class FieldRef:
    """An operand that is another value field of the record the atom's key ends on (the
    original's ``isReferenceValue``): ``MatchExp.atom("spent", ">", FieldRef("budget"))``.
    Compared like two Python values: ``=`` holds for two ``None``, ordering never holds when
    either is ``None``."""

    field: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field or "." in self.field:
            raise MatchError(
                f"FieldRef names one value field of the same record, got {self.field!r}"
            )


NodeKind: TypeAlias = Literal["atom", "and", "or", "not"]


@attrs.frozen(eq=True)
class MatchExp:
    """A filter expression tree. Build atoms with :meth:`atom`, combine with ``&``, ``|``, ``~``."""

    kind: NodeKind
    key: str | None = None
    op: str | None = None
    value: Any = None
    children: tuple[MatchExp, ...] = ()

    @classmethod
    def atom(cls, key: str, op: str, value: Any = None) -> MatchExp:
        """A single condition ``key op value``.

        ``op`` is one of ``=, !=, <, <=, >, >=, in, not in, like, is null, is not null,
        between, contains, exist`` (case-insensitive). ``= None`` means ``is null`` and
        ``!= None`` ``is not null``. ``between`` takes ``[low, high]`` (both included, neither
        None); ``contains`` tests a substring of a string field or an element of a json array;
        ``exist`` is on a relation key and takes a match on the related record (a dict, a
        MatchExp, or None for "any"): some related record matches it, and its negation is
        "none does". A :class:`FieldRef` operand compares with another field of the record.
        """
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise MatchError(f"match key must be a non-empty (dotted) field path, got {key!r}")
        if not isinstance(op, str):
            raise MatchError(f"match operator for {key!r} must be a string, got {op!r}")
        normal = " ".join(op.lower().split())
        if normal not in OPERATORS:
            raise MatchError(
                f"unknown match operator {op!r} for {key!r}; use one of {', '.join(OPERATORS)}"
            )
        if normal == "=" and value is None and not isinstance(value, FieldRef):
            normal = "is null"
        elif normal == "!=" and value is None:
            normal = "is not null"
        if isinstance(value, FieldRef):
            if normal not in REFERABLE_OPERATORS:
                raise MatchError(
                    f"{key!r} {normal}: a FieldRef operand needs one of "
                    f"{', '.join(sorted(REFERABLE_OPERATORS))}"
                )
        elif normal == "between":
            if (
                not isinstance(value, list | tuple)
                or len(value) != 2
                or any(v is None or isinstance(v, FieldRef) for v in value)
            ):
                raise MatchError(f"{key!r} between needs [low, high], neither None, got {value!r}")
            value = tuple(value)
        elif normal == "contains":
            if not isinstance(value, str | int | float) and value is not None:
                raise MatchError(
                    f"{key!r} contains needs a string, number, boolean or None, got {value!r}"
                )
        elif normal == "exist":
            if value is None:
                value = cls("and")  # any related record
            elif isinstance(value, Mapping):
                value = cls.from_dict(value)
            elif not isinstance(value, MatchExp):
                raise MatchError(
                    f"{key!r} exist needs a match on the related record (MatchExp, dict or "
                    f"None), got {value!r}"
                )
        elif normal in _LIST_OPERATORS:
            if isinstance(value, str | bytes | Mapping) or not isinstance(
                value, list | tuple | set | frozenset
            ):
                raise MatchError(f"{key!r} {normal} needs a list of values, got {value!r}")
            value = tuple(value)
        elif normal in _NULL_OPERATORS:
            value = None
        elif normal in _ORDER_OPERATORS and value is None:
            raise MatchError(f"{key!r} {normal} None has no meaning; use 'is null'")
        elif normal == "like" and not isinstance(value, str):
            raise MatchError(f"{key!r} like needs a string pattern, got {value!r}")
        return cls("atom", key=key, op=normal, value=value)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> MatchExp:
        """The AND of ``key = value`` for every item; an empty dict matches everything."""
        if not isinstance(mapping, Mapping):
            raise MatchError(f"a match dict must be a mapping, got {mapping!r}")
        atoms = [cls.atom(key, "=", value) for key, value in mapping.items()]
        if not atoms:
            return cls("and")
        if len(atoms) == 1:
            return atoms[0]
        return cls("and", children=tuple(atoms))

    def __and__(self, other: MatchExp | Mapping[str, Any]) -> MatchExp:
        return MatchExp._combine("and", self, _operand(other))

    def __rand__(self, other: Mapping[str, Any]) -> MatchExp:
        return MatchExp._combine("and", _operand(other), self)

    def __or__(self, other: MatchExp | Mapping[str, Any]) -> MatchExp:
        return MatchExp._combine("or", self, _operand(other))

    def __ror__(self, other: Mapping[str, Any]) -> MatchExp:
        return MatchExp._combine("or", _operand(other), self)

    def __invert__(self) -> MatchExp:
        return MatchExp("not", children=(self,))

    def __bool__(self) -> bool:
        raise TypeError("a MatchExp has no truth value: combine matches with &, | and ~")

    @staticmethod
    def _combine(kind: Literal["and", "or"], left: MatchExp, right: MatchExp) -> MatchExp:
        parts: list[MatchExp] = []
        for side in (left, right):
            parts.extend(side.children if side.kind == kind else (side,))
        return MatchExp(kind, children=tuple(parts))

    def __repr__(self) -> str:
        if self.kind == "atom":
            return f"MatchExp.atom({self.key!r}, {self.op!r}, {self.value!r})"
        if self.kind == "not":
            return f"~{self.children[0]!r}"
        if not self.children:
            return "MatchExp.from_dict({})"
        joiner = " & " if self.kind == "and" else " | "
        return "(" + joiner.join(repr(c) for c in self.children) + ")"


def to_match(match: MatchExp | Mapping[str, Any] | None) -> MatchExp | None:
    """Normalise what callers may pass as a match: None, a dict shorthand, or a MatchExp."""
    if match is None or isinstance(match, MatchExp):
        return match
    if isinstance(match, Mapping):
        return MatchExp.from_dict(match)
    raise MatchError(f"a match must be a MatchExp or a dict, got {type(match).__name__}")


def _operand(other: MatchExp | Mapping[str, Any]) -> MatchExp:
    match = to_match(other)
    if match is None:
        raise MatchError("cannot combine a match with None")
    return match
