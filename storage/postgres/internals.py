"""The one place that uses asyncpg's private internals, checked when a connection opens.

Every statement the driver adapter runs with parameters
(:meth:`storage.postgres.connection.Connection.execute`) is one run of a prepared statement.
asyncpg's public ``PreparedStatement.fetch`` makes it through three nested coroutines, each
resumed when the server answers, behind checks that the connection is open and not released
to an asyncpg pool; its ``get_statusmsg`` (the row count of an UPDATE without RETURNING) is
behind the same checks again: 10-20 us of client CPU per statement, beside the 100-150 us
the round trip itself costs the client (one ``UPDATE ... RETURNING`` run 3,000 times on
loopback, ``time.process_time``).
:func:`runner` runs it as asyncpg's ``fetch`` does underneath, in one coroutine, through:

- ``Connection._protocol``: the connection's protocol;
- ``PreparedStatement._state``: the statement's protocol-side state;
- ``protocol.bind_execute(state, args, portal, limit, return_extra, timeout)``: Bind,
  Execute, Sync; awaits ``(rows, status, completed)`` with ``return_extra`` (the call
  ``PreparedStatement.fetch`` makes, with the same arguments; tracing libraries wrap it by
  this signature, unchanged in the versions of :data:`SUPPORTED`).

What the shortcut skips is checked otherwise: the protocol refuses a closed or busy
connection itself (``InterfaceError``), as ``fetch`` does; the statements are the adapter's
own, on their own connection, and held while cached (asyncpg closes a statement only once
nothing refers to it); no asyncpg pool is used. What ``fetch`` adds on
``OutdatedSchemaCacheError`` (reloading type information) is for composite types changed
under a statement, and the engine's columns have builtin types only.

:func:`runner` checks the internals when a connection opens, with a trial run of
``SELECT 1``: when one is missing or answers in another shape, it returns the public path
instead (same results, the CPU above spent) and logs once which asyncpg lacked what.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement

__all__ = ["SUPPORTED", "Run", "runner"]

SUPPORTED = ">=0.29,<0.33"
"""The asyncpg versions whose internals this module was written against (others are
checked the same way and get the public path when the check fails)."""

Run = Callable[[PreparedStatement, Sequence[Any]], Awaitable[tuple[list[Any], bytes, bool]]]
"""Run a prepared statement of this connection once with these parameters: awaits its rows,
its command status (``b"UPDATE 3"``) and whether it completed."""

log = logging.getLogger("storage.postgres")
_warned = False


def _fast(raw: asyncpg.Connection) -> Run:
    # Typed Any: the stubs describe the public API only.
    bind_execute = cast(Any, raw)._protocol.bind_execute

    def run(statement: PreparedStatement, params: Sequence[Any]) -> Any:
        return bind_execute(cast(Any, statement)._state, params, "", 0, True, None)

    return run


def _public(statement: PreparedStatement, params: Sequence[Any]) -> Any:
    async def run() -> tuple[list[Any], bytes, bool]:
        rows = await statement.fetch(*params)
        return rows, (statement.get_statusmsg() or "").encode(), True

    return run()


async def runner(raw: asyncpg.Connection) -> Run:
    """How statements run on ``raw`` (just opened): on its protocol when the internals are
    there and a trial ``SELECT 1`` answers as expected, else through the public API."""
    global _warned
    missing = ""
    try:
        run = _fast(raw)
        rows, status, completed = await run(await raw.prepare("SELECT 1"), ())
        if not (rows and rows[0][0] == 1 and status == b"SELECT 1" and completed is True):
            missing = f"protocol.bind_execute answered {rows!r}, {status!r}, {completed!r}"
    except (AttributeError, TypeError, ValueError) as exc:
        missing = f"{type(exc).__name__}: {exc}"
    if not missing:
        return run
    if not _warned:
        _warned = True
        log.warning(
            "asyncpg %s lacks the internals storage.postgres.internals runs statements on "
            "(%s); using its public API instead, at some 10-20 us more per statement. "
            "Versions it was written against: asyncpg%s",
            getattr(asyncpg, "__version__", "of unknown version"),
            missing,
            SUPPORTED,
        )
    return _public
