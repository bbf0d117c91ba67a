"""The PostgreSQL backend (``PostgresStorage``). Importing it needs no driver; setting a storage
up imports asyncpg and greenlet (``pip install 'interaqt-py[postgres]'``)."""

from typing import TYPE_CHECKING

from storage.postgres.storage import PostgresStorage

if TYPE_CHECKING:  # mypy checks that the backend has the shape of storage.abc
    from storage.abc import Session, Storage
    from storage.postgres.session import PostgresSession

    _session: type[Session] = PostgresSession
    _storage: type[Storage] = PostgresStorage

__all__ = ["PostgresStorage"]
