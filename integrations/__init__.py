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
from integrations.base import AggregatedIntegration, EnvVar, Integration, MissingEnvironmentError
from integrations.clock import Clock, SystemClock
from integrations.events import EventWrite, IntegrationEvents, PendingEvent
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

__all__ = [
    "APICallIntegration",
    "APICallModel",
    "AggregatedIntegration",
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
    "RetryPolicy",
    "Submitted",
    "SystemClock",
    "TransientError",
    "api_call_entities",
    "fold_events",
    "latest_call_value",
    "raise_for_status",
    "retry_after_seconds",
]
