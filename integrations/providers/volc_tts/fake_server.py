"""A fake Volcano Engine async TTS server on loopback, speaking the wire format documented in
:mod:`integrations.providers.volc_tts.api`: submit, query, and signed callbacks.

It checks credentials (``Authorization: Bearer; <token>``, ``Resource-Id``, ``appid``) and the
submit body like the provider would, answers a repeated ``reqid`` with the task it already made,
and records every request (headers and body). A task moves one step along ``progression``
(default: still running, then succeeded) each time it is queried, or when the test says so
(:meth:`FakeVolcTTS.complete`, :meth:`FakeVolcTTS.fail`); with ``finish_after`` it succeeds on
its own that many seconds after submission. Callbacks go to the task's ``callback_url``, signed
with Standard Webhooks headers when ``callback_secret`` is set: automatically when a task
finishes (``auto_callback``), or on demand with :meth:`FakeVolcTTS.notify`;
:meth:`FakeVolcTTS.deliver` posts any body with any signature (tampered, stale, replayed).

Outcomes can be scripted per route (``"submit"``, ``"query"``) with the scripted outcomes of
:mod:`integrations.testing.fake_provider`; each request takes the next one and is handled
normally once the route's script is used up::

    async with FakeVolcTTS(callback_secret=secret) as fake:
        fake.script("submit", Reply(503), Reply(200, {"code": 40300, "message": "no quota"}))
        ...

Like the rest of :mod:`integrations.testing`, it needs the ``testing`` extras (``hypothesis``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

import aiohttp
import attrs
from aiohttp import web

from integrations.testing.loopback import LoopbackServer
from integrations.testing.scripts import (
    Delay,
    Drop,
    HasHeaders,
    Hold,
    Outcome,
    Reply,
    describe,
    play,
)
from integrations.webhooks import sign_standard

from .api import (
    CODE_BAD_REQUEST,
    CODE_FORBIDDEN,
    CODE_NOT_FOUND,
    CODE_UNAUTHORIZED,
    DEFAULT_RESOURCE_ID,
    IDEMPOTENCY_HEADER,
    QUERY_PATH,
    SUBMIT_PATH,
    TASK_FAILED,
    TASK_RUNNING,
    TASK_SUCCEEDED,
    Sentence,
    TaskResult,
)

FakeRoute = Literal["submit", "query"]
FAKE_ROUTES: tuple[FakeRoute, ...] = ("submit", "query")
DEFAULT_FAILURE = (50001, "synthesis failed")

__all__ = [
    "FAKE_ROUTES",
    "CallbackDelivery",
    "Delay",
    "Drop",
    "FakeRoute",
    "FakeVolcTTS",
    "Hold",
    "Reply",
    "VolcRequest",
    "VolcTask",
]


@attrs.frozen
class VolcRequest(HasHeaders):
    """One request as the fake received it."""

    route: FakeRoute
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    outcome: str


@attrs.define
class VolcTask:
    """A synthesis task at the fake."""

    task_id: str
    reqid: str
    request: dict[str, Any]
    idempotency_key: str | None
    progression: list[int]
    task_status: int = TASK_RUNNING
    audio_url: str | None = None
    url_expire_time: int | None = None
    code: int | None = None
    message: str | None = None
    polls: int = 0

    @property
    def callback_url(self) -> str | None:
        url = self.request.get("callback_url")
        return url if isinstance(url, str) else None

    @property
    def text(self) -> str:
        return str(self.request.get("text", ""))

    def result(self) -> TaskResult:
        succeeded = self.task_status == TASK_SUCCEEDED
        return TaskResult(
            task_id=self.task_id,
            task_status=self.task_status,
            text_length=len(self.text),
            audio_url=self.audio_url,
            url_expire_time=self.url_expire_time,
            sentences=(Sentence(self.text, 0, 100 * len(self.text)),) if succeeded else (),
            code=self.code,
            message=self.message,
        )


@attrs.frozen
class CallbackDelivery:
    """One callback POST the fake made, and the app's answer."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    status: int
    answer: Any

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class FakeVolcTTS(LoopbackServer):
    """The fake on ``127.0.0.1`` at a random port; use as an async context manager."""

    def __init__(
        self,
        *,
        appid: str = "fake-appid",
        token: str = "fake-token",
        resource_ids: Sequence[str] = (DEFAULT_RESOURCE_ID, "volc.tts_async.emotion"),
        callback_secret: str | None = None,
        progression: Sequence[int] = (TASK_RUNNING, TASK_SUCCEEDED),
        finish_after: float | None = None,
        auto_callback: bool = True,
        voices: Sequence[str] | None = None,
        task_prefix: str = "volc-task-",
        audio_base: str = "https://tts.invalid/audio/",
        failure: tuple[int, str] = DEFAULT_FAILURE,
    ) -> None:
        super().__init__()
        self.appid = appid
        self.token = token
        self.resource_ids = set(resource_ids)
        self.callback_secret = callback_secret
        self.progression = list(progression)
        self.finish_after = finish_after
        self.auto_callback = auto_callback
        self.voices = None if voices is None else set(voices)
        self.task_prefix = task_prefix
        self.audio_base = audio_base
        self.failure = failure
        self.requests: list[VolcRequest] = []
        self.tasks: dict[str, VolcTask] = {}
        self.callbacks: list[CallbackDelivery] = []
        self.callback_errors: list[str] = []
        """Automatic callbacks that could not be delivered (connection refused...)."""
        self._by_reqid: dict[str, str] = {}
        self._scripts: dict[FakeRoute, deque[Outcome]] = {r: deque() for r in FAKE_ROUTES}
        self._next_id = 1
        self._release = asyncio.Event()
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(SUBMIT_PATH, self._submit)
        app.router.add_get(QUERY_PATH, self._query)

    async def close(self) -> None:
        """Stop: background callbacks are cancelled, held requests answered 503."""
        self._closing.set()
        self._release.set()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def environ(self, **extra: str) -> dict[str, str]:
        """Environment variables for a :class:`VolcTTSIntegration` talking to this fake."""
        env = {
            "VOLC_TTS_APPID": self.appid,
            "VOLC_TTS_TOKEN": self.token,
            "VOLC_TTS_BASE_URL": self.url,
        }
        if self.callback_secret:
            env["VOLC_TTS_CALLBACK_SECRET"] = self.callback_secret
        env.update(extra)
        return env

    # -- scripting and commands -------------------------------------------------------------

    def script(self, route: FakeRoute, *outcomes: Outcome) -> None:
        """Queue outcomes for the next requests to ``route`` (after any already queued)."""
        if route not in FAKE_ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {FAKE_ROUTES}")
        self._scripts[route].extend(outcomes)

    def release(self) -> None:
        """Let every request held by :class:`Hold` proceed."""
        self._release.set()
        self._release = asyncio.Event()

    def next_task_id(self) -> str:
        """The id the next new task will get."""
        return f"{self.task_prefix}{self._next_id}"

    def task_for_reqid(self, reqid: str) -> VolcTask | None:
        task_id = self._by_reqid.get(reqid)
        return None if task_id is None else self.tasks[task_id]

    def complete(self, task_id: str, audio_url: str | None = None) -> VolcTask:
        """Make a task succeed now (no callback: see :meth:`notify`)."""
        task = self.tasks[task_id]
        task.progression.clear()
        task.task_status = TASK_SUCCEEDED
        fmt = task.request.get("format") or "mp3"
        task.audio_url = audio_url or f"{self.audio_base}{task.task_id}.{fmt}"
        task.url_expire_time = int(time.time()) + 3600
        return task

    def fail(self, task_id: str, code: int | None = None, message: str | None = None) -> VolcTask:
        """Make a task fail now (no callback: see :meth:`notify`)."""
        task = self.tasks[task_id]
        task.progression.clear()
        task.task_status = TASK_FAILED
        task.code = self.failure[0] if code is None else code
        task.message = self.failure[1] if message is None else message
        return task

    def callback_body(self, task_id: str) -> dict[str, Any]:
        """What a callback for the task says now (the query body plus ``reqid``)."""
        task = self.tasks[task_id]
        return {**task.result().to_json(), "reqid": task.reqid}

    def sign(
        self,
        body: bytes,
        *,
        webhook_id: str,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> dict[str, str]:
        key = secret or self.callback_secret
        if key is None:
            return {}
        return sign_standard(body, key, webhook_id, timestamp)

    async def notify(
        self,
        task_id: str,
        *,
        url: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        webhook_id: str | None = None,
    ) -> CallbackDelivery:
        """POST the task's callback (to its ``callback_url`` unless ``url`` is given), signed
        with ``secret`` (default: the fake's) at ``timestamp`` (default: now). The webhook id is
        stable per task and status, as a redelivery of the same event keeps it."""
        task = self.tasks[task_id]
        target = url or task.callback_url
        if target is None:
            raise ValueError(f"task {task_id} has no callback_url")
        body = json.dumps(self.callback_body(task_id)).encode()
        msg_id = webhook_id or f"msg_{task.task_id}_{task.task_status}"
        headers = self.sign(body, webhook_id=msg_id, timestamp=timestamp, secret=secret)
        return await self.deliver(target, body, headers)

    async def deliver(
        self, url: str, body: bytes | Mapping[str, Any], headers: Mapping[str, str]
    ) -> CallbackDelivery:
        """POST exactly ``body`` with exactly ``headers`` (a tampered, stale or replayed
        delivery, or a callback about a task the fake never made)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            url,
            data=raw,
            headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=10.0),
        ) as response:
            text = await response.text()
            try:
                answer: Any = json.loads(text)
            except ValueError:
                answer = text
            delivery = CallbackDelivery(url, raw, dict(headers), response.status, answer)
        async with self._changed:
            self.callbacks.append(delivery)
            self._changed.notify_all()
        return delivery

    def requests_to(self, route: FakeRoute) -> list[VolcRequest]:
        return [request for request in self.requests if request.route == route]

    async def wait_for_requests(self, route: FakeRoute, count: int, timeout: float = 5.0) -> None:
        """Wait (real time, bounded) until ``route`` received ``count`` requests."""
        await self._wait_until(lambda: len(self.requests_to(route)) >= count, timeout, route)

    async def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> None:
        """Wait (real time, bounded) until ``count`` callbacks were delivered and answered."""
        await self._wait_until(lambda: len(self.callbacks) >= count, timeout, "callbacks")

    async def _wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(check)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{what}: not reached within {timeout} s") from None

    # -- handlers ---------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("submit", request, self._create_task)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("query", request, self._read_task)

    async def _handle(
        self,
        route: FakeRoute,
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
        async with self._changed:
            self.requests.append(
                VolcRequest(
                    route,
                    request.method,
                    request.path,
                    dict(request.query),
                    dict(request.headers),
                    body,
                    describe(outcome),
                )
            )
            self._changed.notify_all()
        return await play(
            outcome,
            request,
            lambda: work(request, body),
            closing=self._closing,
            release=self._release,
            shutting_down=lambda: web.json_response(
                {"code": 50300, "message": "shutting down"}, status=503
            ),
        )

    def _refuse(self, request: web.Request, reqid: Any = None) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer; {self.token}":
            return _error(401, CODE_UNAUTHORIZED, "invalid or missing access token", reqid)
        if request.headers.get("Resource-Id") not in self.resource_ids:
            return _error(403, CODE_FORBIDDEN, "resource not granted", reqid)
        return None

    def _create_task(self, request: web.Request, body: Any) -> web.Response:
        reqid = body.get("reqid") if isinstance(body, dict) else None
        refused = self._refuse(request, reqid)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return _error(400, CODE_BAD_REQUEST, "the body must be a JSON object")
        if body.get("appid") != self.appid:
            return _error(401, CODE_UNAUTHORIZED, "appid does not match the token", reqid)
        if not isinstance(reqid, str) or not reqid:
            return _error(400, CODE_BAD_REQUEST, "reqid is required")
        text, voice = body.get("text"), body.get("voice_type")
        if not isinstance(text, str) or not text:
            return _error(400, CODE_BAD_REQUEST, "text is required", reqid)
        if not isinstance(voice, str) or (self.voices is not None and voice not in self.voices):
            return _error(400, CODE_BAD_REQUEST, f"unsupported voice_type {voice!r}", reqid)
        existing = self._by_reqid.get(reqid)
        if existing is not None:
            task = self.tasks[existing]
        else:
            task = VolcTask(
                self.next_task_id(),
                reqid,
                dict(body),
                request.headers.get(IDEMPOTENCY_HEADER),
                list(self.progression),
            )
            self._next_id += 1
            self.tasks[task.task_id] = task
            self._by_reqid[reqid] = task.task_id
            if self.finish_after is not None:
                self._spawn(self._finish_later(task.task_id, self.finish_after))
        return web.json_response(
            {
                "reqid": reqid,
                "task_id": task.task_id,
                "task_status": TASK_RUNNING,
                "text_length": len(task.text),
            }
        )

    def _read_task(self, request: web.Request, _: Any) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if request.query.get("appid") != self.appid:
            return _error(401, CODE_UNAUTHORIZED, "appid does not match the token")
        task = self.tasks.get(request.query.get("task_id", ""))
        if task is None:
            return _error(404, CODE_NOT_FOUND, "task not found")
        task.polls += 1
        if task.task_status == TASK_RUNNING and task.progression:
            step = task.progression.pop(0)
            if step != TASK_RUNNING:
                self._finish(task.task_id, step)
        return web.json_response(task.result().to_json())

    def _finish(self, task_id: str, status: int) -> None:
        if status == TASK_SUCCEEDED:
            self.complete(task_id)
        else:
            self.fail(task_id)
        task = self.tasks[task_id]
        if self.auto_callback and task.callback_url is not None:
            self._spawn(self._notify_quietly(task_id))

    async def _notify_quietly(self, task_id: str) -> None:
        try:
            await self.notify(task_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.callback_errors.append(f"{task_id}: {type(exc).__name__}: {exc}")

    async def _finish_later(self, task_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.tasks[task_id].task_status == TASK_RUNNING:
            self._finish(task_id, TASK_SUCCEEDED)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _error(http_status: int, code: int, message: str, reqid: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if isinstance(reqid, str):
        body["reqid"] = reqid
    return web.json_response(body, status=http_status)
