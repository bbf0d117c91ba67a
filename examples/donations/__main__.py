"""``make run``: the donation application with local fake providers, on 127.0.0.1.

Environment: ``PORT`` (default 8080); ``WORKERS`` (default 1: the processes serving the one
port, PostgreSQL only; see :mod:`examples.donations.workers`); ``DATABASE`` (a SQLite file,
default ``donations.db`` in the current folder) or ``DATABASE_URL`` (``sqlite:///relative.db``, ``sqlite:////absolute.db``,
or ``postgresql://user@host:port/database`` to keep the data on PostgreSQL).
The data and the JWT secret kept beside the database survive restarts;
``python -m examples.donations reset`` (``make reset``) removes them.
A bad setting or a port in use ends with a one-line message on stderr and exit status 1;
Ctrl-C or SIGTERM stops the server cleanly (exit status 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from examples.donations.local import (
    HOST,
    ExampleError,
    database_from,
    jwt_secret_path,
    port_from,
    reset,
    serve_locally,
)
from examples.donations.workers import (
    WORKER_FLAG,
    check_workers,
    run_worker,
    serve_workers,
    workers_from,
)

__all__ = ["instructions", "main", "serve_locally"]


def instructions(base: str, database: Path | str, existed: bool) -> str:
    kept = (
        "existing: its users, tokens and donations are kept"
        if existed
        else "new: it and the JWT secret beside it are kept across restarts"
    )
    return f"""
The donation example is serving on {base}  (OpenAPI: {base}/openapi.json)
Database: {database}  ({kept}; `make reset` clears them)
Providers are local fakes: a Stripe-like payments API, an OpenAI-compatible translator and a
Volcano-style text-to-speech API that calls back a signed webhook.

Try it (in another terminal):

  curl -s {base}/api/auth.register -H 'Content-Type: application/json' \\
       -d '{{"username": "ada", "password": "correct horse battery"}}'
  TOKEN=$(curl -s {base}/api/auth.login -H 'Content-Type: application/json' \\
       -d '{{"username": "ada", "password": "correct horse battery"}}' | \\
       python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s {base}/interaction/Donate -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"payload": {{"amount": 2500, "message": "Thank you", "language": "fr"}}}}'

Then watch the calls move through pending -> processing -> completed (run it every second):
the payment and the voice message take about three seconds; the translation, a synchronous
API, goes from pending to completed at once.

  curl -s {base}/api/donations.mine -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{}}'

Press Ctrl-C to stop.
"""


async def serve(port: int, database: Path | str) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then close cleanly (the database too)."""
    on_file = not isinstance(database, str) and database.exists()
    existed = (isinstance(database, str) or on_file) and jwt_secret_path(database).exists()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve_locally(port, str(database)):
        shown = _without_password(database) if isinstance(database, str) else database
        print(instructions(f"http://{HOST}:{port}", shown, existed), flush=True)
        await stop.wait()


async def _serve_workers(port: int, database: str, workers: int) -> int:
    """``WORKERS`` > 1: the parent of the worker processes (see examples.donations.workers)."""
    existed = jwt_secret_path(database).exists()
    banner = instructions(f"http://{HOST}:{port}", _without_password(database), existed)
    return await serve_workers(port, database, workers, banner)


def _without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: it is printed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def main(argv: list[str]) -> int:
    """Serve (no arguments) or ``reset``; returns the exit status."""
    if argv == [WORKER_FLAG]:
        return run_worker()
    try:
        database = database_from(os.environ)
        if argv == ["reset"]:
            removed = reset(database)
            print(f"removed {', '.join(map(str, removed))}" if removed else "nothing to remove")
            return 0
        if argv:
            raise ExampleError(f"unknown arguments {argv}: run with none, or with reset")
        port = port_from(os.environ)
        workers = workers_from(os.environ)
        check_workers(workers, database)
        if workers > 1:
            assert isinstance(database, str)
            return asyncio.run(_serve_workers(port, database, workers))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(port, database))
    except ExampleError as exc:
        print(f"examples.donations: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
