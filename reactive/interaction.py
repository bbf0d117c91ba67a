"""Interactions: the named, validated ways users change the system.

A dispatch checks the payload against the declared items, runs the conditions, then records one
interaction event (a ``_Interaction_`` record); computations react to it like to any record. All
of it is one transaction: a rejected dispatch stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs

from reactive.bounds import Bounds
from reactive.callables import adapt
from reactive.errors import ModelError
from reactive.model import Entity, Relation, record_name
from storage import MutationEvent, is_id

if TYPE_CHECKING:
    from reactive.context import TransactionContext

INTERACTION_EVENT = "_Interaction_"
"""The record every dispatch writes: ``interaction_name``, ``user``, ``payload``."""

PayloadType = Literal["string", "number", "integer", "boolean", "json", "timestamp"]
PAYLOAD_TYPES: tuple[str, ...] = ("string", "number", "integer", "boolean", "json", "timestamp")


@attrs.define(eq=False)
class PayloadItem:
    """One named payload value. ``is_ref`` items are ``{"id": ...}`` references to records of
    ``base``; ``is_collection`` items are lists (each element checked on its own).

    Bounds (inclusive, see :mod:`reactive.bounds`): ``minimum``/``maximum`` for ``number`` and
    ``integer`` items, ``min_length``/``max_length`` for ``string`` items. A value outside them
    is refused (``payload_type``, naming the item) before anything is stored, and the OpenAPI
    document publishes them."""

    name: str
    type: PayloadType = "string"
    required: bool = False
    base: Entity | Relation | None = None
    is_ref: bool = False
    is_collection: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    bounds: Bounds = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.is_ref and self.base is None:
            raise ModelError(f"payload item {self.name!r}: is_ref needs base (the entity)")
        if self.type not in PAYLOAD_TYPES:
            raise ModelError(
                f"payload item {self.name!r}: unknown type {self.type!r}; use one of "
                f"{', '.join(PAYLOAD_TYPES)}"
            )
        self.bounds = Bounds(self.minimum, self.maximum, self.min_length, self.max_length)
        self.bounds.check_declaration(f"payload item {self.name!r}", self.type)


@attrs.define(eq=False)
class Payload:
    """The items an interaction's payload may carry (names unique; unknown ones are refused)."""

    items: list[PayloadItem] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        names = [i.name for i in self.items]
        if len(set(names)) != len(names):
            raise ModelError(f"payload item names must be unique: {names}")


@attrs.define(eq=False)
class Condition:
    """``check(event)`` or ``check(event, ctx)`` where ``event`` is ``{"user", "payload",
    "interaction_name"}``. True passes; False rejects (code ``condition_rejected``); a dict
    ``{"allowed": False, "code": ..., "message": ...}`` rejects with that code."""

    name: str
    check: Callable[..., Any]


@attrs.define(eq=False)
class Interaction:
    """A named way to change the system. ``resolve(event, ctx)`` (optional) gives
    ``DispatchResult.data``; by default it is ``{"id": <interaction event id>}``."""

    name: str
    payload: Payload = attrs.field(factory=Payload)
    conditions: list[Condition] = attrs.field(factory=list)
    resolve: Callable[..., Any] | None = None


@attrs.define
class DispatchError:
    """Why a dispatch was rejected or failed. ``code`` is stable and machine-readable."""

    code: str
    message: str
    interaction: str
    details: dict[str, Any] = attrs.field(factory=dict)
    cause: BaseException | None = attrs.field(default=None, repr=False)


@attrs.define
class DispatchResult:
    """``error`` is None on success; ``effects`` are the committed mutation events."""

    error: DispatchError | None
    data: Any = None
    effects: list[MutationEvent] = attrs.field(factory=list)


class Rejected(Exception):
    """Raised inside the dispatch transaction to roll it back with a DispatchError."""

    def __init__(self, error: DispatchError):
        super().__init__(error.message)
        self.error = error


def validate_payload(
    interaction: Interaction, payload: Any, ctx: TransactionContext
) -> dict[str, Any]:
    """Check ``payload`` against the interaction's items; raise :class:`Rejected` if bad."""
    name = interaction.name

    def reject(code: str, message: str, item: str | None = None) -> Rejected:
        return Rejected(DispatchError(code, message, name, {"item": item} if item else {}))

    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise reject("payload_invalid", f"{name}: payload must be an object")
    items = {i.name: i for i in interaction.payload.items}
    for key in payload:
        if key not in items:
            raise reject("payload_unknown", f"{name}: {key!r} is not a payload item of {name}", key)
    for item in items.values():
        if item.name not in payload or payload[item.name] is None:
            if item.required:
                raise reject(
                    "payload_missing", f"{name}: payload item {item.name!r} is required", item.name
                )
            continue
        value = payload[item.name]
        values = value
        if item.is_collection:
            if not isinstance(value, list):
                raise reject(
                    "payload_type", f"{name}: payload item {item.name!r} must be a list", item.name
                )
        else:
            values = [value]
        for one in values:
            _check_value(item, one, reject, ctx)
    return _json_safe(items, dict(payload))


def _check_value(
    item: PayloadItem, value: Any, reject: Callable[..., Rejected], ctx: TransactionContext
) -> None:
    if item.is_ref:
        if not isinstance(value, Mapping) or "id" not in value:
            raise reject(
                "payload_type",
                f"payload item {item.name!r} must be a reference {{'id': ...}}",
                item.name,
            )
        assert item.base is not None
        base = record_name(item.base)
        if not is_id(value["id"]):
            raise reject(
                "payload_type",
                f"payload item {item.name!r}: an id is an int or a str, got {value['id']!r}",
                item.name,
            )
        if ctx.find_one(base, {"id": value["id"]}) is None:
            raise reject(
                "payload_ref_missing",
                f"payload item {item.name!r} refers to {base} "
                f"id={value['id']!r}, which does not exist",
                item.name,
            )
        return
    if item.base is not None and isinstance(value, Mapping):
        return  # a nested record to create; storage validates its fields
    if item.type == "timestamp":
        _check_timestamp(item, value, reject)
        return
    problem = item.bounds.problem(item.type, value)
    if problem is not None:
        raise reject("payload_type", f"payload item {item.name!r} must {problem}", item.name)


def _check_timestamp(item: PayloadItem, value: Any, reject: Callable[..., Rejected]) -> None:
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise reject(
            "payload_type",
            f"payload item {item.name!r} must be a timezone-aware datetime or an ISO 8601 "
            f"string with an offset, got {value!r}",
            item.name,
        )


def _json_safe(items: dict[str, PayloadItem], payload: dict[str, Any]) -> dict[str, Any]:
    """Timestamps are kept in the interaction event as ISO 8601 strings (it is stored as
    JSON); every other value as given."""
    out = dict(payload)
    for name, item in items.items():
        if item.type != "timestamp" or out.get(name) is None:
            continue
        value = out[name]
        convert = _iso
        out[name] = [convert(v) for v in value] if item.is_collection else convert(value)
    return out


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def check_conditions(
    interaction: Interaction, event: dict[str, Any], ctx: TransactionContext
) -> None:
    for condition in interaction.conditions:
        check = adapt(condition.check, 1, f"condition {condition.name}")
        try:
            result = check(event, ctx)
        except Exception as exc:
            raise Rejected(
                DispatchError(
                    "condition_error",
                    f"{interaction.name}: condition {condition.name} raised {exc!r}",
                    interaction.name,
                    {"condition": condition.name},
                    exc,
                )
            ) from exc
        if result is True:
            continue
        if result is False or result is None:
            raise Rejected(
                DispatchError(
                    "condition_rejected",
                    f"{interaction.name}: condition {condition.name} rejected the dispatch",
                    interaction.name,
                    {"condition": condition.name},
                )
            )
        if isinstance(result, Mapping):
            if result.get("allowed") is True:
                continue
            code = str(result.get("code") or "condition_rejected")
            message = str(
                result.get("message") or f"condition {condition.name} rejected the dispatch"
            )
            raise Rejected(
                DispatchError(
                    code,
                    f"{interaction.name}: {message}",
                    interaction.name,
                    {"condition": condition.name, **dict(result.get("details") or {})},
                )
            )
        raise Rejected(
            DispatchError(
                "condition_invalid_result",
                f"{interaction.name}: "
                f"condition {condition.name} returned {result!r}; return "
                "True, False or a dict",
                interaction.name,
                {"condition": condition.name},
            )
        )
