"""Stripe PaymentIntents over the official ``stripe`` SDK, and the typed records of what Stripe
sends (PaymentIntent objects and webhook Events).

This module only speaks HTTP: it creates and reads PaymentIntents and returns them as typed
records without transforming them, and maps the SDK's errors to the integration layer's
:class:`~integrations.ProviderError` classes. The integration module decides what a PaymentIntent
or an Event means for the APICall.

SDK use: ``stripe.StripeClient(secret_key, base_addresses={"api": STRIPE_API_BASE},
http_client=stripe.AIOHTTPClient(...), max_network_retries=0)`` and its ``*_async`` methods, so
the requests run on our event loop over aiohttp; the integration runner owns retries (the SDK's
are off).

Wire format (what the SDK sends and parses; the fake server in ``fake_server.py`` speaks it)::

    POST {base}/v1/payment_intents                 (application/x-www-form-urlencoded)
    Authorization: Bearer <STRIPE_SECRET_KEY>
    Idempotency-Key: <the APICall's idempotency key>
    amount=1000&currency=usd&metadata[interaqt_call]=PaymentCall&metadata[interaqt_call_id]=7
    200 {"id": "pi_...", "object": "payment_intent", "amount": 1000, "currency": "usd",
         "status": "requires_payment_method", "metadata": {...}, "created": 1700000000, ...}
        The same Idempotency-Key with the same parameters answers with the same PaymentIntent
        (``Idempotent-Replayed: true``); with other parameters, 400 ``idempotency_error``.

    GET {base}/v1/payment_intents/{id}
    200 the PaymentIntent; 404 ``resource_missing``

    Errors: {"error": {"type": "invalid_request_error" | "card_error" | "api_error" |
                       "idempotency_error", "message": "...", "code": "...", "param": "..."}}

Error classes: connection errors are transient; HTTP 5xx, 408, 409 (a concurrent request with the
same key; the SDK retries it too) and 429 are transient, every other 4xx is permanent, and a
``Stripe-Should-Retry`` header overrides both; ``Retry-After`` is carried when present.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, cast

import aiohttp
import attrs
import stripe
from stripe.params import PaymentIntentCreateParams

from integrations.retry import (
    PermanentError,
    ProviderError,
    ProviderHTTPError,
    TransientError,
    retry_after_seconds,
)

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_TIMEOUT = 30.0

PaymentIntentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]
STATUSES: tuple[str, ...] = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
)


# -- what Stripe sends -----------------------------------------------------------------------


def _str(data: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{key!r} must be a string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} must be an integer, got {value!r}")
    return value


@attrs.frozen
class PaymentError:
    """A PaymentIntent's ``last_payment_error`` (the fields we use)."""

    type: str | None = None
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaymentError:
        return cls(
            _str(data, "type", False),
            _str(data, "code", False),
            _str(data, "decline_code", False),
            _str(data, "message", False),
        )


@attrs.frozen
class PaymentIntent:
    """A Stripe PaymentIntent (the fields we use)."""

    id: str
    amount: int
    currency: str
    status: PaymentIntentStatus
    metadata: dict[str, str] = attrs.field(factory=dict)
    amount_received: int = 0
    created: int = 0
    livemode: bool = False
    client_secret: str | None = None
    description: str | None = None
    cancellation_reason: str | None = None
    last_payment_error: PaymentError | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaymentIntent:
        """Read a PaymentIntent JSON object (an API answer or an Event's ``data.object``);
        raises ValueError when it is not one."""
        if data.get("object") != "payment_intent":
            raise ValueError(f"not a payment_intent object: object={data.get('object')!r}")
        pi_id = cast(str, _str(data, "id"))
        if not pi_id.startswith("pi_"):
            raise ValueError(f"not a PaymentIntent id: {pi_id!r}")
        status = _str(data, "status")
        if status not in STATUSES:
            raise ValueError(f"unknown PaymentIntent status {status!r}")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError("'metadata' must be an object")
        error = data.get("last_payment_error")
        if error is not None and not isinstance(error, Mapping):
            raise ValueError("'last_payment_error' must be an object")
        return cls(
            id=pi_id,
            amount=_int(data, "amount"),
            currency=cast(str, _str(data, "currency")),
            status=cast(PaymentIntentStatus, status),
            metadata={str(k): str(v) for k, v in metadata.items()},
            amount_received=_int(data, "amount_received", 0),
            created=_int(data, "created", 0),
            livemode=bool(data.get("livemode", False)),
            client_secret=_str(data, "client_secret", False),
            description=_str(data, "description", False),
            cancellation_reason=_str(data, "cancellation_reason", False),
            last_payment_error=PaymentError.from_json(error) if error is not None else None,
        )

    @classmethod
    def from_sdk(cls, intent: stripe.PaymentIntent) -> PaymentIntent:
        return cls.from_json(intent.to_dict(for_json=True))


@attrs.frozen
class StripeEvent:
    """A webhook Event (``{"id": "evt_...", "object": "event", "type": ..., "data":
    {"object": {...}}, ...}``)."""

    id: str
    type: str
    object: dict[str, Any]
    """``data.object``: the resource the event is about, as JSON."""
    created: int = 0
    livemode: bool = False
    api_version: str | None = None

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> StripeEvent:
        """Read an Event; raises ValueError when the payload is not one."""
        if payload.get("object") != "event":
            raise ValueError(f"not an event object: object={payload.get('object')!r}")
        data = payload.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
            raise ValueError("an event carries its resource at data.object")
        return cls(
            id=cast(str, _str(payload, "id")),
            type=cast(str, _str(payload, "type")),
            object=dict(data["object"]),
            created=_int(payload, "created", 0),
            livemode=bool(payload.get("livemode", False)),
            api_version=_str(payload, "api_version", False),
        )


# -- errors ----------------------------------------------------------------------------------


class StripeHTTPError(ProviderHTTPError):
    """An error answer from Stripe (see the module docstring for what is transient)."""

    def __init__(
        self,
        status: int,
        body: str = "",
        *,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ):
        super().__init__(status, body, retry_after=retry_after)
        self.transient = status >= 500 or status in (408, 409, 429)
        if should_retry is not None:
            self.transient = should_retry
        self.error_type = error_type
        self.error_code = error_code
        self.request_id = request_id


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def provider_error(error: stripe.StripeError) -> ProviderError:
    """The integration layer's view of an SDK error."""
    if isinstance(error, stripe.APIConnectionError):
        return TransientError(f"stripe: {error.user_message or 'connection error'}")
    if error.http_status is None:
        return PermanentError(f"stripe: {error}")
    headers = error.headers
    should_retry = _header(headers, "Stripe-Should-Retry")
    details = error.json_body.get("error") if isinstance(error.json_body, dict) else None
    details = details if isinstance(details, dict) else {}
    return StripeHTTPError(
        error.http_status,
        error.http_body or "",
        retry_after=retry_after_seconds(_header(headers, "Retry-After")),
        should_retry=None if should_retry is None else should_retry == "true",
        error_type=details.get("type"),
        error_code=details.get("code"),
        request_id=error.request_id,
    )


# -- the client ------------------------------------------------------------------------------


class PaymentsAPI:
    """PaymentIntents over ``stripe.StripeClient`` with the SDK's aiohttp client."""

    def __init__(
        self,
        *,
        secret_key: str,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
        description: str | None = None,
        customer: str | None = None,
    ) -> PaymentIntent:
        """``POST /v1/payment_intents`` with the ``Idempotency-Key`` header."""
        params: dict[str, Any] = {"amount": amount, "currency": currency}
        if metadata:
            params["metadata"] = dict(metadata)
        if description is not None:
            params["description"] = description
        if customer is not None:
            params["customer"] = customer
        try:
            intent = await self.client.v1.payment_intents.create_async(
                cast(PaymentIntentCreateParams, params),
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        return self._read(intent)

    async def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent:
        """``GET /v1/payment_intents/{id}``."""
        try:
            intent = await self.client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        return self._read(intent)

    @staticmethod
    def _read(intent: stripe.PaymentIntent) -> PaymentIntent:
        try:
            return PaymentIntent.from_sdk(intent)
        except ValueError as exc:
            raise PermanentError(f"stripe: unreadable PaymentIntent: {exc}") from exc

    async def close(self) -> None:
        # The SDK leaves AIOHTTPClient.close_async unannotated.
        close_async = cast(Callable[[], Awaitable[None]], self._http.close_async)
        await close_async()
