"""``WORKERS=n make run``: the donation application served by ``n`` processes on one port.

The parent binds ``127.0.0.1:PORT`` once (a port in use is the usual one-line error, before
anything starts), starts the fake providers and the demo pace, then starts ``n`` worker
processes (``python -m examples.donations --worker``) that inherit the listening socket and
accept on it: the kernel hands each connection to whichever worker accepts it first, so a busy
worker takes fewer. (A parent-bound socket rather than ``SO_REUSEPORT``: the port is checked
once and no unrelated process can join the group; and it works the same on every platform.)
Each worker reads its settings (the database and the providers' settings, secrets included) as
one JSON object on its stdin, never from its command line or environment, and answers with
``X-Worker: <pid>``.

What is shared, and how:
- The database: PostgreSQL only (:func:`check_workers` refuses SQLite: every write takes the
  one file lock, so more processes add no throughput). Workers start one after another, so the
  first creates the tables alone.
- The JWT secret: one file (:func:`~examples.donations.local.jwt_secret`), read by the parent.
- Webhooks and callbacks arrive at the one port and land on either worker: both read and write
  the same records.
- Side effects (payments, translations, voices): each intent is leased to one process across
  the cluster (:class:`reactive.SideEffectLeases`, the controller's default), and carries one
  idempotency key, so a payment is asked for once per donation even when its worker stops.
- The deadline sweeper and the pollers run in one worker at a time (the integrations' leader).
- Rate limits (login attempts) are per process: with ``n`` workers a client may make up to
  ``n`` times the configured attempts, depending on which worker takes each connection.

SIGINT (Ctrl-C) or SIGTERM to the parent stops every worker (SIGTERM, each closes cleanly) and
then the providers; the exit status is 0 when every worker exited 0. A worker that dies
stops the others, and the parent exits 1 naming it. On stopping the parent prints what the
fake Stripe received (PaymentIntent creation requests, idempotency keys, intents).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from examples.donations.local import (
    DEMO_PACING,
    ExampleError,
    Pacing,
    Providers,
    fake_providers,
    jwt_secret,
    jwt_secret_path,
    listen,
    pace_providers,
    serve_app,
)

__all__ = ["MAX_WORKERS", "WORKER_FLAG", "check_workers", "serve_workers", "workers_from"]

MAX_WORKERS = 32
WORKER_FLAG = "--worker"
WORKER_FD = "INTERAQT_DONATIONS_WORKER_FD"
READY = "ready"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
BACKLOG = 512


def workers_from(environ: Mapping[str, str]) -> int:
    """``WORKERS`` (default 1), checked."""
    raw = environ.get("WORKERS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ExampleError(
            f"WORKERS={raw!r} is not a number of processes: use 1-{MAX_WORKERS}, e.g. WORKERS=2"
        )
    return int(raw)


def check_workers(workers: int, database: Path | str) -> None:
    """Refuse several workers on a SQLite file (see the module docstring)."""
    if workers > 1 and not isinstance(database, str):
        raise ExampleError(
            f"WORKERS={workers} needs PostgreSQL (DATABASE_URL=postgresql://...): on SQLite every "
            "write takes the one file lock, so more processes add no throughput; use WORKERS=1"
        )


def stripe_summary(providers: Providers) -> str:
    """One line: what the fake Stripe received (creation requests, idempotency keys, intents)."""
    creations = providers.stripe.requests_to("create")
    keys = {request.header("Idempotency-Key") for request in creations}
    return (
        f"The fake Stripe received {len(creations)} PaymentIntent creation request(s) with "
        f"{len(keys - {None})} idempotency key(s) and holds {len(providers.stripe.intents)} "
        "PaymentIntent(s)."
    )


async def _start_worker(
    number: int, sock: socket.socket, settings: bytes
) -> asyncio.subprocess.Process:
    """Worker ``number``, started and serving (its ready line read), or an ExampleError."""
    fd = sock.fileno()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.donations",
        WORKER_FLAG,
        env={**os.environ, WORKER_FD: str(fd)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        pass_fds=(fd,),
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(settings)
    await process.stdin.drain()
    process.stdin.close()
    try:
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
    except TimeoutError:
        line = ""
    if line != f"{READY} {process.pid}":
        if process.returncode is None:
            process.kill()
        status = await process.wait()
        raise ExampleError(f"worker {number} (pid {process.pid}) did not start (status {status})")
    return process


async def _stop(processes: list[asyncio.subprocess.Process]) -> list[int]:
    """SIGTERM every worker still running, then their exit statuses (killed after
    :data:`STOP_TIMEOUT` seconds)."""
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    statuses = []
    for process in processes:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                statuses.append(await process.wait())
        except TimeoutError:
            process.kill()
            statuses.append(await process.wait())
    return statuses


async def serve_workers(
    port: int,
    database: str,
    workers: int,
    banner: str,
    *,
    pacing: Pacing = DEMO_PACING,
) -> int:
    """Serve from ``workers`` processes until SIGINT or SIGTERM; print ``banner`` once all
    serve. Returns the exit status (0: every worker stopped cleanly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sock = listen(port)
    processes: list[asyncio.subprocess.Process] = []
    try:
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
        signing = jwt_secret(jwt_secret_path(database))
        async with (
            fake_providers(port, signing, pacing) as providers,
            pace_providers(providers, pacing),
        ):
            settings = json.dumps({"database": database, "environ": providers.environ})
            try:
                for number in range(1, workers + 1):
                    processes.append(await _start_worker(number, sock, settings.encode()))
                pids = ", ".join(str(p.pid) for p in processes)
                print(f"Workers: {workers} processes (pids {pids})\n{banner}", flush=True)
                stopped = loop.create_task(stop.wait())
                exits = [loop.create_task(p.wait()) for p in processes]
                await asyncio.wait([stopped, *exits], return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                died = [p for p in processes if p.returncode is not None]
            finally:
                statuses = await _stop(processes)
            print(stripe_summary(providers), flush=True)
        for process in died:
            print(
                f"examples.donations: worker pid {process.pid} exited with status "
                f"{process.returncode}; stopped the others",
                file=sys.stderr,
            )
        return 0 if not died and all(status == 0 for status in statuses) else 1
    finally:
        sock.close()


async def _worker(fd: int) -> None:
    """One worker: the settings from stdin, the application on the inherited socket ``fd``,
    until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    settings = json.loads(sys.stdin.read())
    sock = socket.socket(fileno=fd)
    try:
        async with serve_app(sock, settings["database"], settings["environ"], worker_header=True):
            print(f"{READY} {os.getpid()}", flush=True)
            await stop.wait()
    finally:
        sock.close()


def run_worker() -> int:
    """The ``--worker`` entry point (started by :func:`serve_workers` only)."""
    raw = os.environ.get(WORKER_FD, "")
    if not raw.isdigit():
        print(f"examples.donations: {WORKER_FLAG} is started by WORKERS=n only", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(int(raw)))
    return 0
