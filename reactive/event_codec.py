"""Mutation events to and from JSON-safe values (for durable side-effect intents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import MutationEvent

_TS = "$timestamp"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_TS: value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _TS in value:
            return datetime.fromisoformat(value[_TS])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def event_to_json(event: MutationEvent) -> dict[str, Any]:
    return {
        "record_name": event.record_name,
        "type": event.type,
        "record": _encode(event.record),
        "old_record": _encode(event.old_record),
        "keys": list(event.keys) if event.keys is not None else None,
    }


def event_from_json(data: dict[str, Any]) -> MutationEvent:
    keys = data.get("keys")
    return MutationEvent(
        data["record_name"],
        data["type"],
        _decode(data["record"]),
        _decode(data.get("old_record")),
        tuple(keys) if keys is not None else None,
    )
