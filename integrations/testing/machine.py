"""Integration events as steps of :class:`reactive.testing.ModelMachine`.

For an application with APICall entities (``api_call_entities``), :class:`APICallEvents`
draws deliveries of provider events for calls that exist, from the strategies of
:mod:`integrations.testing.strategies`: valid sequences in any order with duplicates,
events sent again later under a new provider event id, late reports after a call finished,
and reports for external ids nobody initialized. Each event is written in its own
transaction, as separate webhooks
arrive (:class:`WriteEvents`, printed as ``IntegrationEvents(...).write_many([...])`` calls).

Importing this module registers :func:`api_call_sources` with
:func:`reactive.testing.register_source_finder`, so every machine of an app with APICall
entities gets these steps (the pytest plugin imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
from hypothesis import strategies as st

from integrations.api_call import APICallModel, api_call_model_of
from integrations.events import IntegrationEvents, PendingEvent
from integrations.testing.strategies import (
    after_terminal_scenarios,
    deliveries,
    unknown_id_scenarios,
    valid_sequences,
)
from reactive.testing import Outcome, Step, declared, register_source_finder

if TYPE_CHECKING:
    import reactive as r
    from reactive.testing.strategies import Existing


@attrs.frozen
class WriteEvents:
    """Write ``events`` to the event record ``record``, each in its own transaction."""

    record: str
    events: tuple[PendingEvent, ...]
    imports = ("from integrations.events import IntegrationEvents, PendingEvent",)

    async def run(self, controller: r.Controller) -> Outcome:
        writer = IntegrationEvents(controller, self.record)
        for event in self.events:
            await writer.write_many([event])
        return Outcome()

    def code(self) -> str:
        return "\n".join(
            f"await IntegrationEvents(controller, {self.record!r}).write_many([{event!r}])"
            for event in self.events
        )


@st.composite
def _delivery(draw: st.DrawFn, model: APICallModel, call_id: Any) -> Step:
    kind = draw(st.sampled_from(["delivery", "delivery", "late", "unknown id"]))
    if kind == "delivery":
        specs = draw(deliveries(draw(valid_sequences(terminal=None))))
    elif kind == "late":
        specs = draw(after_terminal_scenarios()).delivery
    else:
        specs = draw(unknown_id_scenarios()).delivery
    # Webhooks delivered again later under a new provider event id: each must change nothing.
    again = draw(st.lists(st.sampled_from(specs), max_size=2)) if specs else []
    specs = (
        *specs,
        *(attrs.evolve(e, event_id=f"again-{n}-{e.kind}") for n, e in enumerate(again)),
    )
    # A small namespace space: a later delivery for the same call may reuse ids (another
    # attempt, or the same provider ids again).
    namespace = f"{model.call.name}-{call_id}-{draw(st.integers(0, 2))}-"
    events = tuple(spec.to_pending(call_id, namespace) for spec in specs)
    return WriteEvents(model.event.name, events)


def _for_calls(model: APICallModel, ids: list[Any]) -> st.SearchStrategy[Step]:
    """A delivery for one of the calls: half the time the newest (the one the last dispatch
    created, whose provider events come next in a real run), else any of them."""

    def one(call_id: Any) -> st.SearchStrategy[Step]:
        return _delivery(model, call_id)

    newest = max(ids)
    return st.one_of(st.just(newest), st.sampled_from(ids)).flatmap(one)


@attrs.frozen
class APICallEvents:
    """Deliveries of provider events for the calls of ``models`` that exist."""

    models: tuple[APICallModel, ...]

    def records(self) -> Sequence[str]:
        return [m.call.name for m in self.models]

    def steps(self, existing: Existing) -> st.SearchStrategy[Step] | None:
        ready = [m for m in self.models if existing.get(m.call.name)]
        if not ready:
            return None
        return st.one_of([_for_calls(m, list(existing[m.call.name])) for m in ready])


def api_call_sources(controller: r.Controller) -> list[APICallEvents]:
    """The APICall events source of an app (none when it has no APICall entities)."""
    entities, _ = declared(controller)
    found = [m for m in (api_call_model_of(e) for e in entities) if m is not None]
    return [APICallEvents(tuple(found))] if found else []


register_source_finder(api_call_sources)

__all__ = ["APICallEvents", "WriteEvents", "api_call_sources"]
