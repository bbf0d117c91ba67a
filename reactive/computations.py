"""Computation declarations: what a derived value is. The runtime lives in ``reactive.handles``.

Every callback runs inside the write transaction and must be a plain, deterministic function of
its arguments, taking ``(arg)`` or ``(arg, ctx)`` (``ctx.storage`` reads and writes inside the
same transaction).
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import attrs

from reactive.custom_deps import DataDep, OwnFieldsDep, RecordsDep, RelatedDep
from reactive.deps import DictionaryDep
from reactive.errors import ModelError
from reactive.interaction import INTERACTION_EVENT, Interaction
from reactive.model import Entity, Relation, record_name


def _query(value: typing.Any) -> list[typing.Any] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ModelError(f"attribute_query must be a list, got {value!r}")
    return list(value)


class Computation:
    """Base class of every computation declaration."""

    kind = "Computation"


@attrs.define(eq=False)
class _Aggregate(Computation):
    """What every aggregate takes.

    ``attribute_query`` names what the callback reads of each item: its fields, link fields
    under ``"&"`` (``("&", ["weight"])``), and fields of a record the item links to through a
    to-one relation (``("author", ["status"])``: ``item["author"]`` is ``{"id", "status"}``
    or None), followed when that record or the item's link to it changes
    (:mod:`reactive.handles.deep`). ``data_deps={"t": DictionaryDep("threshold")}`` gives
    the callback dictionary values, ``callback(item, deps)``, followed when they change (a
    recount: O(hosts x items) per change of the dictionary; see :mod:`reactive.deps`).
    """

    record: Entity | Relation | str | None = None
    property: str | None = None
    callback: Callable[..., typing.Any] | None = None
    attribute_query: list[typing.Any] | None = attrs.field(default=None, converter=_query)
    direction: Literal["source", "target"] | None = None
    # {alias: reactive.deps.DictionaryDep}: global values the callback reads (checked, with
    # the host's name in the errors, when the model is compiled; see reactive.deps).
    data_deps: Mapping[str, typing.Any] | None = None

    def __attrs_post_init__(self) -> None:
        if (self.record is None) == (self.property is None):
            raise ModelError(
                f"{self.kind} needs exactly one of record= (over all records of an entity or "
                "relation) or property= (over the host's related records)"
            )
        if self.record is not None and not isinstance(self.record, Entity | Relation | str):
            raise ModelError(f"{self.kind}: record must be an Entity, a Relation or a name")
        if self.callback is not None and self.attribute_query is None:
            raise ModelError(
                f"{self.kind} with a callback needs attribute_query (the fields the callback "
                "reads; [] if none), so that it knows which changes re-evaluate an item"
            )
        if self.direction not in (None, "source", "target"):
            raise ModelError(f"{self.kind}: direction must be 'source' or 'target'")


@attrs.define(eq=False)
class Count(_Aggregate):
    """How many related records (or records of ``record``) there are; with ``callback``, how
    many for which it is true."""

    kind = "Count"


@attrs.define(eq=False)
class Summation(_Aggregate):
    """The sum of the one field named by ``attribute_query`` (``["price"]`` or
    ``[("&", ["weight"])]`` for a link field); non-numbers count as 0."""

    kind = "Summation"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.callback is not None:
            raise ModelError("Summation takes no callback; use WeightedSummation")
        if not self.attribute_query:
            raise ModelError("Summation needs attribute_query naming the one field to sum")


@attrs.define(eq=False)
class WeightedSummation(_Aggregate):
    """The sum of ``weight * value`` where ``callback(item)`` returns ``(weight, value)``."""

    kind = "WeightedSummation"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.callback is None:
            raise ModelError("WeightedSummation needs a callback returning (weight, value)")


@attrs.define(eq=False)
class Average(_Aggregate):
    """The average of the one field named by ``attribute_query`` (0 for no records)."""

    kind = "Average"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.attribute_query:
            raise ModelError("Average needs attribute_query naming the one field to average")


@attrs.define(eq=False)
class Every(_Aggregate):
    """Whether ``callback`` is true for every record (true when there are none, unless
    ``not_empty``)."""

    not_empty: bool = False
    kind = "Every"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.callback is None:
            raise ModelError("Every needs a callback")


@attrs.define(eq=False)
class Any(_Aggregate):
    """Whether ``callback`` is true for at least one record."""

    kind = "Any"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.callback is None:
            raise ModelError("Any needs a callback")


@attrs.define(eq=False)
class Transform(Computation):
    """Derive records of the host entity/relation from the records of ``record``, or from the
    mutation events named by ``event_deps`` (exactly one of the two).

    Over ``record``: ``callback(source)`` returns a dict, a list of dicts, or None. Derived
    records follow their source: created with it, updated in place (same ids) when a queried
    field changes, deleted with it.

    Over ``event_deps`` (a list of :class:`Trigger`): ``callback(event)`` (a
    :class:`~storage.MutationEvent`; the interaction event of a dispatch is the ``create`` of
    an ``_Interaction_`` record) returns what to create, as above, once per matching event.
    Those records are history, tied to no source: nothing updates or deletes them afterwards
    (users may), and ``verify()``/``recompute()`` cannot derive them again (they are listed in
    ``VerifyReport.skipped``). Cost per matching event: the callback and one create per
    record it returns; ``attribute_query`` is not taken.
    """

    record: Entity | Relation | str | None = None
    callback: Callable[..., typing.Any] | None = None
    attribute_query: list[typing.Any] | None = attrs.field(default=None, converter=_query)
    event_deps: list[Trigger] | None = None
    kind = "Transform"

    def __attrs_post_init__(self) -> None:
        if not callable(self.callback):
            raise ModelError("Transform callback must be callable")
        if (self.record is None) == (self.event_deps is None):
            raise ModelError(
                "Transform needs exactly one of record= (derive from the records of an entity "
                "or relation) or event_deps= (derive from mutation events)"
            )
        if self.event_deps is not None:
            if isinstance(self.event_deps, Trigger) or not isinstance(self.event_deps, list):
                raise ModelError("Transform event_deps must be a list of Trigger objects")
            if not self.event_deps:
                raise ModelError("Transform event_deps must name at least one Trigger")
            for trigger in self.event_deps:
                if not isinstance(trigger, Trigger):
                    raise ModelError(
                        f"Transform event_deps must be Trigger objects, got {trigger!r}"
                    )
            if self.attribute_query is not None:
                raise ModelError(
                    "Transform over event_deps takes no attribute_query: the callback gets "
                    "the whole event"
                )


@attrs.define(eq=False)
class Trigger:
    """A pattern over mutation events: ``record`` and ``type`` must match, ``fields`` is an
    equality pattern on the record (merged old+new for updates), ``keys`` must all be written by
    the update.

    ``record`` may be an :class:`~reactive.Interaction`: the trigger then matches the
    interaction events of that interaction (the ``create`` of an ``_Interaction_`` record
    whose ``interaction_name`` is its name); ``type`` must be ``"create"``."""

    record: Entity | Relation | str | Interaction
    type: Literal["create", "update", "delete"] = "create"
    fields: Mapping[str, typing.Any] | None = None
    keys: Sequence[str] | None = None
    #: the name of the interaction given as ``record`` (None otherwise); the controller
    #: checks it is one of its interactions
    interaction: str | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.type not in ("create", "update", "delete"):
            raise ModelError(f"Trigger type must be create, update or delete, got {self.type!r}")
        if self.fields is not None and not isinstance(self.fields, Mapping):
            raise ModelError("Trigger fields must be a dict pattern")
        if isinstance(self.record, Interaction):
            # Interaction events are only ever created: a dispatch writes one record.
            if self.type != "create":
                raise ModelError(
                    f"Trigger on interaction {self.record.name}: interaction events are only "
                    f"created, so type must be 'create', got {self.type!r}"
                )
            self.fields = {"interaction_name": self.record.name, **(self.fields or {})}
            self.interaction = self.record.name
            self.record = INTERACTION_EVENT
        if self.keys is not None:
            if self.type != "update":
                raise ModelError("Trigger keys only make sense for type='update'")
            if isinstance(self.keys, str) or not list(self.keys):
                raise ModelError("Trigger keys must be a non-empty list of field names")

    @property
    def record_name(self) -> str:
        """The name of the record whose events it matches (``_Interaction_`` for an
        interaction)."""
        record = self.record
        assert not isinstance(record, Interaction)  # replaced by its record at construction
        return record_name(record)


@attrs.define(eq=False)
class StateNode:
    """A state. ``compute_value(last_value, event)`` gives the value on entering it; without it
    the value is the state's name."""

    name: str
    compute_value: Callable[..., typing.Any] | None = None


def _false(last_value: typing.Any, event: typing.Any) -> bool:
    return False


def _true(last_value: typing.Any, event: typing.Any) -> bool:
    return True


NON_DELETED_STATE = StateNode("non_deleted", compute_value=_false)
"""The state of a record that exists (the hard-deletion property's value: False)."""
DELETED_STATE = StateNode("deleted", compute_value=_true)
"""Entering it deletes the record (the hard-deletion property's value: True)."""


@attrs.define(eq=False)
class StateTransfer:
    """A transition ``current -> next`` taken when ``trigger`` matches an event.

    On a property, ``compute_target(event)`` returns the host records to move: ``{"id": ...}``,
    a list of them, or None.
    """

    current: StateNode
    next: StateNode
    trigger: Trigger
    compute_target: Callable[..., typing.Any] | None = None


@attrs.define(eq=False)
class StateMachine(Computation):
    """A property's (or dictionary's) value as a state machine over mutation events.

    ``initial(record)`` (optional) places the records that exist when the machine is added to
    a model (``setup()``'s backfill): it returns a state (a ``StateNode`` or its name); without
    it they start in ``initial_state``. New records always start in ``initial_state``.
    """

    states: list[StateNode]
    transfers: list[StateTransfer]
    initial_state: StateNode
    initial: Callable[..., typing.Any] | None = None
    kind = "StateMachine"

    def __attrs_post_init__(self) -> None:
        if not self.states:
            raise ModelError("StateMachine needs at least one state")
        names = [s.name for s in self.states]
        if len(set(names)) != len(names):
            raise ModelError(f"StateMachine state names must be unique: {names}")
        if not any(self.initial_state is s for s in self.states):
            raise ModelError(f"initial_state {self.initial_state.name!r} is not in states")
        for transfer in self.transfers:
            for node in (transfer.current, transfer.next):
                if not any(node is s for s in self.states):
                    raise ModelError(f"transfer uses state {node.name!r}, which is not in states")
            if not isinstance(transfer.trigger, Trigger):
                raise ModelError("StateTransfer trigger must be a Trigger")
        if self.initial is not None and not callable(self.initial):
            raise ModelError("StateMachine initial must be a function of the record")


@attrs.define(eq=False)
class Custom(Computation):
    """The escape hatch: a property's or dictionary's value computed by a user function, run
    either on events (``triggers``) or when declared data changes (``data_deps``): exactly one
    of the two.

    On events: ``compute(last_value, event, ctx)`` gives the new value whenever one of
    ``triggers`` matches an event. On a property, ``compute_target(event, ctx)`` names the host
    records (as for a StateMachine). With ``with_record=True`` a property's compute receives
    the host's whole stored record instead of the last value (``compute(record, event, ctx)``),
    for values that depend on its id.

    On data: ``data_deps`` maps names to dependencies (:mod:`reactive.custom_deps`:
    ``RecordsDep``, ``DictionaryDep``, ``OwnFieldsDep``, ``RelatedDep``);
    ``compute(deps, ctx)`` on a
    dictionary, ``compute(deps, record, ctx)`` on a property (``record``: the host's stored
    record), where ``deps`` holds each dependency's current value under its name. It runs when
    a dependency changes, when a host is created, and at install for a dictionary; it should
    be a deterministic function of its arguments: ``verify()`` and ``recompute()`` run it again
    and compare (unless it keeps ``state``). See :mod:`reactive.custom_deps` for the costs.

    ``state``: the computation's own state, a dict kept per host record (in an internal field)
    or for the dictionary (in its row), written in the same transaction as the value. Give its
    initial value (a dict, or a zero-argument function returning one); ``compute`` then takes
    it as one more argument before ``ctx`` (``compute(last_value, event, state, ctx)``,
    ``compute(deps, state, ctx)``, ``compute(deps, record, state, ctx)``) and changes it in
    place; a changed state is written even when the value is :data:`UNCHANGED`. A Custom with
    state depends on its history: ``verify()`` lists it in ``skipped``.

    Return :data:`reactive.UNCHANGED` to leave the value as it is. ``initial`` is the value of
    a new host (or the dictionary at install) before any compute: a value or a zero-argument
    callable.
    """

    compute: Callable[..., typing.Any]
    triggers: list[Trigger] = attrs.field(factory=list)
    compute_target: Callable[..., typing.Any] | None = None
    initial: typing.Any = None
    with_record: bool = False
    data_deps: Mapping[str, DataDep] | None = None
    state: typing.Any = None
    kind = "Custom"

    def __attrs_post_init__(self) -> None:
        if not callable(self.compute):
            raise ModelError("Custom compute must be callable")
        if bool(self.triggers) == bool(self.data_deps):
            raise ModelError(
                "Custom needs exactly one of triggers= (the events it recomputes on) or "
                "data_deps= (the data it is computed from)"
            )
        for trigger in self.triggers:
            if not isinstance(trigger, Trigger):
                raise ModelError("Custom triggers must be Trigger objects")
        if self.data_deps is not None:
            if not isinstance(self.data_deps, Mapping):
                raise ModelError("Custom data_deps must be a dict of name -> dependency")
            for name, dep in self.data_deps.items():
                if not isinstance(name, str) or not name:
                    raise ModelError(f"Custom data_deps names must be strings, got {name!r}")
                if not isinstance(dep, RecordsDep | DictionaryDep | OwnFieldsDep | RelatedDep):
                    raise ModelError(
                        f"Custom data_deps {name!r}: a RecordsDep, DictionaryDep, "
                        f"OwnFieldsDep or RelatedDep, got {dep!r}"
                    )
            if self.compute_target is not None or self.with_record:
                raise ModelError(
                    "Custom with data_deps takes no compute_target or with_record: its hosts "
                    "follow from its dependencies, and a property's compute gets the record"
                )
        if self.state is not None and not (callable(self.state) or isinstance(self.state, dict)):
            raise ModelError(
                f"Custom state must be a dict or a function returning one, got {self.state!r}"
            )

    def initial_state(self) -> dict[str, typing.Any] | None:
        """A fresh copy of the declared initial state (None without state)."""
        if self.state is None:
            return None
        value = self.state() if callable(self.state) else copy.deepcopy(self.state)
        if not isinstance(value, dict):
            raise ModelError(f"Custom state function must return a dict, got {value!r}")
        return value


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: typing.Any = _Unchanged()
"""Returned by a Custom compute (or StateNode compute_value) to keep the current value."""
