"""The wire format of the fake Stripe (``fake_server.py``): form decoding, the error envelope, and
PaymentIntent and Event objects as Stripe serialises them. Pure functions, no server."""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

API_VERSION = "2024-06-20"
KNOWN_CREATE_PARAMS = frozenset(
    {
        "amount",
        "currency",
        "metadata",
        "description",
        "customer",
        "receipt_email",
        "payment_method",
        "payment_method_types",
        "automatic_payment_methods",
        "capture_method",
        "confirm",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "setup_future_usage",
        "expand",
    }
)


def error_body(
    message: str, error_type: str = "invalid_request_error", code: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Stripe's error envelope."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return {"error": error}


def decode_form(body: bytes) -> dict[str, Any]:
    """``a=1&metadata[k]=v&types[0]=card`` -> ``{"a": "1", "metadata": {"k": "v"},
    "types": ["card"]}`` (Stripe's bracket notation)."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + [p.rstrip("]") for p in rest.split("[")] if rest else [head]
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"parameter {key!r} conflicts with another")
            node = child
        node[parts[-1]] = value
    return {key: _lists(value) for key, value in result.items()}


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _lists(v) for k, v in value.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return value


def idempotency_mismatch() -> dict[str, Any]:
    return error_body(
        "Keys for idempotent requests can only be used with the same parameters they were first "
        "used with.",
        "idempotency_error",
    )


def no_such_intent(intent_id: str) -> dict[str, Any]:
    return error_body(
        f"No such payment_intent: '{intent_id}'", code="resource_missing", param="intent"
    )


def check_create_params(params: dict[str, Any]) -> dict[str, Any] | None:
    """Stripe's refusal of a ``POST /v1/payment_intents`` body, or None when it is fine."""
    unknown = sorted(set(params) - KNOWN_CREATE_PARAMS)
    if unknown:
        return error_body(
            f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0]
        )
    amount = params.get("amount")
    if amount is None or not str(amount).isdigit() or int(amount) < 1:
        return error_body(
            "Missing or invalid required param: amount.",
            code="parameter_missing" if amount is None else "parameter_invalid_integer",
            param="amount",
        )
    currency = params.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        return error_body(
            "Missing or invalid required param: currency.",
            code="parameter_missing",
            param="currency",
        )
    return None


def new_intent(intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """A new PaymentIntent object from checked create parameters."""
    metadata = params.get("metadata") or {}
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": int(params["amount"]),
        "amount_capturable": 0,
        "amount_received": 0,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": params.get("capture_method", "automatic"),
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": str(params["currency"]).lower(),
        "customer": params.get("customer"),
        "description": params.get("description"),
        "last_payment_error": None,
        "livemode": False,
        "metadata": dict(metadata) if isinstance(metadata, dict) else {},
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
    }


def new_event(intent: dict[str, Any], event_type: str) -> dict[str, Any]:
    """An Event carrying a copy of ``intent`` as it is now (a fresh ``evt_`` id)."""
    return {
        "id": f"evt_fake{secrets.token_hex(8)}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": {"object": copy.deepcopy(intent)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
