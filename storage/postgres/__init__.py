"""The PostgreSQL backend (``PostgresStorage``). Importing it needs no driver; setting a storage
up imports asyncpg and greenlet (``pip install 'interaqt-py[postgres]'``)."""

from storage.postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]
