"""The first process of a rolling restart, for test_rolling_restart.py.

    python -m tests.integrations.rolling_worker DB_PATH PROVIDER_URL COUNT LEASE

It creates COUNT greetings (one TaskCall each, a synchronous provider call each), printing
``COMMITTED <call id>`` as each commits, with side effect leases of LEASE seconds (renewed every
LEASE / 4). On SIGTERM it stops as a server stops in a rolling restart: it lets the calls in
flight finish (``drain``), closes, prints ``STOPPED`` and exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import reactive as r
from integrations import APICallModel, RetryPolicy
from integrations.testing import FakeTaskIntegration

from .app import create_greeting, start

# One attempt may wait as long as the test holds the provider: a timeout here would make this
# process send a call twice by itself, which is not what the test counts.
PATIENT = RetryPolicy(attempt_timeout=120.0, deadline=600.0)


def leases(lease: float) -> r.SideEffectLeases:
    """The leases both processes of the test use: short, so that the test runs in seconds."""
    return r.SideEffectLeases(duration=lease, renew_every=lease / 4, reclaim_every=lease / 5)


async def main(path: str, url: str, count: int, lease: float) -> None:
    def make(model: APICallModel) -> FakeTaskIntegration:
        return FakeTaskIntegration(model, url, sync=True, retry=PATIENT, sweep_interval=86_400.0)

    controller, integration = await start(path, make, leases(lease))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    for n in range(count):
        _, call_id = await create_greeting(controller, {"text": f"call {n}"})
        print("COMMITTED", call_id, flush=True)
    await stop.wait()
    await controller.drain()
    assert integration is not None
    await integration.close()
    await controller.close()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    db, provider_url, how_many, lease_seconds = sys.argv[1:5]
    asyncio.run(main(db, provider_url, int(how_many), float(lease_seconds)))
