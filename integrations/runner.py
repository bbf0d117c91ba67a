"""``APICallIntegration``: the guide's flow, done once for every integration.

It listens to APICall creation through a durable create side effect (a call committed before a
crash is still made after restart), reads ``request_params``, calls ``submit(params,
idempotency_key)`` with retries, per-attempt timeouts and an overall deadline, records every
attempt, and writes the unified events. A concrete integration implements ``submit`` (and
``query`` for asynchronous APIs) in terms of its API module; it never touches APICall fields.

Periodic work has one leader per cluster. The deadline sweeper and the pollers run in one
process at a time among all processes on the database: the one holding the leadership
``interaqt.<name>.periodic`` (:meth:`storage.abc.Storage.leader`: a session-level advisory
lock on a dedicated connection on PostgreSQL, an ``flock`` beside the file on SQLite). Every
process tries to take it at setup and then every ``leader_retry`` seconds; when the leader
dies its lock goes with its connection (or file descriptor) and another process takes over
at its next try, so within ``leader_retry`` seconds (plus the sweep interval before its first
sweep). The new leader starts a poller for every open call with a provider task id, and
looks for such calls every ``poll.initial`` seconds (calls submitted in other processes);
a process that is not the leader submits calls but polls none. Costs: one ``SELECT 1`` (or
one ``pg_try_advisory_lock``) per process every ``leader_retry`` seconds, one dedicated
connection per process, and in the leader one indexed read of open calls per
``poll.initial`` seconds when polling is on. A leader whose connection broke while it lives
learns so at its next check: for at most ``leader_retry`` seconds two processes may sweep or
poll, which is harmless because both write events that are stored once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any, Literal

import attrs

import reactive as r
from integrations.api_call import APICallModel
from integrations.base import Integration
from integrations.clock import Clock, SystemClock
from integrations.events import IntegrationEvents, PendingEvent
from integrations.retry import ProviderError, RetryPolicy, is_transient
from storage import Leader, MatchExp, is_id

log = logging.getLogger("integrations.runner")

TERMINAL = ("completed", "failed")


@attrs.frozen
class Submitted:
    """What ``submit`` returns: a provider task id (asynchronous API) or the result (sync)."""

    task_id: str | None = None
    result: Any = None


@attrs.frozen
class ProviderStatus:
    """What ``query`` returns: the task's status at the provider."""

    status: Literal["pending", "processing", "completed", "failed"]
    data: Any = None
    error: Any = None
    event_id: str | None = None


@attrs.frozen
class PollPolicy:
    """Opt-in backend polling: the first check after ``initial`` seconds, then each interval
    ``factor`` times longer up to ``max_interval``. Polling stops as soon as the call is
    terminal, whichever source (webhook, query, poll) made it so."""

    initial: float = 1.0
    factor: float = 1.5
    max_interval: float = 30.0


def describe_error(error: BaseException) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    status = getattr(error, "status", None)
    if status is not None:
        described["status"] = status
    return described


class APICallIntegration(Integration):
    """Base class: subclass it, set ``name``, implement ``submit`` (and ``query``)."""

    def __init__(
        self,
        model: APICallModel,
        *,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        clock: Clock | None = None,
        sweep_interval: float = 30.0,
        leader_retry: float = 2.0,
        environ: Any = None,
    ):
        super().__init__(environ)
        self.model = model
        self.retry = retry or RetryPolicy()
        self.poll = poll
        self.clock: Clock = clock or SystemClock()
        self.sweep_interval = sweep_interval
        if isinstance(leader_retry, bool) or not isinstance(leader_retry, int | float):
            raise ValueError(f"leader_retry must be a number of seconds, got {leader_retry!r}")
        if not 0 < leader_retry <= 3600:
            raise ValueError(
                f"leader_retry must be above 0 and at most 3600 s, got {leader_retry!r}"
            )
        self.leader_retry = float(leader_retry)
        self.controller: r.Controller | None = None
        self._events: IntegrationEvents | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leader: Leader | None = None
        self._periodic: set[asyncio.Task[Any]] = set()  # sweeper and pollers, leader only
        self._polling: set[Any] = set()  # calls a poller of this process follows

    @property
    def leading(self) -> bool:
        """Whether this process runs the periodic work (the sweeper and the pollers) now."""
        return self._leader is not None and self._leader.held

    # -- what a concrete integration implements ---------------------------------------------

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        """Call the provider. Raise ProviderError (or let network errors through) on failure."""
        raise NotImplementedError(f"{type(self).__name__} must implement submit()")

    async def query(self, external_id: str) -> ProviderStatus:
        """The provider's view of a task (asynchronous APIs)."""
        raise NotImplementedError(f"{type(self).__name__} does not support status queries")

    # -- the protocol ------------------------------------------------------------------------

    @property
    def call_name(self) -> str:
        return self.model.call.name

    @property
    def events(self) -> IntegrationEvents:
        if self._events is None:
            raise RuntimeError(f"{self.name}: setup(controller) has not run yet")
        return self._events

    def create_side_effects(self) -> list[r.RecordMutationSideEffect]:
        # The queue's own retries are for failures to *record* an outcome (storage errors);
        # provider retries happen inside _on_call_created with their own policy.
        return [
            r.RecordMutationSideEffect(
                f"{self.name}.submit", self.model.call, self._on_call_created, on=("create",)
            )
        ]

    def create_apis(self) -> dict[str, r.API]:
        return {
            f"{self.name}.query": r.API(
                self._query_api,
                params={"call_id": "id"},
                description=f"Refresh and return one of your {self.call_name} calls",
            )
        }

    async def setup(self, controller: r.Controller) -> None:
        self.controller = controller
        self._events = IntegrationEvents(controller, self.model.event, self.model.event_fields)
        self._leader = controller.backend.leader(f"interaqt.{self.name}.periodic")
        await self._lead_or_follow()
        self._spawn(self._leadership_forever())

    async def close(self) -> None:
        tasks = [*self._tasks, *self._periodic]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        leader, self._leader = self._leader, None
        if leader is not None:
            await leader.resign()

    # -- leadership of the periodic work (see the module) -----------------------------------

    async def _lead_or_follow(self) -> None:
        """One try: take (or keep) the leadership and start the periodic work when it is
        new, or stop it when the leadership was lost."""
        assert self._leader is not None
        was = bool(self._periodic)
        try:
            now = await self._leader.try_lead()
        except Exception as exc:
            log.warning("%s: could not try the leadership of periodic work: %s", self.name, exc)
            now = False
        if now and not was:
            log.info("%s: this process now runs the sweeper and the pollers", self.name)
            self._spawn_periodic(self._sweep_forever())
            if self.poll is not None:
                self._spawn_periodic(self._discover_forever())
        elif was and not now:
            log.warning("%s: leadership lost; the sweeper and pollers stop here", self.name)
            await self._stop_periodic()

    async def _leadership_forever(self) -> None:
        while True:
            await asyncio.sleep(self.leader_retry)  # real time: liveness, not business time
            await self._lead_or_follow()

    def _spawn_periodic(self, coroutine: Any, call_id: Any = None) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._periodic.add(task)
        task.add_done_callback(self._periodic.discard)
        task.add_done_callback(self._unexpected_end)
        if call_id is not None:
            self._polling.add(call_id)
            task.add_done_callback(lambda _t: self._polling.discard(call_id))

    async def _stop_periodic(self) -> None:
        tasks = list(self._periodic)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._polling.clear()

    async def _discover_forever(self) -> None:
        """The leader's look for open calls with a provider task id that no poller here
        follows (submitted in another process, or left by a leader that died)."""
        assert self.poll is not None
        while True:
            try:
                await self._discover()
            except Exception as exc:
                log.warning("%s: looking for calls to poll failed, will retry: %s", self.name, exc)
            # Real time, as for the leadership: how soon a poller starts is not business time.
            await asyncio.sleep(self.poll.initial)

    async def _discover(self) -> int:
        cf = self.model.fields
        open_calls = await self._controller().storage.find(
            self.call_name,
            MatchExp.atom(cf.status, "in", ["pending", "processing"])
            & MatchExp.atom(cf.external_id, "is not null"),
            [cf.external_id],
        )
        started = 0
        for call in open_calls:
            if call["id"] not in self._polling:
                self._spawn_periodic(self._poll(call["id"], call[cf.external_id]), call["id"])
                started += 1
        return started

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._unexpected_end)

    def _unexpected_end(self, task: asyncio.Task[Any]) -> None:
        """The last guard: a background task (poller, sweeper) ended by an exception its own
        code did not handle is logged here, once, instead of vanishing. A call it was polling
        is still finished by a webhook, the query API, or the sweeper at its deadline."""
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: a background task ended unexpectedly", self.name, exc_info=task.exception()
            )

    # -- submission --------------------------------------------------------------------------

    async def _on_call_created(
        self, event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun
    ) -> None:
        cf = self.model.fields
        call_id = event.record["id"]
        current = await controller.storage.find_one(
            self.call_name, {"id": call_id}, [cf.status, cf.external_id]
        )
        if current is None or current[cf.status] in TERMINAL or current[cf.external_id] is not None:
            # A re-run (the process stopped before the intent was removed) of a call whose
            # outcome is already recorded, or a call that is gone: nothing to send.
            return
        params = event.record.get(cf.request_params)
        # The deadline counts from the call's creation, but never from later than the runner's
        # clock says is now: the record's time comes from the wall clock, which an injected
        # clock (FakeClock in tests) may trail, and the deadline must hold on the clock the
        # runner sleeps on.
        now = self.clock.now()
        created = min(event.record.get(cf.created_at) or now, now)
        deadline_at = created + timedelta(seconds=self.retry.deadline)
        attempt = 0
        while True:
            attempt += 1
            started = self.clock.now()
            remaining = (deadline_at - started).total_seconds()
            record = {
                "attempt": attempt,
                "started_at": started.isoformat(),
                "idempotency_key": run.idempotency_key,
            }
            try:
                if remaining <= 0:
                    raise TimeoutError("the call's deadline passed before it was made")
                submitted = await asyncio.wait_for(
                    self.submit(params, run.idempotency_key),
                    timeout=min(self.retry.attempt_timeout, remaining),
                )
            except Exception as exc:
                transient = is_transient(exc)
                error = describe_error(exc)
                await self.events.attempt(
                    call_id,
                    {
                        **record,
                        "outcome": "transient" if transient else "permanent",
                        "error": error,
                    },
                )
                delay = self.retry.delay(attempt, exc)
                out_of_time = (self.clock.now() - started).total_seconds() + delay >= remaining
                if not transient or attempt >= self.retry.max_attempts or out_of_time:
                    await self.events.failed(None, error, entity_id=call_id)
                    return
                await self.clock.sleep(delay)
                continue
            await self._record_success(call_id, {**record, "outcome": "ok"}, submitted)
            return

    async def _record_success(
        self, call_id: Any, attempt: dict[str, Any], submitted: Submitted
    ) -> None:
        if not isinstance(submitted, Submitted):
            raise TypeError(f"{self.name}.submit() must return Submitted, got {submitted!r}")
        events = [
            PendingEvent(
                "attempt",
                None,
                call_id,
                attempt,
                f"attempt:{call_id}:{attempt['attempt']}:{attempt['started_at']}",
            )
        ]
        if submitted.task_id is None:
            # Derived from the idempotency key, so that recording the same result twice
            # (a re-run after a crash) writes the same events, stored once.
            external_id = str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"interaqt:{attempt['idempotency_key']}")
            )
            events += [
                PendingEvent("initialized", external_id, call_id),
                PendingEvent("processing", external_id),
                PendingEvent("completed", external_id, None, submitted.result),
            ]
            await self.events.write_many(events)
            return
        events.append(PendingEvent("initialized", submitted.task_id, call_id))
        await self.events.write_many(events)
        if self.poll is not None and self.leading and call_id not in self._polling:
            # Elsewhere the leader's next look for open calls starts its poller.
            self._spawn_periodic(self._poll(call_id, submitted.task_id), call_id)

    # -- status: poll, query, sweep ----------------------------------------------------------

    async def apply_status(self, external_id: str, status: ProviderStatus) -> None:
        """Write the event a provider status stands for (duplicates are stored once)."""
        if status.status == "processing":
            await self.events.processing(external_id, status.data, status.event_id)
        elif status.status == "completed":
            await self.events.completed(external_id, status.data, status.event_id)
        elif status.status == "failed":
            await self.events.failed(external_id, status.error or status.data, status.event_id)

    async def refresh(self, call_id: Any) -> dict[str, Any] | None:
        """Ask the provider about an open call and write what it says; returns the call."""
        controller = self._controller()
        cf = self.model.fields
        call = await controller.storage.find_one(self.call_name, {"id": call_id}, ["*"])
        if call is None:
            return None
        if call[cf.status] not in TERMINAL and call[cf.external_id] is not None:
            status = await self.query(call[cf.external_id])
            await self.apply_status(call[cf.external_id], status)
            call = await controller.storage.find_one(self.call_name, {"id": call_id}, ["*"])
        return call

    async def _poll(self, call_id: Any, external_id: str) -> None:
        """Poll until the call is terminal. A round that fails to read or record (a storage
        error) is retried at the next interval, logged once per streak of failures."""
        assert self.poll is not None
        interval = self.poll.initial
        failures = 0
        while True:
            await self.clock.sleep(interval)
            try:
                done = await self._poll_once(call_id, external_id)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "%s: polling %s could not read or record the status, will retry: %s",
                        self.name,
                        external_id,
                        exc,
                    )
                else:
                    log.debug("%s: polling %s failed again: %s", self.name, external_id, exc)
            else:
                failures = 0
                if done:
                    return
            interval = min(self.poll.max_interval, interval * self.poll.factor)

    async def _poll_once(self, call_id: Any, external_id: str) -> bool:
        """One poll: True when polling is over (the call is terminal or superseded)."""
        cf = self.model.fields
        call = await self._controller().storage.find_one(
            self.call_name, {"id": call_id}, [cf.status, cf.external_id]
        )
        if call is None or call[cf.status] in TERMINAL or call[cf.external_id] != external_id:
            return True  # done (from any source) or superseded
        try:
            status = await self.query(external_id)
        except Exception as exc:
            if not is_transient(exc):
                log.error("%s: polling %s failed for good: %s", self.name, external_id, exc)
                await self.events.failed(external_id, describe_error(exc))
                return True
            log.warning("%s: polling %s failed, will retry: %s", self.name, external_id, exc)
            return False
        await self.apply_status(external_id, status)
        return status.status in TERMINAL

    async def sweep(self) -> int:
        """Fail every call still pending or processing past its deadline; returns how many."""
        controller = self._controller()
        cf = self.model.fields
        cutoff = self.clock.now() - timedelta(seconds=self.retry.deadline)
        stuck = await controller.storage.find(
            self.call_name,
            MatchExp.atom(cf.status, "in", ["pending", "processing"])
            & MatchExp.atom(cf.created_at, "<", cutoff),
            [cf.external_id],
        )
        for call in stuck:
            error = {"type": "Timeout", "message": f"no result within {self.retry.deadline:g} s"}
            await self.events.failed(call[cf.external_id], error, entity_id=call["id"])
        return len(stuck)

    async def _sweep_forever(self) -> None:
        while True:
            await self.clock.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("%s: sweeping stuck calls failed", self.name)

    async def _query_api(self, ctx: r.APIContext, params: dict[str, Any]) -> Any:
        controller = self._controller()
        cf = self.model.fields
        if not is_id(params["call_id"]):
            raise r.APIError(400, "invalid_param", "call_id must be a call id (an int or a str)")
        call = await controller.storage.find_one(
            self.call_name, {"id": params["call_id"]}, [cf.owner]
        )
        if call is None or ctx.user_id is None or str(call[cf.owner]) != str(ctx.user_id):
            # Someone else's call looks exactly like a missing one.
            raise r.APIError(404, "not_found", f"no {self.call_name} {params['call_id']!r}")
        try:
            return await self.refresh(call["id"])
        except ProviderError as exc:
            raise r.APIError(502, "provider_error", f"{self.name}: {exc}") from exc

    def _controller(self) -> r.Controller:
        if self.controller is None:
            raise RuntimeError(f"{self.name}: setup(controller) has not run yet")
        return self.controller
