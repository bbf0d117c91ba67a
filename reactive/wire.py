"""What travels over HTTP: strict JSON in, JSON (with engine values) out, API params checked.

Used by :mod:`reactive.server`; kept apart so the rules can be read (and tested) on their own.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Set
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from itertools import accumulate
from typing import Any
from uuid import UUID

import attrs

from reactive.api import APIError, Param, param_spec
from reactive.bounds import is_integer, json_kind, json_type_name
from reactive.interaction import Interaction, PayloadItem
from storage import is_id

# -- JSON in -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float | int:
    """A JSON number written with a fraction or an exponent. JSON (and JSON Schema's
    ``integer``) does not tell ``2.0`` from ``2``: a literal whose value is a whole number
    within 64 bits becomes that exact int (read from the text, not through a float); any
    other is a finite float."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    if value.is_integer() and -(2**63) <= value <= 2**63:
        exact = Decimal(text)
        if exact == exact.to_integral_value() and is_integer(whole := int(exact)):
            return whole
    return value


# A lone surrogate can only come in through a \uD800-\uDFFF escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


DEFAULT_MAX_JSON_DEPTH = 64
"""How deeply arrays and objects may nest in a request body (``[[1]]`` is depth 2)."""

# A JSON string literal (well-formed or not, it ends at the first unescaped quote or the end).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply ``text`` nests arrays and objects, found without parsing it (strings are
    skipped, brackets counted): O(len(text)) at C speed for all but the brackets themselves.
    On malformed JSON the figure is still an upper bound of what a parser would build."""
    brackets = _BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Decode a request body as strict JSON (RFC 8259): UTF-8, no NaN/Infinity, no number that
    overflows a float, no lone surrogate, arrays and objects nested at most ``max_depth`` deep
    (checked before parsing, so a hostile body never reaches the recursive parser). Raises
    ``APIError(400, "invalid_json", ...)``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, "invalid_json", f"request body is not UTF-8: {exc.reason}") from None
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise APIError(
            400,
            "invalid_json",
            f"request body nests arrays and objects more than {max_depth} deep",
        )
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise APIError(400, "invalid_json", "request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, our own rejections, int digit limits
        raise APIError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise APIError(400, "invalid_json", "request body has a lone UTF-16 surrogate escape")
    return value


def parse_object(body: bytes, what: str, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict[str, Any]:
    """A body that must be a JSON object; an empty body (no bytes at all) counts as ``{}``."""
    if not body:
        return {}
    value = parse_json(body, max_depth)
    if not isinstance(value, dict):
        raise APIError(
            400, "invalid_body", f"{what} must be a JSON object, got {json_type_name(value)}"
        )
    return value


# -- API params --------------------------------------------------------------------------------


def check_params(
    api_name: str, declared: Mapping[str, str | Param], given: Mapping[str, Any]
) -> None:
    """Every declared param is required, no other is allowed, each has its declared type and
    is within its bounds."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise APIError(
            400,
            "unknown_param",
            f"{api_name}: unknown param(s) {', '.join(map(repr, unknown))}; "
            f"declared: {', '.join(declared) or 'none'}",
        )
    missing = [name for name in declared if name not in given]
    if missing:
        raise APIError(
            400,
            "missing_param",
            f"{api_name}: missing required param(s) {', '.join(map(repr, missing))}",
        )
    for name, spec in declared.items():
        param = param_spec(spec)
        value = given[name]
        if param.type == "id":
            problem = None if is_id(value) else f"be a record id, got {json_kind(value)}"
        else:
            problem = param.bounds.problem(param.type, value)
        if problem is not None:
            raise APIError(400, "invalid_param", f"{api_name}: param {name!r} must {problem}")


# -- interaction payloads ----------------------------------------------------------------------


def _timestamp(item: PayloadItem, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the engine reports the wrong type
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise APIError(
            400,
            "payload_type",
            f"payload item {item.name!r} must be an ISO 8601 timestamp, got {value!r}",
        ) from None


def decode_payload(interaction: Interaction, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON has no timestamps: ISO 8601 strings for ``timestamp`` items become datetimes.
    Everything else is left to the engine's own payload check."""
    decoded = dict(payload)
    for item in interaction.payload.items:
        if item.type != "timestamp" or item.is_ref or decoded.get(item.name) is None:
            continue
        value = decoded[item.name]
        if item.is_collection and isinstance(value, list):
            decoded[item.name] = [_timestamp(item, one) for one in value]
        elif not item.is_collection:
            decoded[item.name] = _timestamp(item, value)
    return decoded


# -- JSON out ----------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Set | tuple):
        return list(value)
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> bytes:
    """Encode a response body. Datetimes become ISO 8601 strings; mappings, sets and tuples,
    UUIDs, Decimals, enums, bytes (base64) and attrs instances are converted. NaN and infinities
    are refused (``ValueError``): JSON cannot carry them."""
    text = json.dumps(value, default=_default, ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "check_params",
    "decode_payload",
    "dump_json",
    "json_depth",
    "json_type_name",
    "parse_json",
    "parse_object",
]
