"""Hypothesis strategies for integration event sequences, valid and adversarial.

The shapes are plain data, independent of any database: an :class:`EventSpec` names its
external id locally (``"A"``), and :meth:`EventSpec.to_pending` turns it into the
:class:`~integrations.PendingEvent` a test writes, with every external id and provider event id
prefixed by a ``namespace`` so that many examples can share one database::

    @given(data=st.data())
    async def test_fold(data):
        sequence = data.draw(valid_sequences())
        delivery = data.draw(deliveries(sequence))
        call = await controller.storage.create("TTSCall", {...})
        await deliver(events, call["id"], delivery, namespace=f"ex{n}-")
        ...  # the call now matches sequence.expected

Every strategy comes with the final state the fold must reach (:class:`Expected`).
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceType
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from integrations.events import EventWrite, IntegrationEvents, PendingEvent

EventKind = Literal["initialized", "processing", "completed", "failed"]
Shape = Literal["sync", "async"]


@attrs.frozen
class EventSpec:
    """One event of a call as a provider (or the runner) would report it.

    ``data`` is the result for ``completed`` and the error for ``failed``. ``event_id`` is the
    provider's own event id, used as the dedup key when present; a redelivery carries the same
    one.
    """

    kind: EventKind
    external_id: str
    data: Any = None
    event_id: str | None = None

    def to_pending(self, call_id: Any, namespace: str = "") -> PendingEvent:
        """The event to write for call ``call_id`` (only ``initialized`` names the call)."""
        data = {"error": self.data} if self.kind == "failed" else self.data
        return PendingEvent(
            self.kind,
            f"{namespace}{self.external_id}",
            call_id if self.kind == "initialized" else None,
            data,
            None if self.event_id is None else f"{namespace}{self.event_id}",
        )


@attrs.frozen
class Expected:
    """The final state a delivery must fold to (``external_id`` before namespacing)."""

    status: str
    external_id: str | None
    response_data: Any = None
    error: Any = None

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed")


@attrs.frozen
class EventSequence:
    """A valid sequence for one call, in the order the provider produced it."""

    shape: Shape
    events: tuple[EventSpec, ...]

    @property
    def external_id(self) -> str:
        return self.events[0].external_id

    @property
    def expected(self) -> Expected:
        kinds = {e.kind for e in self.events}
        for event in self.events:
            if event.kind == "completed":
                return Expected("completed", self.external_id, response_data=event.data)
            if event.kind == "failed":
                return Expected("failed", self.external_id, error=event.data)
        status = "processing" if "processing" in kinds else "pending"
        return Expected(status, self.external_id)


@attrs.frozen
class Scenario:
    """An adversarial delivery (to write in this exact order) and what it must fold to."""

    label: str
    delivery: tuple[EventSpec, ...]
    expected: Expected


async def deliver(
    events: IntegrationEvents,
    call_id: Any,
    delivery: SequenceType[EventSpec],
    namespace: str = "",
) -> list[EventWrite]:
    """Write a delivery for ``call_id``, each event in its own transaction (as separate
    webhooks would arrive); returns what each write did."""
    written: list[EventWrite] = []
    for spec in delivery:
        written += await events.write_many([spec.to_pending(call_id, namespace)])
    return written


# -- building blocks ----------------------------------------------------------------------

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_"


def external_ids() -> st.SearchStrategy[str]:
    """Task ids as providers make them (local names, namespaced when written)."""
    return st.one_of(
        st.text(_ID_ALPHABET, min_size=1, max_size=12),
        st.uuids().map(str),
    )


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**31), 2**31),
        st.text(max_size=10),
    )


def results() -> st.SearchStrategy[dict[str, Any]]:
    """A completed call's data: always a ``url`` (the business value tests derive), plus
    extra JSON fields."""
    return st.builds(
        lambda url, extra: {**extra, "url": url},
        st.text(min_size=1, max_size=20).map(lambda s: f"https://files.invalid/{s}"),
        st.dictionaries(st.sampled_from(["size", "voice", "meta", "ms"]), _scalars(), max_size=3),
    )


def errors() -> st.SearchStrategy[dict[str, Any]]:
    """A failed call's error."""
    return st.fixed_dictionaries(
        {
            "code": st.sampled_from(["invalid_input", "quota", "internal", "content_policy"]),
            "message": st.text(max_size=30),
        }
    )


@st.composite
def _with_event_ids(draw: st.DrawFn, events: list[EventSpec]) -> tuple[EventSpec, ...]:
    if not draw(st.booleans()):
        return tuple(events)
    return tuple(attrs.evolve(e, event_id=f"evt-{i}-{e.kind}") for i, e in enumerate(events))


@st.composite
def valid_sequences(
    draw: st.DrawFn,
    shape: Shape | None = None,
    terminal: bool | None = True,
) -> EventSequence:
    """A valid sequence for one call.

    ``sync``: ``initialized, processing, completed`` or ``initialized, failed`` (what
    :meth:`IntegrationEvents.sync_result` / ``sync_failure`` write). ``async``: ``initialized``,
    an optional ``processing``, then ``completed`` or ``failed`` with data. ``terminal=None``
    also draws unfinished async sequences; ``False`` draws only those. Events carry provider
    event ids or not (then the default dedup keys apply).
    """
    shapes: list[Shape] = ["sync", "async"]
    chosen: Shape = shape if shape is not None else draw(st.sampled_from(shapes))
    ext = draw(external_ids())
    events = [EventSpec("initialized", ext)]
    if chosen == "async" and terminal is not True:
        finished = terminal is None and draw(st.booleans())
    else:
        finished = True
    succeeded = draw(st.booleans())
    if chosen == "sync":
        if succeeded:
            events += [EventSpec("processing", ext), EventSpec("completed", ext, draw(results()))]
        else:
            events.append(EventSpec("failed", ext, draw(errors())))
    else:
        if not finished or draw(st.booleans()):
            events.append(EventSpec("processing", ext))
        if finished:
            if succeeded:
                events.append(EventSpec("completed", ext, draw(results())))
            else:
                events.append(EventSpec("failed", ext, draw(errors())))
    return EventSequence(chosen, draw(_with_event_ids(events)))


@st.composite
def deliveries(
    draw: st.DrawFn, sequence: EventSequence, max_duplicates: int = 4
) -> tuple[EventSpec, ...]:
    """The sequence as a provider may deliver it: any order, any event repeated (a repeat is
    the same event: same data, same event id)."""
    events = list(sequence.events)
    repeats = draw(st.lists(st.sampled_from(events), max_size=max_duplicates))
    return tuple(draw(st.permutations(events + repeats)))


# -- adversarial --------------------------------------------------------------------------


@st.composite
def _reports(draw: st.DrawFn, external_id: str) -> list[EventSpec]:
    """One to four reports (processing, completed, failed) about ``external_id``."""
    choices: list[EventKind] = ["processing", "completed", "failed"]
    kinds = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=4))
    reports = []
    for kind in kinds:
        data = None
        if kind == "completed":
            data = draw(results())
        elif kind == "failed":
            data = draw(errors())
        reports.append(EventSpec(kind, external_id, data))
    return reports


@st.composite
def unknown_id_scenarios(draw: st.DrawFn) -> Scenario:
    """A valid delivery with events for an external id that is never initialized mixed in:
    they are kept, and change nothing."""
    sequence = draw(valid_sequences(terminal=None))
    delivery = list(draw(deliveries(sequence)))
    ghost_id = draw(external_ids().filter(lambda e: e != sequence.external_id))
    for ghost in draw(_reports(ghost_id)):
        delivery.insert(draw(st.integers(0, len(delivery))), ghost)
    return Scenario("unknown ids", tuple(delivery), sequence.expected)


@st.composite
def after_terminal_scenarios(draw: st.DrawFn) -> Scenario:
    """A finished call, then more reports: ``processing``, ``initialized`` again, the same
    terminal kind with other data under a new event id, and (after ``completed``) a
    ``failed``. None of them changes the call."""
    sequence = draw(valid_sequences(terminal=True))
    expected = sequence.expected
    ext = sequence.external_id
    late_kinds: list[EventKind] = ["processing", "initialized"]
    if expected.status == "completed":
        late_kinds += ["completed", "failed"]
    else:
        late_kinds.append("failed")
    late = []
    for n, kind in enumerate(draw(st.lists(st.sampled_from(late_kinds), min_size=1, max_size=5))):
        data = None
        if kind == "completed":
            data = draw(results())
        elif kind == "failed":
            data = draw(errors())
        late.append(EventSpec(kind, ext, data, event_id=f"late-{n}"))
    delivery = (*draw(deliveries(sequence)), *late)
    return Scenario("after terminal", delivery, expected)


@st.composite
def superseded_scenarios(draw: st.DrawFn) -> Scenario:
    """A call submitted twice: attempt ``A`` was initialized, then superseded by attempt
    ``B``. ``A``'s late results (delivered after ``B``'s ``initialized``) never touch the call;
    ``B``'s events decide it, in any order."""
    newer = draw(valid_sequences(terminal=None))
    older_id = draw(external_ids().filter(lambda e: e != newer.external_id))
    head = [EventSpec("initialized", older_id)]
    if draw(st.booleans()):
        head.append(EventSpec("processing", older_id))
    head.append(newer.events[0])  # B's initialized, written by the runner after A's
    late = draw(_reports(older_id))
    rest = draw(deliveries(EventSequence(newer.shape, (*newer.events[1:], *late))))
    return Scenario("superseded", (*head, *rest), newer.expected)


@st.composite
def contradictory_scenarios(draw: st.DrawFn) -> Scenario:
    """The provider reports both ``completed`` and ``failed`` for one task, in any order:
    ``completed`` wins, whatever the order."""
    ext = draw(external_ids())
    result = draw(results())
    events = (
        EventSpec("initialized", ext),
        EventSpec("completed", ext, result),
        EventSpec("failed", ext, draw(errors())),
    )
    sequence = EventSequence("async", draw(_with_event_ids(list(events))))
    delivery = draw(deliveries(sequence))
    return Scenario("contradictory", delivery, Expected("completed", ext, response_data=result))


def adversarial_scenarios() -> st.SearchStrategy[Scenario]:
    """Any of the adversarial scenarios above."""
    return st.one_of(
        unknown_id_scenarios(),
        after_terminal_scenarios(),
        superseded_scenarios(),
        contradictory_scenarios(),
    )
