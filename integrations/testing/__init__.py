"""Test tools for integrations: a fake clock, Hypothesis strategies for event sequences, and a
scriptable fake provider server with its client integration.

>>> from integrations.testing import FakeClock, FakeProvider, FakeTaskIntegration, Reply
>>> from integrations.testing import valid_sequences, deliveries, deliver

Needs the ``dev`` extras (``hypothesis``) for the strategies.
"""

from integrations.testing.clock import FakeClock
from integrations.testing.fake_provider import (
    FakeProvider,
    FakeTask,
    FakeTaskIntegration,
    RecordedRequest,
    Route,
    TaskStatus,
    default_result,
)
from integrations.testing.loopback import LoopbackServer
from integrations.testing.scripts import Delay, Drop, Hold, Outcome, Reply, describe, play
from integrations.testing.strategies import (
    EventSequence,
    EventSpec,
    Expected,
    Scenario,
    adversarial_scenarios,
    after_terminal_scenarios,
    contradictory_scenarios,
    deliver,
    deliveries,
    errors,
    external_ids,
    results,
    superseded_scenarios,
    unknown_id_scenarios,
    valid_sequences,
)

__all__ = [
    "Delay",
    "Drop",
    "EventSequence",
    "EventSpec",
    "Expected",
    "FakeClock",
    "FakeProvider",
    "FakeTask",
    "FakeTaskIntegration",
    "Hold",
    "LoopbackServer",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "Route",
    "Scenario",
    "TaskStatus",
    "adversarial_scenarios",
    "after_terminal_scenarios",
    "contradictory_scenarios",
    "default_result",
    "deliver",
    "deliveries",
    "describe",
    "errors",
    "external_ids",
    "play",
    "results",
    "superseded_scenarios",
    "unknown_id_scenarios",
    "valid_sequences",
]
