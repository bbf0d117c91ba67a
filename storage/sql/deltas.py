"""Atomic deltas: add numbers to fields of one record in the database, not in Python.

``UPDATE t SET total = coalesce(total, 0) + ?, ..., value = <f(new totals)> WHERE id = ? AND
<range guards> RETURNING id, <every column>``: one statement that reads and writes the row
under the database's own row lock, so concurrent transactions that add to the same record
lose nothing (a read in Python followed by a write would: both read the same old total). The
right-hand sides of ``SET`` see the row as it was, so a derived field repeats its totals'
sums. The same statement text serves every call with the same fields, derived kinds and
guards (it is remembered in the storage's :class:`~storage.sql.cache.StatementCache`).

Numbers. A total adds as its stored type does: ints exactly (within 64 bits), floats as the
database adds them (SQLite: IEEE doubles, as Python; PostgreSQL: ``numeric``, the exact
decimal sum of the floats' shortest reprs, read back as the nearest float, as its ``SUM``
does). A NULL total counts as 0. The guards in ``WHERE`` refuse a total that its field could
not hold, before anything is written: an int total beyond 64 bits (checked only while the
stored total is an int: a float total takes int deltas as floats, as in Python) and a
non-finite float; the statement then matches no row, and a read of the current total tells a
refusal (:class:`~storage.errors.TotalRangeError` naming the field and the would-be total)
from a record that does not exist (an empty result).

Derived fields. A field of ``derived`` is set to its :class:`~storage.abc.Derived` function
of the new totals. Where the database can compute it in the field's own type (a total or mean
into a number, a total into an integer, any/every into a boolean) it is part of the same
statement; otherwise (a ``json`` or ``string`` field) Python computes it from the returned
totals and writes it with a second ``UPDATE`` of the same row, which the first statement has
locked until the transaction ends: still atomic.

The event. One ``update`` event: ``record`` holds the id and every field written, ``old_record``
the row before: the returned row with each total's old value (the new one minus its delta,
subtracted in the database's representation, so exact for ints and ``numeric``; within one
rounding of the stored value for SQLite floats) and each derived field's function of the old
totals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from storage.abc import Derived
from storage.errors import FieldTypeError, StorageError, TotalRangeError
from storage.events import MutationEvent, Record, WriteResult
from storage.sql.links import Links
from storage.sql.plans import INT64_MAX, INT64_MIN

FLOAT_MAX = 1.7976931348623157e308
"""The largest finite double: a float total beyond it (either sign) is refused."""

_NUMBER_TYPES = ("number", "integer")


class DeltaStatement:
    """One remembered shape of an atomic delta: the UPDATE text, how its parameters are laid
    out, which derived fields Python computes, and how the returned row decodes."""

    __slots__ = ("columns", "decoders", "in_python", "in_sql", "params", "sql")

    def __init__(
        self,
        sql: str,
        params: list[tuple[str, str]],
        in_sql: tuple[str, ...],
        in_python: tuple[str, ...],
        columns: list[str],
        decoders: list[Any],
    ) -> None:
        self.sql = sql
        self.params = params  # per placeholder: (kind, field), kind "delta"/"bound"/"id"
        self.in_sql = in_sql
        self.in_python = in_python
        self.columns = columns
        self.decoders = decoders


def _guard_kind(delta: Any) -> str:
    if type(delta) is float:
        return "finite"
    if delta > 0:
        return "up"
    if delta < 0:
        return "down"
    return "none"


class Deltas(Links):
    """The atomic delta write; :class:`~storage.sql.writer.Writer` builds on it."""

    __slots__ = ()

    def apply_deltas(
        self,
        name: str,
        record_id: Any,
        deltas: Mapping[str, int | float],
        derived: Mapping[str, Derived],
    ) -> WriteResult:
        """See :meth:`storage.abc.Session.apply_deltas` and the module."""
        fields = self.schema.fields(name)
        encoders = self.planner.encoders(name)
        encoded: dict[str, Any] = {}
        for field, delta in deltas.items():
            if field not in fields:
                self.schema.field(name, field)  # raises UnknownFieldError naming the fields
            if fields[field].type not in _NUMBER_TYPES:
                raise FieldTypeError(
                    name, field, "a number or integer field", delta, "deltas add to numbers"
                )
            encoded[field] = encoders[field](name, field, delta)
        for field, fold in derived.items():
            if field not in fields:
                self.schema.field(name, field)
            for source in (fold.total, fold.count):
                if source not in deltas:
                    raise StorageError(
                        f"apply_deltas on {name}: derived field {field!r} reads {source!r}, "
                        "which has no delta",
                        record=name,
                        field=field,
                    )
            if fields[field].type == "integer" and type(deltas[fold.total]) is float:
                raise FieldTypeError(
                    name, field, "an integer", deltas[fold.total], "a float delta makes it a float"
                )
        if not any(deltas.values()):
            return WriteResult([], [])  # nothing to add: nothing changes
        shape = tuple((f, _guard_kind(d)) for f, d in deltas.items())
        key = (name, shape, tuple((f, d.kind, d.total, d.count) for f, d in derived.items()))
        statement = self._cache.deltas.get(key)
        if statement is None:
            statement = self._delta_statement(name, shape, derived)
            self._cache.deltas[key] = statement
        params: list[Any] = []
        for kind, field in statement.params:
            if kind == "delta":
                params.append(encoded[field])
            elif kind == "id":
                params.append(record_id)
            else:
                params.append(_bound(kind, deltas[field], encoders[field], name, field))
        row = self._execute(name, statement.sql, params, deltas).fetchone()
        if row is None:
            self._refuse_or_missing(name, record_id, deltas)
            return WriteResult([], [])
        new: Record = {"id": row[0]}
        old: Record = {"id": row[0]}
        for column, decoder, value in zip(
            statement.columns, statement.decoders, row[1:], strict=True
        ):
            new[column] = value if decoder is None else decoder(value)
            if column in encoded:
                before = value - encoded[column]
                old[column] = before if decoder is None else decoder(before)
            else:
                old[column] = new[column]
        for field in (*statement.in_sql, *statement.in_python):
            fold = derived[field]
            old[field] = fold.value(old[fold.total], old[fold.count])
        if statement.in_python:
            # The row is locked by the UPDATE above until the transaction ends: no other
            # transaction changes the totals these values derive from.
            values: Record = {}
            for field in statement.in_python:
                fold = derived[field]
                values[field] = encoders[field](
                    name, field, fold.value(new[fold.total], new[fold.count])
                )
            sql = self.planner.update_sql(name, tuple(values))
            self._execute(name, sql, [*values.values(), record_id], values)
            new.update(self._plain(name, values))
        keys = (*deltas, *derived)
        written: Record = {"id": row[0]}
        for field in keys:
            written[field] = new[field]
        self.events.append(MutationEvent(name, "update", written, old, keys))
        return WriteResult([new], [self.events[-1]])

    def _refuse_or_missing(self, name: str, record_id: Any, deltas: Mapping[str, Any]) -> None:
        """The guarded UPDATE matched no row: raise the refusal if the record exists."""
        current = self.reader.get(name, record_id, list(deltas))
        if current is None:
            return
        for field, delta in deltas.items():
            total = (current[field] or 0) + delta
            if type(total) is float:
                if not math.isfinite(total) or abs(total) > FLOAT_MAX:
                    raise TotalRangeError(name, field, total)
            elif not INT64_MIN <= total <= INT64_MAX:
                raise TotalRangeError(name, field, total)
        # The row exists and every total fits: it changed between the UPDATE and this read
        # (only possible for a record another transaction wrote concurrently on a backend
        # whose UPDATE does not wait): say so rather than guess.
        raise StorageError(
            f"apply_deltas on {name} {record_id!r}: the guarded update matched no row, yet the "
            "record exists and its totals fit",
            record=name,
        )

    def _delta_statement(
        self, name: str, shape: tuple[tuple[str, str], ...], derived: Mapping[str, Derived]
    ) -> DeltaStatement:
        quote = self.dialect.quote
        fields = self.schema.fields(name)
        params: list[tuple[str, str]] = []
        sets: list[str] = []
        sums: dict[str, str] = {}
        for field, _ in shape:
            sums[field] = f"(coalesce({quote(field)}, 0) + ?)"
            sets.append(f"{quote(field)} = {sums[field]}")
            params.append(("delta", field))
        in_sql: list[str] = []
        in_python: list[str] = []
        for field, fold in derived.items():
            expression = _derived_sql(fold, fields[field].type, sums)
            if expression is None:
                in_python.append(field)
                continue
            in_sql.append(field)
            sets.append(f"{quote(field)} = {expression}")
            # The expression repeats its totals' sums: their deltas once more, in order.
            for source in _sources(fold):
                params.append(("delta", source))
        guards: list[str] = []
        for field, kind in shape:
            column = f"coalesce({quote(field)}, 0)"
            if kind == "finite":
                guards.append(f"abs({column} + ?) <= ?")
                params.append(("delta", field))
                params.append(("finite", field))
            elif kind in ("up", "down"):
                compare = "<=" if kind == "up" else ">="
                guards.append(f"(NOT {self.dialect.is_integral(column)} OR {column} {compare} ?)")
                params.append((kind, field))
        columns = self.reader.snapshot_columns(name)
        decoders = self.reader._decoders(name, columns)
        returning = ", ".join(["id", *(quote(c) for c in columns)])
        where = " AND ".join(["id = ?", *guards])
        # The id parameter comes after SET's and before the guards' parameters.
        set_params = len(shape) + sum(len(_sources(derived[f])) for f in in_sql)
        params.insert(set_params, ("id", "id"))
        sql = f"UPDATE {quote(name)} SET {', '.join(sets)} WHERE {where} RETURNING {returning}"
        return DeltaStatement(sql, params, tuple(in_sql), tuple(in_python), columns, decoders)


def _sources(fold: Derived) -> tuple[str, ...]:
    """The totals whose sums a derived field's SQL expression repeats, in order."""
    if fold.kind == "total":
        return (fold.total,)
    if fold.kind == "mean":
        return (fold.count, fold.total, fold.count)
    if fold.kind == "any":
        return (fold.total,)
    if fold.kind == "every":
        return (fold.total, fold.count)
    return (fold.total, fold.count, fold.count)  # every_nonempty


def _derived_sql(fold: Derived, type_name: str, sums: Mapping[str, str]) -> str | None:
    """The SQL of a derived field over the new totals, or None when the database cannot give
    it in the field's type (Python computes it then)."""
    total, count = sums[fold.total], sums[fold.count]
    if fold.kind == "total" and type_name in _NUMBER_TYPES:
        return total
    if fold.kind == "mean" and type_name == "number":
        return f"CASE WHEN {count} <> 0 THEN {total} * 1.0 / {count} ELSE 0 END"
    if type_name != "boolean":
        return None
    if fold.kind == "any":
        return f"({total} > 0)"
    if fold.kind == "every":
        return f"({total} = {count})"
    if fold.kind == "every_nonempty":
        return f"({total} = {count} AND {count} > 0)"
    return None


def _bound(kind: str, delta: Any, encoder: Any, name: str, field: str) -> Any:
    """The guard's parameter: the limit the stored total must keep to."""
    if kind == "finite":
        return encoder(name, field, FLOAT_MAX)
    if kind == "up":
        return INT64_MAX - delta
    return INT64_MIN - delta
