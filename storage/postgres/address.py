"""Where a PostgreSQL DSN points, for messages; the one error for a connection that failed.

Imports no driver: :class:`PostgresStorage` parses its DSN (and refuses a malformed one) when it
is constructed, before the driver is loaded. Messages name host, port, database and user, and
never the password (any text shown passes through :meth:`Address.scrub`).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import unquote, urlsplit

from storage.errors import StorageError


class Address:
    """Where a DSN points, for messages: host, port, database and user, never the password."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise StorageError(
                f"not a PostgreSQL URL (scheme {parts.scheme!r}): use "
                "postgresql://user@host:port/database"
            )
        try:
            port = parts.port
        except ValueError:
            raise StorageError(
                f"the PostgreSQL URL has a bad port ({parts.netloc.rsplit(':', 1)[-1]!r})"
            ) from None
        self.user = unquote(parts.username or "") or os.environ.get("PGUSER") or _login()
        self.host = parts.hostname or os.environ.get("PGHOST") or "localhost"
        self.port = port or int(os.environ.get("PGPORT") or 5432)
        self.database = unquote(parts.path.lstrip("/")) or os.environ.get("PGDATABASE") or self.user
        self.password = unquote(parts.password) if parts.password else None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}, database {self.database!r} as user {self.user!r}"

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``."""
        return text.replace(self.password, "***") if self.password else text


def _login() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "postgres")


def connect_error(address: Address, exc: BaseException) -> StorageError:
    """The one :class:`StorageError` for a connection that could not be opened."""
    state = getattr(exc, "sqlstate", None)
    if state == "3D000":
        hint = f"the database does not exist: create it (createdb {address.database})"
    elif state in ("28P01", "28000"):
        hint = "the server refused these credentials: check the user and password"
    elif isinstance(exc, OSError | asyncio.TimeoutError):
        hint = "no PostgreSQL server answers there: check that it runs and the host and port"
    else:
        hint = "see the server's reason above"
    reason = address.scrub(str(exc) or type(exc).__name__)
    return StorageError(f"cannot connect to PostgreSQL at {address}: {reason} ({hint})")
