"""The synchronous driver interface the neutral SQL layer runs on (a subset of DB-API 2.0).

Inside a transaction everything is synchronous (DESIGN 3.1), so the reader and writer need only
this: ``execute(sql, params)`` returning a cursor with ``fetchone``/``fetchall`` and
``rowcount``. ``sqlite3.Connection`` has this shape as it is (no wrapper, no cost); another
backend brings a small adapter (a greenlet bridge to an async driver, or a synchronous one).

Statements arrive in the neutral form: ``?`` placeholders. :func:`bind` puts the dialect's
rendering in front of the driver only when the dialect needs one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from storage.sql.dialect import Dialect

__all__ = ["Cursor", "Driver", "Execute", "bind"]


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int:
        """Rows an UPDATE or DELETE touched."""
        ...

    def fetchone(self) -> Any:
        """The next row (a sequence of column values), or None."""
        ...

    def fetchall(self) -> Any:
        """Every remaining row."""
        ...


class Driver(Protocol):
    """One connection, inside the transaction the backend began."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement with positional parameters."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        """Run one statement once per parameter row."""
        ...


Execute = Callable[[str, Sequence[Any]], Cursor]
"""How the neutral code runs a statement: neutral SQL text and its parameters."""


def bind(driver: Driver, dialect: Dialect) -> Execute:
    """The statement runner for ``driver``: its own ``execute`` when the dialect's placeholders
    are the neutral ``?`` (no cost per statement), else one that renders each text first."""
    if not dialect.renders:
        return driver.execute
    render, execute = dialect.render, driver.execute

    def run(sql: str, params: Sequence[Any]) -> Cursor:
        return execute(render(sql), params)

    return run
