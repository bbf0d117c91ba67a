"""Wake-ups and leadership on SQLite (the contract is :mod:`storage.lease`'s).

Wake-ups are in-process: :func:`notify` calls the listeners registered (by any storage of this
process) on the same database file, each on its own event loop. Processes sharing one file do
not hear each other: their own polling finds the work (cost: nothing beyond a set look-up).

Leadership is an exclusive, non-blocking ``flock`` on ``<database>.lead-<name>``: one holder
among all processes (and all storages of one process) on the file; the operating system drops
it when the holding process dies, however it dies. Needs a local file system with working
``flock`` (not NFS). An in-memory database is one process's alone: its holder always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# database key -> channel -> {listener: (loop, wake)}
_LISTENERS: dict[
    str, dict[str, dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]]]
] = {}


def notify(database: str, channel: str) -> None:
    """Wake every listener of ``channel`` on ``database`` in this process."""
    for loop, wake in list(_LISTENERS.get(database, {}).get(channel, {}).values()):
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # a loop closing meanwhile
                loop.call_soon_threadsafe(wake)


class Listener:
    """One registered listener; :meth:`close` removes it."""

    def __init__(self, database: str, channel: str, wake: Callable[[], None]) -> None:
        self._database, self._channel = database, channel
        self._key = id(self)
        channels = _LISTENERS.setdefault(database, {})
        channels.setdefault(channel, {})[self._key] = (asyncio.get_running_loop(), wake)

    async def close(self) -> None:
        channels = _LISTENERS.get(self._database, {})
        listeners = channels.get(self._channel, {})
        listeners.pop(self._key, None)
        if not listeners:
            channels.pop(self._channel, None)
        if not channels:
            _LISTENERS.pop(self._database, None)


def lock_path(database: str, name: str) -> str:
    """The lock file of leadership ``name`` for the database file ``database``."""
    safe = name if _SAFE.match(name) else hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{database}.lead-{safe}"


class FileLeader:
    """Leadership of ``name`` through an exclusive ``flock`` (see the module). ``database``
    None: an in-memory database, which one process alone uses: always the leader."""

    def __init__(self, database: str | None, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a leadership name must be a non-empty string, got {name!r}")
        self.name = name
        self.path = None if database is None else lock_path(database, name)
        self._fd: int | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def try_lead(self) -> bool:
        if self.path is None or fcntl is None:
            self._held = True
            return True
        if self._fd is not None:
            return True  # the lock stays as long as the descriptor is open
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._held = False
            return False
        self._fd = fd
        self._held = True
        return True

    async def resign(self) -> None:
        fd, self._fd = self._fd, None
        self._held = False
        if fd is not None:
            os.close(fd)  # releases the flock

    def __del__(self) -> None:
        fd: Any = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
