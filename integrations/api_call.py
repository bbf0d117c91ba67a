"""The APICall pattern: a call record, its event record, and the fold between them.

Business logic creates the call (it decides *when*); the integration writes events
(``initialized -> processing -> completed | failed``); the fold derives the call's ``status``,
``external_id``, ``response_data``, ``error`` and ``completed_at`` from them.

The fold is a function of the *set* of events that belong to the call's current attempt, so it
is order-insensitive and duplicate-safe by construction:

- terminal states absorb (``completed`` wins over ``failed`` if the provider reported both; a
  failure naming the call itself, our own verdict such as the sweeper's timeout, wins over
  anything the provider reports later);
- a repeated event, or a ``processing`` after ``completed``, changes nothing;
- an event whose ``external_id`` is not known yet is stored and counted as soon as the
  ``initialized`` event that announces that id arrives;
- the current attempt is the latest ``initialized``: events carrying an older attempt's
  ``external_id`` (a late result of a superseded attempt) never reach the call;
- ``attempts`` counts the call's attempt records, whenever they arrive (before or after the
  call finished): every attempt record refolds its call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

import reactive as r
from reactive import record_name

EVENT_TYPES = ("initialized", "processing", "completed", "failed")
ATTEMPT = "attempt"
"""Event type recording one submission attempt (counted by the fold; it moves no status)."""


def now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class CallFields:
    """Field names of the APICall record (configurable, as in the guide)."""

    status: str = "status"
    external_id: str = "external_id"
    request_params: str = "request_params"
    response_data: str = "response_data"
    error: str = "error"
    created_at: str = "created_at"
    completed_at: str = "completed_at"
    owner: str = "owner_id"
    state: str = "call_state"


@attrs.frozen
class EventFields:
    """Field names of the integration event record."""

    event_type: str = "event_type"
    entity_id: str = "entity_id"
    external_id: str = "external_id"
    status: str = "status"
    data: str = "data"
    created_at: str = "created_at"
    dedup_key: str = "dedup_key"


@attrs.frozen
class APICallModel:
    """What ``api_call_entities`` built: the two entities and their field names. Unpacks as
    ``call, event = api_call_entities(...)``."""

    call: r.Entity
    event: r.Entity
    fields: CallFields
    event_fields: EventFields

    def __iter__(self) -> Any:
        return iter((self.call, self.event))


def api_call_entities(
    call_name: str,
    event_name: str,
    fields: CallFields | None = None,
    event_fields: EventFields | None = None,
    call_properties: Sequence[r.Property] = (),
    event_properties: Sequence[r.Property] = (),
) -> APICallModel:
    """The APICall entity and its event entity, with the standard fields and the fold.

    Extra properties may be added to either. Relate a business entity to the call entity
    (``1:n``) and derive business values with :func:`latest_call_value`.
    """
    cf = fields or CallFields()
    ef = event_fields or EventFields()
    event = r.Entity(
        event_name,
        [
            r.Property(ef.event_type, index=True),
            r.Property(ef.entity_id, "json", index=True),
            r.Property(ef.external_id, index=True),
            r.Property(ef.status),
            r.Property(ef.data, "json"),
            r.Property(ef.created_at, "timestamp", default=now),
            r.Property(ef.dedup_key, unique=True),
            *event_properties,
        ],
    )

    def target(ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        record = ev.record
        # Every event naming the call refolds it, an attempt record included: the fold counts
        # them, and one may land after a webhook already finished the call.
        if record.get(ef.entity_id) is not None:
            return {"id": record[ef.entity_id]}
        external_id = record.get(ef.external_id)
        if external_id is None:
            return None
        # Unknown yet (its initialized has not arrived): the event waits in its table.
        return ctx.storage.find_one(call_name, {cf.external_id: external_id})

    def fold(call: dict[str, Any], ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        state = fold_events(call["id"], event_name, ef, ctx)
        return r.UNCHANGED if state == call.get(cf.state) else state

    def state_field(name: str) -> Any:
        return lambda record: (record.get(cf.state) or {}).get(name)

    call = r.Entity(
        call_name,
        [
            r.Property(cf.request_params, "json"),
            r.Property(cf.owner, "json", index=True),
            r.Property(cf.created_at, "timestamp", default=now),
            r.Property(
                cf.state,
                "json",
                computation=r.Custom(
                    fold,
                    triggers=[r.Trigger(event, "create")],
                    compute_target=target,
                    initial=lambda: dict(INITIAL_STATE),
                    with_record=True,
                ),
            ),
            r.Property(cf.status, computed=state_field("status")),
            r.Property(cf.external_id, index=True, computed=state_field("external_id")),
            r.Property(cf.response_data, "json", computed=state_field("response_data")),
            r.Property(cf.error, "json", computed=state_field("error")),
            r.Property(cf.completed_at, "timestamp", computed=_completed_at(cf)),
            *call_properties,
        ],
    )
    return APICallModel(call, event, cf, ef)


INITIAL_STATE: dict[str, Any] = {
    "status": "pending",
    "external_id": None,
    "response_data": None,
    "error": None,
    "completed_at": None,
    "attempts": 0,
}


def _completed_at(cf: CallFields) -> Any:
    def compute(record: dict[str, Any]) -> Any:
        value = (record.get(cf.state) or {}).get("completed_at")
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return compute


def fold_events(
    call_id: Any, event_name: str, ef: EventFields, ctx: r.TransactionContext
) -> dict[str, Any]:
    """The call's state from the set of its events (see the module docstring)."""
    query = [ef.event_type, ef.external_id, ef.entity_id, ef.data, ef.created_at]
    own = ctx.storage.find(event_name, {ef.entity_id: call_id}, query, order_by={"id": "asc"})
    initialized = [e for e in own if e[ef.event_type] == "initialized"]
    attempts = sum(1 for e in own if e[ef.event_type] == ATTEMPT)
    current = initialized[-1][ef.external_id] if initialized else None
    relevant = [
        e for e in own if e[ef.event_type] in EVENT_TYPES and e[ef.external_id] in (None, current)
    ]
    if current is not None:
        seen = {e["id"] for e in relevant}
        by_external = ctx.storage.find(
            event_name, {ef.external_id: current, ef.entity_id: None}, query, order_by={"id": "asc"}
        )
        relevant += [e for e in by_external if e["id"] not in seen]
    kinds = {e[ef.event_type] for e in relevant}
    state = dict(INITIAL_STATE)
    state["external_id"] = current
    state["attempts"] = attempts
    # A failure naming the call itself is our own verdict (submission gave up, or the sweeper
    # timed the call out), given only while the call was open: it absorbs, so a provider's late
    # completion cannot revive a call the application was already told had failed.
    verdicts = [e for e in relevant if e[ef.event_type] == "failed" and e[ef.entity_id] is not None]
    terminal = None
    if verdicts:
        terminal = "failed"
    elif "completed" in kinds:
        terminal = "completed"
    elif "failed" in kinds:
        terminal = "failed"
    if terminal is not None:
        # The earliest report of the terminal kind decides its data: later duplicates of it
        # change nothing.
        candidates = verdicts or [e for e in relevant if e[ef.event_type] == terminal]
        first = min(candidates, key=lambda e: e["id"])
        state["status"] = terminal
        data = first[ef.data]
        if terminal == "completed":
            state["response_data"] = data
        else:
            state["error"] = data.get("error", data) if isinstance(data, dict) else data
        created = first[ef.created_at]
        state["completed_at"] = created.isoformat() if created is not None else None
    elif "processing" in kinds and current is not None:
        state["status"] = "processing"
    return state


def latest_call_value(
    owner: r.Entity | str,
    via: str,
    call: r.Entity | str,
    value: Callable[[dict[str, Any]], Any],
    status_field: str = "status",
    statuses: Sequence[str] = ("completed",),
    initial: Any = None,
) -> r.Custom:
    """A business property of ``owner`` taken from its *latest* call once that completes (or
    reaches any of ``statuses``).

    ``via`` is the owner's relation attribute to its calls; ``value(call_record)`` extracts the
    business value (e.g. ``lambda c: c["response_data"]["url"]``). A completion of an older call
    never overwrites the value of a newer one. Declare it on the owner before the owner exists
    by naming it: ``latest_call_value("Greeting", "tts_calls", tts_call, lambda c: ...)``.
    """
    owner_name = record_name(owner)

    def target(ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.find_one(owner_name, {f"{via}.id": ev.record["id"]})

    def compute(record: dict[str, Any], ev: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        found = ctx.storage.find(owner_name, {"id": record["id"]}, [(via, ["id"])])
        ids = [c["id"] for c in (found[0][via] if found else [])]
        if not ids or max(ids) != ev.record["id"]:
            return r.UNCHANGED  # an older call finished: the newer one decides
        return value(ev.merged)

    return r.Custom(
        compute,
        triggers=[
            r.Trigger(record_name(call), "update", fields={status_field: s}, keys=[status_field])
            for s in statuses
        ],
        compute_target=target,
        with_record=True,
        initial=initial,
    )
