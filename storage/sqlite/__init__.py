"""The SQLite backend (the embedded default)."""

from storage.sqlite.session import SQLiteSession
from storage.sqlite.storage import SQLiteStorage

__all__ = ["SQLiteSession", "SQLiteStorage"]
