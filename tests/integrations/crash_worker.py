"""A worker process for test_crash.py, killed with SIGKILL while its calls are in flight.

    python -m tests.integrations.crash_worker DB_PATH PROVIDER_URL MODE COUNT [sync|async]

It creates COUNT greetings (each with one TaskCall), printing ``COMMITTED <call id>`` once each
is committed. Its integration's ``submit`` then never returns:

- ``before_call``: it prints ``SUBMITTING <idempotency key>`` and blocks before any request;
- ``after_call``: it makes the request, prints ``SUBMITTED <idempotency key>`` and blocks
  before the answer is recorded.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from integrations import APICallModel, Submitted
from integrations.testing import FakeTaskIntegration

from .app import create_greeting, start


class Stuck(FakeTaskIntegration):
    mode = "before_call"

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        if self.mode == "after_call":
            await super().submit(params, idempotency_key)
            print("SUBMITTED", idempotency_key, flush=True)
        else:
            print("SUBMITTING", idempotency_key, flush=True)
        await asyncio.Event().wait()  # until killed
        raise AssertionError("unreachable")


async def main(path: str, url: str, mode: str, count: int, shape: str) -> None:
    Stuck.mode = mode

    def make(model: APICallModel) -> Stuck:
        return Stuck(model, url, sync=shape == "sync", sweep_interval=86_400.0)

    controller, _ = await start(path, make)
    for n in range(count):
        _, call_id = await create_greeting(controller, {"text": f"call {n}"})
        print("COMMITTED", call_id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    db, provider_url, how, how_many, kind = sys.argv[1:6]
    asyncio.run(main(db, provider_url, how, int(how_many), kind))
