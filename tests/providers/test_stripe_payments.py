"""Stripe PaymentIntents end to end over loopback: the ``PlaceOrder`` interaction posted to the
real server (``reactive.server.create_app``) creates an Order and its PaymentCall on each
backend (a SQLite file, a PostgreSQL schema of the test's own); the integration creates the
PaymentIntent at the fake Stripe through the official ``stripe`` SDK; the fake sends signed
webhooks to ``/api/stripe_payments.webhook`` on the same server; the fold and
``latest_call_value`` give the Order its payment status."""

from __future__ import annotations

import asyncio
import json
import time
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
from integrations.providers.stripe_payments import (
    PaymentIntent,
    PaymentParams,
    PaymentsAPI,
    StripeHTTPError,
    StripePaymentsIntegration,
    status_of,
)
from integrations.providers.stripe_payments.fake_server import (
    Drop,
    FakeStripe,
    Hold,
    server_error,
)
from integrations.providers.stripe_payments.fake_wire import decode_form, error_body
from integrations.testing import Reply
from tests.conftest import StorageFactory

CALL = "PaymentCall"
EVENT = "PaymentEvent"
USER = 7
SECRET_KEY = "sk_test_interaqt"
WEBHOOK_SECRET = "whsec_test_current"
OLD_WEBHOOK_SECRET = "whsec_test_previous"
WEBHOOK_PATH = "/api/stripe_payments.webhook"

Client = TestClient[web.Request, web.Application]


def _order_from(event: dict[str, Any]) -> dict[str, Any] | None:
    if event["interaction_name"] != "PlaceOrder":
        return None
    payload = event["payload"]
    return {
        "amount": payload["amount"],
        "interaction_id": event["id"],
        "payments": [
            {
                "request_params": {"amount": payload["amount"], "currency": "usd"},
                "owner_id": event["user"]["id"],
            }
        ],
    }


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
    integration: StripePaymentsIntegration
    client: Client
    stripe: FakeStripe

    async def order(self, amount: int = 1500) -> tuple[Any, Any]:
        """Dispatch ``PlaceOrder`` over HTTP; returns (order id, call id)."""
        response = await self.client.post(
            "/interaction/PlaceOrder",
            json={"payload": {"amount": amount}},
            headers={"X-User": str(USER)},
        )
        assert response.status == 200, await response.text()
        order_id = (await response.json())["data"]["id"]
        found = await self.controller.storage.find(
            "Order", {"id": order_id}, [("payments", ["id"])]
        )
        return order_id, found[0]["payments"][0]["id"]

    async def call(self, call_id: Any) -> dict[str, Any]:
        call = await self.controller.storage.find_one(CALL, {"id": call_id}, ["*"])
        assert call is not None
        return call

    async def until(
        self, call_id: Any, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            call = await self.call(call_id)
            if check(call):
                return call
            if loop.time() > give_up:
                raise TimeoutError(f"call {call_id} is {call}")
            await asyncio.sleep(0.005)

    async def initialized(self, call_id: Any) -> dict[str, Any]:
        return await self.until(call_id, lambda c: c["external_id"] is not None)

    async def payment_status(self, order_id: Any) -> Any:
        row = await self.controller.storage.find_one("Order", {"id": order_id}, ["payment_status"])
        assert row is not None
        return row["payment_status"]

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = await self.controller.storage.find(EVENT, None, ["*"], order_by={"id": "asc"})
        return [e for e in rows if kind is None or e["event_type"] == kind]

    async def post_webhook(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        response = await self.client.post(WEBHOOK_PATH, data=body, headers=headers)
        return response.status, await response.json()


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(make_storage: StorageFactory) -> AsyncIterator[MakeApp]:
    opened: list[App] = []

    async def factory(**options: Any) -> App:
        stripe = FakeStripe(secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET)
        await stripe.start()
        api = api_call_entities(CALL, EVENT)
        order = r.Entity(
            "Order",
            [
                r.Property("amount", "number"),
                r.Property("interaction_id", "number", index=True),
                r.Property(
                    "payment_status",
                    computation=latest_call_value(
                        "Order",
                        "payments",
                        api.call,
                        lambda call: call["status"],
                        statuses=("processing", "completed", "failed"),
                        initial="pending",
                    ),
                ),
            ],
            computation=r.Transform(r.INTERACTION_EVENT, _order_from),
        )
        relation = r.Relation(order, "payments", api.call, "order", "1:n")
        interaction = r.Interaction(
            "PlaceOrder",
            r.Payload([r.PayloadItem("amount", "number", required=True)]),
            resolve=lambda event, ctx: ctx.storage.find_one(
                "Order", {"interaction_id": event["id"]}, ["id"]
            ),
        )
        options.setdefault("retry", RetryPolicy(base=0.01, cap=0.05, attempt_timeout=5.0))
        options.setdefault("sweep_interval", 86_400.0)
        environ = {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            # rotation: the old secret still verifies, the new one too
            "STRIPE_WEBHOOK_SECRET": f"{OLD_WEBHOOK_SECRET}, {WEBHOOK_SECRET}",
            "STRIPE_API_BASE": stripe.url,
            **options.pop("env", {}),
        }
        integration = StripePaymentsIntegration(api, environ=environ, **options)
        await integration.configure()
        controller = r.Controller(
            make_storage(f"app{len(opened)}.db"),
            [order, *api],
            [relation],
            interactions=[interaction],
            side_effects=integration.create_side_effects(),
        )
        await controller.setup()
        await integration.setup(controller)
        server_app = r.create_app(controller, integration.create_apis(), [user_header])
        client: Client = TestClient(TestServer(server_app, host="127.0.0.1"))
        await client.start_server()
        stripe.webhook_url = str(client.make_url(WEBHOOK_PATH))
        app = App(controller, integration, client, stripe)
        opened.append(app)
        return app

    yield factory
    for app in reversed(opened):
        await app.client.close()
        await app.integration.close()
        await app.controller.close()
        await app.stripe.close()


def key_of(call_id: Any) -> str:
    return f"stripe_payments.submit:{CALL}:{call_id}"


# -- creating the PaymentIntent ---------------------------------------------------------------


async def test_intent_is_created_with_the_idempotency_key_and_our_metadata(
    make_app: MakeApp,
) -> None:
    app = await make_app()
    order_id, call_id = await app.order(1500)
    call = await app.initialized(call_id)

    [intent] = app.stripe.intents.values()
    assert call["external_id"] == intent["id"] and call["status"] == "pending"
    assert intent["amount"] == 1500 and intent["currency"] == "usd"
    assert intent["metadata"] == {"interaqt_call": CALL, "interaqt_call_id": str(call_id)}
    [request] = app.stripe.requests_to("create")
    assert request.idempotency_key == key_of(call_id)
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert app.stripe.intent_for_key(key_of(call_id)) == intent
    assert [e["event_type"] for e in await app.events()] == ["attempt", "initialized"]
    assert await app.payment_status(order_id) == "pending"


async def test_retry_after_a_500_does_not_create_a_second_intent(make_app: MakeApp) -> None:
    app = await make_app()
    # Stripe made the intent but the answer was lost, twice (a 500, then a dropped connection).
    app.stripe.script("create", Reply(500, server_error().body, process=True), Drop(process=True))
    _, call_id = await app.order()
    call = await app.initialized(call_id)

    assert len(app.stripe.intents) == 1
    [intent] = app.stripe.intents.values()
    assert call["external_id"] == intent["id"]
    requests = app.stripe.requests_to("create")
    assert [r.outcome for r in requests] == [
        "reply 500 after processing",
        "drop after processing",
        "handled",
    ]
    assert {r.idempotency_key for r in requests} == {key_of(call_id)}
    assert call["call_state"]["attempts"] == 3


async def test_refused_creation_fails_at_once(make_app: MakeApp) -> None:
    app = await make_app()
    refusal = error_body("Amount must be at least $0.50 usd", code="amount_too_small")
    app.stripe.script("create", Reply(400, refusal))
    order_id, call_id = await app.order()
    call = await app.until(call_id, lambda c: c["status"] == "failed")

    assert call["error"]["type"] == "StripeHTTPError" and call["error"]["status"] == 400
    assert "amount_too_small" in call["error"]["message"]
    assert call["call_state"]["attempts"] == 1 and len(app.stripe.requests_to("create")) == 1
    assert app.stripe.intents == {}
    assert await app.payment_status(order_id) == "failed"


# -- webhooks complete the call -------------------------------------------------------------


async def test_succeeded_webhook_completes_the_call(make_app: MakeApp) -> None:
    app = await make_app()
    order_id, call_id = await app.order(2500)
    intent_id = (await app.initialized(call_id))["external_id"]

    delivery = await app.stripe.succeed(intent_id)
    assert delivery.status == 200
    assert delivery.body == {"received": True, "event": delivery.event_id, "outcome": "stored"}
    call = await app.call(call_id)
    assert call["status"] == "completed" and call["completed_at"] is not None
    assert call["response_data"] == {
        "payment_intent_id": intent_id,
        "status": "succeeded",
        "amount": 2500,
        "amount_received": 2500,
        "currency": "usd",
        "livemode": False,
        "event_id": delivery.event_id,
    }
    [completed] = await app.events("completed")
    assert completed["dedup_key"] == f"stripe:{delivery.event_id}"
    assert completed["external_id"] == intent_id and completed["entity_id"] is None
    assert await app.payment_status(order_id) == "completed"


async def test_processing_webhook_shows_processing_until_the_outcome(make_app: MakeApp) -> None:
    app = await make_app()
    order_id, call_id = await app.order(2500)
    intent_id = (await app.initialized(call_id))["external_id"]
    assert (await app.call(call_id))["status"] == "pending"

    delivery = await app.stripe.process(intent_id)
    assert delivery.status == 200
    assert delivery.body == {"received": True, "event": delivery.event_id, "outcome": "stored"}
    call = await app.call(call_id)
    assert call["status"] == "processing" and call["completed_at"] is None
    [processing] = await app.events("processing")
    assert processing["dedup_key"] == f"stripe:{delivery.event_id}"
    assert processing["data"]["status"] == "processing"
    assert await app.payment_status(order_id) == "processing"

    await app.stripe.succeed(intent_id)
    assert (await app.call(call_id))["status"] == "completed"
    # A late processing report (a redelivery out of order) changes nothing.
    late = await app.stripe.deliver(app.stripe.event(intent_id, "payment_intent.processing"))
    assert late.status == 200
    assert (await app.call(call_id))["status"] == "completed"
    assert await app.payment_status(order_id) == "completed"


async def test_payment_failed_webhook_fails_the_call(make_app: MakeApp) -> None:
    app = await make_app()
    order_id, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]

    delivery = await app.stripe.fail(
        intent_id, code="card_declined", decline_code="insufficient_funds"
    )
    assert delivery.status == 200
    call = await app.call(call_id)
    assert call["status"] == "failed"
    assert call["error"] == {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card was declined.",
        "payment_intent_id": intent_id,
        "event_id": delivery.event_id,
    }
    assert await app.payment_status(order_id) == "failed"

    # The customer pays with another card: Stripe's later success wins over its failure.
    await app.stripe.succeed(intent_id)
    assert (await app.call(call_id))["status"] == "completed"
    assert await app.payment_status(order_id) == "completed"


async def test_other_event_types_are_acknowledged_and_ignored(make_app: MakeApp) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    before = await app.events()

    for kind in ("payment_intent.created", "charge.succeeded", "payment_intent.canceled"):
        event = app.stripe.event(intent_id, kind)
        delivery = await app.stripe.deliver(event)
        assert delivery.status == 200
        assert delivery.body == {"received": True, "event": event["id"], "ignored": kind}
    assert await app.events() == before
    assert (await app.call(call_id))["status"] == "pending"


async def test_rotated_secrets_both_verify(make_app: MakeApp) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    app.stripe.set_status(intent_id, "succeeded")
    event = app.stripe.event(intent_id, "payment_intent.succeeded")
    delivery = await app.stripe.deliver(event, secret=OLD_WEBHOOK_SECRET)
    assert delivery.status == 200
    assert (await app.call(call_id))["status"] == "completed"


# -- refused deliveries write nothing -----------------------------------------------------------


async def test_bad_signature_and_stale_timestamp_answer_400_and_write_nothing(
    make_app: MakeApp,
) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    app.stripe.set_status(intent_id, "succeeded")
    event = app.stripe.event(intent_id, "payment_intent.succeeded")
    before = await app.events()

    wrong_secret = await app.stripe.deliver(event, secret="whsec_someone_else")
    stale = await app.stripe.deliver(event, timestamp=int(time.time()) - 301)
    future = await app.stripe.deliver(event, timestamp=int(time.time()) + 400)
    unsigned = await app.stripe.deliver(event, headers={})
    signed = await app.stripe.deliver(event)  # to learn a valid header for the tampering below
    tampered_body = json.dumps({**event, "type": "payment_intent.payment_failed"}).encode()
    tampered = await app.stripe.deliver(event, headers=dict(signed.headers), body=tampered_body)

    for delivery, reason in (
        (wrong_secret, "bad_signature"),
        (stale, "stale_timestamp"),
        (future, "future_timestamp"),
        (unsigned, "missing_header"),
        (tampered, "bad_signature"),
    ):
        assert delivery.status == 400, delivery
        assert delivery.body["error"]["code"] == "invalid_signature"
        assert reason in delivery.body["error"]["message"]
    assert signed.status == 200
    # Only the one valid delivery wrote anything.
    after = await app.events()
    assert len(after) == len(before) + 1 and after[-1]["dedup_key"] == f"stripe:{event['id']}"


async def test_refused_deliveries_leave_an_open_call_unchanged(make_app: MakeApp) -> None:
    app = await make_app()
    order_id, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    app.stripe.set_status(intent_id, "succeeded")
    event = app.stripe.event(intent_id, "payment_intent.succeeded")
    before = await app.events()
    assert (await app.stripe.deliver(event, secret="whsec_wrong")).status == 400
    assert (await app.stripe.deliver(event, timestamp=int(time.time()) - 3600)).status == 400
    assert await app.events() == before
    assert (await app.call(call_id))["status"] == "pending"
    assert await app.payment_status(order_id) == "pending"


async def test_malformed_events_answer_400_and_write_nothing(make_app: MakeApp) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    before = await app.events()
    not_an_event = {"id": "evt_x", "object": "charge"}
    no_object = {**app.stripe.event(intent_id, "payment_intent.succeeded"), "data": {}}
    wrong_object = app.stripe.event(intent_id, "payment_intent.succeeded")
    wrong_object["data"]["object"] = {"object": "charge", "id": "ch_1"}
    for payload in (not_an_event, no_object, wrong_object):
        delivery = await app.stripe.deliver(payload)
        assert delivery.status == 400 and delivery.body["error"]["code"] == "invalid_event"
    not_json = await app.stripe.deliver({"id": "evt_raw"}, body=b"{not json")
    assert not_json.status == 400 and not_json.body["error"]["code"] == "malformed_json"
    assert await app.events() == before


# -- duplicates and order ---------------------------------------------------------------------


async def test_the_same_event_delivered_twice_is_stored_once(make_app: MakeApp) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    app.stripe.set_status(intent_id, "succeeded")
    event = app.stripe.event(intent_id, "payment_intent.succeeded")

    first = await app.stripe.deliver(event)
    # Stripe retries (its 200 was lost): the same event, signed afresh.
    again = await app.stripe.deliver(event, timestamp=int(time.time()) + 1)
    # And the very same signed message replayed: refused before anything is written.
    replayed = await app.stripe.deliver(event, headers=dict(first.headers))

    assert first.status == 200 and first.body["outcome"] == "stored"
    assert again.status == 200 and again.body["outcome"] == "duplicate"
    assert replayed.status == 400 and "replayed" in replayed.body["error"]["message"]
    stored = [e for e in await app.events() if e["dedup_key"] == f"stripe:{event['id']}"]
    assert len(stored) == 1
    assert len(await app.events("completed")) == 1
    assert (await app.call(call_id))["status"] == "completed"


async def test_a_webhook_before_our_initialized_is_applied_when_it_arrives(
    make_app: MakeApp,
) -> None:
    app = await make_app()
    # Stripe creates the intent but our answer is held: no initialized event yet.
    app.stripe.script("create", Hold(process=True))
    order_id, call_id = await app.order()
    [intent] = await app.stripe.wait_for_intents(1)
    app.stripe.set_status(intent["id"], "succeeded")
    event = app.stripe.event(intent["id"], "payment_intent.succeeded")
    event["data"]["object"]["metadata"] = {}  # nothing names our call: only the id correlates

    delivery = await app.stripe.deliver(event)
    assert delivery.status == 200 and delivery.body["outcome"] == "stored"
    call = await app.call(call_id)
    assert call["status"] == "pending" and call["external_id"] is None
    [waiting] = await app.events("completed")
    assert waiting["external_id"] == intent["id"] and waiting["entity_id"] is None

    app.stripe.release()
    call = await app.until(call_id, lambda c: c["status"] == "completed")
    assert call["external_id"] == intent["id"]
    assert call["response_data"]["event_id"] == event["id"]
    assert len(await app.events("initialized")) == 1
    assert await app.payment_status(order_id) == "completed"


async def test_a_webhook_naming_our_call_links_it_itself(make_app: MakeApp) -> None:
    app = await make_app()
    app.stripe.script("create", Hold(process=True))
    order_id, call_id = await app.order()
    [intent] = await app.stripe.wait_for_intents(1)

    delivery = await app.stripe.succeed(intent["id"])  # metadata names the call
    assert delivery.status == 200 and delivery.body["outcome"] == "stored"
    call = await app.call(call_id)
    assert call["status"] == "completed" and call["external_id"] == intent["id"]
    assert await app.payment_status(order_id) == "completed"

    app.stripe.release()  # our own initialized arrives late: stored once, nothing changes
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10.0
    while not await app.events("attempt"):  # the runner recorded its (successful) attempt
        assert loop.time() < give_up, "the held submission never finished"
        await asyncio.sleep(0.005)
    [attempt] = await app.events("attempt")
    assert attempt["data"]["outcome"] == "ok"
    [initialized] = await app.events("initialized")
    assert initialized["entity_id"] == call_id and initialized["external_id"] == intent["id"]
    call = await app.call(call_id)
    assert call["status"] == "completed"
    assert len(app.stripe.intents) == 1


async def test_metadata_never_relinks_a_call(make_app: MakeApp) -> None:
    app = await make_app()
    _, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]
    # Another intent whose metadata claims our (already linked) call.
    stray = {**app.stripe.intents[intent_id], "id": "pi_stray0001", "status": "succeeded"}
    app.stripe.intents["pi_stray0001"] = stray
    delivery = await app.stripe.deliver(
        app.stripe.event("pi_stray0001", "payment_intent.succeeded")
    )
    assert delivery.status == 200
    call = await app.call(call_id)
    assert call["external_id"] == intent_id and call["status"] == "pending"
    assert len(await app.events("initialized")) == 1


# -- manual status query ---------------------------------------------------------------------


async def test_query_api_reads_the_intent(make_app: MakeApp) -> None:
    app = await make_app()
    order_id, call_id = await app.order()
    intent_id = (await app.initialized(call_id))["external_id"]

    async def query(user: int) -> Any:
        response = await app.client.post(
            "/api/stripe_payments.query", json={"call_id": call_id}, headers={"X-User": str(user)}
        )
        return response.status, await response.json()

    status, body = await query(USER)
    assert status == 200 and body["status"] == "pending"
    app.stripe.set_status(intent_id, "processing")
    status, body = await query(USER)
    assert body["status"] == "processing"
    app.stripe.set_status(intent_id, "succeeded")  # the webhook is lost; the query finds out
    status, body = await query(USER)
    assert status == 200 and body["status"] == "completed"
    assert body["response_data"]["amount_received"] == 1500
    assert await app.payment_status(order_id) == "completed"
    assert (await query(99))[0] == 404
    assert len(app.stripe.requests_to("retrieve")) == 3


# -- units ---------------------------------------------------------------------------------------


async def test_missing_environment_refuses_to_start() -> None:
    integration = StripePaymentsIntegration(api_call_entities(CALL, EVENT), environ={})
    with pytest.raises(MissingEnvironmentError) as raised:
        await integration.configure()
    message = str(raised.value)
    assert "STRIPE_SECRET_KEY" in message and "STRIPE_WEBHOOK_SECRET" in message
    assert "STRIPE_API_BASE" not in message  # optional
    assert all(v.purpose and v.obtain_from for v in integration.env_vars)


def test_params_are_checked() -> None:
    parsed = PaymentParams.parse({"amount": 1000.0, "currency": "EUR", "metadata": {"n": 3}})
    assert parsed == PaymentParams(1000, "eur", metadata={"n": "3"})
    for bad in (
        None,
        {"amount": 0, "currency": "usd"},
        {"amount": True, "currency": "usd"},
        {"amount": 10.5, "currency": "usd"},
        {"amount": 100, "currency": "dollars"},
        {"amount": 100, "currency": "usd", "colour": "red"},
        {"amount": 100, "currency": "usd", "metadata": {"interaqt_call": "x"}},
        {"amount": 100, "currency": "usd", "metadata": {"k": "v" * 501}},
    ):
        with pytest.raises(PermanentError):
            PaymentParams.parse(bad)


def test_status_mapping() -> None:
    def intent(status: str, **extra: Any) -> PaymentIntent:
        data = {"object": "payment_intent", "id": "pi_1", "amount": 5, "currency": "usd"}
        return PaymentIntent.from_json({**data, "status": status, **extra})

    assert status_of(intent("succeeded", amount_received=5)).status == "completed"
    assert status_of(intent("processing")).status == "processing"
    assert status_of(intent("requires_payment_method")).status == "pending"
    declined = intent("requires_payment_method", last_payment_error={"code": "card_declined"})
    assert status_of(declined).status == "failed"
    canceled = status_of(intent("canceled", cancellation_reason="abandoned"))
    assert canceled.status == "failed" and canceled.error["code"] == "abandoned"
    with pytest.raises(ValueError):
        intent("exploded")


def test_form_decoding() -> None:
    body = b"amount=100&currency=usd&metadata[a]=1&metadata[b]=x%20y&types[0]=card&types[1]=link"
    assert decode_form(body) == {
        "amount": "100",
        "currency": "usd",
        "metadata": {"a": "1", "b": "x y"},
        "types": ["card", "link"],
    }


async def test_api_maps_sdk_errors() -> None:
    async with FakeStripe(secret_key=SECRET_KEY) as stripe:
        api = PaymentsAPI(secret_key=SECRET_KEY, api_base=stripe.url, timeout=2.0)
        wrong = PaymentsAPI(secret_key="sk_test_wrong", api_base=stripe.url, timeout=2.0)
        try:
            stripe.script(
                "create",
                Reply(
                    429, error_body("Too many requests", "rate_limit_error"), {"Retry-After": "2"}
                ),
                Reply(409, error_body("Concurrent request", "idempotency_error")),
                Reply(500, error_body("no", "api_error"), {"Stripe-Should-Retry": "false"}),
            )
            for transient, retry_after in ((True, 2.0), (True, None), (False, None)):
                with pytest.raises(StripeHTTPError) as raised:
                    await api.create_payment_intent(amount=100, currency="usd", idempotency_key="k")
                assert raised.value.transient is transient
                assert raised.value.retry_after == retry_after
            first = await api.create_payment_intent(
                amount=100, currency="usd", idempotency_key="k-1", metadata={"a": "b"}
            )
            again = await api.create_payment_intent(
                amount=100, currency="usd", idempotency_key="k-1", metadata={"a": "b"}
            )
            assert again == first and first.metadata == {"a": "b"}
            with pytest.raises(StripeHTTPError) as mismatch:
                await api.create_payment_intent(amount=999, currency="usd", idempotency_key="k-1")
            assert mismatch.value.error_type == "idempotency_error" and not mismatch.value.transient
            assert await api.retrieve_payment_intent(first.id) == first
            with pytest.raises(StripeHTTPError) as missing:
                await api.retrieve_payment_intent("pi_nope")
            assert missing.value.status == 404 and missing.value.error_code == "resource_missing"
            with pytest.raises(StripeHTTPError) as unauthorized:
                await wrong.retrieve_payment_intent(first.id)
            assert unauthorized.value.status == 401 and not unauthorized.value.transient
        finally:
            await api.close()
            await wrong.close()
        gone = PaymentsAPI(secret_key=SECRET_KEY, api_base=stripe.url, timeout=1.0)
    try:
        with pytest.raises(TransientError):  # the server is gone: a connection error
            await gone.retrieve_payment_intent("pi_1")
    finally:
        await gone.close()
