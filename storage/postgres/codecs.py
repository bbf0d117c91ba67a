"""PostgreSQL value codecs: the same shape as :mod:`storage.types` (``encode(record, field,
value)`` validates and returns the parameter for asyncpg; ``decode(column value)`` returns what
a read gives), and the same values out as on SQLite for the same values in.

- ``string``: ``text``. PostgreSQL's text cannot hold the NUL character (U+0000), which SQLite
  stores: such a string is refused with :class:`FieldTypeError` naming the field (the one
  difference in what the two backends accept).
- ``number``: ``numeric``, which keeps SQLite's split between ints and floats: an int is sent
  as an int (scale 0, read back as ``int``), a float as a ``Decimal`` of its shortest repr
  with at least one fractional digit (scale >= 1, read back as ``float``, exactly: the repr
  round-trips). ``SUM`` follows the same rule: all ints give an int, any float a float.
- ``integer``: ``bigint``; ``boolean``: ``boolean`` (no 0/1 on the way).
- ``json``: ``text`` holding the same canonical JSON as on SQLite (sorted keys, no spaces).
- ``timestamp``: ``timestamptz``; in as an aware ``datetime`` (or an ISO 8601 string with an
  offset), out in UTC, to the microsecond, as on SQLite.

Validation (types, ranges, finite numbers, JSON keys) is :mod:`storage.types`' own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from storage.errors import FieldTypeError
from storage.types import DECODERS as NEUTRAL_DECODERS
from storage.types import ENCODERS as NEUTRAL_ENCODERS
from storage.types import PLAIN as NEUTRAL_PLAIN
from storage.types import Decoder, Encoder, PlainMaker

_string = NEUTRAL_ENCODERS["string"]
_number = NEUTRAL_ENCODERS["number"]
_timestamp = NEUTRAL_ENCODERS["timestamp"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_string(record: str, field: str, value: Any) -> Any:
    """A str PostgreSQL's text can hold."""
    text = _string(record, field, value)
    if "\x00" in text:
        raise FieldTypeError(
            record,
            field,
            "a string",
            value,
            "it holds the NUL character (U+0000), which PostgreSQL text cannot store",
        )
    return text


def encode_number(record: str, field: str, value: Any) -> Any:
    """An int as is; a float as a Decimal whose scale marks it a float."""
    number = _number(record, field, value)
    if type(number) is int:
        return number
    if number == int(number):  # integral float: keep one fractional digit
        return Decimal(f"{int(number)}.0")
    return Decimal(repr(number))


def decode_number(value: Any) -> Any:
    """``numeric`` back to an int (scale 0) or a float (any fractional digit)."""
    if value is None or type(value) is not Decimal:
        return value
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(value)
    return float(value)


def encode_timestamp(record: str, field: str, value: Any) -> Any:
    """An aware datetime in UTC (validated and truncated to the microsecond as on SQLite)."""
    return _EPOCH + timedelta(microseconds=_timestamp(record, field, value))


def encode_boolean(record: str, field: str, value: Any) -> Any:
    """A bool as is (PostgreSQL has the type)."""
    if not isinstance(value, bool):
        raise FieldTypeError(record, field, "a boolean", value)
    return value


def decode_timestamp(value: Any) -> Any:
    """A ``timestamptz`` in UTC."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not UTC else value


def _identity(value: Any) -> Any:
    return value


ENCODERS: dict[str, Encoder] = {
    "string": encode_string,
    "number": encode_number,
    "integer": NEUTRAL_ENCODERS["integer"],
    "boolean": encode_boolean,
    "json": NEUTRAL_ENCODERS["json"],
    "timestamp": encode_timestamp,
}

DECODERS: dict[str, Decoder] = {
    "string": _identity,
    "number": decode_number,
    "integer": _identity,
    "boolean": _identity,
    "json": NEUTRAL_DECODERS["json"],
    "timestamp": decode_timestamp,
}


def _plain_timestamp(value: Any, stored: Any) -> Any:
    return decode_timestamp(stored)


PLAIN: dict[str, PlainMaker | None] = {
    # (value written, value stored) -> the value a read returns; None: the value written.
    **NEUTRAL_PLAIN,
    "timestamp": _plain_timestamp,
}
"""How a write knows what a read of each field type returns without reading it back."""
