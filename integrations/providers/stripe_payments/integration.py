"""``StripePaymentsIntegration``: a PaymentIntent per APICall, completed by signed webhooks.

Business logic creates a call with ``request_params`` ``{"amount": 1000, "currency": "usd"}``
(optionally ``description``, ``customer``, ``metadata``). :meth:`submit` creates the PaymentIntent
with the call's idempotency key as ``Idempotency-Key`` (a retried or re-run submission gets the
same intent, never a second one) and with metadata naming the call; the runner records
``initialized`` with the PaymentIntent id as external id. The client then confirms the payment
with the PaymentIntent's ``client_secret`` (outside this integration), and Stripe reports the
outcome to the webhook API ``stripe_payments.webhook`` (``POST /api/stripe_payments.webhook``):

- ``payment_intent.processing`` -> ``processing`` (the customer confirmed; the payment method
  settles later, as bank debits do): the call shows ``processing`` until the outcome arrives;
- ``payment_intent.succeeded`` -> ``completed`` (data: the PaymentIntent's amount, currency...);
- ``payment_intent.payment_failed`` -> ``failed`` (error: ``last_payment_error``); the customer
  may still pay with another method later, and a ``succeeded`` then wins (the fold lets
  ``completed`` win over a provider's ``failed``);
- every other event type is acknowledged (200) and ignored.

The dedup key of a webhook's event is ``stripe:<event id>``: a redelivered event is stored once.
Deliveries are verified with :class:`~integrations.StripeVerifier` (tolerance 300 s on both
sides, several secrets during a rotation, replayed messages refused): a bad signature or a stale
timestamp answers 400 and writes nothing.

Correlation: the event's ``external_id`` is the PaymentIntent id. A webhook that arrives before
our ``initialized`` event is stored and applied as soon as ``initialized`` arrives; when the
PaymentIntent's metadata names one of our calls (``interaqt_call``, ``interaqt_call_id``) and that
call has no external id yet, the webhook writes the same ``initialized`` event itself (same
dedup key as the runner's, so it is stored once), so the call is linked even if our own write
never comes (a crash between Stripe's answer and our write).

The manual status query API ``stripe_payments.query`` reads the PaymentIntent and writes the
matching event (``succeeded`` -> completed, ``canceled`` or a failed attempt -> failed,
``processing``/``requires_action``/``requires_capture`` -> processing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs

import reactive as r
from integrations.api_call import APICallModel
from integrations.base import EnvVar, MissingEnvironmentError
from integrations.events import PendingEvent
from integrations.providers.stripe_payments.api import (
    DEFAULT_API_BASE,
    DEFAULT_TIMEOUT,
    PaymentIntent,
    PaymentsAPI,
    StripeEvent,
)
from integrations.replay import TimeSource
from integrations.retry import PermanentError
from integrations.runner import APICallIntegration, ProviderStatus, Submitted
from integrations.webhooks import DEFAULT_TOLERANCE, StripeVerifier, webhook_api

log = logging.getLogger("integrations.providers.stripe_payments")

ENV_SECRET_KEY = EnvVar(
    "STRIPE_SECRET_KEY",
    "secret API key used to create and read PaymentIntents",
    "Stripe Dashboard > Developers > API keys (sk_test_... in test mode, sk_live_... live)",
)
ENV_WEBHOOK_SECRET = EnvVar(
    "STRIPE_WEBHOOK_SECRET",
    "signing secret of the webhook endpoint POST /api/stripe_payments.webhook (several, "
    "comma-separated, while rotating)",
    "Stripe Dashboard > Developers > Webhooks > your endpoint > Signing secret (whsec_...), "
    "or the output of `stripe listen` when testing locally",
)
ENV_API_BASE = EnvVar(
    "STRIPE_API_BASE",
    f"base URL of the Stripe API (default {DEFAULT_API_BASE})",
    "leave unset; set it only to point at a local stand-in such as a test server",
    required=False,
    secret=False,
)

METADATA_CALL = "interaqt_call"
METADATA_CALL_ID = "interaqt_call_id"
RESERVED_METADATA_PREFIX = "interaqt_"

PROCESSING = "payment_intent.processing"
SUCCEEDED = "payment_intent.succeeded"
PAYMENT_FAILED = "payment_intent.payment_failed"
HANDLED_EVENTS = (PROCESSING, SUCCEEDED, PAYMENT_FAILED)


@attrs.frozen
class PaymentParams:
    """A call's ``request_params``, checked."""

    amount: int
    currency: str
    description: str | None = None
    customer: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)

    FIELDS = ("amount", "currency", "description", "customer", "metadata")

    @classmethod
    def parse(cls, params: Any) -> PaymentParams:
        """Check ``params``; a bad request fails the call at once (PermanentError)."""
        if not isinstance(params, Mapping):
            raise PermanentError(f"request_params must be an object, got {type(params).__name__}")
        unknown = sorted(set(params) - set(cls.FIELDS))
        if unknown:
            raise PermanentError(f"unknown request_params {unknown}; expected {list(cls.FIELDS)}")
        amount = params.get("amount")
        if isinstance(amount, float) and amount.is_integer():
            amount = int(amount)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise PermanentError(
                f"request_params.amount must be a positive integer (smallest currency unit), "
                f"got {amount!r}"
            )
        currency = params.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise PermanentError(
                f"request_params.currency must be a three-letter ISO code, got {currency!r}"
            )
        description, customer = params.get("description"), params.get("customer")
        for key, value in (("description", description), ("customer", customer)):
            if value is not None and not isinstance(value, str):
                raise PermanentError(f"request_params.{key} must be a string")
        return cls(amount, currency.lower(), description, customer, _metadata(params))


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise PermanentError("request_params.metadata must be an object")
    checked: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 0 < len(key) <= 40:
            raise PermanentError(f"metadata key {key!r} must be a string of 1 to 40 characters")
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise PermanentError(f"metadata key {key!r}: the interaqt_ prefix is reserved")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PermanentError(f"metadata[{key!r}] must be a string or a number")
        text = str(value)
        if len(text) > 500:
            raise PermanentError(f"metadata[{key!r}] is longer than 500 characters")
        checked[key] = text
    return checked


def payment_data(intent: PaymentIntent) -> dict[str, Any]:
    """What a completed call keeps as ``response_data``."""
    return {
        "payment_intent_id": intent.id,
        "status": intent.status,
        "amount": intent.amount,
        "amount_received": intent.amount_received,
        "currency": intent.currency,
        "livemode": intent.livemode,
    }


def payment_error(intent: PaymentIntent) -> dict[str, Any]:
    """What a failed call keeps as ``error``."""
    error = intent.last_payment_error
    if intent.status == "canceled":
        reason = intent.cancellation_reason or "canceled"
        return {
            "type": "canceled",
            "code": reason,
            "message": f"the PaymentIntent was canceled ({reason})",
            "payment_intent_id": intent.id,
        }
    return {
        "type": error.type if error else None,
        "code": error.code if error else None,
        "decline_code": error.decline_code if error else None,
        "message": error.message if error else "the payment failed",
        "payment_intent_id": intent.id,
    }


def status_of(intent: PaymentIntent) -> ProviderStatus:
    """The APICall status a PaymentIntent stands for."""
    if intent.status == "succeeded":
        return ProviderStatus("completed", data=payment_data(intent))
    if intent.status == "canceled" or (
        intent.status == "requires_payment_method" and intent.last_payment_error is not None
    ):
        return ProviderStatus("failed", error=payment_error(intent))
    if intent.status in ("processing", "requires_action", "requires_capture"):
        return ProviderStatus("processing", data=payment_data(intent))
    return ProviderStatus("pending")


def _id_value(raw: str) -> Any:
    """A record id as metadata carries it (a string) back to its stored form."""
    return int(raw) if raw.isdigit() else raw


class StripePaymentsIntegration(APICallIntegration):
    """Stripe PaymentIntents with signed webhooks (asynchronous API).

    Settings come from the environment (``environ``, default ``os.environ``):
    STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_API_BASE. ``request_timeout`` bounds one
    HTTP request; ``webhook_tolerance`` (seconds) and ``webhook_clock`` configure the signature
    check. Other options go to :class:`~integrations.APICallIntegration`.
    """

    name = "stripe_payments"
    env_vars = (ENV_SECRET_KEY, ENV_WEBHOOK_SECRET, ENV_API_BASE)

    def __init__(
        self,
        model: APICallModel,
        *,
        request_timeout: float = DEFAULT_TIMEOUT,
        webhook_tolerance: float = DEFAULT_TOLERANCE,
        webhook_clock: TimeSource = time.time,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive (seconds)")
        self.request_timeout = request_timeout
        self.webhook_tolerance = webhook_tolerance
        self.webhook_clock = webhook_clock
        self._api: PaymentsAPI | None = None
        self._verifier: StripeVerifier | None = None

    # -- settings --------------------------------------------------------------------------

    def api(self) -> PaymentsAPI:
        """The API client (made on first use from the environment, closed by :meth:`close`)."""
        if self._api is None:
            secret_key = self.env(ENV_SECRET_KEY.name)
            if not secret_key:
                raise PermanentError(f"{self.name}: {ENV_SECRET_KEY.name} is not set")
            self._api = PaymentsAPI(
                secret_key=secret_key,
                api_base=self.env(ENV_API_BASE.name) or DEFAULT_API_BASE,
                timeout=self.request_timeout,
            )
        return self._api

    def verifier(self) -> StripeVerifier:
        """The webhook verifier (every secret in STRIPE_WEBHOOK_SECRET, comma-separated)."""
        if self._verifier is None:
            raw = self.env(ENV_WEBHOOK_SECRET.name) or ""
            secrets = [s.strip() for s in raw.split(",") if s.strip()]
            if not secrets:
                raise MissingEnvironmentError([(self.name, ENV_WEBHOOK_SECRET)])
            self._verifier = StripeVerifier(
                secrets, tolerance=self.webhook_tolerance, clock=self.webhook_clock
            )
        return self._verifier

    def call_id_from_key(self, idempotency_key: str) -> str | None:
        """The APICall id in the runner's idempotency key (``<side effect>:<record>:<id>``)."""
        prefix = f"{self.name}.submit:{self.call_name}:"
        if not idempotency_key.startswith(prefix):
            return None
        return idempotency_key[len(prefix) :] or None

    # -- calls -----------------------------------------------------------------------------

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        request = PaymentParams.parse(params)
        metadata = {**request.metadata, METADATA_CALL: self.call_name}
        call_id = self.call_id_from_key(idempotency_key)
        if call_id is not None:
            metadata[METADATA_CALL_ID] = call_id
        intent = await self.api().create_payment_intent(
            amount=request.amount,
            currency=request.currency,
            idempotency_key=idempotency_key,
            metadata=metadata,
            description=request.description,
            customer=request.customer,
        )
        return Submitted(task_id=intent.id)

    async def query(self, external_id: str) -> ProviderStatus:
        return status_of(await self.api().retrieve_payment_intent(external_id))

    # -- webhooks --------------------------------------------------------------------------

    def create_apis(self) -> dict[str, r.API]:
        apis = super().create_apis()
        apis[f"{self.name}.webhook"] = webhook_api(
            self.verifier(),
            self.handle_event,
            description="Stripe webhook endpoint: payment_intent.processing, "
            "payment_intent.succeeded and payment_intent.payment_failed "
            "(Stripe-Signature verified)",
        )
        return apis

    async def handle_event(self, payload: Any, ctx: r.APIContext) -> dict[str, Any]:
        """Map a verified Stripe Event to integration events (see the module docstring)."""
        try:
            event = StripeEvent.from_json(payload)
        except ValueError as exc:
            raise r.APIError(400, "invalid_event", f"not a Stripe event: {exc}") from None
        if event.type not in HANDLED_EVENTS:
            return {"received": True, "event": event.id, "ignored": event.type}
        try:
            intent = PaymentIntent.from_json(event.object)
        except ValueError as exc:
            raise r.APIError(400, "invalid_event", f"{event.type} {event.id}: {exc}") from None
        pending: list[PendingEvent] = []
        call_id = await self._unlinked_call(intent)
        if call_id is not None:
            pending.append(PendingEvent("initialized", intent.id, call_id))
        dedup_key = f"stripe:{event.id}"
        if event.type in (PROCESSING, SUCCEEDED):
            data = {**payment_data(intent), "event_id": event.id}
            kind = "processing" if event.type == PROCESSING else "completed"
            pending.append(PendingEvent(kind, intent.id, None, data, dedup_key))
        else:
            error = {**payment_error(intent), "event_id": event.id}
            pending.append(PendingEvent("failed", intent.id, None, {"error": error}, dedup_key))
        written = await self.events.write_many(pending)
        return {"received": True, "event": event.id, "outcome": written[-1].outcome}

    async def _unlinked_call(self, intent: PaymentIntent) -> Any:
        """The id of the call the PaymentIntent's metadata names, if that call has no external
        id yet (None otherwise)."""
        if intent.metadata.get(METADATA_CALL) != self.call_name:
            return None
        raw = intent.metadata.get(METADATA_CALL_ID)
        if not raw:
            return None
        cf = self.model.fields
        call = await self._controller().storage.find_one(
            self.call_name, {"id": _id_value(raw)}, [cf.external_id]
        )
        if call is None:
            log.warning("%s: %s names unknown %s %s", self.name, intent.id, self.call_name, raw)
            return None
        linked = call[cf.external_id]
        if linked is not None:
            if linked != intent.id:
                log.warning(
                    "%s: %s names %s %s, which is linked to %s: not relinked",
                    self.name,
                    intent.id,
                    self.call_name,
                    raw,
                    linked,
                )
            return None
        return call["id"]

    async def close(self) -> None:
        await super().close()
        if self._api is not None:
            await self._api.close()
            self._api = None
