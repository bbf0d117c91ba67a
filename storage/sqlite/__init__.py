"""The SQLite backend (the embedded default)."""

from typing import TYPE_CHECKING

from storage.sqlite.session import SQLiteSession
from storage.sqlite.storage import SQLiteStorage

if TYPE_CHECKING:  # mypy checks that the backend has the shape of storage.abc
    from storage.abc import Session, Storage

    _session: type[Session] = SQLiteSession
    _storage: type[Storage] = SQLiteStorage

__all__ = ["SQLiteSession", "SQLiteStorage"]
