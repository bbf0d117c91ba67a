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
not hold, before anything is written: an int delta ``d`` that would carry the total across a
64-bit limit (``total <= 2**63 - 1 - d`` for ``d > 0``; a float total already beyond the int
range takes int deltas as a float does, as in Python, so only a float total within ``d`` of
the limit is refused too), and a float delta that would make the total non-finite. A refused
statement matches no row, and a read of the current total tells a refusal
(:class:`~storage.errors.TotalRangeError` naming the field and the would-be total) from a
record that does not exist (an empty result). The guards are plain comparisons on purpose:
on SQLite a ``typeof()`` in the ``WHERE`` of an ``UPDATE ... RETURNING`` measured 5x slower.

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
from storage.sql.cache import SHAPES_KEPT
from storage.sql.dialect import Dialect
from storage.sql.links import Links
from storage.sql.plans import INT64_MAX, INT64_MIN

FLOAT_MAX = 1.7976931348623157e308
"""The largest finite double: a float total beyond it (either sign) is refused."""

_NUMBER_TYPES = ("number", "integer")


class DeltaShape:
    """What applying deltas to these fields of one record type takes, worked out once per
    ``(record, delta fields, derived)`` and remembered: the fields' encoders, which derived
    fields Python computes, the returned columns and their decoders, and one statement per
    combination of guards (a delta's sign and type choose its guard)."""

    __slots__ = (
        "columns",
        "decoders",
        "derived",
        "derived_names",
        "encoders",
        "fields",
        "in_python",
        "in_sql",
        "integer_targets",
        "keys",
        "name",
        "positions",
        "statements",
        "types",
        "write_derived",
        "write_sql",
        "write_totals",
    )

    def __init__(self, writer: Deltas, name: str, fields: tuple[str, ...], derived: Any) -> None:
        schema = writer.schema
        known = schema.fields(name)
        for field in (*fields, *(f for f, _ in derived)):
            if field not in known:
                schema.field(name, field)  # raises UnknownFieldError naming the fields
        for field in fields:
            if known[field].type not in _NUMBER_TYPES:
                raise FieldTypeError(
                    name, field, "a number or integer field", None, "deltas add to numbers"
                )
        for field, fold in derived:
            for source in (fold.total, fold.count):
                if source not in fields:
                    raise StorageError(
                        f"apply_deltas on {name}: derived field {field!r} reads {source!r}, "
                        "which has no delta",
                        record=name,
                        field=field,
                    )
        self.name = name
        self.fields = fields
        self.derived = derived
        all_encoders = writer.planner.encoders(name)
        self.encoders = [all_encoders[f] for f in fields]
        self.types = {f: known[f].type for f, _ in derived}
        self.derived_names = tuple(f for f, _ in derived)
        self.in_sql = tuple(f for f, d in derived if _in_sql(d, known[f].type))
        self.in_python = tuple(f for f, _ in derived if f not in self.in_sql)
        # Derived fields of type integer: a float delta to the total they read is refused.
        self.integer_targets = [
            (f, fields.index(d.total)) for f, d in derived if known[f].type == "integer"
        ]
        self.columns = writer.reader.snapshot_columns(name)
        self.decoders = writer.reader._decoders(name, self.columns)
        # Where each delta field sits in a returned row (after the id).
        self.positions = [1 + self.columns.index(f) for f in fields]
        self.statements: dict[tuple[str, ...], tuple[str, list[tuple[str, int]]]] = {}
        self.keys = (*fields, *self.derived_names)
        """The update event's keys: the totals, then the derived fields."""
        # The read-and-write plan (dialects that serialize writers): one UPDATE of the totals
        # and the derived fields, in that order, and what each column's value needs before it
        # is sent. A total is a number already checked against its range (finite, 64 bits):
        # where its field's type is an identity type it goes as it is (None: no encoder).
        # A derived value is always encoded (a float total into an integer field is refused
        # there, a boolean or json value converted).
        self.write_sql = ""
        self.write_totals: list[Any] = []
        self.write_derived: list[tuple[str, Derived, Any]] = []
        if writer.dialect.serializes_writers:
            identity = writer.dialect.codecs.identity
            self.write_sql = writer.planner.update_sql(name, self.keys)
            self.write_totals = [
                None if known[f].type in identity else encoder
                for f, encoder in zip(fields, self.encoders, strict=True)
            ]
            # A total into a field whose type takes the number as it is (an identity type
            # holding a number: the total is range-checked already) needs no encoder.
            self.write_derived = [
                (
                    f,
                    d,
                    None
                    if d.kind == "total" and known[f].type == "number" and "number" in identity
                    else all_encoders[f],
                )
                for f, d in derived
            ]

    def statement(
        self, dialect: Dialect, guards: tuple[str, ...]
    ) -> tuple[str, list[tuple[str, int]]]:
        """Work out (and remember) the UPDATE for these guards and its parameters: per
        placeholder ``(kind, index of the delta field)``, kind ``"delta"``, ``"id"`` or a
        guard's bound (``"up"``, ``"down"``, ``"finite"``)."""
        quote = dialect.quote
        index = {f: i for i, f in enumerate(self.fields)}
        sums = {f: f"(coalesce({quote(f)}, 0) + ?)" for f in self.fields}
        sets = [f"{quote(f)} = {sums[f]}" for f in self.fields]
        params: list[tuple[str, int]] = [("delta", i) for i in range(len(self.fields))]
        for field, fold in self.derived:
            if field not in self.in_sql:
                continue
            expression = _derived_sql(fold, self.types[field], sums)
            sets.append(f"{quote(field)} = {expression}")
            # The expression repeats its totals' sums: their deltas once more, in order.
            params.extend(("delta", index[source]) for source in _sources(fold))
        params.append(("id", 0))
        conditions = ["id = ?"]
        for i, (field, kind) in enumerate(zip(self.fields, guards, strict=True)):
            column = f"coalesce({quote(field)}, 0)"
            if kind == "finite":
                conditions.append(f"abs({column} + ?) <= ?")
                params.extend((("delta", i), ("finite", i)))
            elif kind == "up":
                # A float total beyond the int range takes int deltas as a float does.
                conditions.append(f"({column} <= ? OR {quote(field)} > {INT64_MAX})")
                params.append((kind, i))
            elif kind == "down":
                conditions.append(f"({column} >= ? OR {quote(field)} < {INT64_MIN})")
                params.append((kind, i))
        returning = ", ".join(["id", *(quote(c) for c in self.columns)])
        sql = (
            f"UPDATE {quote(self.name)} SET {', '.join(sets)} WHERE {' AND '.join(conditions)} "
            f"RETURNING {returning}"
        )
        found = self.statements[guards] = (sql, params)
        return found


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
        # Keyed by the delta fields and the derived fields with their (hashable) functions.
        derived_items = tuple(derived.items())
        key = (name, tuple(deltas), derived_items)
        shape: DeltaShape | None = self._cache.deltas.get(key)
        if shape is None:
            shape = self._delta_shape(name, key, derived_items)
        values = list(deltas.values())
        # Encoding checks each delta against its field (a bool, a NaN, a float for an integer
        # field are refused) on every backend, before anything is written.
        # (Plain loops: cheaper than a comprehension over zip(strict=True); the shape was made
        # from these very keys, so the lengths agree.)
        if self.dialect.serializes_writers:
            # The deltas are added in Python (see _read_and_write), never sent: only checked.
            # An exact int within 64 bits is valid for every number and integer field (the
            # checks of storage.types): its encoder need not run.
            for encoder, field, delta in zip(shape.encoders, shape.fields, values):  # noqa: B905
                if type(delta) is not int or not INT64_MIN <= delta <= INT64_MAX:
                    encoder(name, field, delta)
            if shape.integer_targets:
                _refuse_float_into_integer(name, shape, values)
            if not any(values):
                return WriteResult([], [])  # nothing to add: nothing changes
            return self._read_and_write(name, record_id, shape, values)
        encoded: list[Any] = []
        for encoder, field, delta in zip(shape.encoders, shape.fields, values):  # noqa: B905
            encoded.append(encoder(name, field, delta))
        if shape.integer_targets:
            _refuse_float_into_integer(name, shape, values)
        if not any(values):
            return WriteResult([], [])  # nothing to add: nothing changes
        # Which guard each delta needs in the UPDATE: a float's total must stay finite, an
        # int's within 64 bits on the side it moves to.
        guards = [
            "finite" if type(d) is float else ("up" if d > 0 else ("down" if d < 0 else "none"))
            for d in values
        ]
        found = shape.statements.get(tuple(guards))
        sql, layout = found if found is not None else shape.statement(self.dialect, tuple(guards))
        params: list[Any] = []
        for kind, i in layout:
            if kind == "delta":
                params.append(encoded[i])
            elif kind == "id":
                params.append(record_id)
            elif kind == "up":
                params.append(INT64_MAX - values[i])
            elif kind == "down":
                params.append(INT64_MIN - values[i])
            else:  # finite: the largest float, as the field's column holds it
                params.append(shape.encoders[i](name, shape.fields[i], FLOAT_MAX))
        row = self._execute(name, sql, params, deltas).fetchone()
        if row is None:
            self._refuse_or_missing(name, record_id, deltas)
            return WriteResult([], [])
        new: Record = {"id": row[0]}
        for column, decoder, value in zip(shape.columns, shape.decoders, row[1:], strict=True):
            new[column] = value if decoder is None else decoder(value)
        old = dict(new)
        decoders = shape.decoders
        for field, position, delta in zip(shape.fields, shape.positions, encoded, strict=True):
            before = row[position] - delta  # in the database's representation
            decoder = decoders[position - 1]
            old[field] = before if decoder is None else decoder(before)
        written: Record = {"id": row[0]}
        for field in shape.fields:
            written[field] = new[field]
        for field, fold in derived_items:
            old[field] = fold.value(old[fold.total], old[fold.count])
            if field in shape.in_python:
                new[field] = fold.value(new[fold.total], new[fold.count])
            written[field] = new[field]
        if shape.in_python:
            # The row is locked by the UPDATE above until the transaction ends: no other
            # transaction changes the totals these values derive from.
            store = {f: self.planner.encoders(name)[f](name, f, new[f]) for f in shape.in_python}
            update = self.planner.update_sql(name, tuple(store))
            self._execute(name, update, [*store.values(), record_id], store)
            for field, value in self._plain(name, store).items():
                new[field] = written[field] = value
        event = MutationEvent(name, "update", written, old, (*shape.fields, *derived))
        self.events.append(event)
        return WriteResult([new], [event])

    def _read_and_write(
        self, name: str, record_id: Any, shape: DeltaShape, values: list[Any]
    ) -> WriteResult:
        """Where one write transaction excludes every other writer from its first read on
        (SQLite): read the row, add in Python, write the new values (a SELECT and a plain
        UPDATE measured cheaper there than an ``UPDATE ... RETURNING``). Atomic all the same:
        no other transaction can write the row between this read and the commit (a write
        transaction whose read went stale cannot write at all). The old values are the ones
        read, exactly. The UPDATE and what each value needs are the shape's (worked out once):
        a call adds, checks the range, and sends."""
        old = self.reader.snapshot(name, record_id)
        if old is None:
            return WriteResult([], [])
        written: Record = {"id": old["id"]}
        params: list[Any] = []
        for field, delta, encoder in zip(shape.fields, values, shape.write_totals):  # noqa: B905
            stored = old[field]
            total = (0 if stored is None else stored) + delta  # a float 0.0 stays a float
            if type(total) is float:
                if not math.isfinite(total):
                    raise TotalRangeError(name, field, total)
            elif not INT64_MIN <= total <= INT64_MAX:
                raise TotalRangeError(name, field, total)
            written[field] = total
            params.append(total if encoder is None else encoder(name, field, total))
        for field, fold, encoder in shape.write_derived:
            # (A total is the new total itself: Derived.value without the call.)
            if fold.kind == "total":
                value = written[fold.total]
            else:
                value = fold.value(written[fold.total], written[fold.count])
            written[field] = value
            params.append(
                value if encoder is None or value is None else encoder(name, field, value)
            )
        params.append(record_id)
        self._execute(name, shape.write_sql, params, written)
        if shape.in_python:
            # json or string fields: as a read returns them (decoded from what was stored)
            sent = dict(zip(shape.keys, params))  # noqa: B905 (the id is left over)
            written.update(self._plain(name, {f: sent[f] for f in shape.in_python}))
        new = {**old, **written}
        for field, fold in shape.derived:  # as documented: the function of the old totals
            if fold.kind == "total":  # Derived.value without the call: None counts as 0
                before = old[fold.total]
                old[field] = 0 if before is None else before
            else:
                old[field] = fold.value(old[fold.total], old[fold.count])
        event = MutationEvent(name, "update", written, old, shape.keys)
        self.events.append(event)
        return WriteResult([new], [event])

    def _delta_shape(
        self, name: str, key: tuple[Any, ...], derived: tuple[tuple[str, Derived], ...]
    ) -> DeltaShape:
        self.schema.record(name)
        shape = DeltaShape(self, name, key[1], derived)
        memory = self._cache.deltas
        if len(memory) >= SHAPES_KEPT:
            memory.clear()  # shapes come from callers: keep the memory bounded
        memory[key] = shape
        return shape

    def _refuse_or_missing(self, name: str, record_id: Any, deltas: Mapping[str, Any]) -> None:
        """The guarded UPDATE matched no row: raise the refusal if the record exists."""
        current = self.reader.get(name, record_id, list(deltas))
        if current is None:
            return
        for field, delta in deltas.items():
            stored = current[field]
            stored = 0 if stored is None else stored
            total = stored + delta
            if type(delta) is float:
                refused = not math.isfinite(total) or abs(total) > FLOAT_MAX
            elif delta > 0:  # the SQL guard, in Python
                refused = INT64_MAX - delta < stored <= INT64_MAX
            else:
                refused = INT64_MIN <= stored < INT64_MIN - delta
            if refused:
                raise TotalRangeError(name, field, total)
        # The row exists and every total fits: it changed between the UPDATE and this read
        # (only possible for a record another transaction wrote concurrently on a backend
        # whose UPDATE does not wait): say so rather than guess.
        raise StorageError(
            f"apply_deltas on {name} {record_id!r}: the guarded update matched no row, yet the "
            "record exists and its totals fit",
            record=name,
        )


def _refuse_float_into_integer(name: str, shape: DeltaShape, values: list[Any]) -> None:
    """Refuse a float delta to a total that an integer derived field reads."""
    for target, source in shape.integer_targets:
        if type(values[source]) is float:
            raise FieldTypeError(
                name, target, "an integer", values[source], "a float delta makes it a float"
            )


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


def _in_sql(fold: Derived, type_name: str) -> bool:
    """Whether the database computes a derived field in its own type: a total into a number
    or integer, a mean into a number, any/every into a boolean (else Python does)."""
    if fold.kind == "total":
        return type_name in _NUMBER_TYPES
    if fold.kind == "mean":
        return type_name == "number"
    return type_name == "boolean"


def _derived_sql(fold: Derived, type_name: str, sums: Mapping[str, str]) -> str:
    """The SQL of a derived field (one :func:`_in_sql` accepts) over the new totals."""
    total, count = sums[fold.total], sums[fold.count]
    if fold.kind == "total":
        return total
    if fold.kind == "mean":
        return f"CASE WHEN {count} <> 0 THEN {total} * 1.0 / {count} ELSE 0 END"
    if fold.kind == "any":
        return f"({total} > 0)"
    if fold.kind == "every":
        return f"({total} = {count})"
    return f"({total} = {count} AND {count} > 0)"
