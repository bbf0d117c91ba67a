"""Wake-ups and leadership on PostgreSQL (the contract is :mod:`storage.lease`'s).

Each runs on a dedicated connection of its own, outside the pool, so that it never holds a
pooled connection nor sits inside a write transaction:

- :class:`Notifier`: ``SELECT pg_notify(channel, '')`` in autocommit, sent by one background
  task *after* the caller's commit (the caller calls :meth:`Notifier.notify` once it has
  committed), coalesced: channels asked for while a send is pending, or within
  :data:`NOTIFY_GAP` after it, go out once with the next (so at most about one send per gap,
  however many commits ask: each NOTIFY is a commit that takes the server's notify lock). A NOTIFY
  inside every write transaction takes the server's global notification lock at commit and
  cut commit throughput 35-43% (measured); outside it costs one autocommit statement per
  coalesced batch on an idle connection. A failed send is logged at debug level and dropped
  (a hint only); the connection is reopened at the next send.
- :class:`Listeners`: ``LISTEN`` on one connection per storage, callbacks per channel. When the
  connection drops it is reopened with backoff (up to 30 s apart) and every listener is woken
  once (notifications may have been missed meanwhile).
- :class:`AdvisoryLeader`: ``pg_try_advisory_lock(key)`` held at session level on a connection
  of its own; the server releases it when that connection ends (the process died, or the
  network dropped it). ``try_lead`` while leading checks the connection with ``SELECT 1``:
  a leader whose connection broke learns at its next check that it no longer leads (until
  then, for at most one check interval, two processes may both believe they lead: periodic
  work run under leadership must be idempotent, as the sweeper and pollers are).

Channel names and lock keys are derived from the storage's PostgreSQL schema and the given
name, so two applications (or two test schemas) on one database never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("storage.postgres.signals")

_CHECK_TIMEOUT = 5.0
NOTIFY_GAP = 0.005
"""Seconds at least between two sends of a notifier (the coalescing window)."""
_MAX_REOPEN_WAIT = 30.0

Opener = Callable[[], Awaitable[Any]]
"""Opens a new raw asyncpg connection (search_path set) on the storage's database."""


def channel_name(schema: str | None, channel: str) -> str:
    """The PostgreSQL channel for ``channel`` of the storage on ``schema`` (at most 63 bytes,
    PostgreSQL's identifier limit; a digest keeps long names apart)."""
    digest = hashlib.sha256(f"{schema or ''}\0{channel}".encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c == "_" else "_" for c in channel)[:40]
    return f"iq_{readable}_{digest}"


def lock_key(schema: str | None, name: str) -> int:
    """The 64-bit advisory lock key of leadership ``name`` on ``schema``."""
    digest = hashlib.sha256(f"interaqt-leader\0{schema or ''}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _close(raw: Any) -> None:
    if raw is None or raw.is_closed():
        return
    try:
        await asyncio.wait_for(raw.close(), _CHECK_TIMEOUT)
    except Exception:
        raw.terminate()


class Notifier:
    """Coalesced NOTIFY after commit, from a dedicated connection (see the module)."""

    def __init__(self, open_connection: Opener, schema: str | None) -> None:
        self._open = open_connection
        self._schema = schema
        self._due: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._raw: Any = None
        self._closed = False

    def notify(self, channel: str) -> None:
        """Schedule one notification of ``channel`` (joined with any not yet sent)."""
        if self._closed:
            return
        self._due.add(channel_name(self._schema, channel))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._due and not self._closed:
            due, self._due = sorted(self._due), set()
            try:
                if self._raw is None or self._raw.is_closed():
                    self._raw = await self._open()
                for channel in due:
                    await self._raw.execute("SELECT pg_notify($1, '')", channel)
            except Exception as exc:
                log.debug("a notification was not sent (listeners poll): %s", exc)
                await _close(self._raw)
                self._raw = None
                return
            # The coalescing window: what is asked for meanwhile goes out with the next send.
            await asyncio.sleep(NOTIFY_GAP)

    async def close(self) -> None:
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
        await _close(self._raw)
        self._raw = None


class _Registration:
    def __init__(self, listeners: Listeners, channel: str, wake: Callable[[], None]) -> None:
        self._listeners, self.channel, self.wake = listeners, channel, wake

    async def close(self) -> None:
        await self._listeners.remove(self)


class Listeners:
    """``LISTEN`` on one dedicated connection for every listener of a storage."""

    def __init__(self, open_connection: Opener, schema: str | None) -> None:
        self._open = open_connection
        self._schema = schema
        self._by_channel: dict[str, list[_Registration]] = {}
        self._raw: Any = None
        self._lock = asyncio.Lock()
        self._reopen: asyncio.Task[None] | None = None
        self._closed = False

    async def add(self, channel: str, wake: Callable[[], None]) -> _Registration:
        registration = _Registration(self, channel_name(self._schema, channel), wake)
        async with self._lock:
            if self._raw is None or self._raw.is_closed():
                await self._connect()
            first = registration.channel not in self._by_channel
            self._by_channel.setdefault(registration.channel, []).append(registration)
            if first:
                await self._raw.add_listener(registration.channel, self._on_notification)
        return registration

    async def remove(self, registration: _Registration) -> None:
        async with self._lock:
            listeners = self._by_channel.get(registration.channel, [])
            if registration in listeners:
                listeners.remove(registration)
            if not listeners and registration.channel in self._by_channel:
                del self._by_channel[registration.channel]
                if self._raw is not None and not self._raw.is_closed():
                    with contextlib.suppress(Exception):
                        await self._raw.remove_listener(registration.channel, self._on_notification)

    async def _connect(self) -> None:
        self._raw = await self._open()
        self._raw.add_termination_listener(self._on_termination)

    def _on_notification(self, _connection: Any, _pid: int, channel: str, _payload: str) -> None:
        for registration in list(self._by_channel.get(channel, ())):
            registration.wake()

    def _on_termination(self, _connection: Any) -> None:
        if self._closed or (self._reopen is not None and not self._reopen.done()):
            return
        self._reopen = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reopen the listening connection with backoff, LISTEN again, and wake everyone
        (notifications sent while it was down are lost)."""
        wait = 0.1
        while not self._closed:
            try:
                async with self._lock:
                    await self._connect()
                    for channel in self._by_channel:
                        await self._raw.add_listener(channel, self._on_notification)
            except Exception as exc:
                log.debug("reopening the LISTEN connection failed, retrying: %s", exc)
                await _close(self._raw)
                await asyncio.sleep(wait)
                wait = min(_MAX_REOPEN_WAIT, wait * 2)
                continue
            for registrations in list(self._by_channel.values()):
                for registration in list(registrations):
                    registration.wake()
            return

    async def close(self) -> None:
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(BaseException):
                await self._reopen
        self._by_channel.clear()
        await _close(self._raw)
        self._raw = None


class AdvisoryLeader:
    """Leadership through a session-level advisory lock on a dedicated connection."""

    def __init__(self, open_connection: Opener, schema: str | None, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a leadership name must be a non-empty string, got {name!r}")
        self.name = name
        self.key = lock_key(schema, name)
        self._open = open_connection
        self._raw: Any = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def try_lead(self) -> bool:
        try:
            if self._held:
                await asyncio.wait_for(self._raw.fetchval("SELECT 1"), _CHECK_TIMEOUT)
                return True
            if self._raw is None or self._raw.is_closed():
                self._raw = await self._open()
            self._held = bool(
                await asyncio.wait_for(
                    self._raw.fetchval("SELECT pg_try_advisory_lock($1)", self.key),
                    _CHECK_TIMEOUT,
                )
            )
        except Exception as exc:
            # The connection (and with it any lock it held) is gone or unusable.
            if self._held:
                log.warning("leadership of %s lost: its connection failed: %s", self.name, exc)
            self._held = False
            raw, self._raw = self._raw, None
            if raw is not None:
                raw.terminate()
            return False
        return self._held

    async def resign(self) -> None:
        held, self._held = self._held, False
        raw, self._raw = self._raw, None
        if raw is None:
            return
        if held and not raw.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    raw.fetchval("SELECT pg_advisory_unlock($1)", self.key), _CHECK_TIMEOUT
                )
        await _close(raw)
