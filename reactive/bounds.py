"""Value types and bounds of declared inputs: payload items and API params.

One set of rules for both, so that what the engine checks, what the server checks and what the
OpenAPI document publishes cannot drift apart:

- ``"integer"``: an exact int (never a float, not even ``2.0``, never a bool) within 64 bits,
  -2**63 .. 2**63-1; published with those limits (narrowed by ``minimum``/``maximum``).
- ``"number"``: a finite int or float (never a bool).
- ``minimum``/``maximum`` (numbers and integers, inclusive) and ``min_length``/``max_length``
  (strings, counted in Unicode code points as JSON Schema counts them).

:meth:`Bounds.problem` says what is wrong with a value in JSON terms ("a number with a
fraction", never a Python type name or repr), for error messages that go back to clients.
Checking a value costs O(1) (a string's length is known).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from reactive.errors import ModelError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NUMERIC = ("number", "integer")


def json_type_name(value: Any) -> str:
    """The JSON type of a decoded value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # not from JSON: a Python caller's value


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON words for a message ("an integer", "a number with a
    fraction", "a string", ...)."""
    if type(value) is int:
        return "an integer"
    if type(value) is float:
        return "a number with a fraction" if math.isfinite(value) else "a non-finite number"
    name = json_type_name(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def is_integer(value: Any) -> bool:
    """An int (not a bool) within 64 bits."""
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    kind = type(value)
    if kind is int:
        return True
    if kind is float:
        return math.isfinite(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(value: Any) -> Any:
    if value is not None and not is_number(value):
        raise ModelError(f"a bound must be a finite number, got {value!r}")
    return value


def _optional_length(value: Any) -> Any:
    if value is not None and (type(value) is not int or value < 0):
        raise ModelError(f"a length bound must be a whole number >= 0, got {value!r}")
    return value


@attrs.frozen
class Bounds:
    """Inclusive limits on a value: ``minimum``/``maximum`` for numbers and integers,
    ``min_length``/``max_length`` for strings (code points)."""

    minimum: int | float | None = attrs.field(default=None, converter=_optional_number)
    maximum: int | float | None = attrs.field(default=None, converter=_optional_number)
    min_length: int | None = attrs.field(default=None, converter=_optional_length)
    max_length: int | None = attrs.field(default=None, converter=_optional_length)

    def check_declaration(self, what: str, type_name: str) -> None:
        """Refuse bounds that cannot apply to ``type_name`` or that no value can meet."""
        numeric = self.minimum is not None or self.maximum is not None
        lengths = self.min_length is not None or self.max_length is not None
        if numeric and type_name not in _NUMERIC:
            raise ModelError(
                f"{what}: minimum/maximum apply to numbers and integers, not {type_name}"
            )
        if lengths and type_name != "string":
            raise ModelError(f"{what}: min_length/max_length apply to strings, not {type_name}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ModelError(f"{what}: minimum {self.minimum} is above maximum {self.maximum}")
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ModelError(
                f"{what}: min_length {self.min_length} is above max_length {self.max_length}"
            )

    def problem(self, type_name: str, value: Any) -> str | None:
        """What is wrong with ``value`` for ``type_name`` and these bounds (a phrase that
        follows "must ..."), or None when it is fine. ``json`` values and timestamps are
        checked elsewhere; here they pass."""
        if type_name == "integer":
            if type(value) is float and value.is_integer():
                return "be an integer within 64 bits (-2**63 .. 2**63-1)"  # 1e300
            if type(value) is not int:
                return f"be an integer, got {json_kind(value)}"
            if not INT64_MIN <= value <= INT64_MAX:
                return "be an integer within 64 bits (-2**63 .. 2**63-1)"
        elif type_name == "number":
            if not is_number(value):
                return f"be a number, got {json_kind(value)}"
        elif type_name == "string":
            if not isinstance(value, str):
                return f"be a string, got {json_kind(value)}"
            if self.min_length is not None and len(value) < self.min_length:
                return f"be at least {self.min_length} characters long, got {len(value)}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"be at most {self.max_length} characters long, got {len(value)}"
            return None
        elif type_name == "boolean":
            return None if isinstance(value, bool) else f"be a boolean, got {json_kind(value)}"
        else:
            return None
        if self.minimum is not None and value < self.minimum:
            return f"be at least {self.minimum}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"be at most {self.maximum}, got {value}"
        return None

    def schema(self, type_name: str) -> dict[str, Any]:
        """The JSON Schema keywords for these bounds on ``type_name`` (integers always carry
        the 64-bit limits, so that a generator never offers a value the server refuses)."""
        out: dict[str, Any] = {}
        minimum, maximum = self.minimum, self.maximum
        if type_name == "integer":
            minimum = INT64_MIN if minimum is None else max(math.ceil(minimum), INT64_MIN)
            maximum = INT64_MAX if maximum is None else min(math.floor(maximum), INT64_MAX)
        if minimum is not None:
            out["minimum"] = minimum
        if maximum is not None:
            out["maximum"] = maximum
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Bounds",
    "is_integer",
    "is_number",
    "json_kind",
    "json_type_name",
]
