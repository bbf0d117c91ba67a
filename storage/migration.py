"""Schema changes as neutral values, and a schema's JSON form.

A planner above storage (the engine's model evolution) compares two schemas and produces a
list of :data:`Operation` values; a backend renders and runs them inside one transaction
(``SQLiteStorage.migrate``). Nothing here is backend specific: a PostgreSQL backend renders the
same operations.

The backend keeps its own conventions out of the operations: the link tables' ``source`` and
``target`` columns and their indexes follow from the ``LinkType`` (``AddTable``,
``RenameTable`` and ``AlterLink`` carry it), index names are the backend's.

``RelatedTotals`` describes one aggregate over related records (count, or sum of one number
field of the related record or of the link) that a backend computes in its own query language,
for each host record at once: recomputing a ``Count`` over 100,000 items is one statement.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import attrs

from storage.schema import AnyRecordType, Field, Index, LinkType, RecordType, Schema


@attrs.frozen
class AddTable:
    """Create the table of a new record or link type, with its indexes."""

    record: AnyRecordType


@attrs.frozen
class DropTable:
    """Drop the table of a record or link type (its rows are lost)."""

    name: str


@attrs.frozen
class RenameTable:
    """Rename a table, keeping its rows; ``new`` is the record type under its new name."""

    old: AnyRecordType
    new: AnyRecordType


@attrs.frozen
class AddColumn:
    """Add a column; existing rows read it as None."""

    record: str
    field: Field


@attrs.frozen
class DropColumn:
    """Drop a column (its values are lost). Indexes over it must be dropped first."""

    record: str
    field: str


@attrs.frozen
class RenameColumn:
    """Rename a column, keeping its values."""

    record: str
    old: str
    new: str


@attrs.frozen
class AddIndex:
    """Create an index (a unique one fails if the stored rows violate it)."""

    record: str
    index: Index


@attrs.frozen
class DropIndex:
    """Drop an index."""

    record: str
    index: Index


@attrs.frozen
class AlterLink:
    """A link type whose cardinality changed: the backend's constraints on its ``source`` and
    ``target`` columns follow ``new`` (a narrowing fails if the stored links violate it)."""

    old: LinkType
    new: LinkType


Operation: TypeAlias = (
    AddTable
    | DropTable
    | RenameTable
    | AddColumn
    | DropColumn
    | RenameColumn
    | AddIndex
    | DropIndex
    | AlterLink
)


@attrs.frozen
class RelatedTotals:
    """For each record of ``host``: the number of its related records through ``link`` (seen
    from ``side``: the link column holding the host's id; both for a ``symmetric`` link) and
    the sum of one number field, ``("item", field)`` of the related record or ``("link", field)``
    of the link record. Values that are not numbers count as 0; no sum when ``value`` is None.
    """

    host: str
    link: str
    side: Literal["source", "target"]
    related: str
    symmetric: bool = False
    value: tuple[Literal["item", "link"], str] | None = None


TotalOutput: TypeAlias = Literal["total", "count", "mean"]
"""What a recomputation writes to a host field: the total, the count, or the total divided by
the count (0 for none)."""


# -- the JSON form of a schema ----------------------------------------------------------------


def schema_to_json(schema: Schema) -> dict[str, Any]:
    """A JSON-serialisable description of ``schema`` that :func:`schema_from_json` reads back."""
    out: dict[str, Any] = {}
    for name, record in schema.records.items():
        entry: dict[str, Any] = {
            "fields": [
                [f.name, f.type, *(["non_null"] if f.non_null else [])] for f in record.fields
            ],
            "indexes": [
                [
                    list(i.fields),
                    i.unique,
                    i.name,
                    *([[list(w) for w in i.where]] if i.where else []),
                ]
                for i in record.indexes
            ],
        }
        if isinstance(record, LinkType):
            entry["link"] = {
                "source": record.source,
                "source_attr": record.source_attr,
                "target": record.target,
                "target_attr": record.target_attr,
                "cardinality": record.cardinality,
                "symmetric": record.symmetric,
                "cascade": record.cascade,
            }
        out[name] = entry
    return out


def record_from_json(name: str, entry: dict[str, Any]) -> AnyRecordType:
    """One record or link type of :func:`schema_to_json`'s output."""
    fields = [Field(f, t, non_null="non_null" in flags) for f, t, *flags in entry["fields"]]
    indexes = [
        Index(tuple(f), unique=u, name=n, where=[tuple(w) for w in rest[0]] if rest else ())
        for f, u, n, *rest in entry["indexes"]
    ]
    link = entry.get("link")
    if link is None:
        return RecordType(name, fields, indexes)
    return LinkType(
        name,
        link["source"],
        link["source_attr"],
        link["target"],
        link["target_attr"],
        link["cardinality"],
        fields,
        indexes,
        symmetric=link["symmetric"],
        cascade=link["cascade"],
    )


def schema_from_json(doc: dict[str, Any]) -> Schema:
    """The :class:`Schema` that :func:`schema_to_json` described."""
    records = [record_from_json(n, e) for n, e in doc.items()]
    return Schema(
        [r for r in records if isinstance(r, RecordType)],
        [r for r in records if isinstance(r, LinkType)],
    )


__all__ = [
    "AddColumn",
    "AddIndex",
    "AddTable",
    "AlterLink",
    "DropColumn",
    "DropIndex",
    "DropTable",
    "Operation",
    "RelatedTotals",
    "RenameColumn",
    "RenameTable",
    "record_from_json",
    "schema_from_json",
    "schema_to_json",
]
