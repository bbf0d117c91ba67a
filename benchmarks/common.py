"""Shared helpers for benchmarks: timing and the JSON line format."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from storage.sqlite.storage import DEFAULT_PAGE_SIZE


def scale() -> float:
    """``BENCH_SCALE`` shrinks or grows every workload's N (CI smoke runs use a small one)."""
    return float(os.environ.get("BENCH_SCALE", "1"))


def scaled(n: int) -> int:
    return max(1, int(n * scale()))


def report(workload: str, n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    """Print one JSON line: workload, n, seconds, ops_per_second and any extra figures."""
    line = {
        "workload": workload,
        "n": n,
        "seconds": round(seconds, 6),
        "ops_per_second": round(n / seconds, 1) if seconds > 0 else None,
        **extra,
    }
    print(json.dumps(line), flush=True)
    sys.stdout.flush()
    return line


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def timed(fn: Callable[[], Any]) -> float:
    with Timer() as t:
        fn()
    return t.seconds


def floor_connection(path: Any) -> sqlite3.Connection:
    """A plain sqlite3 connection with the settings SQLiteStorage gives a new database, so a
    floor measures the same statements on the same kind of file."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {DEFAULT_PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


async def serve_on_loopback(app: web.Application, port_queue: Any) -> None:
    """Serve ``app`` on 127.0.0.1 at an ephemeral port, put the port on ``port_queue`` and
    serve until the process ends: the body of a benchmark's server process."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = cast(asyncio.Server, site._server)  # started: the loop's listening server
    port_queue.put(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()
