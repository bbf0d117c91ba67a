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
  this signature, unchanged in the versions of :data:`SUPPORTED`);
- ``Connection._transport``: the connection's asyncio transport, and ``protocol.queries_count``
  (the runs whose messages it wrote), for :attr:`Runner.run_after`.

:attr:`Runner.run_after` sends a parameterless statement (a transaction's BEGIN) in the same
round trip as the next prepared statement's run: it writes the first one's Parse, Bind and
Execute (unnamed statement and portal, no Sync) to the transport, then makes the run above,
whose Sync closes both. The server answers the first with ParseComplete, BindComplete and
CommandComplete before the run's own messages, and asyncpg's handler of a run skips a
ParseComplete and a BindComplete (it expects them when it parses again) and keeps the last
CommandComplete's status: the run returns its own rows and status. An error in either is the
run's error; the connection is then in a failed transaction, as after any failed statement.
When the run's own messages are never written (asyncpg counts a run in
``protocol.queries_count`` once they are), the first statement's would wait for a Sync nobody
sends: its parameters refused by a codec, the connection busy or closed, a cancellation while
an earlier cancel completes. The connection is then terminated (the server drops the
transaction, the pool opens another one). Saves one round trip per transaction: 0.15 ms of
~0.6 for BEGIN, INSERT, UPDATE, COMMIT on loopback.

:attr:`Runner.run_behind` is the same with any messages in front: the connection puts a held
UPDATE there, a Bind of its prepared statement with parameters in text form (:func:`bound`),
and runs the COMMIT behind it. An error of the UPDATE makes the server skip to the Sync, so
the COMMIT never runs and the run raises the UPDATE's error.

What the shortcut skips is checked otherwise: the protocol refuses a closed or busy
connection itself (``InterfaceError``), as ``fetch`` does; the statements are the adapter's
own, on their own connection, and held while cached (asyncpg closes a statement only once
nothing refers to it); no asyncpg pool is used. What ``fetch`` adds on
``OutdatedSchemaCacheError`` (reloading type information) is for composite types changed
under a statement, and the engine's columns have builtin types only.

:func:`runner` checks the internals when a connection opens, with a trial run of
``SELECT 1``, alone and (on the process's first connection) after a ``BEGIN`` sent with it,
rolled back: when one is missing or answers in another shape, it returns the public path
instead (same results, the CPU and the round trip above spent) and logs once which asyncpg
lacked what. A failed check of the BEGIN's way (even a transient one, such as the connection
lost during it) keeps the process on two round trips per BEGIN: one check, not one per
connection.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement

__all__ = ["SUPPORTED", "Run", "RunAfter", "RunBehind", "Runner", "bound", "runner"]

SUPPORTED = ">=0.29,<0.33"
"""The asyncpg versions whose internals this module was written against (others are
checked the same way and get the public path when the check fails)."""

Answer = tuple[list[Any], bytes, bool]
"""A statement's rows, its command status (``b"UPDATE 3"``) and whether it completed."""
Run = Callable[[PreparedStatement, Sequence[Any]], Awaitable[Answer]]
"""Run a prepared statement of this connection once with these parameters: awaits its rows,
its command status (``b"UPDATE 3"``) and whether it completed."""

RunAfter = Callable[[str, PreparedStatement, Sequence[Any]], Awaitable[Answer]]
"""Run a parameterless statement (``BEGIN ...``), then a prepared statement of this connection
once with these parameters; awaits the second's rows, status and completion."""

RunBehind = Callable[[bytes, PreparedStatement, Sequence[Any]], Awaitable[Answer]]
"""Send protocol messages (a Bind and Execute of :func:`bound`, no Sync), then run a prepared
statement of this connection once with these parameters, in one round trip; awaits the
second's rows, status and completion (or the first's error)."""


@dataclass(frozen=True)
class Runner:
    """How statements run on one connection (see the module)."""

    run: Run
    run_after: RunAfter
    run_behind: RunBehind | None = None
    """Any messages before a run, in its round trip; None where the internals are not used
    (``run_after`` then sends its two statements in two round trips)."""

    @property
    def pipelined(self) -> bool:
        """Whether ``run_after`` sends both statements in one round trip (else in two)."""
        return self.run_behind is not None


log = logging.getLogger("storage.postgres")
_warned = False


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


@lru_cache(maxsize=16)
def _unsynced(sql: str) -> bytes:
    """Parse, Bind and Execute of parameterless ``sql`` (unnamed statement and portal, no
    parameters, text results, no row limit), without the Sync that would end them."""
    return (
        _message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))
        + _message(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
        + _message(b"E", b"\0" + struct.pack("!i", 0))
    )


def bound(statement: str, texts: Sequence[str | None]) -> bytes:
    """Bind and Execute of the prepared statement named ``statement`` with parameters in text
    form (None: NULL; the server parses each with its parameter's type), unnamed portal,
    results in text, no row limit, without a Sync: for :attr:`Runner.run_behind`."""
    body = [b"\0", statement.encode(), b"\0", struct.pack("!hh", 0, len(texts))]
    for text in texts:
        if text is None:
            body.append(struct.pack("!i", -1))
        else:
            data = text.encode()
            body.append(struct.pack("!i", len(data)))
            body.append(data)
    body.append(struct.pack("!h", 0))
    return _message(b"B", b"".join(body)) + _message(b"E", b"\0" + struct.pack("!i", 0))


def _fast(raw: asyncpg.Connection) -> Runner:
    # Typed Any: the stubs describe the public API only.
    protocol = cast(Any, raw)._protocol
    bind_execute = protocol.bind_execute
    transport = cast(Any, raw)._transport
    if not callable(getattr(transport, "write", None)):
        raise AttributeError("Connection._transport has no write()")
    if not isinstance(protocol.queries_count, int):
        raise TypeError(f"protocol.queries_count is {protocol.queries_count!r}")

    def run(statement: PreparedStatement, params: Sequence[Any]) -> Any:
        return bind_execute(cast(Any, statement)._state, params, "", 0, True, None)

    async def run_behind(
        messages: bytes, statement: PreparedStatement, params: Sequence[Any]
    ) -> Answer:
        written = protocol.queries_count  # counts a run once its messages are written
        transport.write(messages)
        try:
            answer: Answer = await bind_execute(
                cast(Any, statement)._state, params, "", 0, True, None
            )
        except BaseException:
            if protocol.queries_count == written:
                raw.terminate()  # ``messages`` wait for a Sync nobody sends (see the module)
            raise
        return answer

    def run_after(first: str, statement: PreparedStatement, params: Sequence[Any]) -> Any:
        return run_behind(_unsynced(first), statement, params)

    return Runner(run, run_after, run_behind)


def _public_run(statement: PreparedStatement, params: Sequence[Any]) -> Any:
    async def run() -> Answer:
        rows = await statement.fetch(*params)
        return rows, (statement.get_statusmsg() or "").encode(), True

    return run()


def _public(raw: asyncpg.Connection) -> Runner:
    async def run_after(first: str, statement: PreparedStatement, params: Sequence[Any]) -> Answer:
        await raw.execute(first)
        answer: Answer = await _public_run(statement, params)
        return answer

    return Runner(_public_run, run_after)


async def _check_run(runner: Runner, select: PreparedStatement) -> str:
    rows, status, completed = await runner.run(select, ())
    if not (rows and rows[0][0] == 1 and status == b"SELECT 1" and completed is True):
        return f"protocol.bind_execute answered {rows!r}, {status!r}, {completed!r}"
    return ""


async def _check_run_after(runner: Runner, select: PreparedStatement, raw: Any) -> str:
    try:
        rows, status, completed = await asyncio.wait_for(
            runner.run_after("BEGIN", select, ()), _CHECK_TIMEOUT
        )
        began = raw.is_in_transaction()
        await raw.execute("ROLLBACK")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, OSError) as exc:
        return f"a run after BEGIN failed: {type(exc).__name__}: {exc}"
    if not (rows and rows[0][0] == 1 and status == b"SELECT 1" and completed and began):
        return (
            f"a run after BEGIN answered {rows!r}, {status!r}, {completed!r}, "
            f"in a transaction: {began}"
        )
    return ""


_CHECK_TIMEOUT = 10.0
_after_refused: str | None = None
"""Why this asyncpg's connections cannot send a BEGIN with the next statement ("" once a
check passed; None before any check)."""


async def runner(raw: asyncpg.Connection) -> Runner | None:
    """How statements run on ``raw`` (just opened): on its protocol when the internals are
    there and a trial ``SELECT 1`` answers as expected (and, on the first connection of the
    process, the same after a BEGIN sent with it), else through the public API.

    None when that first check of ``run_after`` failed: ``raw`` is then closed (it may hold
    answers it would read as a later statement's), and the caller opens another connection,
    which gets ``run_after`` in two round trips, as every later one does."""
    global _after_refused
    try:
        fast = _fast(raw)
        select = await raw.prepare("SELECT 1")
        missing = await _check_run(fast, select)
    except (AttributeError, TypeError, ValueError) as exc:
        missing = f"{type(exc).__name__}: {exc}"
    if missing:
        _warn(missing)
        return _public(raw)
    if _after_refused is None:
        _after_refused = await _check_run_after(fast, select, raw)
        if _after_refused:
            _warn(_after_refused, "a BEGIN is sent in a round trip of its own")
            raw.terminate()  # what it left unanswered could be read as a later answer
            return None
    if _after_refused:
        return Runner(fast.run, _public(raw).run_after)
    return fast


def _warn(missing: str, cost: str = "") -> None:
    global _warned
    if _warned:
        return
    _warned = True
    log.warning(
        "asyncpg %s lacks the internals storage.postgres.internals runs statements on "
        "(%s); %s. Versions it was written against: asyncpg%s",
        getattr(asyncpg, "__version__", "of unknown version"),
        missing,
        cost
        or "using its public API instead, at some 10-20 us more per statement and one more "
        "round trip per transaction",
        SUPPORTED,
    )
