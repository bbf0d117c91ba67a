"""Leases as a state machine on PostgreSQL: two queues (two controllers, each with its own
pool of connections, on one schema) write, renew, claim and finish side effects in any order.

PostgreSQL's lease clock is the server's, which a test cannot move: time passing for an
intent is an ``expire`` step that sets its ``lease_until`` in the past (what the server's clock
would show once its lease ran out). The model keeps, per pending intent, its owner and whether
its lease has expired; against it, as in ``test_lease_properties.py`` on SQLite:

- an intent changes owner only once its lease has expired: never two owners at once;
- each change of owner starts exactly one run, and nothing else starts one;
- completion is fenced: a queue that lost an intent's lease finishing its run removes nothing;
- a renewal extends what the queue still owns (an expired lease included, while nobody took it
  over) and lets go of what another took.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import reactive as r
from reactive.side_effects import SIDE_EFFECT_RECORD
from storage import PostgresStorage
from tests.conftest import PG_URL, drop_schema, postgres_unavailable

LEASE = 3000.0
QUEUES = ("a", "b")
EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "6"))


class PostgresLeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.schema = f"t_{uuid.uuid4().hex[:16]}"
        self.loop = asyncio.new_event_loop()
        self.gates: dict[tuple[str, str], list[asyncio.Event]] = {}
        self.runs: list[tuple[str, str]] = []
        # pending intents by key -> [owner queue, expired?]; what each queue answers for
        self.model: dict[str, list[Any]] = {}
        self.held: dict[str, set[str]] = {q: set() for q in QUEUES}
        self.acquired: Counter[str] = Counter()
        self.controllers: dict[str, r.Controller] = {}
        for queue in QUEUES:  # one after the other: the first installs the tables
            self.controllers[queue] = self._run(self._controller(queue))

    async def _controller(self, name: str) -> r.Controller:
        item = r.Entity("Item", [r.Property("n", "number")])

        async def job(
            event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
        ) -> None:
            self.runs.append((name, run.idempotency_key))
            gate = asyncio.Event()
            self.gates.setdefault((name, run.idempotency_key), []).append(gate)
            await gate.wait()

        # The loops never fire (an hour apart); the machine renews and claims itself.
        leases = r.SideEffectLeases(duration=LEASE, renew_every=2999.0, reclaim_every=3600.0)
        controller = r.Controller(
            PostgresStorage(PG_URL, schema=self.schema, pool_size=2),
            [item],
            side_effects=[r.RecordMutationSideEffect("job", item, job, on=("create",))],
            side_effect_leases=leases,
        )
        await controller.setup()
        return controller

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _settle(self) -> None:
        """Let the queues catch up: handlers started for every change of owner, and finished
        intents removed (PostgreSQL answers over the network, a loaded machine slowly). Bounded:
        a run that never starts is then reported by the invariants."""

        def quiet() -> bool:
            # Every task of a queue is a handler waiting at its gate: no removal in flight.
            for name, controller in self.controllers.items():
                waiting = sum(len(g) for (queue, _), g in self.gates.items() if queue == name)
                if len(controller.side_effects._tasks) != waiting:
                    return False
            return Counter(key for _, key in self.runs) == self.acquired

        async def turns() -> None:
            give_up = time.monotonic() + 10.0
            while True:
                for _ in range(30):
                    await asyncio.sleep(0)
                if quiet() or time.monotonic() > give_up:
                    return
                await asyncio.sleep(0.005)

        self._run(turns())

    def _owner(self, queue: str) -> str:
        return self.controllers[queue].side_effects.owner

    def _take(self, queue: str, key: str) -> None:
        self.model[key] = [queue, False]
        if key not in self.held[queue]:
            self.held[queue].add(key)
            self.acquired[key] += 1

    @property
    def running(self) -> list[tuple[str, str]]:
        return sorted(run for run, gates in self.gates.items() if gates)

    # -- rules ------------------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES))
    def write(self, queue: str) -> None:
        item = self._run(self.controllers[queue].storage.create("Item", {"n": 1}))
        self._take(queue, f"job:Item:{item['id']}")
        self._settle()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        self._run(
            self.controllers["a"].backend.run(
                lambda s: s.write_internal_where(
                    SIDE_EFFECT_RECORD, {"key": key}, {"lease_until": 0}
                )
            )
        )
        self.model[key][1] = True

    @rule(queue=st.sampled_from(QUEUES))
    def renew(self, queue: str) -> None:
        self._run(self.controllers[queue].side_effects.renew())
        for key in sorted(self.held[queue]):
            if key in self.model and self.model[key][0] == queue:
                self.model[key][1] = False
            else:
                self.held[queue].discard(key)

    @rule(queue=st.sampled_from(QUEUES))
    def claim(self, queue: str) -> None:
        self._run(self.controllers[queue].side_effects.reclaim())
        for key, (_, expired) in list(self.model.items()):
            if expired:
                self._take(queue, key)
        self._settle()

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        queue, key = data.draw(st.sampled_from(self.running))
        self.gates[(queue, key)].pop(0).set()
        self._settle()
        if key in self.model and self.model[key][0] == queue:
            del self.model[key]
        self.held[queue].discard(key)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def rows_match_the_model(self) -> None:
        rows = self._run(self.controllers["b"].side_effects.pending())
        owners = {self._owner(q): q for q in QUEUES}
        now = time.time()  # one host: the server's clock and this one agree to far below LEASE
        stored = {
            row.key: [owners.get(row.lease_owner or ""), (row.lease_until or 0) < now]
            for row in rows
        }
        assert stored == self.model

    @invariant()
    def each_change_of_owner_started_one_run(self) -> None:
        assert Counter(key for _, key in self.runs) == self.acquired

    def teardown(self) -> None:
        for gates in self.gates.values():
            for gate in gates:
                gate.set()
        for controller in self.controllers.values():
            self._run(controller.close())
        self._run(drop_schema(PG_URL, self.schema))
        self.loop.close()


PostgresLeaseMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=20, deadline=None
)


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    why = postgres_unavailable()
    if why is not None:
        pytest.skip(f"PostgreSQL unavailable: {why}")


test_leases_across_two_owners_on_postgres = PostgresLeaseMachine.TestCase
