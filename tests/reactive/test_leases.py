"""Leases on durable side effects, with real processes on one SQLite file.

A worker process (``crash_worker.py``, mode ``in-handler``) commits six items whose handlers
journal their idempotency key and then hang: the first process holds their intents, and renews
their leases while it lives. A second controller (this test process) starts on the same file:
it must not run any of them, not at setup and not while its reclaim loop runs past the end of
the leases as first written. The first process is killed with SIGKILL; once its leases expire
the second one runs each intent exactly once more, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reactive.event_codec import event_to_json
from reactive.side_effects import SIDE_EFFECT_RECORD, SIDE_EFFECT_RECORD_TYPE
from storage import MutationEvent, RecordType, Schema, SQLiteStorage

from . import crash_worker as worker
from .test_crash import Worker

LEASE = 1.0
ITEMS = 6

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    """Let the loop run until ``await check()`` holds (the bound only stops a hang)."""
    give_up = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.01)


def keys(journal: Path, label: str) -> list[str]:
    return [key for lab, key in worker.read_journal(str(journal)) if lab == label]


def test_a_live_process_keeps_its_side_effects_and_a_dead_ones_are_taken_over(
    tmp_path: Path,
) -> None:
    db, journal = tmp_path / "leases.db", tmp_path / "journal"
    first = Worker(db, journal, "in-handler", tmp_path / "stderr", lease=LEASE)
    try:
        first.expect(lambda line: line == "READY")
        journaled = [first.expect(lambda line: line.startswith("JOURNALED")) for _ in range(ITEMS)]
        asyncio.run(_second_process(db, journal, first, sorted(j.split()[1] for j in journaled)))
    finally:
        first.kill()


async def _second_process(db: Path, journal: Path, first: Worker, started: list[str]) -> None:
    assert sorted(keys(journal, "crashed")) == started
    second = worker.build(str(db), str(journal), "second", leases=worker.short_leases(LEASE))
    await second.setup()
    try:
        pending = await second.side_effects.pending()
        assert sorted(p.key for p in pending) == started
        owners = {p.lease_owner for p in pending}
        assert len(owners) == 1 and f":{first.proc.pid}:" in str(owners.pop())
        assert second.side_effects.owner != pending[0].lease_owner
        first_until = max(p.lease_until or 0.0 for p in pending)

        # Past the end of the leases as first written: the first process renewed them, and
        # the second one, reclaiming every LEASE / 5, ran nothing.
        async def past_first_leases() -> bool:
            return time.time() > first_until + LEASE

        await eventually(past_first_leases, "a lease period")
        renewed = await second.side_effects.pending()
        assert {p.lease_owner for p in renewed} == {pending[0].lease_owner}
        assert all((p.lease_until or 0.0) > first_until for p in renewed)
        assert keys(journal, "second") == []

        first.kill()  # SIGKILL: its leases are no longer renewed

        async def all_taken_over() -> bool:
            await second.drain()
            return len(keys(journal, "second")) == ITEMS and not await second.side_effects.pending()

        await eventually(all_taken_over, "the second process running the dead one's work")
        # Exactly once more each, with the same idempotency key.
        assert sorted(keys(journal, "second")) == started
        counts = Counter(key for _, key in worker.read_journal(str(journal)))
        assert set(counts.values()) == {2}
        assert await second.side_effects.dead() == []
        # Nothing more happens: another reclaim round finds nothing to take.
        assert await second.side_effects.reclaim() == 0
        assert sorted(keys(journal, "second")) == started
    finally:
        await second.close()


async def test_a_database_from_before_leases_gets_the_columns_and_its_intents_run(
    tmp_path: Path,
) -> None:
    """An intent stored before leases existed (no lease columns) is unowned: the first
    controller set up with install=True adds the columns and runs it."""
    db = tmp_path / "old.db"
    old_fields = [f for f in SIDE_EFFECT_RECORD_TYPE.fields if not f.name.startswith("lease_")]
    assert len(old_fields) == len(SIDE_EFFECT_RECORD_TYPE.fields) - 2
    old = SQLiteStorage(str(db))
    await old.setup(Schema([RecordType(SIDE_EFFECT_RECORD, old_fields)]))
    event = event_to_json(MutationEvent("Item", "create", {"id": 41, "n": 1}))
    await old.run(
        lambda s: s.insert_internal(
            SIDE_EFFECT_RECORD,
            {
                "name": worker.EFFECT,
                "key": worker.item_key(41),
                "status": "pending",
                "attempts": 0,
                "event": event,
            },
        )
    )
    await old.close()

    journal = tmp_path / "journal"
    controller = worker.build(str(db), str(journal), "upgraded")
    await controller.setup()
    try:
        await controller.drain()
        assert keys(journal, "upgraded") == [worker.item_key(41)]
        assert await controller.side_effects.pending() == []
    finally:
        await controller.close()
