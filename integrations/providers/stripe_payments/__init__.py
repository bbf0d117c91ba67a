"""Stripe PaymentIntents (the official ``stripe`` SDK) completed by signed webhooks, as an
asynchronous APICall integration.

``api.py`` is the typed HTTP wrapper, ``integration.py`` maps PaymentIntents and webhook Events
to integration events, ``fake_server.py`` is a loopback Stripe for tests.
"""

from integrations.providers.stripe_payments.api import (
    PaymentError,
    PaymentIntent,
    PaymentsAPI,
    StripeEvent,
    StripeHTTPError,
)
from integrations.providers.stripe_payments.integration import (
    PaymentParams,
    StripePaymentsIntegration,
    status_of,
)

__all__ = [
    "PaymentError",
    "PaymentIntent",
    "PaymentParams",
    "PaymentsAPI",
    "StripeEvent",
    "StripeHTTPError",
    "StripePaymentsIntegration",
    "status_of",
]
