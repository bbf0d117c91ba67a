"""OpenAI-compatible translation end to end over loopback: the ``Translate`` interaction posted to
the real server (``reactive.server.create_app``) creates a Document and its TranslationCall on
each backend (a SQLite file, a PostgreSQL schema of the test's own); the integration calls the
fake chat-completions server through the official ``openai`` SDK; the fold and
``latest_call_value`` give the Document its translation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

import reactive as r
from integrations import (
    MissingEnvironmentError,
    PermanentError,
    RetryPolicy,
    TransientError,
    api_call_entities,
    latest_call_value,
)
from integrations.providers.openai_translate import (
    OpenAIHTTPError,
    OpenAITranslateIntegration,
    TranslateAPI,
    TranslationParams,
)
from integrations.providers.openai_translate.api import retry_after_of
from integrations.providers.openai_translate.fake_server import (
    ChatRequest,
    Delay,
    Drop,
    FakeOpenAI,
    bad_request,
    rate_limited,
    server_error,
)
from integrations.testing import FakeClock
from tests.conftest import StorageFactory

CALL = "TranslationCall"
EVENT = "TranslationEvent"
USER = 7
MODEL = "gpt-test-mini"
WORDS = {"hello": "bonjour", "thank you": "merci"}

Client = TestClient[web.Request, web.Application]


def translator(request: ChatRequest) -> str:
    return WORDS.get(request.user_text.lower(), f"[fr] {request.user_text}")


def _document_from(event: dict[str, Any]) -> dict[str, Any] | None:
    if event["interaction_name"] != "Translate":
        return None
    payload = event["payload"]
    params = {k: payload[k] for k in ("text", "target") if payload.get(k) is not None}
    return {
        "text": payload["text"],
        "interaction_id": event["id"],
        "translations": [{"request_params": params, "owner_id": event["user"]["id"]}],
    }


# The contract has an application's middleware put the user on request["user_id"], a str key
# aiohttp warns about once per process (as any application following the contract sees).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@web.middleware
async def user_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tests only: the user is whoever ``X-User`` says."""
    user = request.headers.get("X-User")
    if user:
        request["user_id"] = int(user)
    return await handler(request)


@attrs.define
class App:
    controller: r.Controller
    integration: OpenAITranslateIntegration
    client: Client
    fake: FakeOpenAI

    async def translate(self, text: str, target: str = "French") -> Any:
        """Dispatch ``Translate`` over HTTP; returns the new Document's id."""
        response = await self.client.post(
            "/interaction/Translate",
            json={"payload": {"text": text, "target": target}},
            headers={"X-User": str(USER)},
        )
        assert response.status == 200, await response.text()
        return (await response.json())["data"]["id"]

    async def call_of(self, document_id: Any) -> dict[str, Any]:
        found = await self.controller.storage.find(
            "Document", {"id": document_id}, [("translations", ["id"])]
        )
        call_id = found[0]["translations"][0]["id"]
        call = await self.controller.storage.find_one(CALL, {"id": call_id}, ["*"])
        assert call is not None
        return call

    async def settled(self, document_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            call = await self.call_of(document_id)
            if call["status"] in ("completed", "failed"):
                return call
            if loop.time() > give_up:
                raise TimeoutError(f"call {call['id']} still {call['status']}")
            await asyncio.sleep(0.005)

    async def document(self, document_id: Any) -> dict[str, Any]:
        row = await self.controller.storage.find_one("Document", {"id": document_id}, ["*"])
        assert row is not None
        return row

    async def events(self, call: dict[str, Any]) -> list[str]:
        rows = await self.controller.storage.find(EVENT, None, ["*"], order_by={"id": "asc"})
        return [
            e["event_type"]
            for e in rows
            if e["entity_id"] == call["id"]
            or (call["external_id"] is not None and e["external_id"] == call["external_id"])
        ]


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(make_storage: StorageFactory) -> AsyncIterator[MakeApp]:
    opened: list[App] = []

    async def factory(
        *, env: dict[str, str] | None = None, fake: FakeOpenAI | None = None, **options: Any
    ) -> App:
        fake = fake or FakeOpenAI(translate=translator)
        await fake.start()
        api = api_call_entities(CALL, EVENT)
        document = r.Entity(
            "Document",
            [
                r.Property("text"),
                r.Property("interaction_id", "number", index=True),
                r.Property(
                    "translated",
                    computation=latest_call_value(
                        "Document",
                        "translations",
                        api.call,
                        lambda call: (call["response_data"] or {}).get("text"),
                    ),
                ),
            ],
            computation=r.Transform(r.INTERACTION_EVENT, _document_from),
        )
        relation = r.Relation(document, "translations", api.call, "document", "1:n")
        interaction = r.Interaction(
            "Translate",
            r.Payload([r.PayloadItem("text", required=True), r.PayloadItem("target")]),
            resolve=lambda event, ctx: ctx.storage.find_one(
                "Document", {"interaction_id": event["id"]}, ["id"]
            ),
        )
        options.setdefault("retry", RetryPolicy(base=0.01, cap=0.05, attempt_timeout=5.0))
        options.setdefault("sweep_interval", 86_400.0)
        environ = {
            "OPENAI_API_KEY": fake.api_key or "sk-any",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_MODEL": MODEL,
            **(env or {}),
        }
        integration = OpenAITranslateIntegration(api, environ=environ, **options)
        await integration.configure()
        controller = r.Controller(
            make_storage(f"app{len(opened)}.db"),
            [document, *api],
            [relation],
            interactions=[interaction],
            side_effects=integration.create_side_effects(),
        )
        await controller.setup()
        await integration.setup(controller)
        server_app = r.create_app(controller, integration.create_apis(), [user_header])
        client: Client = TestClient(TestServer(server_app, host="127.0.0.1"))
        await client.start_server()
        app = App(controller, integration, client, fake)
        opened.append(app)
        return app

    yield factory
    for app in reversed(opened):
        await app.client.close()
        await app.integration.close()
        await app.controller.close()
        await app.fake.close()


# -- success ---------------------------------------------------------------------------------


async def test_translation_completes_with_the_unified_sequence(make_app: MakeApp) -> None:
    app = await make_app()
    document_id = await app.translate("Hello")
    call = await app.settled(document_id)

    assert call["status"] == "completed"
    assert call["response_data"] == {"text": "bonjour", "model": MODEL}
    assert call["error"] is None and call["completed_at"] is not None
    assert await app.events(call) == ["attempt", "initialized", "processing", "completed"]
    assert call["call_state"]["attempts"] == 1
    assert (await app.document(document_id))["translated"] == "bonjour"

    [request] = app.fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.header("Authorization") == f"Bearer {app.fake.api_key}"
    assert request.idempotency_key == f"openai_translate.submit:{CALL}:{call['id']}"
    assert request.body["model"] == MODEL
    system, user = request.body["messages"]
    assert system["role"] == "system" and "French" in system["content"]
    assert user == {"role": "user", "content": "Hello"}


async def test_each_call_carries_its_own_idempotency_key(make_app: MakeApp) -> None:
    app = await make_app()
    first = await app.settled(await app.translate("Hello"))
    second = await app.settled(await app.translate("Thank you", "French"))
    assert [r.idempotency_key for r in app.fake.requests] == [
        f"openai_translate.submit:{CALL}:{first['id']}",
        f"openai_translate.submit:{CALL}:{second['id']}",
    ]
    assert second["response_data"]["text"] == "merci"
    assert first["external_id"] != second["external_id"]


async def test_query_api_returns_the_finished_call(make_app: MakeApp) -> None:
    app = await make_app()
    call = await app.settled(await app.translate("Hello"))
    response = await app.client.post(
        "/api/openai_translate.query", json={"call_id": call["id"]}, headers={"X-User": str(USER)}
    )
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "completed" and body["response_data"]["text"] == "bonjour"
    other = await app.client.post(
        "/api/openai_translate.query", json={"call_id": call["id"]}, headers={"X-User": "99"}
    )
    assert other.status == 404
    assert len(app.fake.requests) == 1  # a synchronous call is never re-asked


# -- transient failures are retried -----------------------------------------------------------


async def test_rate_limited_then_success_honours_retry_after_ms(make_app: MakeApp) -> None:
    app = await make_app()
    app.fake.script(rate_limited(retry_after_ms=80))
    call = await app.settled(await app.translate("Hello"))

    assert call["status"] == "completed"
    assert call["response_data"]["text"] == "bonjour"
    assert call["call_state"]["attempts"] == 2
    assert [r.outcome for r in app.fake.requests] == ["reply 429", "handled"]
    keys = {r.idempotency_key for r in app.fake.requests}
    assert keys == {f"openai_translate.submit:{CALL}:{call['id']}"}
    attempts = await app.controller.storage.find(
        EVENT, {"event_type": "attempt"}, ["data"], order_by={"id": "asc"}
    )
    first = attempts[0]["data"]
    assert first["outcome"] == "transient" and first["error"]["status"] == 429


async def test_retry_after_header_sets_the_wait(make_app: MakeApp) -> None:
    clock = FakeClock()
    app = await make_app(clock=clock, retry=RetryPolicy(base=5.0, attempt_timeout=5.0))
    app.fake.script(rate_limited(retry_after=3))
    document_id = await app.translate("Hello")
    await clock.wait_for_sleepers(2)  # the sweeper and the retry
    assert sorted(clock.pending_sleeps) == [3.0, 86_400.0]
    clock.advance(3.0)
    call = await app.settled(document_id)
    assert call["status"] == "completed"
    assert 3.0 in clock.sleeps and len(app.fake.requests) == 2


async def test_server_errors_timeouts_and_dropped_connections_are_retried(
    make_app: MakeApp,
) -> None:
    app = await make_app(request_timeout=0.3)
    app.fake.script(server_error(500), server_error(503), Delay(2.0), Drop())
    call = await app.settled(await app.translate("Hello"))
    assert call["status"] == "completed"
    assert call["call_state"]["attempts"] == 5
    assert [r.outcome for r in app.fake.requests] == [
        "reply 500",
        "reply 503",
        "delay",
        "drop",
        "handled",
    ]


async def test_gives_up_after_max_attempts(make_app: MakeApp) -> None:
    app = await make_app(retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.02))
    app.fake.script(*[server_error()] * 3)
    document_id = await app.translate("Hello")
    call = await app.settled(document_id)
    assert call["status"] == "failed"
    assert call["error"]["status"] == 500
    assert call["call_state"]["attempts"] == 3 and len(app.fake.requests) == 3
    assert (await app.document(document_id))["translated"] is None


# -- permanent failures fail at once ------------------------------------------------------------


async def test_bad_request_fails_at_once(make_app: MakeApp) -> None:
    app = await make_app()
    app.fake.script(bad_request("Unsupported language", param="messages"))
    call = await app.settled(await app.translate("Hello"))

    assert call["status"] == "failed"
    assert call["error"]["type"] == "OpenAIHTTPError" and call["error"]["status"] == 400
    assert "Unsupported language" in call["error"]["message"]
    assert call["call_state"]["attempts"] == 1
    assert len(app.fake.requests) == 1
    assert await app.events(call) == ["attempt", "failed"]


async def test_wrong_api_key_fails_at_once(make_app: MakeApp) -> None:
    fake = FakeOpenAI(api_key="sk-right")
    app = await make_app(fake=fake, env={"OPENAI_API_KEY": "sk-wrong"})
    call = await app.settled(await app.translate("Hello"))
    assert call["status"] == "failed" and call["error"]["status"] == 401
    assert len(fake.requests) == 1


async def test_unusable_answers_fail_the_call(make_app: MakeApp) -> None:
    app = await make_app(fake=FakeOpenAI(finish_reason="length"))
    call = await app.settled(await app.translate("Hello"))
    assert call["status"] == "failed"
    assert call["error"]["type"] == "PermanentError" and "length" in call["error"]["message"]
    assert len(app.fake.requests) == 1


async def test_bad_params_fail_without_a_request(make_app: MakeApp) -> None:
    app = await make_app()
    response = await app.client.post(
        "/interaction/Translate",
        json={"payload": {"text": "Hello"}},  # no target
        headers={"X-User": str(USER)},
    )
    assert response.status == 200
    call = await app.settled((await response.json())["data"]["id"])
    assert call["status"] == "failed" and "target" in call["error"]["message"]
    assert app.fake.requests == []


# -- units ---------------------------------------------------------------------------------------


async def test_missing_api_key_refuses_to_start() -> None:
    integration = OpenAITranslateIntegration(api_call_entities(CALL, EVENT), environ={})
    with pytest.raises(MissingEnvironmentError) as raised:
        await integration.configure()
    assert "OPENAI_API_KEY" in str(raised.value)
    assert [v.name for v in integration.env_vars] == [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
    ]
    assert all(v.purpose and v.obtain_from for v in integration.env_vars)


def test_params_are_checked() -> None:
    assert TranslationParams.parse({"text": "hi", "target": " German "}).target == "German"
    cases: list[Any] = [
        None,
        [],
        {"text": "", "target": "x"},
        {"text": "a"},
        {"text": "a", "to": "b"},
    ]
    for bad in cases:
        with pytest.raises(PermanentError):
            TranslationParams.parse(bad)


def test_retry_after_forms() -> None:
    assert retry_after_of({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert retry_after_of({"Retry-After": "2"}) == 2.0
    assert retry_after_of({"Retry-After": "0.5"}) == 0.5
    assert retry_after_of({}) is None


async def test_api_maps_sdk_errors() -> None:
    async with FakeOpenAI() as fake:
        api = TranslateAPI(api_key="sk-test-fake", base_url=fake.base_url, model=MODEL)
        try:
            fake.script(rate_limited(retry_after=4), bad_request(), server_error(502))
            with pytest.raises(OpenAIHTTPError) as limited:
                await api.translate("hi", "French")
            assert limited.value.transient and limited.value.retry_after == 4.0
            assert limited.value.error_code == "rate_limit_exceeded"
            with pytest.raises(OpenAIHTTPError) as bad:
                await api.translate("hi", "French")
            assert not bad.value.transient and bad.value.status == 400
            with pytest.raises(OpenAIHTTPError) as gateway:
                await api.translate("hi", "French")
            assert gateway.value.transient
            ok = await api.translate("hi", "French", source="English", idempotency_key="k-1")
            assert ok.text == "[translated] hi" and ok.finish_reason == "stop"
            assert ok.usage is not None and ok.usage.total_tokens > 0
            assert fake.requests[-1].idempotency_key == "k-1"
            assert "from English" in fake.requests[-1].body["messages"][0]["content"]
        finally:
            await api.close()
        closed = TranslateAPI(api_key="k", base_url=fake.base_url, timeout=1.0)
    try:
        with pytest.raises(TransientError):  # the server is gone: a connection error
            await closed.translate("hi", "French")
    finally:
        await closed.close()
