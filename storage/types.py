"""Field value codecs: validate a Python value for a field type and convert it to and from the
value stored in a column. Backends that need other column representations supply their own codecs
with the same shape.

Numbers: ``"number"`` holds a finite float or an int within 64 bits (NaN and infinities are
refused); ``"integer"`` holds an exact int within 64 bits (-2**63 .. 2**63-1, a SQL ``BIGINT``),
never a float (not even ``2.0``) and never a bool. Both come back exactly as written."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.errors import FieldTypeError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)

Encoder = Callable[[str, str, Any], Any]
Decoder = Callable[[Any], Any]


def _encode_string(record: str, field: str, value: Any) -> Any:
    if type(value) is str and value.isascii():
        return value  # the common case: nothing more to check
    if not isinstance(value, str):
        raise FieldTypeError(record, field, "a string", value)
    if not is_text(value):
        raise FieldTypeError(
            record, field, "a string", value, "it holds a lone surrogate, which UTF-8 cannot store"
        )
    return value


def _encode_number(record: str, field: str, value: Any) -> Any:
    kind = type(value)
    if kind is int:
        if _INT64[0] <= value <= _INT64[1]:
            return value
    elif kind is float and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldTypeError(record, field, "a number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldTypeError(record, field, "a finite number", value)
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise FieldTypeError(record, field, "a number", value, "integer outside 64 bits")
    return value


def _encode_integer(record: str, field: str, value: Any) -> Any:
    # Exact ints only: a float (even 2.0) is refused rather than rounded, and bool is not a
    # number here although Python makes it an int subclass.
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldTypeError(record, field, "an integer", value)
    if not _INT64[0] <= value <= _INT64[1]:
        raise FieldTypeError(
            record, field, "an integer", value, "outside the 64-bit range -2**63 .. 2**63-1"
        )
    return int(value)  # an int subclass (an IntEnum member) is stored as its plain value


def _encode_boolean(record: str, field: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise FieldTypeError(record, field, "a boolean", value)
    return 1 if value else 0


JSON_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
"""How a json field's value becomes its stored text (canonical: sorted keys, no spaces). One
encoder for every field: json.dumps with options builds a new one per call."""


def _encode_json(record: str, field: str, value: Any) -> Any:
    try:
        # Sorted keys make the stored text canonical, so equality matches on json fields
        # compare values rather than key order.
        text = JSON_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise FieldTypeError(record, field, "a JSON value", value, str(exc)) from None
    # json.dumps turns int, float, bool and None keys into strings: they would not come back.
    bad = _non_string_key(value) if type(value) in _CONTAINERS or _is_container(value) else None
    if bad is not None:
        raise FieldTypeError(
            record, field, "a JSON value", value, f"object key {bad[0]!r} is not a string"
        )
    return text


_CONTAINERS = (dict, list, tuple)


def _is_container(value: Any) -> bool:
    return isinstance(value, dict | list | tuple)


def _non_string_key(value: Any) -> tuple[Any] | None:
    """The first object key that is not a str, as a 1-tuple (the key may be None), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if type(key) is not str and not isinstance(key, str):
                    return (key,)
                if type(child) in _CONTAINERS or (
                    type(child) not in _SCALARS and _is_container(child)
                ):
                    stack.append(child)
        else:
            for child in item:
                if type(child) in _CONTAINERS or (
                    type(child) not in _SCALARS and _is_container(child)
                ):
                    stack.append(child)
    return None


_SCALARS = (str, int, float, bool, type(None))


def _encode_timestamp(record: str, field: str, value: Any) -> Any:
    if isinstance(value, str):
        # ISO 8601 with an explicit offset, as JSON carries timestamps ("...Z" included).
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise FieldTypeError(
                record, field, "a timezone-aware datetime", value, "not an ISO 8601 timestamp"
            ) from None
    if not isinstance(value, datetime):
        raise FieldTypeError(record, field, "a timezone-aware datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise FieldTypeError(
            record, field, "a timezone-aware datetime", value, "naive datetimes are ambiguous"
        )
    # Whole microseconds since the epoch: exact, and ordered like the instants themselves.
    return (value - _EPOCH) // timedelta(microseconds=1)


def _decode_identity(value: Any) -> Any:
    return value


def _decode_boolean(value: Any) -> Any:
    return None if value is None else bool(value)


def _decode_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _decode_timestamp(value: Any) -> Any:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


ENCODERS: dict[str, Encoder] = {
    "string": _encode_string,
    "number": _encode_number,
    "integer": _encode_integer,
    "boolean": _encode_boolean,
    "json": _encode_json,
    "timestamp": _encode_timestamp,
}

DECODERS: dict[str, Decoder] = {
    "string": _decode_identity,
    "number": _decode_identity,
    "integer": _decode_identity,
    "boolean": _decode_boolean,
    "json": _decode_json,
    "timestamp": _decode_timestamp,
}


def _plain_json(value: Any, stored: Any) -> Any:
    """What reading ``stored`` (the text _encode_json made of ``value``) back returns, copied
    from ``value`` when that is plain JSON data, small enough that a copy beats parsing."""
    if stored is None or len(stored) > _COPY_LIMIT:
        return _decode_json(stored)
    copied = _copy_json(value)
    return _decode_json(stored) if copied is _NOT_PLAIN else copied


_COPY_LIMIT = 512
_NOT_PLAIN: Any = object()


def _copy_json(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        copy: dict[str, Any] = {}
        for key, child in sorted(value.items()):  # the stored text has its keys sorted
            if type(key) is not str:
                return _NOT_PLAIN
            item = _copy_json(child)
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
            copy[key] = item
        return copy
    if kind is list or kind is tuple:
        items = []
        for child in value:
            item = _copy_json(child)
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(item)
        return items
    return _NOT_PLAIN  # subclasses and the rest: parse what was stored


def _plain_timestamp(value: Any, stored: Any) -> Any:
    return _decode_timestamp(stored)  # normalised to UTC, as a read returns it


PlainMaker = Callable[[Any, Any], Any]

PLAIN: dict[str, PlainMaker | None] = {
    # (value written, value stored) -> the value a read returns; None: the value written.
    "string": None,
    "number": None,
    "integer": None,
    "boolean": None,
    "json": _plain_json,
    "timestamp": _plain_timestamp,
}
"""How a write knows what a read of each field type returns without reading it back."""


def is_text(value: str) -> bool:
    """Whether a str can be stored: it must encode to UTF-8 (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_id(value: Any) -> bool:
    """Whether ``value`` can be a record id: a str, or an int that fits in 64 bits."""
    if isinstance(value, str):
        return is_text(value)
    return (
        isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    )


def encode(record: str, field: str, type_name: str, value: Any) -> Any:
    """Validate ``value`` for a field of ``type_name`` and return its column value."""
    if value is None:
        return None
    return ENCODERS[type_name](record, field, value)


def decode(type_name: str, value: Any) -> Any:
    """Turn a column value back into the Python value that was written."""
    return DECODERS[type_name](value)
