"""The driver half of the PostgreSQL backend, imported only when a storage connects: everything
here needs asyncpg and greenlet (the ``postgres`` extra). Importing it also tells the dialect
which driver errors are constraint failures."""

from __future__ import annotations

import asyncpg

from storage.postgres.bridge import BridgeError, await_, in_body, run_sync
from storage.postgres.connection import Connection, Pool
from storage.postgres.dialect import PostgresDialect

# The dialect names the driver's constraint failures only now that the driver is imported.
PostgresDialect.integrity_errors = (asyncpg.IntegrityConstraintViolationError,)


def refused_input(error: BaseException) -> bool:
    """Whether ``error`` is the driver refusing a statement's parameters before sending it
    (a value its codec cannot encode): the caller's input, not the connection's fault."""
    return isinstance(error, asyncpg.DataError)


__all__ = ["BridgeError", "Connection", "Pool", "await_", "in_body", "refused_input", "run_sync"]
