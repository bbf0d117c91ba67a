"""``webhook_api`` over real HTTP on loopback with a real Controller: verification before any
write, JSON errors, events written with the provider's event id as dedup key, replays refused,
redeliveries acknowledged and stored once, and a failed handler not poisoning the retry."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

import reactive as r
from integrations import (
    IntegrationEvents,
    StandardWebhookVerifier,
    StripeVerifier,
    VerifiedWebhook,
    generate_standard_secret,
    sign_standard,
    sign_stripe,
    webhook_api,
)

from .app import CALL, EVENT
from .conftest import Client, Serve

# The contract's request keys ("user_id", "raw_body", "webhook") are strings; aiohttp warns once
# per string key (and is silent outside pytest).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

SECRET = "whsec_endpoint_secret_for_tests_0123456789"
STD_SECRET = generate_standard_secret()


def event(event_id: str, external_id: str = "pi_1", kind: str = "succeeded") -> bytes:
    """A Stripe-shaped event body."""
    return json.dumps(
        {
            "id": event_id,
            "type": f"payment_intent.{kind}",
            "data": {"object": {"id": external_id, "amount": 500}},
        }
    ).encode()


async def handle_stripe(payload: Any, ctx: r.APIContext) -> Any:
    """Maps a Stripe event to an integration event; the Stripe event id is the dedup key."""
    events = IntegrationEvents(ctx.controller, EVENT)
    obj = payload["data"]["object"]
    key = f"stripe:{payload['id']}"
    if payload["type"] == "payment_intent.succeeded":
        written = await events.completed(obj["id"], obj, dedup_key=key)
    elif payload["type"] == "payment_intent.payment_failed":
        written = await events.failed(obj["id"], "declined", dedup_key=key)
    else:
        return {"received": True, "ignored": payload["type"]}
    return {"received": True, "outcome": written.outcome}


async def handle_standard(payload: Any, ctx: r.APIContext) -> Any:
    """Standard Webhooks: the webhook-id is the event's idempotency key."""
    verified = ctx.request["webhook"]
    assert isinstance(verified, VerifiedWebhook)
    events = IntegrationEvents(ctx.controller, EVENT)
    written = await events.completed(
        payload["data"]["object"]["id"], payload, dedup_key=f"std:{verified.webhook_id}"
    )
    return {"outcome": written.outcome}


async def new_call(controller: r.Controller, external_id: str = "pi_1") -> Any:
    call = await controller.storage.create(CALL, {"request_params": {"amount": 500}})
    await IntegrationEvents(controller, EVENT).initialized(call["id"], external_id)
    return call["id"]


async def call_row(controller: r.Controller, call_id: Any) -> dict[str, Any]:
    row = await controller.storage.find_one(CALL, {"id": call_id}, ["*"])
    assert row is not None
    return row


async def event_rows(controller: r.Controller, kind: str = "completed") -> list[dict[str, Any]]:
    rows = await controller.storage.find(EVENT, {"event_type": kind}, ["*"])
    return list(rows)


async def stripe_client(serve: Serve, **options: Any) -> Client:
    verifier = StripeVerifier(SECRET, **options)
    return await serve({"stripe": webhook_api(verifier, handle_stripe)})


async def post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.post("/api/stripe", data=body, headers=headers)
    return response.status, await response.json()


def assert_refused(status: int, answer: Any, reason: str) -> None:
    assert status == 400
    assert answer["error"]["code"] == "invalid_signature"
    assert answer["error"]["message"].startswith(f"{reason}:")


def test_webhook_api_is_raw_and_anonymous() -> None:
    api = webhook_api(StripeVerifier(SECRET), handle_stripe)
    assert api.raw and api.allow_anonymous and api.params == {}


async def test_valid_delivery_completes_the_call(controller: r.Controller, serve: Serve) -> None:
    call_id = await new_call(controller)
    client = await stripe_client(serve)
    body = event("evt_1")
    status, answer = await post(client, body, sign_stripe(body, SECRET))
    assert (status, answer) == (200, {"received": True, "outcome": "stored"})
    call = await call_row(controller, call_id)
    assert call["status"] == "completed"
    assert call["response_data"] == {"id": "pi_1", "amount": 500}


async def test_bad_signatures_are_refused_before_anything_is_written(
    controller: r.Controller, serve: Serve
) -> None:
    call_id = await new_call(controller)
    client = await stripe_client(serve)
    body = event("evt_1")
    now = int(time.time())
    cases = [
        (body, {}, "missing_header"),
        (body, {"Stripe-Signature": "nonsense"}, "malformed_header"),
        (body, sign_stripe(body, "whsec_wrong"), "bad_signature"),
        (event("evt_1", "pi_other"), sign_stripe(body, SECRET), "bad_signature"),
        (body, sign_stripe(body, SECRET, now - 301), "stale_timestamp"),
        (body, sign_stripe(body, SECRET, now + 400), "future_timestamp"),
    ]
    for sent, headers, reason in cases:
        status, answer = await post(client, sent, headers)
        assert_refused(status, answer, reason)
    assert await event_rows(controller) == []
    assert (await call_row(controller, call_id))["status"] != "completed"


async def test_malformed_json_is_400_and_writes_nothing(
    controller: r.Controller, serve: Serve
) -> None:
    client = await stripe_client(serve)
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        status, answer = await post(client, body, sign_stripe(body, SECRET))
        assert status == 400
        assert answer["error"]["code"] == "malformed_json"
    assert await controller.storage.count(EVENT) == 0


async def test_exact_replay_is_refused_and_redelivery_is_acknowledged_once(
    controller: r.Controller, serve: Serve
) -> None:
    call_id = await new_call(controller)
    client = await stripe_client(serve)
    body = event("evt_1")
    headers = sign_stripe(body, SECRET)
    assert (await post(client, body, headers))[0] == 200

    # The very same signed request again (a captured request replayed): refused.
    status, answer = await post(client, body, headers)
    assert_refused(status, answer, "replayed")

    # Stripe delivering the same event again, signed afresh: 200, stored once.
    later = sign_stripe(body, SECRET, int(time.time()) + 1)
    status, answer = await post(client, body, later)
    assert (status, answer) == (200, {"received": True, "outcome": "duplicate"})
    completed = await event_rows(controller)
    assert [e["dedup_key"] for e in completed] == ["stripe:evt_1"]
    assert (await call_row(controller, call_id))["status"] == "completed"


async def test_terminal_state_does_not_regress_on_a_late_failure_event(
    controller: r.Controller, serve: Serve
) -> None:
    call_id = await new_call(controller)
    client = await stripe_client(serve)
    for body in (event("evt_ok"), event("evt_late", kind="payment_failed")):
        assert (await post(client, body, sign_stripe(body, SECRET)))[0] == 200
    assert (await call_row(controller, call_id))["status"] == "completed"


async def test_a_failing_handler_does_not_turn_the_retry_into_a_replay(
    controller: r.Controller, serve: Serve
) -> None:
    failures = [RuntimeError("database hiccup")]

    async def flaky(payload: Any, ctx: r.APIContext) -> Any:
        if failures:
            raise failures.pop()
        return await handle_stripe(payload, ctx)

    @web.middleware
    async def as_500(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RuntimeError:
            return web.json_response({"error": {"code": "internal"}}, status=500)

    call_id = await new_call(controller)
    client = await serve({"stripe": webhook_api(StripeVerifier(SECRET), flaky)}, [as_500])
    body = event("evt_1")
    headers = sign_stripe(body, SECRET)
    assert (await post(client, body, headers))[0] == 500
    assert (await post(client, body, headers))[0] == 200
    assert (await call_row(controller, call_id))["status"] == "completed"


async def test_oversized_body_is_413(controller: r.Controller, serve: Serve) -> None:
    verifier = StripeVerifier(SECRET)
    client = await serve({"stripe": webhook_api(verifier, handle_stripe, max_body_bytes=64)})
    body = event("evt_" + "x" * 100)
    status, answer = await post(client, body, sign_stripe(body, SECRET))
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert await controller.storage.count(EVENT) == 0


async def test_raw_body_stored_by_the_server_is_preferred(
    controller: r.Controller, serve: Serve
) -> None:
    """A server that already read the body leaves it at request["raw_body"]; the handler uses it
    (here the bytes on the wire differ, so only the stored body verifies)."""
    body = event("evt_1")

    @web.middleware
    async def store_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        request["raw_body"] = body
        return await handler(request)

    await new_call(controller)
    client = await serve(
        {"stripe": webhook_api(StripeVerifier(SECRET), handle_stripe)}, [store_body]
    )
    status, _ = await post(client, b"something else entirely", sign_stripe(body, SECRET))
    assert status == 200


async def test_standard_webhooks_end_to_end(controller: r.Controller, serve: Serve) -> None:
    call_id = await new_call(controller, "pi_std")
    client = await serve(
        {"hooks": webhook_api(StandardWebhookVerifier(STD_SECRET), handle_standard)}
    )
    body = event("unused", "pi_std")
    now = int(time.time())
    headers = sign_standard(body, STD_SECRET, "msg_1", now)

    async def send(sent: bytes, h: dict[str, str]) -> tuple[int, Any]:
        response = await client.post("/api/hooks", data=sent, headers=h)
        return response.status, await response.json()

    assert await send(body, headers) == (200, {"outcome": "stored"})
    status, answer = await send(body, headers)
    assert_refused(status, answer, "replayed")
    assert await send(body, sign_standard(body, STD_SECRET, "msg_1", now + 1)) == (
        200,
        {"outcome": "duplicate"},
    )
    status, answer = await send(body + b" ", sign_standard(body, STD_SECRET, "msg_2", now))
    assert_refused(status, answer, "bad_signature")
    status, answer = await send(body, {"webhook-id": "msg_3"})
    assert_refused(status, answer, "missing_header")
    assert [e["dedup_key"] for e in await event_rows(controller)] == ["std:msg_1"]
    assert (await call_row(controller, call_id))["status"] == "completed"


async def test_a_signed_body_nested_too_deeply_is_400_on_the_real_server(
    controller: r.Controller,
) -> None:
    """100,000 levels used to reach the recursive parser (RecursionError, 500); the depth is
    checked first now, on the server that the application really runs."""
    from aiohttp.test_utils import TestClient, TestServer

    from reactive.server import create_app

    app = create_app(controller, {"stripe": webhook_api(StripeVerifier(SECRET), handle_stripe)})
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for depth in (100_000, 65):
            body = b'{"id": "evt_deep", "x": ' + b"[" * depth + b"]" * depth + b"}"
            status, answer = await post(client, body, sign_stripe(body, SECRET))
            assert status == 400, answer
            assert answer["error"]["code"] == "malformed_json"
            assert "more than 64 deep" in answer["error"]["message"]
        # within the bound, the same delivery shape is processed (and the retry is not a replay)
        shallow = event("evt_shallow")
        status, answer = await post(client, shallow, sign_stripe(shallow, SECRET))
        assert status == 200, answer
    finally:
        await client.close()
    assert [row["external_id"] for row in await controller.storage.find(EVENT, None, ["*"])] == [
        "pi_1"
    ]
