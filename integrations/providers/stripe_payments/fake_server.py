"""A fake Stripe: a real aiohttp server on loopback speaking the PaymentIntents wire format the
official SDK uses (see ``api.py``), and a sender of signed webhook Events.

    POST /v1/payment_intents          form-encoded (``metadata[key]=value``), Bearer secret key
        200 a PaymentIntent (status ``requires_payment_method``)
        Idempotency-Key: the same key with the same parameters answers with the same intent
        (header ``Idempotent-Replayed: true``); with other parameters 400 idempotency_error.
        400 invalid_request_error for a missing/invalid amount or currency, unknown parameters.
    GET  /v1/payment_intents/{id}
        200 the PaymentIntent; 404 resource_missing
    401 for a wrong key.

Every request is recorded (:attr:`FakeStripe.requests`). Outcomes can be scripted per route
(``"create"``, ``"retrieve"``)::

    async with FakeStripe(webhook_secret="whsec_test", webhook_url=url) as fake:
        fake.script("create", Reply(500, process=True))    # the intent is made, the answer lost
        ...
        delivery = await fake.succeed(intent_id)          # status succeeded + signed webhook
        assert delivery.status == 200

:meth:`FakeStripe.process`, :meth:`FakeStripe.succeed` and :meth:`FakeStripe.fail` move an intent
and send the matching ``payment_intent.*`` webhook. :meth:`FakeStripe.event` builds an Event for
an intent's current state; :meth:`FakeStripe.deliver` sends any Event, signed with
:func:`integrations.sign_stripe` (or with another secret, or an old timestamp, to test
refusals). The objects themselves are built in ``fake_wire.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import aiohttp
import attrs
from aiohttp import web

from integrations.providers.stripe_payments.fake_wire import (
    check_create_params,
    decode_form,
    error_body,
    idempotency_mismatch,
    new_event,
    new_intent,
    no_such_intent,
)
from integrations.testing.loopback import LoopbackServer
from integrations.testing.scripts import Delay as Delay
from integrations.testing.scripts import Drop as Drop

# The scripted outcomes are part of this fake's interface (tests script it with them).
from integrations.testing.scripts import HasHeaders, Outcome, Reply, describe, play
from integrations.testing.scripts import Hold as Hold
from integrations.webhooks import sign_stripe

Route = Literal["create", "retrieve"]
ROUTES: tuple[Route, ...] = ("create", "retrieve")


def server_error() -> Reply:
    return Reply(500, error_body("An unknown error occurred", "api_error"))


# -- what the fake keeps ---------------------------------------------------------------------


@attrs.frozen
class RecordedRequest(HasHeaders):
    route: Route
    method: str
    path: str
    headers: Mapping[str, str]
    params: dict[str, Any]
    outcome: str


@attrs.frozen
class Delivery:
    """What the webhook endpoint answered to one delivery."""

    event_id: str
    status: int
    body: Any
    headers: Mapping[str, str]


# -- the server ------------------------------------------------------------------------------


class FakeStripe(LoopbackServer):
    """The fake API on ``127.0.0.1`` at a random port; use as an async context manager.

    ``secret_key`` is the only key accepted. ``webhook_secret`` signs deliveries (a list: one
    ``v1`` per secret, as during a rotation) to ``webhook_url``.
    """

    def __init__(
        self,
        *,
        secret_key: str = "sk_test_fake",
        webhook_secret: str | Sequence[str] = "whsec_fake",
        webhook_url: str | None = None,
    ) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.requests: list[RecordedRequest] = []
        self.intents: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self._by_key: dict[str, tuple[dict[str, Any], str]] = {}
        self._scripts: dict[Route, deque[Outcome]] = {route: deque() for route in ROUTES}
        self._ids = itertools.count(1)
        self._release = asyncio.Event()
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/payment_intents", self._create)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve)

    async def close(self) -> None:
        self._closing.set()
        self._release.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    # -- scripting and inspection ---------------------------------------------------------

    def script(self, route: Route, *outcomes: Outcome) -> None:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {ROUTES}")
        self._scripts[route].extend(outcomes)

    def release(self) -> None:
        """Let every held answer go."""
        self._release.set()
        self._release = asyncio.Event()

    def requests_to(self, route: Route) -> list[RecordedRequest]:
        return [request for request in self.requests if request.route == route]

    def intent_for_key(self, idempotency_key: str) -> dict[str, Any] | None:
        found = self._by_key.get(idempotency_key)
        return None if found is None else self.intents[found[1]]

    async def wait_for_intents(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (real time, bounded) until ``count`` intents exist; returns them, oldest first."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.intents) >= count)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise TimeoutError(f"expected {count} intent(s), have {len(self.intents)}") from None
        return list(self.intents.values())

    # -- state changes and webhooks -------------------------------------------------------

    def set_status(
        self, intent_id: str, status: str, last_payment_error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move an intent to ``status`` without telling anyone."""
        intent = self.intents[intent_id]
        intent["status"] = status
        intent["last_payment_error"] = last_payment_error
        if status == "succeeded":
            intent["amount_received"] = intent["amount"]
        return intent

    def event(self, intent_id: str, event_type: str) -> dict[str, Any]:
        """An Event about the intent as it is now (a fresh ``evt_`` id)."""
        return new_event(self.intents[intent_id], event_type)

    async def process(self, intent_id: str, *, url: str | None = None) -> Delivery:
        """The customer confirmed and the payment settles later (a bank debit): status
        ``processing`` and a ``payment_intent.processing``."""
        self.set_status(intent_id, "processing")
        return await self.deliver(self.event(intent_id, "payment_intent.processing"), url=url)

    async def succeed(self, intent_id: str, *, url: str | None = None) -> Delivery:
        """The payment succeeds: status ``succeeded`` and a ``payment_intent.succeeded``."""
        self.set_status(intent_id, "succeeded")
        return await self.deliver(self.event(intent_id, "payment_intent.succeeded"), url=url)

    async def fail(
        self,
        intent_id: str,
        *,
        code: str = "card_declined",
        decline_code: str = "generic_decline",
        message: str = "Your card was declined.",
        url: str | None = None,
    ) -> Delivery:
        """An attempt fails: back to ``requires_payment_method`` with ``last_payment_error``,
        and a ``payment_intent.payment_failed``."""
        error = {"type": "card_error", "code": code, "decline_code": decline_code}
        self.set_status(intent_id, "requires_payment_method", {**error, "message": message})
        return await self.deliver(self.event(intent_id, "payment_intent.payment_failed"), url=url)

    async def deliver(
        self,
        event: Mapping[str, Any],
        *,
        url: str | None = None,
        secret: str | Sequence[str] | None = None,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Delivery:
        """POST the Event to ``url`` (default ``webhook_url``), signed with ``secret`` (default
        ``webhook_secret``) at ``timestamp`` (default now). ``headers`` replaces the signature
        header and ``body`` the serialised event (to test refusals and replays)."""
        target = url or self.webhook_url
        if target is None:
            raise ValueError("no webhook url: pass url= or set webhook_url")
        raw = body if body is not None else json.dumps(event).encode()
        signed = (
            dict(headers)
            if headers is not None
            else sign_stripe(raw, secret or self.webhook_secret, timestamp)
        )
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            target,
            data=raw,
            headers={**signed, "Content-Type": "application/json; charset=utf-8"},
        ) as response:
            text = await response.text()
            try:
                answer: Any = json.loads(text)
            except ValueError:
                answer = text
            delivery = Delivery(str(event.get("id")), response.status, answer, dict(signed))
        self.deliveries.append(delivery)
        return delivery

    # -- handlers -------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("create", request, self._create_intent)

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        return await self._handle("retrieve", request, self._read_intent)

    async def _handle(
        self,
        route: Route,
        request: web.Request,
        work: Callable[[web.Request, dict[str, Any]], web.Response],
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            params = decode_form(raw or request.query_string.encode())
        except (UnicodeDecodeError, ValueError) as exc:
            return _json(error_body(f"Invalid request body: {exc}"), 400)
        script = self._scripts[route]
        outcome = script.popleft() if script else None
        self.requests.append(
            RecordedRequest(
                route,
                request.method,
                request.path,
                dict(request.headers),
                params,
                describe(outcome),
            )
        )
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _json(
                error_body("Invalid API Key provided.", "invalid_request_error", "api_key_invalid"),
                401,
            )
        return await play(
            outcome,
            request,
            lambda: work(request, params),
            closing=self._closing,
            release=self._release,
            shutting_down=lambda: _json(error_body("shutting down", "api_error"), 503),
            respond=_json,
            after_work=self._notify,
        )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _create_intent(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self._by_key:
            first_params, intent_id = self._by_key[key]
            if first_params != params:
                return _json(idempotency_mismatch(), 400)
            return _json(self.intents[intent_id], 200, {"Idempotent-Replayed": "true"})
        refusal = check_create_params(params)
        if refusal is not None:
            return _json(refusal, 400)
        intent = new_intent(f"pi_fake{next(self._ids):04d}{secrets.token_hex(6)}", params)
        self.intents[intent["id"]] = intent
        if key is not None:
            self._by_key[key] = (params, intent["id"])
        return _json(intent, 200)

    def _read_intent(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _json(no_such_intent(request.match_info["id"]), 404)
        return _json(intent, 200)


def _json(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    response = web.json_response(body, status=status, headers=dict(headers or {}))
    response.headers["Request-Id"] = f"req_fake{secrets.token_hex(6)}"
    return response
