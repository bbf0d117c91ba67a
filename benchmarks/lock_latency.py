"""``lock_latency``: request latency while another process holds the database's write lock.

A server (its own process, on loopback) serves a small notes model on a SQLite file with
``busy_timeout`` = a third of the hold. Three clients run side by side, each one request at a
time: ``GET /health``, a read API (``POST /api/notes.count``) and a writer
(``POST /interaction/AddNote``). They run for ``hold`` seconds without a lock, then for
``hold`` seconds while a third process holds ``BEGIN IMMEDIATE`` on the file. One JSON line per
request kind and phase: latency p50/p99/max in milliseconds, the answers' statuses, and for the
locked phase the ratio of its p99 to the unlocked one.

While the lock is held, writes wait ``busy_timeout`` and answer 503; ``/health`` and reads must
stay as fast as without the lock (the wait must not block the server's event loop).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

import reactive as r
from benchmarks.common import report, scale, serve_on_loopback
from reactive.server import create_app
from storage import SQLiteStorage

EV = r.INTERACTION_EVENT


async def _count(ctx: r.APIContext, params: Any) -> Any:
    return {"notes": await ctx.controller.storage.count("Note")}


def _serve(path: str, busy_timeout: float, port_queue: Any) -> None:
    """The server process: the notes app on 127.0.0.1, an ephemeral port sent back."""

    async def main() -> None:
        # AddNote is the only interaction: every interaction event makes a Note.
        text = r.Transform(EV, lambda event: {"text": event["payload"]["text"]})
        note = r.Entity("Note", [r.Property("text")], computation=text)
        add = r.Interaction("AddNote", r.Payload([r.PayloadItem("text", required=True)]))
        storage = SQLiteStorage(path, busy_timeout=busy_timeout)
        controller = r.Controller(storage, [note], interactions=[add])
        await controller.setup()
        apis = {"notes.count": r.API(_count, allow_anonymous=True)}
        await serve_on_loopback(
            create_app(controller, apis, anonymous_interactions=True), port_queue
        )

    asyncio.run(main())


def _hold(path: str, seconds: float, locked: Any) -> None:
    """The lock holder process: the write lock for ``seconds``."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


Request = Callable[[], Awaitable[int]]


async def _phase(requests: dict[str, Request], seconds: float) -> dict[str, Any]:
    """Each request kind in a loop of its own for ``seconds``: latencies and statuses."""
    deadline = time.perf_counter() + seconds
    latencies: dict[str, list[float]] = {kind: [] for kind in requests}
    statuses: dict[str, Counter[int]] = {kind: Counter() for kind in requests}

    async def loop(kind: str, request: Request) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await request()
            latencies[kind].append(time.perf_counter() - started)
            statuses[kind][status] += 1

    await asyncio.gather(*(loop(kind, request) for kind, request in requests.items()))
    return {"latencies": latencies, "statuses": statuses}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def run_lock_latency(hold: float) -> None:
    busy_timeout = hold / 3
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "notes.db")
        ports = context.Queue()
        server = context.Process(target=_serve, args=(path, busy_timeout, ports), daemon=True)
        server.start()
        try:
            port = ports.get(timeout=60)
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:

                async def health() -> int:
                    async with session.get(f"{base}/health") as response:
                        await response.read()
                        return response.status

                async def read() -> int:
                    async with session.post(f"{base}/api/notes.count", json={}) as response:
                        await response.read()
                        return response.status

                async def write() -> int:
                    body = {"payload": {"text": "hello"}}
                    async with session.post(f"{base}/interaction/AddNote", json=body) as response:
                        await response.read()
                        return response.status

                requests: dict[str, Request] = {
                    "/health": health,
                    "/api/notes.count": read,
                    "write": write,
                }
                await _phase(requests, min(0.2, hold))  # warm up connections and caches
                unlocked = await _phase(requests, hold)
                locked_event = context.Event()
                holder = context.Process(target=_hold, args=(path, hold, locked_event))
                holder.start()
                try:
                    if not await asyncio.to_thread(locked_event.wait, 60):
                        raise RuntimeError("the lock holder did not take the lock")
                    locked = await _phase(requests, hold)
                finally:
                    await asyncio.to_thread(holder.join, 60)
        finally:
            server.terminate()
            server.join(30)
    for kind in requests:
        base_p99 = _percentile(unlocked["latencies"][kind], 0.99)
        for phase, figures in (("none", unlocked), ("held", locked)):
            values = figures["latencies"][kind]
            p99 = _percentile(values, 0.99)
            extra: dict[str, Any] = {}
            if phase == "held":
                extra["p99_ratio_to_unlocked"] = round(p99 / base_p99, 2) if base_p99 else None
            report(
                "lock_latency",
                len(values),
                hold,
                request=kind,
                lock=phase,
                hold_seconds=round(hold, 3),
                busy_timeout=round(busy_timeout, 3),
                p50_ms=_ms(_percentile(values, 0.5)),
                p99_ms=_ms(p99),
                max_ms=_ms(max(values)),
                statuses={str(k): v for k, v in sorted(figures["statuses"][kind].items())},
                **extra,
            )


def main() -> None:
    asyncio.run(run_lock_latency(max(0.3, 3.0 * scale())))


if __name__ == "__main__":
    main()
