"""Volcano Engine async TTS, end to end over loopback: a real Controller on each backend (a SQLite
file, a PostgreSQL schema of the test's own), the real server (``reactive.server.create_app``)
serving the integration's APIs, and the fake provider
(``integrations.providers.volc_tts.fake_server``) speaking the documented wire format.

Completion arrives by the signed callback webhook, the owner's manual query API or the poller;
provider error codes fail the call; transient failures are retried under one idempotency key;
the business value (``Greeting.voice_url``) follows the latest call."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

import reactive as r
from integrations import (
    APICallModel,
    PollPolicy,
    RetryPolicy,
    api_call_entities,
    generate_standard_secret,
    latest_call_value,
    sign_standard,
)
from integrations.providers.volc_tts import VolcTTSIntegration
from integrations.providers.volc_tts.fake_server import (
    CallbackDelivery,
    Drop,
    FakeVolcTTS,
    Hold,
    Reply,
)
from integrations.testing import FakeClock
from reactive.server import create_app
from tests.conftest import StorageFactory

# The contract's request keys ("user_id", "raw_body", "webhook") are strings; aiohttp warns once
# per string key.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

CALL = "VolcTTSCall"
EVENT = "VolcTTSEvent"
OWNER = 7
STRANGER = 8
SECRET = generate_standard_secret()
USER_HEADER = "X-Test-User"
Client = TestClient[web.Request, web.Application]


def audio_url(call: dict[str, Any]) -> Any:
    return (call["response_data"] or {}).get("audio_url")


@attrs.frozen
class Model:
    api: APICallModel
    greeting: r.Entity
    relation: r.Relation


def build_model() -> Model:
    api = api_call_entities(CALL, EVENT)
    greeting = r.Entity(
        "Greeting",
        [
            r.Property("text"),
            r.Property(
                "voice_url",
                computation=latest_call_value("Greeting", "tts_calls", api.call, audio_url),
            ),
        ],
    )
    relation = r.Relation(greeting, "tts_calls", api.call, "greeting", "1:n")
    return Model(api, greeting, relation)


@web.middleware
async def header_user(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Test authentication: the user id is the X-Test-User header."""
    user = request.headers.get(USER_HEADER)
    if user is not None:
        request["user_id"] = int(user)
    return await handler(request)


def key_of(call_id: Any) -> str:
    """The idempotency key the runner gives a call's submission."""
    return f"volc_tts.submit:{CALL}:{call_id}"


@attrs.define
class Harness:
    """The fake provider, the controller, the integration and a client of the served app."""

    fake: FakeVolcTTS
    controller: r.Controller
    integration: VolcTTSIntegration
    client: Client

    @property
    def callback_url(self) -> str:
        return str(self.client.make_url("/api/volc_tts.callback"))

    async def greeting(self, text: str = "hello", **params: Any) -> tuple[Any, Any]:
        """A Greeting with one TTS call owned by OWNER; returns (greeting id, call id)."""
        row = await self.controller.storage.create(
            "Greeting",
            {
                "text": text,
                "tts_calls": [{"request_params": {"text": text, **params}, "owner_id": OWNER}],
            },
        )
        return row["id"], row["tts_calls"][0]["id"]

    async def another_call(self, greeting_id: Any, text: str = "again") -> Any:
        row = await self.controller.storage.create(
            CALL,
            {
                "request_params": {"text": text},
                "owner_id": OWNER,
                "greeting": {"id": greeting_id},
            },
        )
        return row["id"]

    async def call(self, call_id: Any) -> dict[str, Any]:
        row = await self.controller.storage.find_one(CALL, {"id": call_id}, ["*"])
        assert row is not None
        return row

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        match = None if kind is None else {"event_type": kind}
        return list(await self.controller.storage.find(EVENT, match, ["*"], order_by={"id": "asc"}))

    async def kinds(self) -> list[str]:
        return [e["event_type"] for e in await self.events()]

    async def voice_url(self, greeting_id: Any) -> Any:
        row = await self.controller.storage.find_one("Greeting", {"id": greeting_id}, ["voice_url"])
        assert row is not None
        return row["voice_url"]

    async def until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        give_up = asyncio.get_running_loop().time() + 10.0
        while not await check():
            if asyncio.get_running_loop().time() > give_up:
                raise TimeoutError(f"{what} did not happen")
            await asyncio.sleep(0.005)

    async def initialized(self, call_id: Any) -> str:
        """Wait for the call's initialized event; returns its external (task) id."""

        async def known() -> bool:
            return (await self.call(call_id))["external_id"] is not None

        await self.until(known, f"call {call_id} initialized")
        return str((await self.call(call_id))["external_id"])

    async def settled(self, call_id: Any) -> dict[str, Any]:
        async def done() -> bool:
            return (await self.call(call_id))["status"] in ("completed", "failed")

        await self.until(done, f"call {call_id} finishing")
        return await self.call(call_id)

    async def query(self, call_id: Any, user: int | None = OWNER) -> tuple[int, Any]:
        headers = {} if user is None else {USER_HEADER: str(user)}
        response = await self.client.post(
            "/api/volc_tts.query", json={"call_id": call_id}, headers=headers
        )
        return response.status, await response.json()


class MakeHarness(Protocol):
    def __call__(
        self, fake: dict[str, Any] | None = None, **options: Any
    ) -> Awaitable[Harness]: ...


@pytest.fixture
async def make_harness(make_storage: StorageFactory) -> AsyncIterator[MakeHarness]:
    """``await make_harness(fake={FakeVolcTTS options}, **VolcTTSIntegration options)``; the
    environment comes from the fake unless ``environ`` is given. Retries back off 10 ms at
    most and the sweeper sleeps a day unless told otherwise."""
    made: list[Harness] = []

    async def factory(fake: dict[str, Any] | None = None, **options: Any) -> Harness:
        server = await FakeVolcTTS(**{"callback_secret": SECRET, **(fake or {})}).start()
        model = build_model()
        options.setdefault("environ", server.environ())
        options.setdefault("sweep_interval", 86_400.0)
        options.setdefault("retry", RetryPolicy(base=0.01, cap=0.01, attempt_timeout=5.0))
        integration = VolcTTSIntegration(model.api, **options)
        await integration.configure()
        controller = r.Controller(
            make_storage(f"app{len(made)}.db"),
            [model.greeting, model.api.call, model.api.event],
            [model.relation],
            side_effects=integration.create_side_effects(),
        )
        await controller.setup()
        await integration.setup(controller)
        app = create_app(controller, integration.create_apis(), middlewares=[header_user])
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        harness = Harness(server, controller, integration, client)
        integration.callback_url = harness.callback_url
        made.append(harness)
        return harness

    yield factory
    for harness in reversed(made):
        await harness.client.close()
        await harness.integration.close()
        await harness.controller.close()
        await harness.fake.close()


def assert_refused(delivery: CallbackDelivery, reason: str) -> None:
    assert delivery.status == 400, delivery
    assert delivery.answer["error"]["code"] == "invalid_signature"
    assert delivery.answer["error"]["message"].startswith(f"{reason}:")


# -- submission -------------------------------------------------------------------------------


async def test_submit_initializes_the_call_with_the_task_id(make_harness: MakeHarness) -> None:
    h = await make_harness()
    _, call_id = await h.greeting("hello there", voice_type="BV001_streaming", sample_rate=24000)

    task_id = await h.initialized(call_id)

    call = await h.call(call_id)
    assert call["status"] == "pending"
    assert task_id == "volc-task-1" and task_id in h.fake.tasks
    assert await h.kinds() == ["attempt", "initialized"]
    [request] = h.fake.requests_to("submit")
    assert request.body == {
        "appid": "fake-appid",
        "reqid": key_of(call_id),
        "text": "hello there",
        "voice_type": "BV001_streaming",
        "format": "mp3",
        "sample_rate": 24000,
        "callback_url": h.callback_url,
    }
    assert request.header("Authorization") == "Bearer; fake-token"
    assert request.header("Resource-Id") == "volc.tts_async.default"


async def test_the_idempotency_key_reaches_the_provider(make_harness: MakeHarness) -> None:
    h = await make_harness()
    made = [await h.greeting(f"text {n}") for n in range(3)]
    for _, call_id in made:
        await h.initialized(call_id)

    by_text = {req.body["text"]: req for req in h.fake.requests_to("submit")}
    for n, (_, call_id) in enumerate(made):
        request = by_text[f"text {n}"]
        assert request.idempotency_key == key_of(call_id)
        assert request.body["reqid"] == key_of(call_id)
        task = h.fake.task_for_reqid(key_of(call_id))
        assert task is not None and (await h.call(call_id))["external_id"] == task.task_id
    attempts = await h.events("attempt")
    assert sorted(e["data"]["idempotency_key"] for e in attempts) == sorted(
        key_of(c) for _, c in made
    )


async def test_transient_failures_are_retried_under_one_key(make_harness: MakeHarness) -> None:
    h = await make_harness(retry=RetryPolicy(base=0.01, cap=0.01, max_attempts=8))
    h.fake.script(
        "submit",
        Reply(503, {"code": 50300, "message": "busy"}),
        Reply(500, "oops"),
        Reply.rate_limited(0),
        Reply(200, {"code": 50000, "message": "internal error"}),  # a transient provider code
        Drop(process=True),  # the task is made, the answer lost: the retry finds it by reqid
    )
    greeting_id, call_id = await h.greeting()

    task_id = await h.initialized(call_id)

    attempts = [e["data"] for e in await h.events("attempt")]
    assert [a["outcome"] for a in attempts] == ["transient"] * 5 + ["ok"]
    assert [a["error"].get("status") for a in attempts[:3]] == [503, 500, 429]
    assert "50000" in attempts[3]["error"]["message"]
    requests = h.fake.requests_to("submit")
    assert len(requests) == 6
    assert {req.idempotency_key for req in requests} == {key_of(call_id)}
    assert {req.body["reqid"] for req in requests} == {key_of(call_id)}
    assert list(h.fake.tasks) == [task_id]  # the provider made one task

    h.fake.complete(task_id)
    delivery = await h.fake.notify(task_id)
    assert delivery.status == 200
    call = await h.call(call_id)
    assert call["status"] == "completed"
    assert await h.voice_url(greeting_id) == h.fake.tasks[task_id].audio_url


@pytest.mark.parametrize(
    ("script", "params", "code", "http_status"),
    [
        (None, {"voice_type": "no_such_voice"}, 40000, 400),
        (Reply(200, {"code": 40300, "message": "quota exceeded"}), {}, 40300, 200),
        (Reply(401, {"code": 40100, "message": "invalid token"}), {}, 40100, 401),
    ],
    ids=["bad voice (400)", "quota (200 with code)", "unauthorized (401)"],
)
async def test_provider_error_codes_fail_the_call(
    make_harness: MakeHarness,
    script: Reply | None,
    params: dict[str, Any],
    code: int,
    http_status: int,
) -> None:
    h = await make_harness(fake={"voices": ["BV700_streaming"]})
    if script is not None:
        h.fake.script("submit", script)
    greeting_id, call_id = await h.greeting(**params)

    call = await h.settled(call_id)

    assert call["status"] == "failed"
    assert call["external_id"] is None
    assert call["error"]["type"] == "VolcTTSRejected"
    assert str(code) in call["error"]["message"]
    assert call["error"]["status"] == http_status
    assert len(h.fake.requests_to("submit")) == 1  # permanent: not retried
    assert h.fake.tasks == {}
    assert await h.kinds() == ["attempt", "failed"]
    assert await h.voice_url(greeting_id) is None


async def test_wrong_credentials_fail_the_call(make_harness: MakeHarness) -> None:
    h = await make_harness()
    h.integration.environ = {**h.fake.environ(), "VOLC_TTS_TOKEN": "stolen"}
    _, call_id = await h.greeting()

    call = await h.settled(call_id)

    assert call["status"] == "failed"
    assert "40100" in call["error"]["message"] and call["error"]["status"] == 401


async def test_bad_request_params_fail_without_calling_the_provider(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    row = await h.controller.storage.create(
        CALL, {"request_params": {"voice_type": "BV700_streaming"}, "owner_id": OWNER}
    )

    call = await h.settled(row["id"])

    assert call["status"] == "failed"
    assert call["error"]["type"] == "PermanentError"
    assert "text" in call["error"]["message"]
    assert h.fake.requests == []


# -- completion by the signed callback ---------------------------------------------------------


async def test_a_signed_callback_completes_the_call(make_harness: MakeHarness) -> None:
    h = await make_harness()
    greeting_id, call_id = await h.greeting("hello")
    task_id = await h.initialized(call_id)
    h.fake.complete(task_id)

    delivery = await h.fake.notify(task_id)

    assert delivery.status == 200
    assert delivery.answer == {
        "received": True,
        "task_id": task_id,
        "event": "completed",
        "outcome": "stored",
    }
    call = await h.call(call_id)
    task = h.fake.tasks[task_id]
    assert call["status"] == "completed"
    assert call["completed_at"] is not None
    assert call["response_data"] == {
        "task_id": task_id,
        "audio_url": task.audio_url,
        "url_expire_time": task.url_expire_time,
        "text_length": 5,
        "duration_ms": 500,
    }
    assert await h.voice_url(greeting_id) == task.audio_url
    assert await h.kinds() == ["attempt", "initialized", "completed"]
    [completed] = await h.events("completed")
    assert completed["dedup_key"] == f"volc_tts:{task_id}:completed"


async def test_the_provider_finishes_and_calls_back_on_its_own(make_harness: MakeHarness) -> None:
    h = await make_harness(fake={"finish_after": 0.05})
    greeting_id, call_id = await h.greeting()

    call = await h.settled(call_id)

    assert call["status"] == "completed"
    await h.fake.wait_for_callbacks(1)  # the app answered before the fake recorded it
    [delivery] = h.fake.callbacks
    assert delivery.url == h.callback_url and delivery.status == 200
    assert set(delivery.headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert await h.voice_url(greeting_id) == audio_url(call)


async def test_a_failed_task_callback_fails_the_call(make_harness: MakeHarness) -> None:
    h = await make_harness()
    greeting_id, call_id = await h.greeting()
    task_id = await h.initialized(call_id)
    h.fake.fail(task_id, 50001, "text contains unsupported characters")

    delivery = await h.fake.notify(task_id)

    assert delivery.status == 200 and delivery.answer["event"] == "failed"
    call = await h.call(call_id)
    assert call["status"] == "failed"
    assert call["error"] == {
        "code": 50001,
        "message": "text contains unsupported characters",
        "task_id": task_id,
    }
    assert await h.voice_url(greeting_id) is None


async def test_bad_and_stale_signatures_are_refused_and_nothing_is_written(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    _, call_id = await h.greeting()
    task_id = await h.initialized(call_id)
    h.fake.complete(task_id)
    before = await h.events()
    url = h.callback_url
    body = json.dumps(h.fake.callback_body(task_id)).encode()

    wrong_secret = await h.fake.notify(task_id, secret=generate_standard_secret())
    assert_refused(wrong_secret, "bad_signature")
    tampered = body.replace(b"tts.invalid", b"evil.invalid")
    signed_original = h.fake.sign(body, webhook_id="msg_tampered")
    assert_refused(await h.fake.deliver(url, tampered, signed_original), "bad_signature")
    stale = await h.fake.notify(task_id, timestamp=int(time.time()) - 3600)
    assert_refused(stale, "stale_timestamp")
    future = await h.fake.notify(task_id, timestamp=int(time.time()) + 3600)
    assert_refused(future, "future_timestamp")
    assert_refused(await h.fake.deliver(url, body, {}), "missing_header")

    assert await h.events() == before
    assert (await h.call(call_id))["status"] == "pending"


async def test_a_replayed_delivery_is_refused_and_a_redelivery_is_a_duplicate(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    greeting_id, call_id = await h.greeting()
    task_id = await h.initialized(call_id)
    h.fake.complete(task_id)
    first = await h.fake.notify(task_id)
    assert first.status == 200 and first.answer["outcome"] == "stored"

    replay = await h.fake.deliver(first.url, first.body, first.headers)
    assert_refused(replay, "replayed")
    # The provider retrying the same event (same webhook-id), signed afresh.
    again = await h.fake.notify(task_id, timestamp=int(time.time()) - 10)
    assert again.status == 200 and again.answer["outcome"] == "duplicate"

    assert len(await h.events("completed")) == 1
    call = await h.call(call_id)
    assert call["status"] == "completed"
    assert await h.voice_url(greeting_id) == h.fake.tasks[task_id].audio_url


async def test_a_callback_for_an_unknown_task_is_parked_then_applied(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    h.fake.script("submit", Hold())  # the provider is slow to answer the submission ...
    greeting_id, call_id = await h.greeting()
    await h.fake.wait_for_requests("submit", 1)
    task_id = h.fake.next_task_id()
    early_url = "https://tts.invalid/audio/early.mp3"
    body = json.dumps(
        {
            "task_id": task_id,
            "task_status": 1,
            "text_length": 5,
            "audio_url": early_url,
            "url_expire_time": int(time.time()) + 3600,
            "sentences": [],
            "reqid": key_of(call_id),
        }
    ).encode()

    # ... and its callback arrives first.
    early = await h.fake.deliver(h.callback_url, body, h.fake.sign(body, webhook_id="msg_early"))

    assert early.status == 200 and early.answer["outcome"] == "stored"
    call = await h.call(call_id)
    assert call["status"] == "pending" and call["external_id"] is None
    [parked] = await h.events("completed")
    assert parked["external_id"] == task_id and parked["entity_id"] is None

    h.fake.release()
    call = await h.settled(call_id)

    assert call["status"] == "completed"
    assert call["external_id"] == task_id
    assert audio_url(call) == early_url
    assert await h.voice_url(greeting_id) == early_url
    assert len(await h.events("completed")) == 1


async def test_a_signed_callback_that_is_not_a_task_is_refused(make_harness: MakeHarness) -> None:
    h = await make_harness()
    body = json.dumps({"hello": "world"}).encode()
    delivery = await h.fake.deliver(h.callback_url, body, h.fake.sign(body, webhook_id="msg_x"))
    assert delivery.status == 400
    assert delivery.answer["error"]["code"] == "invalid_payload"
    assert await h.events() == []


# -- completion by the manual query API --------------------------------------------------------


async def test_the_owner_refreshes_the_call_with_the_query_api(make_harness: MakeHarness) -> None:
    # The task runs at the first query and succeeds at the second; no automatic callback.
    h = await make_harness(fake={"auto_callback": False})
    greeting_id, call_id = await h.greeting()
    task_id = await h.initialized(call_id)

    assert (await h.query(call_id, user=None))[0] == 401
    status, answer = await h.query(call_id, user=STRANGER)
    assert status == 404 and answer["error"]["code"] == "not_found"
    assert h.fake.requests_to("query") == []  # nobody else can make us ask the provider

    status, answer = await h.query(call_id)
    assert status == 200 and answer["status"] == "processing"
    status, answer = await h.query(call_id)
    assert status == 200 and answer["status"] == "completed"
    assert answer["response_data"]["audio_url"] == h.fake.tasks[task_id].audio_url
    status, answer = await h.query(call_id)  # terminal: answered from the database
    assert status == 200 and answer["status"] == "completed"

    [request, _] = h.fake.requests_to("query")
    assert request.query == {"appid": "fake-appid", "task_id": task_id}
    assert await h.voice_url(greeting_id) == h.fake.tasks[task_id].audio_url
    # The provider's callback for the same completion arrives later: stored once.
    late = await h.fake.notify(task_id)
    assert late.status == 200 and late.answer["outcome"] == "duplicate"
    assert await h.kinds() == ["attempt", "initialized", "processing", "completed"]


async def test_the_query_api_reports_provider_errors(make_harness: MakeHarness) -> None:
    h = await make_harness()
    _, call_id = await h.greeting()
    await h.initialized(call_id)
    h.fake.script("query", Reply(404, {"code": 40400, "message": "task not found"}))

    status, answer = await h.query(call_id)

    assert status == 502 and answer["error"]["code"] == "provider_error"
    assert "40400" in answer["error"]["message"]
    assert (await h.call(call_id))["status"] == "pending"


# -- completion by the poller ------------------------------------------------------------------


async def test_the_poller_completes_the_call(make_harness: MakeHarness) -> None:
    clock = FakeClock()
    h = await make_harness(
        fake={"progression": [0, 0, 1], "auto_callback": False},
        poll=PollPolicy(initial=1.0, factor=2.0),
        clock=clock,
    )
    h.fake.script("query", Reply(502, "bad gateway"))  # a transient failure is polled again
    greeting_id, call_id = await h.greeting()
    await h.initialized(call_id)

    async def done() -> bool:
        return bool((await h.call(call_id))["status"] == "completed")

    give_up = asyncio.get_running_loop().time() + 10.0
    while not await done():
        assert asyncio.get_running_loop().time() < give_up, "the poller did not finish"
        if clock.sleepers > 1:  # the sweeper always sleeps
            clock.advance_to_next()
        await asyncio.sleep(0.002)

    assert len(h.fake.requests_to("query")) == 4
    assert [s for s in clock.sleeps if s != 86_400.0] == [1.0, 2.0, 4.0, 8.0]
    assert await h.kinds() == ["attempt", "initialized", "processing", "completed"]
    call = await h.call(call_id)
    assert await h.voice_url(greeting_id) == audio_url(call)
    assert h.fake.callbacks == []


async def test_the_poller_fails_the_call_when_the_task_fails(make_harness: MakeHarness) -> None:
    clock = FakeClock()
    h = await make_harness(
        fake={"progression": [2], "auto_callback": False, "failure": (50002, "voice offline")},
        poll=PollPolicy(initial=1.0),
        clock=clock,
    )
    _, call_id = await h.greeting()
    await h.initialized(call_id)
    await clock.wait_for_sleepers(2)
    clock.advance_to_next()

    call = await h.settled(call_id)

    assert call["status"] == "failed"
    assert call["error"]["code"] == 50002 and call["error"]["message"] == "voice offline"


# -- the business value ------------------------------------------------------------------------


async def test_the_business_value_follows_the_latest_call(make_harness: MakeHarness) -> None:
    h = await make_harness()
    greeting_id, first = await h.greeting("first")
    first_task = await h.initialized(first)
    second = await h.another_call(greeting_id, "second")
    second_task = await h.initialized(second)

    h.fake.complete(second_task)
    await h.fake.notify(second_task)
    assert await h.voice_url(greeting_id) == h.fake.tasks[second_task].audio_url
    h.fake.complete(first_task)  # the older call finishing late does not overwrite it
    await h.fake.notify(first_task)

    assert (await h.call(first))["status"] == "completed"
    assert await h.voice_url(greeting_id) == h.fake.tasks[second_task].audio_url


# -- configuration -----------------------------------------------------------------------------


async def test_without_a_callback_secret_there_is_no_callback(make_harness: MakeHarness) -> None:
    h = await make_harness(fake={"callback_secret": None})
    assert "volc_tts.callback" not in h.integration.create_apis()
    _, call_id = await h.greeting()
    await h.initialized(call_id)
    [request] = h.fake.requests_to("submit")
    assert "callback_url" not in request.body
    body = b'{"task_id": "volc-task-1", "task_status": 1, "audio_url": "x"}'
    headers = sign_standard(body, SECRET, "msg_1")
    response = await h.client.post("/api/volc_tts.callback", data=body, headers=headers)
    assert response.status == 404
