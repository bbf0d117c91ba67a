"""Attribute queries: which fields and related records a read returns.

An attribute query is a list whose items are value field names, ``"*"`` for every value field,
a relation attribute name (its records as ``{"id": ...}``), or a pair
``("relation_attr", [nested attribute query])``. Inside a nested query, ``("&", [...])`` asks for
the link record's own fields, returned under the ``"&"`` key of each related record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from storage.errors import QueryError, UnknownFieldError
from storage.schema import LINK_FIELDS_KEY, Schema


@attrs.frozen
class AttributeQuery:
    """A parsed, schema-checked attribute query for one record type."""

    record: str
    fields: tuple[str, ...] = ()
    relations: tuple[tuple[str, AttributeQuery], ...] = ()
    link: AttributeQuery | None = None


def parse_attribute_query(
    schema: Schema, record: str, query: Any, *, link_record: str | None = None
) -> AttributeQuery:
    """Check ``query`` against the schema for ``record`` and return its parsed form.

    ``link_record`` is the link type through which ``record`` was reached; only then may the
    query contain a ``("&", [...])`` item.
    """
    if query is None:
        return AttributeQuery(record)
    if isinstance(query, str | bytes) or not isinstance(query, Sequence):
        raise QueryError(
            f"attribute_query for {record} must be a list, got {type(query).__name__}",
            record=record,
        )
    value_fields = schema.fields(record)
    attributes = schema.attributes(record)
    fields: list[str] = []
    relations: dict[str, list[Any]] = {}
    link_items: list[Any] | None = None
    for item in query:
        if isinstance(item, str):
            if item == "*":
                fields.extend(value_fields)
            elif item == "id":
                continue
            elif item in value_fields:
                fields.append(item)
            elif item in attributes:
                relations.setdefault(item, [])
            else:
                raise UnknownFieldError(record, item, [*value_fields, *attributes])
            continue
        if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
            raise QueryError(
                f"attribute_query item {item!r} for {record} must be a field name or a "
                "(relation, [attributes]) pair",
                record=record,
            )
        name, nested = item
        if name == LINK_FIELDS_KEY:
            if link_record is None:
                raise QueryError(
                    f"{record}: '&' (link fields) is only valid inside a relation's nested query",
                    record=record,
                )
            link_items = [*(link_items or []), *_as_list(record, nested)]
            continue
        if not isinstance(name, str) or name not in attributes:
            raise UnknownFieldError(record, str(name), [*value_fields, *attributes])
        relations.setdefault(name, []).extend(_as_list(record, nested))
    parsed_relations = tuple(
        (
            name,
            parse_attribute_query(
                schema,
                attributes[name].related,
                nested,
                link_record=attributes[name].link.name if attributes[name].via_link else None,
            ),
        )
        for name, nested in relations.items()
    )
    parsed_link = (
        parse_attribute_query(schema, link_record, link_items)
        if link_record is not None and link_items is not None
        else None
    )
    return AttributeQuery(record, tuple(dict.fromkeys(fields)), parsed_relations, parsed_link)


def _as_list(record: str, nested: Any) -> list[Any]:
    if isinstance(nested, str | bytes) or not isinstance(nested, Sequence):
        raise QueryError(
            f"nested attribute query in {record} must be a list, got {nested!r}", record=record
        )
    return list(nested)
