"""A rolling restart on one SQLite file sends every provider call exactly once.

The first process (``rolling_worker.py``, a real process) commits CALLS calls whose provider
requests the fake provider holds unanswered: they are in flight, and their intents leased to
that process. The second process (this one, the same model and integration on the same file)
starts meanwhile, as a rolling restart does. It must leave the first process's calls alone
while their leases are renewed, even well past the first lease's end; then the first process
is told to stop (SIGTERM): it finishes its calls and exits, and the second one makes new calls.
The provider counts requests per Idempotency-Key: zero duplicates.

Before leases, the second process's setup took every pending intent, and each call in flight
was sent twice (17 calls to each of three providers in the issue's run). ``ROLLING_RESTART_CALLS``
sets CALLS (the figure in the report comes from this test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from integrations.testing import FakeProvider, Hold
from tests.conftest import sqlite_only

from .app import create_greeting
from .conftest import MakeApp
from .helpers import eventually, settled
from .rolling_worker import PATIENT, leases
from .test_delivery import key_of

ROOT = Path(__file__).resolve().parents[2]
CALLS = int(os.environ.get("ROLLING_RESTART_CALLS", "12"))
LEASE = 1.0


@sqlite_only("worker processes share the SQLite file")
async def test_a_rolling_restart_sends_every_call_once(
    make_app: MakeApp, provider: FakeProvider, db_path: str
) -> None:
    provider.script("run", *[Hold()] * CALLS)  # the first process's calls stay in flight
    first = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integrations.rolling_worker",
        db_path,
        provider.url,
        str(CALLS),
        str(LEASE),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert first.stdout is not None and first.stderr is not None
    try:
        first_calls: list[int] = []
        async with asyncio.timeout(30):
            while len(first_calls) < CALLS:
                line = (await first.stdout.readline()).decode()
                if not line:
                    raise AssertionError((await first.stderr.read()).decode())
                first_calls.append(int(line.split()[1]))
        await provider.wait_for_requests("run", CALLS, timeout=30)

        # The second process starts while the first one has every call in flight.
        second = await make_app(leases=leases(LEASE), sync=True, retry=PATIENT)
        pending = await second.controller.side_effects.pending()
        assert len(pending) == CALLS
        owners = {p.lease_owner for p in pending}
        assert len(owners) == 1 and f":{first.pid}:" in str(owners.pop())
        first_until = max(p.lease_until or 0.0 for p in pending)

        # Past the end of the leases as first written: the first process renewed them, and the
        # second (reclaiming every LEASE / 5) took none.
        async def past_first_leases() -> bool:
            return time.time() > first_until + LEASE

        await eventually(past_first_leases, timeout=10)
        renewed = await second.controller.side_effects.pending()
        assert {p.lease_owner for p in renewed} == {pending[0].lease_owner}
        assert all((p.lease_until or 0.0) > first_until for p in renewed)
        assert len(provider.requests_to("run")) == CALLS  # the second process sent nothing

        # The rolling restart: the first process stops, finishing the calls it has in flight.
        first.send_signal(signal.SIGTERM)
        provider.release()
        async with asyncio.timeout(30):
            assert (await first.stdout.readline()).decode().split() == ["STOPPED"]
            assert await first.wait() == 0
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()

    # The second process carries on and makes its own calls.
    second_calls = [(await create_greeting(second.controller))[1] for _ in range(CALLS)]
    for call_id in first_calls + second_calls:
        call = await settled(second.controller, call_id, timeout=30)
        assert call["status"] == "completed"
        assert call["call_state"]["attempts"] == 1

    async def nothing_pending() -> bool:
        await second.controller.drain()
        return not await second.controller.side_effects.pending()

    await eventually(nothing_pending)
    requests = provider.requests_to("run")
    keys: list[str] = []
    for request in requests:
        assert request.idempotency_key is not None  # every submit carries its key
        keys.append(request.idempotency_key)
    per_key = Counter(keys)
    duplicates = sum(n - 1 for n in per_key.values())
    print(
        f"rolling restart: {2 * CALLS} calls ({CALLS} in flight at the restart), "
        f"{len(requests)} provider requests, {duplicates} duplicates"
    )
    assert duplicates == 0
    assert sorted(per_key) == sorted(key_of(c) for c in first_calls + second_calls)
    assert len(provider.runs) == 2 * CALLS
