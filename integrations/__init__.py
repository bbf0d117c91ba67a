"""The integration layer: the APICall pattern, integration events and their fold, and the
integrations users need first. Imports reactive and storage, never the other way round."""

from integrations.api_call import (
    APICallModel,
    CallFields,
    EventFields,
    api_call_entities,
    fold_events,
    latest_call_value,
)
from integrations.auth import AuthIntegration, UserFields, auth_entities, auth_properties
from integrations.base import AggregatedIntegration, EnvVar, Integration, MissingEnvironmentError
from integrations.clock import Clock, SystemClock
from integrations.events import EventWrite, IntegrationEvents, PendingEvent
from integrations.replay import ReplayCache
from integrations.retry import (
    PermanentError,
    ProviderError,
    ProviderHTTPError,
    RetryPolicy,
    TransientError,
    raise_for_status,
    retry_after_seconds,
)
from integrations.runner import APICallIntegration, PollPolicy, ProviderStatus, Submitted
from integrations.webhooks import (
    StandardWebhookVerifier,
    StripeVerifier,
    VerifiedWebhook,
    WebhookVerificationError,
    WebhookVerifier,
    generate_standard_secret,
    sign_standard,
    sign_stripe,
    webhook_api,
)

__all__ = [
    "APICallIntegration",
    "APICallModel",
    "AggregatedIntegration",
    "AuthIntegration",
    "CallFields",
    "Clock",
    "EnvVar",
    "EventFields",
    "EventWrite",
    "Integration",
    "IntegrationEvents",
    "MissingEnvironmentError",
    "PendingEvent",
    "PermanentError",
    "PollPolicy",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderStatus",
    "ReplayCache",
    "RetryPolicy",
    "StandardWebhookVerifier",
    "StripeVerifier",
    "Submitted",
    "SystemClock",
    "TransientError",
    "UserFields",
    "VerifiedWebhook",
    "WebhookVerificationError",
    "WebhookVerifier",
    "api_call_entities",
    "auth_entities",
    "auth_properties",
    "fold_events",
    "generate_standard_secret",
    "latest_call_value",
    "raise_for_status",
    "retry_after_seconds",
    "sign_standard",
    "sign_stripe",
    "webhook_api",
]
