"""The backend-neutral SQL layer: what every SQL backend shares.

A SQL backend supplies three things and reuses the rest:

- a :class:`Dialect` (with its :class:`Codecs`): placeholders, literals, inserted ids,
  constraint failures, value representation;
- a :class:`Driver`: ``execute(sql, params)`` / ``executemany`` returning a cursor with
  ``fetchone``, ``fetchall`` and ``rowcount``, inside the transaction the backend began;
- a DDL renderer (:class:`storage.sql.migrate.DDL`): tables, columns, indexes and what the
  database holds, for setup and migrations.

A subclass of :class:`SQLStorage` (the async face: setup, migrations, ``run`` and the
one-transaction conveniences) then supplies only connecting and running one transaction. It
gets :class:`SQLSession` (reads, writes, events, savepoints, totals: the whole
:class:`storage.abc.Session`), the match compiler, the statement cache it owns per schema
(:class:`StatementCache`), and the migration runner (:func:`storage.sql.migrate.apply`).
"""

from storage.sql.cache import StatementCache
from storage.sql.codecs import Codecs
from storage.sql.dialect import Dialect, Violation
from storage.sql.driver import Cursor, Driver, Execute, bind
from storage.sql.session import SQLSession
from storage.sql.storage import SQLStorage

__all__ = [
    "Codecs",
    "Cursor",
    "Dialect",
    "Driver",
    "Execute",
    "SQLSession",
    "SQLStorage",
    "StatementCache",
    "Violation",
    "bind",
]
