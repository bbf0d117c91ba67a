"""Property-based testing of your own application.

- ``await verify(controller)`` (the same as ``controller.verify()``): every computed property
  and dictionary recomputed from the stored rows, in bounded read batches; every difference
  reported (``report.differences``: ``record``, ``id``, ``field``, ``stored``, ``expected``);
  every stored StateMachine state must be one of its declared states.
- :mod:`reactive.testing.strategies`: payloads, near-miss payloads and plain writes drawn
  from the model's declarations.
- :class:`ModelMachine` (``ModelMachine.for_app(build)``): a Hypothesis state machine whose
  rules are the app's interactions, plain writes, restarts and registered step sources, and
  whose invariant is ``verify()`` plus every ``@invariant``; a failure prints the shrunk
  sequence as a runnable test (:class:`Replay`).
- A pytest plugin (``integrations.testing.pytest_plugin``, loaded on install): fixtures for a
  controller on SQLite or PostgreSQL, the fake clock and fake providers.

Everything but :func:`verify` needs the ``testing`` extra (``hypothesis``); it is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactive.recompute import Difference, VerifyReport

if TYPE_CHECKING:
    from reactive.controller import Controller
    from reactive.testing import strategies
    from reactive.testing.machine import (
        ModelMachine,
        ModelMachineFailure,
        Replay,
        StepSource,
        declared,
        invariant,
        register_source_finder,
    )
    from reactive.testing.steps import Outcome, Step


async def verify(controller: Controller, *, batch_size: int = 1000) -> VerifyReport:
    """``await controller.verify()``: ``report.ok``, ``report.differences`` (each with
    ``record``, ``id``, ``field``, ``stored``, ``expected``)."""
    return await controller.verify(batch_size=batch_size)


_LAZY = {
    "ModelMachine": "reactive.testing.machine",
    "ModelMachineFailure": "reactive.testing.machine",
    "Replay": "reactive.testing.machine",
    "StepSource": "reactive.testing.machine",
    "declared": "reactive.testing.machine",
    "Outcome": "reactive.testing.steps",
    "Step": "reactive.testing.steps",
    "invariant": "reactive.testing.machine",
    "register_source_finder": "reactive.testing.machine",
}


def __getattr__(name: str) -> Any:
    """Import the Hypothesis-based parts on first use."""
    import importlib

    if name == "strategies":
        return importlib.import_module("reactive.testing.strategies")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reactive.testing' has no attribute {name!r}")


__all__ = [
    "Difference",
    "ModelMachine",
    "ModelMachineFailure",
    "Outcome",
    "Replay",
    "Step",
    "StepSource",
    "VerifyReport",
    "declared",
    "invariant",
    "register_source_finder",
    "strategies",
    "verify",
]
