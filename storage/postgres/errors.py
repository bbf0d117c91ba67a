"""PostgreSQL's errors by SQLSTATE: which say the store itself cannot write, which mean the
transaction may be run again. Works on the driver's exception by its ``sqlstate`` attribute
alone, so it needs no driver import. (Constraint failures are the dialect's:
:meth:`storage.postgres.dialect.PostgresDialect.violation`.)
"""

from __future__ import annotations

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
