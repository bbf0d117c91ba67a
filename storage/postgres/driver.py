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

__all__ = ["BridgeError", "Connection", "Pool", "await_", "in_body", "run_sync"]
