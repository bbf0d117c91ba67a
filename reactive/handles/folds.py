"""How each aggregate kind turns items into a value.

An aggregate keeps two running totals per host: ``total`` (the sum of every item's
contribution) and ``count`` (the number of items). Each item's contribution is stored next to
it, so removing or changing one item is a constant-time delta, never a re-scan.

Totals stay exact: integer items add up as Python ints (a Summation or Count over ``integer``
fields stays an int, a WeightedSummation too when weights and values are ints). Before a total
is stored, :func:`check_total` refuses one the storage could not hold (beyond 64 bits, an
infinite float, a float for an ``integer`` target) with a :class:`ComputationError` naming the
computation and its target, so the whole write rolls back instead of storing a wrong value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from reactive.computations import Any as AnyDecl
from reactive.computations import Average, Count, Every, Summation, WeightedSummation, _Aggregate
from reactive.errors import ComputationError, ModelError
from storage import LINK_FIELDS_KEY, DerivedKind

# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_NUMBERS = (int, float)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return value


class Fold:
    """Contribution of one item and the value of the totals for one aggregate declaration."""

    def __init__(
        self, decl: _Aggregate, callback: Callable[..., Any] | None, with_deps: bool = False
    ):
        self.decl = decl
        self.callback = callback
        self.with_deps = with_deps  # the callback takes (item, deps, ctx)
        self.path = _value_path(decl) if isinstance(decl, Summation | Average) else None
        self.needs_item = callback is not None or self.path is not None
        self._value = self._value_function()  # chosen once: value() runs on every step
        self.kind = self._kind()
        self._weighted = isinstance(decl, WeightedSummation)

    def contribution(self, item: dict[str, Any] | None, ctx: Any, deps: Any = None) -> float:
        if not self.needs_item:
            return 1
        if item is None:
            return 0
        if self.path is not None:
            value: Any = item
            for part in self.path:
                value = value.get(part) if isinstance(value, dict) else None
            return _number(value)
        assert self.callback is not None
        result = self.callback(item, deps, ctx) if self.with_deps else self.callback(item, ctx)
        if self._weighted:
            if not isinstance(result, tuple | list) or len(result) != 2:
                raise ModelError(
                    f"WeightedSummation callback must return (weight, value), got {result!r}"
                )
            weight, value = _number(result[0]), _number(result[1])
            product = weight * value
            # Int products are exact (their range is checked on the total); a float one that
            # overflowed contributes nothing, like any non-finite value.
            return product if type(product) is int or math.isfinite(product) else 0
        return 1 if result else 0

    def value(self, total: float, count: float) -> Any:
        """The aggregate's value for these running totals."""
        return self._value(total, count)

    def _value_function(self) -> Callable[[float, float], Any]:
        decl = self.decl
        if isinstance(decl, Count):
            return lambda total, count: int(total)
        if isinstance(decl, Summation | WeightedSummation):
            return lambda total, count: total
        if isinstance(decl, Average):
            return lambda total, count: total / count if count else 0
        if isinstance(decl, Every):
            not_empty = decl.not_empty
            return lambda total, count: total == count and (count > 0 or not not_empty)
        if isinstance(decl, AnyDecl):
            return lambda total, count: total > 0
        raise ModelError(f"unknown aggregate {decl!r}")

    def _kind(self) -> DerivedKind:
        """The value's function of the totals in the storage's terms (see
        ``storage.Derived``): the database computes it when it applies a delta."""
        decl = self.decl
        if isinstance(decl, Average):
            return "mean"
        if isinstance(decl, Every):
            return "every_nonempty" if decl.not_empty else "every"
        if isinstance(decl, AnyDecl):
            return "any"
        return "total"  # Count (its total counts items: an int), Summation, WeightedSummation

    def initial(self) -> Any:
        return self.value(0, 0)


_INT64 = (-(2**63), 2**63 - 1)


def check_total(computation: str, target: str, total: Any, integer: bool) -> None:
    """Refuse a running ``total`` that ``target`` (an ``integer`` one when ``integer``) cannot
    hold: an int outside 64 bits, a non-finite float, or any float for an integer target."""
    if isinstance(total, float):
        if integer:
            raise ComputationError(
                computation,
                f"{target} is an integer, but the items add up to {total}, which is not; sum "
                "integer fields (or return integers from the callback)",
            )
        if not math.isfinite(total):
            raise ComputationError(
                computation,
                f"{target} would overflow: the total is beyond the largest finite number; "
                "the write is refused",
            )
    elif not _INT64[0] <= total <= _INT64[1]:
        raise ComputationError(
            computation,
            f"{target} would be {total}, outside the 64-bit integer range "
            "-9223372036854775808 .. 9223372036854775807; the write is refused",
        )


def _value_path(decl: _Aggregate) -> list[str]:
    query = decl.attribute_query or []
    if len(query) != 1:
        raise ModelError(
            f"{decl.kind} sums exactly one field: attribute_query must name one field "
            f"(['price'] or [('&', ['weight'])]), got {query!r}"
        )
    item = query[0]
    if isinstance(item, str) and item != "*":
        return [item]
    if (
        isinstance(item, tuple | list)
        and len(item) == 2
        and item[0] == LINK_FIELDS_KEY
        and isinstance(item[1], list | tuple)
        and len(item[1]) == 1
        and isinstance(item[1][0], str)
    ):
        return [LINK_FIELDS_KEY, item[1][0]]
    raise ModelError(
        f"{decl.kind} attribute_query must name one field (['price'] or [('&', ['weight'])]), "
        f"got {query!r}"
    )
