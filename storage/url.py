"""``from_url``: a storage backend chosen by a URL (an application's ``DATABASE_URL``).

- ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: :class:`SQLiteStorage`
  on that file (three slashes, then the path, as SQLAlchemy spells it).
- ``sqlite://:memory:`` (or ``sqlite:///:memory:``): an in-memory SQLite database.
- ``postgresql://user:password@host:port/database`` (or ``postgres://``):
  :class:`PostgresStorage`; the driver is imported when it is set up.

Keyword options go to the backend's constructor (``pool_size=``, ``schema=`` for PostgreSQL,
``executor=``, ``busy_timeout=`` for SQLite). Nothing is opened here.
"""

from __future__ import annotations

from typing import Any

from storage.abc import Storage
from storage.errors import StorageError
from storage.postgres import PostgresStorage
from storage.sqlite import SQLiteStorage

_SCHEMES = "sqlite:///path, sqlite://:memory: or postgresql://user@host:port/database"


def from_url(url: str, **options: Any) -> Storage:
    """The storage backend ``url`` names, constructed with ``options`` (not yet set up)."""
    if not isinstance(url, str):
        raise StorageError(f"a storage URL must be a str ({_SCHEMES}), got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(f"{url!r} is not a storage URL: use {_SCHEMES}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if rest in (":memory:", "/:memory:"):
            return SQLiteStorage(":memory:", **options)
        if not rest.startswith("/") or rest == "/":
            raise StorageError(
                f"{url!r} names no SQLite file: use sqlite:///relative/path.db, "
                "sqlite:////absolute/path.db or sqlite://:memory:"
            )
        return SQLiteStorage(rest[1:], **options)
    if scheme in ("postgresql", "postgres"):
        return PostgresStorage(url, **options)
    raise StorageError(f"unknown storage URL scheme {scheme!r} in the URL: use {_SCHEMES}")
