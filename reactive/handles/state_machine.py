"""StateMachine (and Custom): a property's or dictionary's value driven by mutation events."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reactive.callables import adapt
from reactive.computations import UNCHANGED, Custom, StateMachine, StateNode, StateTransfer, Trigger
from reactive.errors import ComputationError, ModelError, SetupError
from reactive.handles.base import Handle, Route
from reactive.handles.triggers import TriggerIndex, check_trigger, target_ids
from storage import Field, MutationEvent, Schema

if TYPE_CHECKING:
    from reactive.context import TransactionContext


class _Transfer:
    def __init__(self, transfer: StateTransfer, owner: str, on_property: bool):
        self.current = transfer.current.name
        self.next = transfer.next
        self.trigger = transfer.trigger
        self.record = ""
        self.compute_target: Callable[..., Any] | None = None
        self.source_target = transfer.compute_target
        if transfer.compute_target is not None:
            self.compute_target = adapt(transfer.compute_target, 1, f"{owner} compute_target")
        elif on_property:
            raise SetupError(
                f"{owner}: every transfer of a property StateMachine needs compute_target "
                f"(transfer {transfer.current.name} -> {transfer.next.name})"
            )


class StateMachineHandle(Handle):
    """Moves each target record (or the dictionary) at most one step per event."""

    def __init__(self, decl: StateMachine, host: str | None, target: str):
        self.decl = decl
        self.host = host
        self.target = target
        self.name = f"{host}.{target} (StateMachine)" if host else f"{target} (StateMachine)"
        self.state_field = f"_{target}_bound_state"
        self.transfers = [_Transfer(t, self.name, host is not None) for t in decl.transfers]
        self.values: dict[str, Callable[..., Any] | None] = {
            s.name: adapt(s.compute_value, 2, f"{self.name} state {s.name} compute_value")
            if s.compute_value
            else None
            for s in decl.states
        }
        self.initial_state: StateNode = decl.initial_state

    def bind(self, schema: Schema) -> None:
        by_route: dict[Route, list[tuple[Trigger, _Transfer]]] = {}
        for transfer in self.transfers:
            transfer.record = check_trigger(transfer.trigger, schema, self.name)
            route = (transfer.record, transfer.trigger.type)
            by_route.setdefault(route, []).append((transfer.trigger, transfer))
        self._by_route = {route: TriggerIndex(entries) for route, entries in by_route.items()}

    def hidden_fields(self) -> list[tuple[str, Field]]:
        return [(self.host, Field(self.state_field, "string"))] if self.host else []

    def declared_triggers(self) -> list[Trigger]:
        return [t.trigger for t in self.transfers]

    def routes(self) -> list[Route]:
        return list(dict.fromkeys((t.record, t.trigger.type) for t in self.transfers))

    def value_of(
        self, node: StateNode, last: Any, event: MutationEvent | None, ctx: TransactionContext
    ) -> Any:
        """The value on entering ``node`` (its compute_value, else its name)."""
        compute = self.values[node.name]
        if compute is None:
            return node.name
        value = compute(last, event, ctx)
        return last if value is UNCHANGED else value

    def initial(self, data: Mapping[str, Any], ctx: TransactionContext) -> dict[str, Any]:
        provided = data.get(self.target)
        if self.target in data and self.values[self.initial_state.name] is None:
            raise ModelError(
                f"{self.host}.{self.target} is set by {self.name} and cannot be given on "
                f"create (give initial state {self.initial_state.name!r} a compute_value to "
                "accept it)"
            )
        value = self.value_of(self.initial_state, provided, None, ctx)
        return {self.target: value, self.state_field: self.initial_state.name}

    def install(self, ctx: TransactionContext) -> None:
        if self.host is None and ctx.dictionary_row(self.target) is None:
            value = self.value_of(self.initial_state, None, None, ctx)
            ctx.set_dictionary(self.target, value, {"state": self.initial_state.name})

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        index = self._by_route.get((event.record_name, event.type))
        candidates = index.matching(event) if index is not None else []
        if not candidates:
            return
        if self.host is None:
            self._step_dictionary(candidates, event, ctx)
            return
        # Each target gets the transfers whose compute_target named it; it moves at most once.
        per_target: dict[Any, list[_Transfer]] = {}
        targets_of: dict[int, list[Any]] = {}  # transfers often share one compute_target
        for transfer in candidates:
            compute = transfer.compute_target
            assert compute is not None
            key = id(transfer.source_target)
            if key not in targets_of:
                with ctx.finding_hosts(self.host):
                    named = compute(event, ctx)
                targets_of[key] = target_ids(named, self.name)
            for target_id in targets_of[key]:
                per_target.setdefault(target_id, []).append(transfer)
        for target_id, transfers in per_target.items():
            self._step_record(target_id, transfers, event, ctx)

    def _choose(self, state: str, transfers: list[_Transfer]) -> StateNode | None:
        nexts = {t.next.name: t.next for t in transfers if t.current == state}
        if len(nexts) > 1:
            raise ComputationError(
                self.name,
                f"ambiguous transition from {state!r}: the event matches transfers to "
                f"{', '.join(sorted(nexts))}",
            )
        return next(iter(nexts.values()), None)

    def _step_record(
        self,
        target_id: Any,
        transfers: list[_Transfer],
        event: MutationEvent,
        ctx: TransactionContext,
    ) -> None:
        assert self.host is not None
        # Locked (SELECT ... FOR UPDATE on PostgreSQL): the step reads the state and writes the
        # next one; a concurrent step of the same record waits, then reads this one's result.
        current = ctx.snapshot(self.host, target_id, lock=True)
        if current is None:
            return
        state = current[self.state_field] or self.initial_state.name
        node = self._choose(state, transfers)
        if node is None:
            return
        value = self.value_of(node, current[self.target], event, ctx)
        ctx.update(
            self.host, {"id": current["id"]}, {self.target: value, self.state_field: node.name}
        )

    def _step_dictionary(
        self, transfers: list[_Transfer], event: MutationEvent, ctx: TransactionContext
    ) -> None:
        row = ctx.dictionary_row(self.target, lock=True)
        state = ((row or {}).get("state") or {}).get("state") or self.initial_state.name
        node = self._choose(state, transfers)
        if node is None:
            return
        value = self.value_of(node, (row or {}).get("value"), event, ctx)
        ctx.set_dictionary(self.target, value, {"state": node.name})


class CustomBase(Handle):
    """What every ``Custom`` handle shares: its names, its state field (a dict kept per host in
    a hidden json field, or in the dictionary's row), and a new host's value."""

    def __init__(self, decl: Custom, host: str | None, target: str):
        self.decl = decl
        self.host = host
        self.target = target
        self.name = f"{host}.{target} (Custom)" if host else f"{target} (Custom)"
        self.has_state = decl.state is not None
        self.state_field = f"_{target}_bound_custom_state"

    def hidden_fields(self) -> list[tuple[str, Field]]:
        if self.host is None or not self.has_state:
            return []
        return [(self.host, Field(self.state_field, "json"))]

    def initial_value(self) -> Any:
        """The value of a new host (``initial``, called when it is a function)."""
        initial = self.decl.initial
        return initial() if callable(initial) else initial

    def initial(self, data: Mapping[str, Any], ctx: TransactionContext) -> dict[str, Any]:
        if self.target in data:
            raise ModelError(
                f"{self.host}.{self.target} is computed by {self.name} and cannot be given"
            )
        out = {self.target: self.initial_value()}
        if self.has_state:
            out[self.state_field] = self.decl.initial_state()
        return out


class CustomHandle(CustomBase):
    """``Custom`` on triggers: ``compute(last_value, event, ctx)`` on every matching event
    (``compute(last_value, event, state, ctx)`` with state)."""

    def __init__(self, decl: Custom, host: str | None, target: str):
        super().__init__(decl, host, target)
        self.compute = adapt(decl.compute, 2 + self.has_state, f"{self.name} compute")
        self.compute_target = (
            adapt(decl.compute_target, 1, f"{self.name} compute_target")
            if decl.compute_target
            else None
        )
        if host is not None and self.compute_target is None:
            raise SetupError(f"{self.name}: a Custom on a property needs compute_target")
        self.triggers: list[tuple[str, Trigger]] = []

    def bind(self, schema: Schema) -> None:
        self.triggers = [(check_trigger(t, schema, self.name), t) for t in self.decl.triggers]
        by_route: dict[Route, list[tuple[Trigger, Trigger]]] = {}
        for name, trigger in self.triggers:
            by_route.setdefault((name, trigger.type), []).append((trigger, trigger))
        self._by_route = {route: TriggerIndex(entries) for route, entries in by_route.items()}

    def routes(self) -> list[Route]:
        return list(dict.fromkeys((name, t.type) for name, t in self.triggers))

    def declared_triggers(self) -> list[Trigger]:
        return list(self.decl.triggers)

    def install(self, ctx: TransactionContext) -> None:
        if self.host is None and ctx.dictionary_row(self.target) is None:
            ctx.set_dictionary(self.target, self.initial_value(), self.decl.initial_state())

    def _state(self, stored: Any) -> dict[str, Any] | None:
        """A copy of the stored state to hand to compute (the initial one when none)."""
        if not self.has_state:
            return None
        return copy.deepcopy(stored) if stored is not None else self.decl.initial_state()

    def _run(self, first: Any, event: MutationEvent, state: Any, ctx: TransactionContext) -> Any:
        if self.has_state:
            return self.compute(first, event, state, ctx)
        return self.compute(first, event, ctx)

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        index = self._by_route.get((event.record_name, event.type))
        if index is None or not index.matching(event):
            return
        # The host (record or dictionary row) is read locked before compute runs, so whatever
        # compute reads after it (a collection through ctx.storage included) is at least what
        # every earlier computation of this host committed: see storage.postgres.
        if self.host is None:
            row = ctx.dictionary_row(self.target, lock=True)
            stored = (row or {}).get("state") if self.has_state else None
            state = self._state(stored)
            last = (row or {}).get("value")
            value = self._run(last, event, state, ctx)
            if value is not UNCHANGED:
                ctx.set_dictionary(self.target, value, state)
            elif self.has_state and state != stored:
                ctx.set_dictionary(self.target, last, state)
            return
        assert self.compute_target is not None
        with ctx.finding_hosts(self.host):
            named = self.compute_target(event, ctx)
        for target_id in target_ids(named, self.name):
            current = ctx.snapshot(self.host, target_id, lock=True)
            if current is None:
                continue
            first = dict(current) if self.decl.with_record else current[self.target]
            if not self.has_state:  # the common Custom: no state to copy, only the value
                value = self.compute(first, event, ctx)
                if value is not UNCHANGED:
                    ctx.update(self.host, {"id": current["id"]}, {self.target: value})
                continue
            stored = current.get(self.state_field)
            state = self._state(stored)
            value = self.compute(first, event, state, ctx)
            changes: dict[str, Any] = {}
            if value is not UNCHANGED:
                changes[self.target] = value
            if state != stored:
                changes[self.state_field] = state
            if changes:
                ctx.update(self.host, {"id": current["id"]}, changes)
