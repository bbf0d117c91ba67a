"""Scripted outcomes for fake providers: what a request gets instead of a normal answer.

Every fake keeps a queue of outcomes per route; each request takes the next one (or is handled
normally when the queue is empty) and :func:`play` carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from aiohttp import web


def _retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


@attrs.frozen
class Reply:
    """Answer with this HTTP status, JSON body and headers instead of handling the request.

    With ``process=True`` the request is handled first (a task is created, a payment made) and
    then this answer replaces the real one: the provider did the work but the client never learns.
    """

    status: int
    body: Any = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    process: bool = False

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Reply:
        """A 429, with ``Retry-After`` (seconds, or an HTTP date string) when given."""
        headers = {} if retry_after is None else {"Retry-After": _retry_after(retry_after)}
        return cls(429, {"error": "rate limited"}, headers)


@attrs.frozen
class Delay:
    """Wait ``seconds`` (real time) before handling the request normally: longer than the
    client's timeout, the client gives up while the provider still does the work."""

    seconds: float


@attrs.frozen
class Hold:
    """Do not answer until the fake's ``release()`` (or until it closes). With ``process=True``
    the request is handled first and only its answer is held; otherwise it is handled after."""

    process: bool = False


@attrs.frozen
class Drop:
    """Close the connection without an answer (the client sees a connection error). With
    ``process=True`` the request is handled first: the work is done, the answer is lost."""

    process: bool = False


Outcome = Reply | Delay | Hold | Drop

Work = Callable[[], web.Response]
Respond = Callable[[Any, int, Mapping[str, str]], web.Response]


def describe(outcome: Outcome | None) -> str:
    """How a recorded request shows its outcome: ``"handled"``, ``"reply 503"``, ``"drop"``..."""
    if outcome is None:
        return "handled"
    processed = " after processing" if getattr(outcome, "process", False) else ""
    if isinstance(outcome, Reply):
        return f"reply {outcome.status}{processed}"
    return type(outcome).__name__.lower() + processed


def _json(body: Any, status: int, headers: Mapping[str, str]) -> web.Response:
    return web.json_response(body, status=status, headers=dict(headers))


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def play(
    outcome: Outcome | None,
    request: web.Request,
    work: Work,
    *,
    closing: asyncio.Event,
    release: asyncio.Event | None = None,
    shutting_down: Callable[[], web.Response],
    respond: Respond = _json,
    after_work: Callable[[], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """Carry out ``outcome`` for ``request``; ``work()`` is the normal handling.

    ``closing`` ends every wait (the fake is stopping: ``shutting_down()`` answers); ``release``
    ends a :class:`Hold`; ``after_work`` runs after the request was handled (to wake waiters).
    """

    async def handle() -> web.Response:
        answer = work()
        if after_work is not None:
            await after_work()
        return answer

    held: web.Response | None = None
    if isinstance(outcome, Delay):
        await _wait(closing, outcome.seconds)
    elif isinstance(outcome, Hold):
        if outcome.process:
            held = await handle()
        await _wait(release if release is not None else closing, None)
    if closing.is_set():
        return shutting_down()
    if held is not None:
        return held
    if isinstance(outcome, Reply):
        if outcome.process:
            await handle()
        return respond(outcome.body, outcome.status, outcome.headers)
    if isinstance(outcome, Drop):
        if outcome.process:
            await handle()
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    return await handle()


class HasHeaders:
    """Header look-ups for a recorded request (its ``headers`` as the fake received them)."""

    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        """A header's value, by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def idempotency_key(self) -> str | None:
        return self.header("Idempotency-Key")
