"""Async entity-relation storage: record types, links, matches, attribute queries, events.

Knows nothing of the reactive engine; the engine derives a :class:`Schema` from its model and
runs its computations through a backend's synchronous session inside one transaction.
Backends: :class:`SQLiteStorage` (the embedded default) and :class:`PostgresStorage` (its driver
an extra, imported on use); :func:`from_url` picks one by URL.

Public submodules: :mod:`storage.abc` (the backend interface), :mod:`storage.migration`
(schema changes as neutral values, for a migration planner above storage) and
:mod:`storage.lease` (leases, wake-ups and leadership among processes on one database),
:mod:`storage.outbox` (the outbox's values: positions, entries, rows). Everything else is
internal to the package.
"""

from storage.abc import Derived, DerivedKind, Match, Session, Storage
from storage.errors import (
    ConflictError,
    FieldTypeError,
    InvalidDataError,
    LockTimeoutError,
    MatchError,
    MissingReferenceError,
    NonNullViolationError,
    NotSetUpError,
    QueryError,
    SchemaError,
    StorageBusyError,
    StorageError,
    TotalRangeError,
    TransactionError,
    UniqueViolationError,
    UnknownFieldError,
    UnknownRecordError,
)
from storage.events import MutationEvent, MutationType, Record, WriteResult
from storage.lease import Leader, Lease, Listening
from storage.match import FieldRef, MatchExp
from storage.postgres import PostgresStorage
from storage.schema import (
    LINK_FIELDS_KEY,
    Field,
    Index,
    LinkType,
    RecordType,
    RelationAttribute,
    Schema,
)
from storage.sqlite import SQLiteSession, SQLiteStorage
from storage.types import is_id
from storage.url import from_url

__all__ = [
    "LINK_FIELDS_KEY",
    "ConflictError",
    "Derived",
    "DerivedKind",
    "Field",
    "FieldRef",
    "FieldTypeError",
    "Index",
    "InvalidDataError",
    "Leader",
    "Lease",
    "LinkType",
    "Listening",
    "LockTimeoutError",
    "Match",
    "MatchError",
    "MatchExp",
    "MissingReferenceError",
    "MutationEvent",
    "MutationType",
    "NonNullViolationError",
    "NotSetUpError",
    "PostgresStorage",
    "QueryError",
    "Record",
    "RecordType",
    "RelationAttribute",
    "SQLiteSession",
    "SQLiteStorage",
    "Schema",
    "SchemaError",
    "Session",
    "Storage",
    "StorageBusyError",
    "StorageError",
    "TotalRangeError",
    "TransactionError",
    "UniqueViolationError",
    "UnknownFieldError",
    "UnknownRecordError",
    "WriteResult",
    "from_url",
    "is_id",
]
