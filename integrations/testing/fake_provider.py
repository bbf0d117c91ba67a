"""A scriptable fake provider: a real aiohttp server on loopback, and a client integration.

Wire format (JSON everywhere)::

    POST /v1/tasks        body: the call's params        header: Idempotency-Key (optional)
        202 {"id": "task-1", "status": "pending"}
        The same Idempotency-Key again answers with the same task; no new task is made.
    GET  /v1/tasks/{id}
        200 {"id": "task-1", "status": "pending" | "processing"}
        200 {"id": "task-1", "status": "completed", "result": ...}
        200 {"id": "task-1", "status": "failed", "error": ...}
        404 {"error": "unknown task"}
    POST /v1/run          (a synchronous API) body: params   header: Idempotency-Key
        200 {"id": "run-1", "result": ...}
        The same Idempotency-Key again answers with the same run and result.

Every request is recorded (:attr:`FakeProvider.requests`, with its headers and body). A task moves
one step along ``progression`` (default ``processing`` then ``completed``) each time its status is
read, or when the test says so (:meth:`FakeProvider.complete`, :meth:`FakeProvider.fail`).
Outcomes can be scripted per route (``"submit"``, ``"run"``, ``"status"``): each request takes
the next scripted outcome, and is handled normally once the route's script is used up::

    async with FakeProvider() as provider:
        provider.script("submit", Reply(503), Reply.rate_limited(2), Drop(process=True))
        ...

:class:`FakeTaskIntegration` is the matching client: an :class:`APICallIntegration` that talks to
the fake over HTTP with aiohttp, sends the ``Idempotency-Key`` header and maps error answers with
:func:`integrations.raise_for_status`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import aiohttp
import attrs
from aiohttp import web

from integrations.api_call import APICallModel
from integrations.retry import raise_for_status
from integrations.runner import APICallIntegration, ProviderStatus, Submitted
from integrations.testing.loopback import LoopbackServer
from integrations.testing.scripts import HasHeaders, Outcome, describe, play

Route = Literal["submit", "run", "status"]
TaskStatus = Literal["pending", "processing", "completed", "failed"]
ROUTES: tuple[Route, ...] = ("submit", "run", "status")
TERMINAL: tuple[TaskStatus, ...] = ("completed", "failed")


# -- what the provider keeps ----------------------------------------------------------------


@attrs.frozen
class RecordedRequest(HasHeaders):
    """One request as the provider received it."""

    route: Route
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    outcome: str
    """``"handled"`` or what the script did: ``"reply 503"``, ``"drop"``, ``"delay"``..."""


@attrs.define
class FakeTask:
    """A task at the fake provider."""

    id: str
    params: Any
    idempotency_key: str | None
    progression: list[TaskStatus]
    status: TaskStatus = "pending"
    result: Any = None
    error: Any = None
    polls: int = 0

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.status == "completed":
            body["result"] = self.result
        elif self.status == "failed":
            body["error"] = self.error
        return body


def default_result(params: Any, task_id: str) -> Any:
    """The result the fake computes unless told otherwise."""
    return {"output": f"result-of-{task_id}", "params": params}


DEFAULT_ERROR: Any = {"code": "task_failed", "message": "the provider could not do it"}


# -- the server ---------------------------------------------------------------------------


class FakeProvider(LoopbackServer):
    """The fake task API on ``127.0.0.1`` at a random port; use as an async context manager.

    ``progression`` is the list of statuses a new task goes through, one per status read
    (``()``: it stays pending until :meth:`complete` or :meth:`fail`). ``result(params, id)``
    computes a completed task's (or a run's) result.
    """

    def __init__(
        self,
        *,
        progression: Sequence[TaskStatus] = ("processing", "completed"),
        result: Callable[[Any, str], Any] = default_result,
        error: Any = DEFAULT_ERROR,
        task_prefix: str = "task-",
    ) -> None:
        super().__init__()
        self.progression = list(progression)
        self.result = result
        self.error = error
        self.task_prefix = task_prefix
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, FakeTask] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._runs_by_key: dict[str, str] = {}
        self._scripts: dict[Route, deque[Outcome]] = {route: deque() for route in ROUTES}
        self._ids = itertools.count(1)
        self._release = asyncio.Event()
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()

    # -- life cycle -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/tasks", self._submit)
        app.router.add_get("/v1/tasks/{id}", self._status)
        app.router.add_post("/v1/run", self._run)

    async def close(self) -> None:
        """Stop: held and delayed requests are answered 503 at once."""
        self._closing.set()
        self._release.set()
        await super().close()

    # -- scripting and commands -------------------------------------------------------------

    def script(self, route: Route, *outcomes: Outcome) -> None:
        """Queue outcomes for the next requests to ``route`` (after any already queued)."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {ROUTES}")
        self._scripts[route].extend(outcomes)

    def scripted(self, route: Route) -> int:
        """How many scripted outcomes ``route`` has left."""
        return len(self._scripts[route])

    def release(self) -> None:
        """Let every request held by :class:`Hold` proceed."""
        self._release.set()
        self._release = asyncio.Event()

    def complete(self, task_id: str, result: Any = None) -> FakeTask:
        """Complete a task now (``result`` defaults to the computed one)."""
        task = self.tasks[task_id]
        task.progression.clear()
        task.status = "completed"
        task.result = self.result(task.params, task.id) if result is None else result
        return task

    def fail(self, task_id: str, error: Any = None) -> FakeTask:
        """Fail a task now."""
        task = self.tasks[task_id]
        task.progression.clear()
        task.status = "failed"
        task.error = self.error if error is None else error
        return task

    def set_status(self, task_id: str, status: TaskStatus) -> FakeTask:
        """Move a task to ``status`` (terminal statuses as :meth:`complete` / :meth:`fail`)."""
        if status == "completed":
            return self.complete(task_id)
        if status == "failed":
            return self.fail(task_id)
        task = self.tasks[task_id]
        task.status = status
        return task

    def task_for_key(self, idempotency_key: str) -> FakeTask | None:
        """The task created under this idempotency key."""
        task_id = self._by_key.get(idempotency_key)
        return None if task_id is None else self.tasks[task_id]

    def requests_to(self, route: Route) -> list[RecordedRequest]:
        return [request for request in self.requests if request.route == route]

    async def wait_for_requests(self, route: Route, count: int, timeout: float = 5.0) -> None:
        """Wait (real time, bounded by ``timeout``) until ``route`` received ``count``
        requests."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.requests_to(route)) >= count)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            got = len(self.requests_to(route))
            raise TimeoutError(f"{route}: expected {count} request(s), got {got}") from None

    # -- handlers -------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("submit", request, self._create_task)

    async def _run(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("run", request, self._make_run)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("status", request, self._read_status)

    async def _handle(
        self,
        route: Route,
        request: web.Request,
        work: Callable[[web.Request, Any], web.Response],
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        script = self._scripts[route]
        outcome = script.popleft() if script else None
        await self._record(route, request, body, describe(outcome))
        return await play(
            outcome,
            request,
            lambda: work(request, body),
            closing=self._closing,
            release=self._release,
            shutting_down=lambda: web.json_response({"error": "shutting down"}, status=503),
        )

    async def _record(self, route: Route, request: web.Request, body: Any, outcome: str) -> None:
        async with self._changed:
            self.requests.append(
                RecordedRequest(
                    route, request.method, request.path, dict(request.headers), body, outcome
                )
            )
            self._changed.notify_all()

    def _create_task(self, request: web.Request, params: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        existing = self._by_key.get(key) if key else None
        if existing is not None:
            return web.json_response(self.tasks[existing].as_json(), status=202)
        task = FakeTask(f"{self.task_prefix}{next(self._ids)}", params, key, list(self.progression))
        self.tasks[task.id] = task
        if key:
            self._by_key[key] = task.id
        return web.json_response(task.as_json(), status=202)

    def _read_status(self, request: web.Request, _: Any) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"error": "unknown task"}, status=404)
        task.polls += 1
        if task.status not in TERMINAL and task.progression:
            self.set_status(task.id, task.progression.pop(0))
        return web.json_response(task.as_json())

    def _make_run(self, request: web.Request, params: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        existing = self._runs_by_key.get(key) if key else None
        if existing is not None:
            return web.json_response(self.runs[existing])
        run_id = f"run-{next(self._ids)}"
        self.runs[run_id] = {"id": run_id, "result": self.result(params, run_id)}
        if key:
            self._runs_by_key[key] = run_id
        return web.json_response(self.runs[run_id])


# -- the client -----------------------------------------------------------------------------


class FakeTaskIntegration(APICallIntegration):
    """An :class:`APICallIntegration` for :class:`FakeProvider` (or anything speaking its wire
    format): ``submit`` posts the params with the ``Idempotency-Key`` header, ``query`` reads the
    task. ``sync=True`` uses ``POST /v1/run`` and records the result at once."""

    name = "fake_tasks"

    def __init__(
        self,
        model: APICallModel,
        base_url: str,
        *,
        sync: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if name is not None:
            self.name = name
        self.base_url = base_url.rstrip("/")
        self.sync = sync
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (made on first use, closed by :meth:`close`)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        path = "/v1/run" if self.sync else "/v1/tasks"
        async with self.session().post(
            self.base_url + path, json=params, headers={"Idempotency-Key": idempotency_key}
        ) as response:
            await raise_for_status(response)
            body = await response.json()
        if self.sync:
            return Submitted(result=body["result"])
        return Submitted(task_id=str(body["id"]))

    async def query(self, external_id: str) -> ProviderStatus:
        async with self.session().get(f"{self.base_url}/v1/tasks/{external_id}") as response:
            await raise_for_status(response)
            body = await response.json()
        status = cast(TaskStatus, body["status"])
        return ProviderStatus(status, data=body.get("result"), error=body.get("error"))

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None
