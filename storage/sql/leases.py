"""Leased rows in SQL (see :mod:`storage.lease` for the contract): one statement each.

The lease clock is the dialect's :attr:`~storage.sql.dialect.Dialect.clock` (an SQL
expression for the database's time in seconds since the epoch), or, where it has none, a
parameter bound to the caller's :attr:`Lease.now`. A claim is one statement:

    UPDATE t SET lease_owner = ?, lease_until = <clock> + ? [, values]
    WHERE id IN (SELECT id FROM t WHERE <match> AND (lease_owner IS NULL OR lease_until < <clock>)
                 ORDER BY id LIMIT ? <skip locked>)
    RETURNING id, <fields>

with the dialect's :attr:`~storage.sql.dialect.Dialect.skip_locked` (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``: rows another transaction is claiming are passed over, neither waited for nor
taken twice; after the lock the server re-checks the condition on the row's newest version).
SQLite has one writer at a time, so the same statement is atomic there without it.

Costs: one statement per call, whatever the number of rows (claims are bounded by ``limit``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storage.errors import StorageError
from storage.events import Record
from storage.lease import LEASE_OWNER, LEASE_UNTIL, Lease
from storage.match import MatchExp
from storage.sql.writer import Writer


def _check_leasable(writer: Writer, name: str) -> None:
    fields = writer.schema.fields(name)
    missing = [f for f in (LEASE_OWNER, LEASE_UNTIL) if f not in fields]
    if missing:
        raise StorageError(
            f"{name} cannot be leased: it has no field {', '.join(missing)} "
            f"(a leased record type needs {LEASE_OWNER!r} string and {LEASE_UNTIL!r} number)",
            record=name,
        )


def _clock(writer: Writer, lease: Lease) -> tuple[str, list[Any]]:
    """The SQL of "now" on the lease clock, and its parameters."""
    clock = writer.dialect.clock
    if clock is not None:
        return clock, []
    return "?", [_number(writer, lease.now)]


def _number(writer: Writer, value: float) -> Any:
    # A lease time goes through the backend's number codec (numeric on PostgreSQL).
    return writer.dialect.codecs.encode("lease", LEASE_UNTIL, "number", float(value))


def _lease_set(
    writer: Writer, name: str, values: Mapping[str, Any], lease: Lease
) -> tuple[str, list[Any]]:
    """``SET`` assignments of ``values`` plus the lease, and their parameters."""
    if LEASE_OWNER in values or LEASE_UNTIL in values:
        raise StorageError(
            f"{name}: the lease fields are set from the Lease, not from values", record=name
        )
    encoded = writer._encode_internal(name, values)
    quote = writer.dialect.quote
    clock, clock_params = _clock(writer, lease)
    parts = [f"{quote(k)} = ?" for k in encoded]
    parts += [f"{quote(LEASE_OWNER)} = ?", f"{quote(LEASE_UNTIL)} = {clock} + ?"]
    params = [*encoded.values(), lease.owner, *clock_params, _number(writer, lease.duration)]
    return ", ".join(parts), params


def insert_leased(writer: Writer, name: str, values: Mapping[str, Any], lease: Lease) -> Any:
    """Insert one row leased to ``lease.owner`` until the clock's now plus the duration;
    returns its id. The statement (and the checks of the record and the keys, which it
    passed) is worked out once per record and keys of ``values``."""
    key = (name, tuple(values), LEASE_UNTIL)
    sql = writer._cache.inserts.get(key)
    if sql is None:
        _check_leasable(writer, name)
        if name in writer.schema.links:
            raise StorageError(f"{name} is a link: it cannot be leased", record=name)
        if LEASE_OWNER in values or LEASE_UNTIL in values:
            raise StorageError(
                f"{name}: the lease fields are set from the Lease, not from values", record=name
            )
    encoded = writer._encode_internal(name, values)
    clock = writer.dialect.clock
    if sql is None:
        quote = writer.dialect.quote
        columns = [*(quote(k) for k in encoded), quote(LEASE_OWNER), quote(LEASE_UNTIL)]
        marks = [*("?" for _ in encoded), "?", f"{'?' if clock is None else clock} + ?"]
        sql = writer._cache.inserts[key] = (
            f"INSERT INTO {quote(name)} ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
            "RETURNING id"
        )
    params = [*encoded.values(), lease.owner]
    if clock is None:  # the caller's clock reading, as _clock gives it
        params.append(_number(writer, lease.now))
    params.append(_number(writer, lease.duration))
    return writer._inserted_id(writer._execute(name, sql, params, values))


def write_leased(
    writer: Writer,
    name: str,
    match: MatchExp | Mapping[str, Any],
    values: Mapping[str, Any],
    lease: Lease,
) -> int:
    """Set ``values`` on every row matching ``match`` and lease it to ``lease.owner`` (a renewal
    when ``match`` names the owner); returns how many rows matched."""
    _check_leasable(writer, name)
    assignments, params = _lease_set(writer, name, values, lease)
    where, where_params = writer.reader.where(name, match, writer.dialect.quote(name))
    sql = f"UPDATE {writer.dialect.quote(name)} SET {assignments}{where}"
    return writer._execute(name, sql, [*params, *where_params], values).rowcount


def free_condition(writer: Writer, lease: Lease) -> tuple[str, list[Any]]:
    """The SQL condition "the lease of this row is free", with its parameters."""
    quote = writer.dialect.quote
    clock, clock_params = _clock(writer, lease)
    sql = f"({quote(LEASE_OWNER)} IS NULL OR {quote(LEASE_UNTIL)} < {clock})"
    return sql, clock_params


def claim(
    writer: Writer,
    name: str,
    match: MatchExp | Mapping[str, Any] | None,
    lease: Lease,
    limit: int,
    fields: Sequence[str],
    values: Mapping[str, Any],
) -> list[Record]:
    """Lease up to ``limit`` rows matching ``match`` whose lease is free, in id order; set
    ``values`` on them too; returns them (``id`` and ``fields``), in id order."""
    _check_leasable(writer, name)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StorageError(f"claim on {name}: limit must be a positive int, got {limit!r}")
    own = writer.schema.fields(name)
    for field in fields:
        if field not in own:
            writer.schema.field(name, field)  # raises UnknownFieldError naming the fields
    quote = writer.dialect.quote
    table = quote(name)
    assignments, set_params = _lease_set(writer, name, values, lease)
    where, where_params = writer.reader.where(name, match, table)
    free, free_params = free_condition(writer, lease)
    where = f"{where} AND {free}" if where else f" WHERE {free}"
    columns = ", ".join(["id", *(quote(f) for f in fields)])
    sql = (
        f"UPDATE {table} SET {assignments} WHERE id IN ("
        f"SELECT id FROM {table}{where} ORDER BY id LIMIT ?{writer.dialect.skip_locked}"
        f") RETURNING {columns}"
    )
    params = [*set_params, *where_params, *free_params, limit]
    rows = writer._execute(name, sql, params, values).fetchall()
    decoded = [writer.reader._decode_row(name, list(fields), tuple(row)) for row in rows]
    decoded.sort(key=lambda record: record["id"])
    return decoded


def any_free(
    writer: Writer, name: str, match: MatchExp | Mapping[str, Any] | None, lease: Lease
) -> bool:
    """Whether some row matching ``match`` has a free lease (a read: no lock taken)."""
    _check_leasable(writer, name)
    table = writer.dialect.quote(name)
    where, where_params = writer.reader.where(name, match, table)
    free, free_params = free_condition(writer, lease)
    where = f"{where} AND {free}" if where else f" WHERE {free}"
    cursor = writer.run(f"SELECT 1 FROM {table}{where} LIMIT 1", [*where_params, *free_params])
    return cursor.fetchone() is not None
