"""Leases as a state machine: two queues (two controllers, two connections on one SQLite file)
write, renew, reclaim and finish side effects in any order while a fake clock moves.

A model says what the intent rows must be after every step; against it:

- an intent changes owner only once its lease has expired (or it had none): never two owners
  holding a live lease at once;
- each change of owner starts exactly one run, and nothing else starts one;
- completion is fenced: a queue that lost an intent's lease finishing its run removes nothing.

The queues' own loops never fire here (they wait most of an hour of real time); the machine
calls ``renew`` and ``reclaim`` itself, with the clock it controls.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import reactive as r
from storage import SQLiteStorage

T = TypeVar("T")

LEASE = 3000.0
QUEUES = ("a", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        # one gate per run still going, oldest first: the run returns when its gate opens
        self.gates: dict[tuple[str, str], list[asyncio.Event]] = {}
        self.runs: list[tuple[str, str]] = []  # (queue, key) of every handler start
        # the model: pending intents by key -> [owner queue, lease until]; what each queue
        # answers for (holds); how many runs each key should have had
        self.model: dict[str, list[Any]] = {}
        self.held: dict[str, set[str]] = {q: set() for q in QUEUES}
        self.acquired: Counter[str] = Counter()
        self.controllers = {q: self._run(self._controller(q)) for q in QUEUES}

    async def _controller(self, name: str) -> r.Controller:
        item = r.Entity("Item", [r.Property("n", "number")])

        async def job(
            event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
        ) -> None:
            self.runs.append((name, run.idempotency_key))
            gate = asyncio.Event()
            self.gates.setdefault((name, run.idempotency_key), []).append(gate)
            await gate.wait()

        leases = r.SideEffectLeases(
            duration=LEASE, renew_every=2999.0, reclaim_every=3600.0, clock=self.clock
        )
        controller = r.Controller(
            SQLiteStorage(f"{self.dir}/db"),
            [item],
            side_effects=[r.RecordMutationSideEffect("job", item, job, on=("create",))],
            side_effect_leases=leases,
        )
        await controller.setup()
        return controller

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def _settle(self) -> None:
        async def turns() -> None:
            for _ in range(30):
                await asyncio.sleep(0)

        self._run(turns())

    def _owner(self, queue: str) -> str:
        return self.controllers[queue].side_effects.owner

    def _take(self, queue: str, key: str) -> None:
        self.model[key] = [queue, self.clock.now + LEASE]
        if key not in self.held[queue]:  # a queue never runs an intent twice at once
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

    @rule(seconds=st.sampled_from([1.0, LEASE / 2, LEASE, LEASE + 1, 3 * LEASE]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(queue=st.sampled_from(QUEUES))
    def renew(self, queue: str) -> None:
        self._run(self.controllers[queue].side_effects.renew())
        for key in sorted(self.held[queue]):
            # Renewed: what it holds and still owns (a lapsed lease included, as long as nobody
            # took it over); let go: what another queue took over meanwhile.
            if key in self.model and self.model[key][0] == queue:
                self.model[key][1] = self.clock.now + LEASE
            else:
                self.held[queue].discard(key)

    @rule(queue=st.sampled_from(QUEUES))
    def reclaim(self, queue: str) -> None:
        self._run(self.controllers[queue].side_effects.reclaim())
        for key, (_, until) in list(self.model.items()):
            if until < self.clock.now:
                self._take(queue, key)
        self._settle()

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        queue, key = data.draw(st.sampled_from(self.running))
        self.gates[(queue, key)].pop(0).set()
        self._settle()
        if key in self.model and self.model[key][0] == queue:
            del self.model[key]  # the owner's completion removes it
        # else fenced: the owner's run decides
        self.held[queue].discard(key)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def rows_match_the_model(self) -> None:
        rows = self._run(self.controllers["a"].side_effects.pending())
        owners = {self._owner(q): q for q in QUEUES}
        stored = {row.key: [owners.get(row.lease_owner or ""), row.lease_until] for row in rows}
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
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LeaseMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_leases_across_two_owners = LeaseMachine.TestCase
