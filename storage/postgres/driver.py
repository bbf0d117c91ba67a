"""The driver half of the PostgreSQL backend, imported only when a storage is used: everything
here needs asyncpg and greenlet (the ``postgres`` extra)."""

from __future__ import annotations

from storage.postgres.bridge import BridgeError, await_, in_body, run_sync
from storage.postgres.connection import Connection, Pool

__all__ = ["BridgeError", "Connection", "Pool", "await_", "in_body", "run_sync"]
