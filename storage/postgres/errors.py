"""PostgreSQL's errors (SQLSTATE) translated to the storage error classes.

The same bad input gets the same error class on every backend: a duplicate of a unique field
set is :class:`UniqueViolationError` naming the record and fields, a link to a missing record
:class:`MissingReferenceError` naming the side and the id, a value the server refuses
(class 22, data exceptions) :class:`InvalidDataError`. Most bad input is refused before any
statement by the value codecs and the schema; these are the cases only the server can see.

Works on the driver's exception by its attributes alone (``sqlstate``, ``table_name``,
``constraint_name``, ``column_name``, ``detail``), so it needs no driver import.

Note for writers: after a failed statement PostgreSQL refuses every further statement of the
transaction until a rollback, so nothing may be *read* to explain a failure; everything here
comes from the error itself. A failure a caller means to survive must run under a savepoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from storage.errors import (
    InvalidDataError,
    MissingReferenceError,
    StorageError,
    UniqueViolationError,
)
from storage.postgres.ddl import index_fields
from storage.schema import LinkType, Schema

_KEY = re.compile(
    r'Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\) is not present in table "(?P<table>[^"]+)"'
)
_UNIQUE_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=")

RETRY_STATES = frozenset({"40001", "40P01"})
"""serialization_failure and deadlock_detected: the whole body may be run again."""

_FAULT_CLASSES = ("08", "53", "57", "58", "XX")
_FAULT_STATES = frozenset({"25006"})  # read_only_sql_transaction (a standby, a read-only db)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, or None."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_store_fault(state: str | None) -> bool:
    """Whether SQLSTATE ``state`` says the store itself cannot write (out of disk or memory,
    I/O, corruption, a lost connection, shutting down, read-only), whatever the data."""
    if state is None:
        return False
    return state in _FAULT_STATES or state.startswith(_FAULT_CLASSES)


def translate(
    exc: BaseException,
    schema: Schema,
    record: str,
    values: Mapping[str, Any] | None = None,
    origin: tuple[str, str | None] | None = None,
) -> StorageError:
    """The storage error for driver error ``exc`` raised by a statement on ``record``;
    ``values`` the written values (to show a unique violation's), ``origin`` the record and
    relation attribute a link was written through (to name a missing reference's field)."""
    state = sqlstate(exc) or ""
    message = str(exc)
    detail = getattr(exc, "detail", None) or ""
    table = getattr(exc, "table_name", None) or record
    if state == "23505":
        constraint = getattr(exc, "constraint_name", None) or ""
        fields = index_fields(schema, table, constraint)
        if fields is None:
            found = _UNIQUE_KEY.search(detail)
            fields = (
                tuple(c.strip().strip('"') for c in found["columns"].split(",")) if found else ()
            )
        shown = {f: values[f] for f in fields if values and f in values}
        return UniqueViolationError(table, fields or ("id",), shown or None)
    if state == "23503":
        missing = _KEY.search(detail)
        link = schema.records.get(table)
        if missing and isinstance(link, LinkType):
            side = missing["columns"].strip().strip('"')
            target = missing["table"]
            owner, field = origin if origin is not None else (table, None)
            return MissingReferenceError(owner, field or side, target, _id(missing["values"]))
        return StorageError(f"{table}: the write violates a reference ({message})", record=table)
    if state.startswith("22") or state == "23502":
        column = getattr(exc, "column_name", None)
        return InvalidDataError(
            f"{table}: PostgreSQL refused a value{f' of {column}' if column else ''}: {message}",
            record=table,
            field=column,
        )
    return StorageError(f"{record}: PostgreSQL error {state}: {message}", record=record)


def _id(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text
