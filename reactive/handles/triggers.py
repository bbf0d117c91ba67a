"""Matching mutation events against Trigger patterns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from reactive.computations import Trigger
from reactive.errors import SetupError
from storage import MutationEvent, Schema

# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_SEQUENCES = (list, tuple)


def check_trigger(trigger: Trigger, schema: Schema, owner: str) -> str:
    """Validate a trigger against the schema; return its record name."""
    name = trigger.record_name
    if name not in schema.records:
        raise SetupError(
            f"{owner}: trigger record {name!r} is not an entity, relation or system record "
            f"(known: {', '.join(sorted(schema.records))})"
        )
    known = {"id", *schema.fields(name), *schema.attributes(name)}
    for key in trigger.fields or {}:
        if key not in known:
            raise SetupError(
                f"{owner}: trigger on {name} matches field {key!r}, which {name} does not have"
            )
    for key in trigger.keys or ():
        if key not in schema.fields(name):
            raise SetupError(
                f"{owner}: trigger on {name} requires key {key!r}, which is not a field of {name}"
            )
    return name


T = TypeVar("T")


class TriggerIndex(Generic[T]):
    """The triggers of one route (record, event type), each with what it starts, sorted by a
    field that every pattern names with a str value (``event_type``, ``status``...): an event
    is matched only against the triggers whose value it has. Without such a field, every
    trigger is a candidate. Candidates keep their declaration order."""

    def __init__(self, entries: Sequence[tuple[Trigger, T]]):
        self.entries = list(entries)
        self.key: str | None = None
        self.by_value: dict[str, list[tuple[Trigger, T]]] = {}
        patterns = [trigger.fields or {} for trigger, _ in self.entries]
        for key in patterns[0] if patterns else ():
            if all(type(pattern.get(key)) is str for pattern in patterns):
                self.key = key
                break
        if self.key is not None:
            for entry in self.entries:
                value = (entry[0].fields or {})[self.key]
                self.by_value.setdefault(value, []).append(entry)

    def matching(self, event: MutationEvent) -> list[T]:
        """What the triggers that match ``event`` start, in declaration order."""
        candidates = self.entries
        key = self.key
        if key is not None:
            record = event.record
            if key in record or event.old_record is None:
                value = record.get(key)
            else:
                value = event.old_record.get(key)
            candidates = self.by_value.get(value, []) if isinstance(value, str) else []
        return [item for trigger, item in candidates if matches(trigger, event)]


def matches(trigger: Trigger, event: MutationEvent) -> bool:
    """Whether ``event`` matches ``trigger`` (record and type are checked by routing)."""
    if trigger.keys is not None:
        written = event.keys or ()
        if any(key not in written for key in trigger.keys):
            return False
    if trigger.fields:
        view = event.merged if event.type == "update" else event.record
        return _partial_match(trigger.fields, view)
    return True


_ABSENT = object()


def _partial_match(pattern: Mapping[str, Any], value: Mapping[str, Any]) -> bool:
    for key, expected in pattern.items():
        actual = value.get(key, _ABSENT)
        if type(expected) is str:
            # The common pattern ({"status": "completed"}): nothing but a str equals a str.
            if actual != expected:
                return False
        elif actual is _ABSENT:
            return False
        elif isinstance(expected, dict):
            if not isinstance(actual, dict) or not _partial_match(expected, actual):
                return False
        elif actual != expected or isinstance(actual, bool) != isinstance(expected, bool):
            return False
    return True


def target_ids(result: Any, owner: str) -> list[Any]:
    """Normalise what a compute_target returned into a list of ids."""
    if result is None:
        return []
    items = result if isinstance(result, _SEQUENCES) else [result]
    ids: list[Any] = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, Mapping) or "id" not in item:
            raise SetupError(
                f"{owner}: compute_target must return {{'id': ...}}, a list of them, or None; "
                f"got {result!r}"
            )
        ids.append(item["id"])
    return list(dict.fromkeys(ids))
