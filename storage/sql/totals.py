"""Aggregates over related records in SQL (``storage.migration.RelatedTotals``).

One expression per total, used two ways: an ``UPDATE host SET (cols) = (SELECT ...)`` that
writes every host of an id range in one statement, and a ``SELECT`` that reads the same totals
without writing (verification). Both lean on the link table's index on the host's column.

Backend-neutral: only "count this value when it is a number"
(:meth:`~storage.sql.dialect.Dialect.number_or_zero`) differs between databases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.migration import RelatedTotals, TotalOutput
from storage.sql.dialect import Dialect, quote
from storage.sql.driver import Execute

Output = TotalOutput


def _source(spec: RelatedTotals, host: str) -> tuple[str, str | None]:
    """The FROM clause of the items of the host whose id is ``host`` (an SQL expression),
    and the value expression (None for a count)."""
    link, other = quote(spec.link), "target" if spec.side == "source" else "source"
    kind, field = spec.value if spec.value is not None else (None, None)
    if not spec.symmetric:
        source = f"{link} l"
        value = None if field is None else f"l.{quote(field)}"
        if kind == "item":
            source += f" LEFT JOIN {quote(spec.related)} r ON r.id = l.{other}"
            value = f"r.{quote(field or '')}"
        return f"{source} WHERE l.{spec.side} = {host}", value
    # A symmetric link is seen from both ends; a link from a record to itself counts once.
    extra = "" if kind != "link" else f", l.{quote(field or '')} AS lv"
    pairs = (
        f"SELECT l.target AS other{extra} FROM {link} l WHERE l.source = {host} UNION ALL "
        f"SELECT l.source{extra} FROM {link} l WHERE l.target = {host} AND l.source != l.target"
    )
    source = f"({pairs}) x"
    value = "x.lv" if kind == "link" else None
    if kind == "item":
        source += f" LEFT JOIN {quote(spec.related)} r ON r.id = x.other"
        value = f"r.{quote(field or '')}"
    return source, value


def _expressions(dialect: Dialect, value: str | None) -> dict[str, str]:
    total = "count(*)" if value is None else f"coalesce(sum({dialect.number_or_zero(value)}), 0)"
    return {
        "total": total,
        "count": "count(*)",
        "mean": f"CASE WHEN count(*) > 0 THEN {total} * 1.0 / count(*) ELSE 0 END",
    }


def _range(column: str, id_range: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
    if id_range is None:
        return "", []
    return f" WHERE {column} >= ? AND {column} < ?", list(id_range)


def write(
    run: Execute,
    dialect: Dialect,
    spec: RelatedTotals,
    outputs: Mapping[str, Output],
    id_range: tuple[Any, Any] | None = None,
) -> int:
    """Set each column of ``outputs`` of every host (with ``id_range``: ids in [lo, hi)) to
    its total; returns how many hosts were written."""
    host = quote(spec.host)
    source, value = _source(spec, f"{host}.id")
    expressions = _expressions(dialect, value)
    columns = ", ".join(quote(c) for c in outputs)
    selected = ", ".join(expressions[o] for o in outputs.values())
    where, params = _range("id", id_range)
    cursor = run(
        f"UPDATE {host} SET ({columns}) = (SELECT {selected} FROM {source}){where}", params
    )
    return cursor.rowcount


def read(
    run: Execute,
    dialect: Dialect,
    spec: RelatedTotals,
    id_range: tuple[Any, Any] | None = None,
) -> dict[Any, tuple[Any, int]]:
    """``{host id: (total, count)}`` for every host (with ``id_range``: ids in [lo, hi))."""
    source, value = _source(spec, "h.id")
    expressions = _expressions(dialect, value)
    where, params = _range("h.id", id_range)
    rows = run(
        f"SELECT h.id, (SELECT {expressions['total']} FROM {source}), "
        f"(SELECT count(*) FROM {source}) FROM {quote(spec.host)} h{where}",
        params,
    ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def record_totals(
    run: Execute, dialect: Dialect, record: str, field: str | None
) -> tuple[Any, int]:
    """(total, count) over every record of ``record``: the count, or the sum of ``field``."""
    value = None if field is None else quote(field)
    expressions = _expressions(dialect, value)
    sql = f"SELECT {expressions['total']}, count(*) FROM {quote(record)}"
    row = run(sql, ()).fetchone()
    return row[0], row[1]


def id_bounds(run: Execute, record: str) -> tuple[Any, Any] | None:
    """The smallest and largest id of ``record``, or None when it has no rows."""
    row = run(f"SELECT min(id), max(id) FROM {quote(record)}", ()).fetchone()
    return None if row[0] is None else (row[0], row[1])
