"""A process of a cluster for test_leader.py: the integration's periodic work in one of them.

    python -m tests.integrations.leader_worker URL SCHEMA JOURNAL

It sets up the shared model and a :class:`FakeTaskIntegration` on the PostgreSQL schema (its
provider is never called: the test writes calls without the submit side effect) with a call
deadline of :data:`DEADLINE` s, a sweep every :data:`SWEEP` s and a try for the leadership
every :data:`RETRY` s. Each sweep appends ``<pid> <time> <calls failed>`` to JOURNAL (a plain
append: it survives SIGKILL). It prints ``READY <pid>`` once set up, then serves until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from integrations import APICallModel, RetryPolicy
from integrations.testing import FakeTaskIntegration
from storage import PostgresStorage

from .app import start

DEADLINE = 1.0
SWEEP = 0.2
RETRY = 0.5


class SweepJournal(FakeTaskIntegration):
    """The fake integration, journaling each sweep it runs."""

    journal = ""

    async def sweep(self) -> int:
        failed = await super().sweep()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {time.time()!r} {failed}\n".encode())
        finally:
            os.close(fd)
        return failed


def read_sweeps(journal: str) -> list[tuple[int, float, int]]:
    """(pid, time, calls failed) per sweep, in order."""
    try:
        with open(journal) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    return [(int(p), float(t), int(n)) for p, t, n in (line.split() for line in lines)]


async def main(url: str, schema: str, journal: str) -> None:
    def make(model: APICallModel) -> SweepJournal:
        integration = SweepJournal(
            model,
            "http://127.0.0.1:9",
            retry=RetryPolicy(deadline=DEADLINE),
            sweep_interval=SWEEP,
            leader_retry=RETRY,
        )
        integration.journal = journal
        return integration

    await start(PostgresStorage(url, schema=schema, pool_size=2), make)
    print("READY", os.getpid(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
