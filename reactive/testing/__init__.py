"""Testing helpers for applications built on the engine.

``verify(controller)`` recomputes every derived value from the stored rows and reports what
differs: call it at the end of a test, or after random writes in a property-based test, to
know that the incremental engine held the values a from-scratch recomputation gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reactive.recompute import Difference, VerifyReport

if TYPE_CHECKING:
    from reactive.controller import Controller


async def verify(controller: Controller) -> VerifyReport:
    """``await controller.verify()``: ``report.ok``, ``report.differences`` (each with
    ``record``, ``id``, ``field``, ``stored``, ``expected``)."""
    return await controller.verify()


__all__ = ["Difference", "VerifyReport", "verify"]
