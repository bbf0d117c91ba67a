"""The storage exception hierarchy.

Every error the storage layer raises on purpose derives from :class:`StorageError` and names the
record (and, where there is one, the field) at fault, so that a caller never has to read a driver
traceback to learn what was wrong with its input.
"""

from __future__ import annotations

from typing import Any


class StorageError(Exception):
    """Base of every error raised by the storage layer.

    ``record`` and ``field`` name the record type and field at fault when there is one.
    """

    def __init__(self, message: str, *, record: str | None = None, field: str | None = None):
        super().__init__(message)
        self.record = record
        self.field = field


class SchemaError(StorageError, ValueError):
    """A schema declaration is invalid (bad name, duplicate field, unknown endpoint, ...)."""


class NotSetUpError(StorageError, RuntimeError):
    """The storage was used before ``setup()`` or after ``close()``."""


class UnknownRecordError(StorageError, LookupError):
    """A record type name that the schema does not declare."""

    def __init__(self, record: str, known: list[str] | None = None):
        hint = f" (known: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown record type {record!r}{hint}", record=record)


class UnknownFieldError(StorageError, LookupError):
    """A field or relation attribute that the record type does not have."""

    def __init__(self, record: str, field: str, known: list[str] | None = None):
        hint = f"; it has: {', '.join(sorted(known))}" if known is not None else ""
        super().__init__(f"{record} has no field {field!r}{hint}", record=record, field=field)


class FieldTypeError(StorageError, TypeError):
    """A value does not fit the declared type of its field."""

    def __init__(self, record: str, field: str, expected: str, value: Any, detail: str = ""):
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"{record}.{field} expects {expected}, got {type(value).__name__} {shown}{extra}",
            record=record,
            field=field,
        )
        self.expected = expected
        self.value = value
        self.detail = detail

    @property
    def reason(self) -> str:
        """The message without the value: what the field expects (and why the value is not
        it), safe to show to whoever sent the value."""
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.record}.{self.field} expects {self.expected}{extra}"


class InvalidDataError(StorageError, ValueError):
    """A write payload is malformed (not a dict, a reference with extra keys, ...)."""


class QueryError(StorageError, ValueError):
    """A read is malformed: a bad attribute query, ``order_by``, ``limit`` or ``offset``."""


class MatchError(QueryError):
    """A match expression is malformed: bad operator, bad operand, unknown path."""


class MissingReferenceError(StorageError, LookupError):
    """A write refers to a record (by id) that does not exist."""

    def __init__(self, record: str, field: str, target: str, target_id: Any):
        super().__init__(
            f"{record}.{field} refers to {target} id={target_id!r}, which does not exist",
            record=record,
            field=field,
        )
        self.target = target
        self.target_id = target_id


class UniqueViolationError(StorageError):
    """A write would give two records the same value(s) for a unique field set."""

    def __init__(
        self,
        record: str,
        fields: tuple[str, ...],
        values: dict[str, Any] | None = None,
        constraint: str | None = None,
    ):
        shown = f" (values {values!r})" if values else ""
        named = f" (unique constraint {constraint})" if constraint else ""
        super().__init__(
            f"{record}: another record already has the same {', '.join(fields)}{shown}{named}",
            record=record,
            field=fields[0] if len(fields) == 1 else None,
        )
        self.fields = fields
        self.constraint = constraint
        """The declared name of the unique index violated, when it has one."""


class NonNullViolationError(StorageError, ValueError):
    """A write would leave a non-null field without a value (a create that leaves it out and
    has no default for it, an update to None). Nothing of the write is stored."""

    def __init__(self, record: str, field: str):
        super().__init__(
            f"{record}.{field} is non-null: the write leaves it without a value; nothing was "
            "written",
            record=record,
            field=field,
        )


class TransactionError(StorageError, RuntimeError):
    """A transaction was misused (nested ``run`` on the same storage, savepoint misuse)."""


class StorageBusyError(StorageError):
    """A transaction gave up waiting for a lock another connection holds.

    Another process (or another connection) kept the database's write lock longer than the
    storage's ``busy_timeout``. Nothing was written; the same call may succeed later.
    ``path`` is the database, ``waited`` how long the transaction waited (seconds) and
    ``retry_after`` a hint, in whole seconds, for when to try again.
    """

    def __init__(self, path: str, waited: float, busy_timeout: float):
        super().__init__(
            f"the database {path} is locked by another connection (another process writing, or "
            f"a long transaction): gave up after waiting {waited:.2f} s (busy_timeout="
            f"{busy_timeout:g} s); nothing was written, try again later"
        )
        self.path = path
        self.waited = waited
        self.busy_timeout = busy_timeout
        self.retry_after = max(1, round(busy_timeout))


class LockTimeoutError(StorageBusyError):
    """PostgreSQL: a statement waited longer than the storage's ``lock_timeout`` for a lock
    another transaction holds (a row it writes, a table it alters; SQLSTATE ``55P03``).

    The transaction was rolled back: nothing was written, and the same call may succeed once
    the other transaction ended. A :class:`StorageBusyError` (the server answers 503 with
    ``Retry-After``): ``path`` is the server, ``waited`` and ``busy_timeout`` are the
    ``lock_timeout`` (seconds), ``retry_after`` a hint in whole seconds."""

    def __init__(self, server: str, lock_timeout: float, detail: str = ""):
        StorageError.__init__(
            self,
            f"a transaction on {server} waited longer than lock_timeout={lock_timeout:g} s for "
            f"a lock another transaction holds{f' ({detail})' if detail else ''}; nothing was "
            "written, try again later",
        )
        self.path = server
        self.waited = lock_timeout
        self.busy_timeout = lock_timeout
        self.lock_timeout = lock_timeout
        self.retry_after = max(1, round(lock_timeout))


class TotalRangeError(StorageError, ValueError):
    """An atomic delta would leave a total its field cannot hold: an int beyond 64 bits or a
    float beyond the largest finite one. ``total`` is the value it would have been."""

    def __init__(self, record: str, field: str, total: Any):
        super().__init__(
            f"{record}.{field} would be {total}, which it cannot hold; nothing was written",
            record=record,
            field=field,
        )
        self.total = total


class ConflictError(StorageError):
    """A transaction kept conflicting with concurrent ones, and the storage stopped running it.

    A serialization failure or a deadlock (PostgreSQL SQLSTATE ``40001``/``40P01``) rolls a
    transaction back; the storage runs the body again, whole, up to its bound of ``attempts``.
    This is raised when the last run conflicted too. Nothing of the transaction was written;
    the same call may succeed later. ``sqlstate`` is the last conflict's code.
    """

    def __init__(self, message: str, *, attempts: int, sqlstate: str | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.sqlstate = sqlstate
