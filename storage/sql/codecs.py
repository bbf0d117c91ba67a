"""A backend's value codecs: how each field type is validated, stored and read back.

The neutral reader, writer and match compiler never import a representation: they take the
:class:`Codecs` of the backend's dialect. Every backend validates the same way (the checks in
:mod:`storage.types`) and stores in its own way (SQLite: 0/1 booleans, integer microseconds,
JSON text; PostgreSQL: ``boolean``, ``timestamptz``, ``jsonb``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from storage.types import Decoder, Encoder, PlainMaker

__all__ = ["Codecs"]


@dataclass(frozen=True)
class Codecs:
    """Per field type (``"string"``, ``"number"``, ``"integer"``, ``"boolean"``, ``"json"``,
    ``"timestamp"``):

    - ``encoders[type](record, field, value)``: validate a Python value (never None) and return
      the column value, raising :class:`~storage.errors.FieldTypeError` naming record and field;
    - ``decoders[type](column value)``: the Python value back (None stays None);
    - ``plain[type]``: ``(value written, column value) -> value a read returns``, or None when a
      read returns the value written (lets a write report its record without reading it back);
    - ``identity``: the types whose column value *is* the Python value both ways (no encoding
      for a plain scalar, no decoding): the fast paths skip them.
    """

    encoders: Mapping[str, Encoder]
    decoders: Mapping[str, Decoder]
    plain: Mapping[str, PlainMaker | None]
    identity: frozenset[str]

    @cached_property
    def scalar_identity(self) -> frozenset[str]:
        """The identity types among string, number and integer: an equality on one of them
        with a plain scalar needs neither the match compiler nor an encoder."""
        return self.identity & {"string", "number", "integer"}

    def encode(self, record: str, field: str, type_name: str, value: Any) -> Any:
        """Validate ``value`` for a field of ``type_name``; its column value (None stays None)."""
        if value is None:
            return None
        return self.encoders[type_name](record, field, value)

    def decode(self, type_name: str, value: Any) -> Any:
        """The Python value of a column value."""
        return self.decoders[type_name](value)
