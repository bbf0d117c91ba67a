"""``PostgresSession``: the neutral :class:`~storage.sql.session.SQLSession` on a pooled
PostgreSQL connection (:class:`storage.postgres.connection.Connection`, statements awaited
through the greenlet bridge) with the PostgreSQL dialect.

Two additions: aggregates (``sum`` over ``numeric`` columns) come back from PostgreSQL as
``Decimal``; they are turned into the int or float SQLite would give (see
:func:`storage.postgres.codecs.decode_number`). And the last pending update goes with the
COMMIT, in its round trip (:meth:`PostgresSession.finish`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.migration import RelatedTotals
from storage.postgres.codecs import decode_number
from storage.postgres.dialect import POSTGRES
from storage.schema import Schema
from storage.sql.cache import StatementCache
from storage.sql.session import SQLSession

if TYPE_CHECKING:
    from storage.postgres.connection import Connection

__all__ = ["PostgresSession"]


class PostgresSession(SQLSession):
    """Reads and writes inside one PostgreSQL transaction (see :class:`SQLSession`)."""

    __slots__ = ("connection",)

    def __init__(
        self, schema: Schema, connection: Connection, cache: StatementCache | None = None
    ) -> None:
        super().__init__(schema, connection, POSTGRES, cache)
        self.connection = connection
        """The transaction's pooled connection (diagnostics)."""

    def finish(self) -> None:
        """Send the updates kept pending, the last one with the COMMIT, in its round trip,
        where the connection can (:meth:`~storage.postgres.connection.Connection.hold`)."""
        self._writer.flush(self.connection.hold)

    def related_totals(
        self, spec: RelatedTotals, id_range: tuple[Any, Any] | None = None
    ) -> dict[Any, tuple[Any, int]]:
        found = super().related_totals(spec, id_range)
        return {host: (decode_number(total), count) for host, (total, count) in found.items()}

    def record_totals(self, record: str, field: str | None = None) -> tuple[Any, int]:
        total, count = super().record_totals(record, field)
        return decode_number(total), count
