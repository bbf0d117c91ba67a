"""The greenlet bridge: a synchronous transaction body on the event loop, awaiting per statement.

The engine's model is a transaction body that is a *synchronous* function. asyncpg is async.
:func:`run_sync` runs the body in a child greenlet of the loop's task; each statement inside it
calls :func:`await_` with the driver's awaitable, which switches back to :func:`run_sync` (on the
loop, inside the task), where it is awaited; the result (or the exception) is switched back
into the body. No thread hop, and the loop keeps serving other tasks while a statement waits
for the server. This is the technique of SQLAlchemy's asyncio layer.

Cost: two greenlet switches per statement (well under a microsecond each), against a round
trip of about 100-200 us on loopback.

Contract: :func:`await_` may only be called from inside a body that :func:`run_sync` runs; called
anywhere else it raises :class:`BridgeError` instead of blocking the loop or deadlocking.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")


class BridgeError(RuntimeError):
    """:func:`await_` was called outside a body run by :func:`run_sync`."""


class _BodyGreenlet(greenlet.greenlet):
    """The greenlet running a body; ``loop_side`` is the greenlet awaiting on its behalf."""

    def __init__(self, fn: Callable[..., Any], loop_side: greenlet.greenlet):
        super().__init__(fn, loop_side)
        self.loop_side = loop_side


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from inside a synchronous body run by :func:`run_sync`."""
    current = greenlet.getcurrent()
    if not isinstance(current, _BodyGreenlet):
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # a coroutine never awaited would warn later, far from here
        raise BridgeError(
            "a PostgreSQL statement was run outside a transaction body: use it inside "
            "storage.run(body) (await_ works only in a body that run_sync runs)"
        )
    result: T = current.loop_side.switch(awaitable)
    return result


def in_body() -> bool:
    """Whether the caller runs inside a body that :func:`run_sync` runs."""
    return isinstance(greenlet.getcurrent(), _BodyGreenlet)


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` to completion, awaiting on this task every awaitable it passes to
    :func:`await_`; return its result or raise its exception."""
    body = _BodyGreenlet(fn, greenlet.getcurrent())
    result: Any = body.switch(*args)
    while not body.dead:
        try:
            value = await result
        except BaseException:
            result = body.throw(*sys.exc_info())
        else:
            result = body.switch(value)
    return result  # type: ignore[no-any-return]
